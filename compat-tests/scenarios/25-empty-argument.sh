# An empty argument still adds its separating space to the hashed line.
procedure() { cl -- test '' = ''; cl -- test = ; observe_keys; }
expect() {
  printf 'exit 0\nexit 0\n'
  printf 'key db0 cronlock.%s value=now+41 ttl=41\n' "$(md5key test '' = '')" "$(md5key test =)" | sort
}
