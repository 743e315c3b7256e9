# The key is the md5 of the arguments joined by single spaces plus a newline,
# so "a b" as one argument and as two give the same key.
procedure() { cl -- echo 'a  b' c; cl -- echo a b c; cl -- echo 'a b c'; observe_keys; }
expect() { cat <<OUT
exit 0
stdout a  b c
exit 0
stdout a b c
exit 200
key db0 cronlock.$(md5key echo 'a  b' c) value=now+41 ttl=41
key db0 cronlock.$(md5key echo a b c) value=now+41 ttl=41
OUT
}
