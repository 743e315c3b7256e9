# The command's own exit code comes back unchanged.
procedure() { cl CRONLOCK_KEY=a -- sh -c 'exit 3'; cl CRONLOCK_KEY=b -- sh -c 'exit 199'; cl CRONLOCK_KEY=c -- false; }
expect() { printf 'exit 3\nexit 199\nexit 1\n'; }
