# CRONLOCK_URL=rediss://host:port/db is the same as CRONLOCK_TLS=yes with
# HOST, PORT and DB; CRONLOCK_TLS_* files still apply.
ONLY_OURS=yes
procedure() {
  cl CRONLOCK_URL="rediss://localhost:$TLS_PORT/2" CRONLOCK_TLS_CA_FILE="$PKI/ca.crt" CRONLOCK_KEY=url -- true
  observe_keys "$TLS_PORT"
}
expect() { cat <<OUT
exit 0
key db2 cronlock.url value=now+41 ttl=41
OUT
}
