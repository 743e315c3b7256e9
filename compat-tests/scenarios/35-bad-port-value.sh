# A port that is not a number is an error of ours: 201.
procedure() { cl CRONLOCK_PORT=abc CRONLOCK_RECONNECT_ATTEMPTS=0 -- true; }
expect() { printf 'exit 201\n'; }
