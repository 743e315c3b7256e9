//! The chaos loop (tests/chaos_loop/) against memcached, without server
//! restarts: memcached keeps nothing across one, so a restart frees every
//! lock by design (two copies would run, and the loop would rightly say
//! so). Wrappers and commands are still killed at random. `CHAOS_RUNS`
//! (default 200 here) sets the number of invocations, `CHAOS_SEED` replays
//! a run.

mod chaos_loop;
mod util;

use std::time::Duration;

use util::memcached::MemcachedServer;

impl chaos_loop::ChaosStore for MemcachedServer {
    fn env(&self) -> Vec<(String, String)> {
        MemcachedServer::env(self)
    }

    /// A pause instead of a restart (see above).
    fn restart(&mut self, pause: Duration) {
        std::thread::sleep(pause);
    }
}

#[test]
fn killing_wrappers_and_commands_never_lets_two_copies_run() {
    chaos_loop::chaos(&mut MemcachedServer::start(), 200);
}
