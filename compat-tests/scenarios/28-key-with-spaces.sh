# CRONLOCK_KEY with spaces is one key here. The original writes the key into
# an inline Redis command, where a space splits it into two arguments and
# the lock command fails (see DIFFERENCES.md).
procedure() { cl 'CRONLOCK_KEY=nightly report' -- true; observe_keys; }
expect() { printf 'exit 0\nkey db0 cronlock.nightly report value=now+41 ttl=41\n'; }
expect_original() { printf 'exit 201\n'; }
