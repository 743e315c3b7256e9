# TLS failures are errors (201) and lock nothing: a certificate from a CA we
# were not told to trust, a TLS client on a plain port, a plain client on a
# TLS port. CRONLOCK_TLS_SKIP_VERIFY=yes accepts the unknown CA.
ONLY_OURS=yes
procedure() {
  cl CRONLOCK_PORT="$TLS_PORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$PKI/other-ca.crt" -- true
  cl CRONLOCK_PORT="$PLAIN_PORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$PKI/ca.crt" CRONLOCK_REDIS_TIMEOUT=1 -- true
  cl CRONLOCK_PORT="$TLS_PORT" -- true
  observe_keys "$TLS_PORT"
  observe_keys "$PLAIN_PORT"
  cl CRONLOCK_PORT="$TLS_PORT" CRONLOCK_TLS=yes CRONLOCK_TLS_SKIP_VERIFY=yes CRONLOCK_KEY=skip -- true
  observe_keys "$TLS_PORT"
}
expect() { cat <<OUT
exit 201
exit 201
exit 201
exit 0
key db0 cronlock.skip value=now+41 ttl=41
OUT
}
