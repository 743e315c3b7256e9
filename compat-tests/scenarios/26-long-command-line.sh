# A command line of 2000 arguments (about 12 KB) hashes like echo prints it.
procedure() {
  local args=(); local i
  for i in $(seq 1 2000); do args+=("arg$i"); done
  cl -- true "${args[@]}"
  observe_keys
}
expect() {
  local args=(); local i
  for i in $(seq 1 2000); do args+=("arg$i"); done
  printf 'exit 0\nkey db0 cronlock.%s value=now+41 ttl=41\n' "$(md5key true "${args[@]}")"
}
