# A database that cannot be selected is an error (201) and locks nothing.
procedure() { cl CRONLOCK_DB=-1 -- pwd; cl CRONLOCK_DB=9999 -- pwd; observe_keys; }
expect() { printf 'exit 201\nexit 201\n'; }
