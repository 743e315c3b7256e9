# Leading arguments that bash's echo takes as options (-n, -e, -E and their
# combinations) change what is hashed: -n drops the newline, -e expands
# backslash escapes. Such commands do not exist (127), but the key must match.
procedure() {
  cl -- -n job
  cl -- -e 'a\tb' '\x41'
  cl -- -neE 'x\ty'
  cl -- -x job
  observe_keys
}
expect() {
  printf 'exit 127\nexit 127\nexit 127\nexit 127\n'
  {
    echo "cronlock.$(echo -n job | md5sum | awk '{print $1}')"
    echo "cronlock.$(echo -e 'a\tb' '\x41' | md5sum | awk '{print $1}')"
    echo "cronlock.$(echo -neE 'x\ty' | md5sum | awk '{print $1}')"
    echo "cronlock.$(md5key -x job)"
  } | sort | while read -r key; do echo "key db0 $key value=now+41 ttl=41"; done
}
