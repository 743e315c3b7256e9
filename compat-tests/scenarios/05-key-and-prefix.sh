# CRONLOCK_KEY replaces the digest and CRONLOCK_PREFIX the "cronlock." prefix;
# two different commands sharing a key exclude each other.
procedure() {
  cl CRONLOCK_KEY=ls CRONLOCK_PREFIX=mylocks.app1. -- true
  cl CRONLOCK_KEY=ls CRONLOCK_PREFIX=mylocks.app1. -- true
  cl CRONLOCK_KEY=ls CRONLOCK_PREFIX=mylocks.app2. -- true
  observe_keys
}
expect() { cat <<OUT
exit 0
exit 200
exit 0
key db0 mylocks.app1.ls value=now+41 ttl=41
key db0 mylocks.app2.ls value=now+41 ttl=41
OUT
}
