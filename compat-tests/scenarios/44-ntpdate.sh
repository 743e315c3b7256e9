# CRONLOCK_NTPDATE=yes is accepted and changes nothing: lock times come from
# the Redis server's clock. (Not run against the original, which would call
# `sudo ntpdate pool.ntp.org`.)
ONLY_OURS=yes
procedure() { cl CRONLOCK_NTPDATE=yes -- true; observe_keys; }
expect() { printf 'exit 0\nkey db0 cronlock.%s value=now+41 ttl=41\n' "$(md5key true)"; }
