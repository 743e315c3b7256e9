# A command that does not exist: 127, after taking the lock (then grace).
procedure() { cl -- no-such-command-here; observe_keys; }
expect() { cat <<OUT
exit 127
key db0 cronlock.$(md5key no-such-command-here) value=now+41 ttl=41
OUT
}
