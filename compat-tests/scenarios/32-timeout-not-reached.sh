# A command that ends before CRONLOCK_TIMEOUT is not touched: no emergency line.
procedure() { cl CRONLOCK_TIMEOUT=30 -- sh -c 'echo done'; }
expect() { printf 'exit 0\nstdout done\n'; }
