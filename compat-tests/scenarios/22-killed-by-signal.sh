# A command killed by a signal: 128 + N, as shells report it.
procedure() { cl CRONLOCK_KEY=t -- sh -c 'kill -TERM $$'; cl CRONLOCK_KEY=u -- sh -c 'kill -USR1 $$'; }
expect() { printf 'exit 143\nexit 138\n'; }
