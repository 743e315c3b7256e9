# CRONLOCK_TLS=yes with a CA bundle: the lock lives on a TLS-only server with
# the usual key, value and TTLs, and a second run finds it held. (The
# original cannot speak TLS.)
ONLY_OURS=yes
procedure() {
  cl CRONLOCK_PORT="$TLS_PORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$PKI/ca.crt" -- true
  cl CRONLOCK_HOST=localhost CRONLOCK_PORT="$TLS_PORT" CRONLOCK_TLS=true CRONLOCK_TLS_CA_FILE="$PKI/ca.crt" -- true
  observe_keys "$TLS_PORT"
}
expect() { cat <<OUT
exit 0
exit 200
key db0 cronlock.$(md5key true) value=now+41 ttl=41
OUT
}
