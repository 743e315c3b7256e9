# CRONLOCK_CONFIG naming a file that does not exist is an error here (201);
# the original prints the shell's error and carries on (see DIFFERENCES.md).
procedure() { cl CRONLOCK_CONFIG=/nonexistent/cronlock.conf -- true; }
expect() { printf 'exit 201\n'; }
expect_original() { printf 'exit 0\n'; }
