# CRONLOCK_VERBOSE=yes only adds lines on stderr: exit codes and stdout are as before.
procedure() { cl CRONLOCK_VERBOSE=yes -- echo hi; cl CRONLOCK_VERBOSE=yes -- echo hi; }
expect() { printf 'exit 0\nstdout hi\nexit 200\n'; }
