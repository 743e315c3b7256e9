# Values in the config file win over the environment, as with `source`.
procedure() {
  printf 'CRONLOCK_PREFIX=fromfile.\nCRONLOCK_GRACE=20\n' >"$WORK/c.conf"
  cl CRONLOCK_CONFIG="$WORK/c.conf" CRONLOCK_PREFIX=fromenv. CRONLOCK_GRACE=50 CRONLOCK_KEY=k -- true
  observe_keys
}
expect() { printf 'exit 0\nkey db0 fromfile.k value=now+21 ttl=21\n'; }
