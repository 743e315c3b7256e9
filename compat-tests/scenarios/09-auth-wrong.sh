# A wrong password on a password-protected server: 201, nothing locked.
procedure() { cl CRONLOCK_PORT="$AUTH_PORT" CRONLOCK_AUTH=wrong -- true; cl CRONLOCK_PORT="$AUTH_PORT" -- true; observe_keys "$AUTH_PORT"; }
expect() { printf 'exit 201\nexit 201\n'; }
