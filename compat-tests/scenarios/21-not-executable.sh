# A file without execute permission: 126.
procedure() { printf '#!/bin/sh\nexit 0\n' >"$WORK/cwd/noexec"; cl -- ./noexec; }
expect() { printf 'exit 126\n'; }
