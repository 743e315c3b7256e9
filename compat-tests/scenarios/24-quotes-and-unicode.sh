# Quotes, backslashes, percent signs and non-ASCII text hash byte for byte.
procedure() { cl -- printf '%s\n' "it's \"quoted\" \\ 100% é 日本"; observe_keys; }
expect() { cat <<OUT
exit 0
stdout it's "quoted" \\ 100% é 日本
key db0 cronlock.$(md5key printf '%s\n' "it's \"quoted\" \\ 100% é 日本") value=now+41 ttl=41
OUT
}
