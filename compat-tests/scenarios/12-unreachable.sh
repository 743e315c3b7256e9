# Nothing listens on the port: after the reconnect attempts, 201.
procedure() { cl CRONLOCK_PORT="$(free_port)" CRONLOCK_RECONNECT_ATTEMPTS=2 -- true; }
expect() { printf 'exit 201\n'; }
