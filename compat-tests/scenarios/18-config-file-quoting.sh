# Quotes, export, comments and blank lines in the config file.
procedure() {
  cat >"$WORK/q.conf" <<'CONF'
# shared settings

export CRONLOCK_PREFIX="my company."   # trailing comment
CRONLOCK_KEY='job #1'
  CRONLOCK_GRACE=15
CONF
  cl CRONLOCK_CONFIG="$WORK/q.conf" -- true
  observe_keys
}
expect() { printf 'exit 0\nkey db0 my company.job #1 value=now+16 ttl=16\n'; }
# The original sends the key unquoted inside an inline command, so a key
# with spaces breaks its protocol (see DIFFERENCES.md).
expect_original() { printf 'exit 201\n'; }
