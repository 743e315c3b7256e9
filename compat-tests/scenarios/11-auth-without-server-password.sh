# A password sent to a server that has none is refused by Redis: 201, and
# no lock is left behind (the original project's own test checks the exit code).
procedure() { cl CRONLOCK_AUTH=INVALID_AUTH_CODE -- pwd; observe_keys; }
expect() { printf 'exit 201\n'; }
