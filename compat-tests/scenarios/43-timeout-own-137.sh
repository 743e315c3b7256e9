# With a timeout set, a command that exits 137 by itself is reported as 137
# here; the original cannot tell it from its own kill and says 202
# (see DIFFERENCES.md).
procedure() { cl CRONLOCK_TIMEOUT=30 -- sh -c 'exit 137'; }
expect() { printf 'exit 137\n'; }
expect_original() { printf "exit 202\nstdout emergency: had to kill 'sh -c exit 137' after 30s timeout\n"; }
