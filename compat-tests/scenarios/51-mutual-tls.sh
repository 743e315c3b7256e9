# A server that requires client certificates refuses a client without one
# (201) and accepts CRONLOCK_TLS_CERT_FILE + CRONLOCK_TLS_KEY_FILE.
ONLY_OURS=yes
procedure() {
  cl CRONLOCK_PORT="$MTLS_PORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$PKI/ca.crt" -- true
  cl CRONLOCK_PORT="$MTLS_PORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$PKI/ca.crt" \
    CRONLOCK_TLS_CERT_FILE="$PKI/client.crt" CRONLOCK_TLS_KEY_FILE="$PKI/client.key" -- "${MARK_CMD[@]}"
  observe_runs
  observe_keys "$MTLS_PORT"
}
expect() { cat <<OUT
exit 201
exit 0
ran 1
key db0 $MARK_KEY value=now+41 ttl=41
OUT
}
