//! The chaos loop (tests/it/chaos/) against memcached, without server
//! restarts: memcached keeps nothing across one, so a restart frees every
//! lock by design (two copies would run, and the loop would rightly say
//! so). Wrappers and commands are still killed at random. `CHAOS_RUNS`
//! (default 200 here) sets the number of invocations, `CHAOS_SEED` replays
//! a run.

use std::time::Duration;

use crate::util::memcached::MemcachedServer;

impl crate::chaos::ChaosStore for MemcachedServer {
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
    crate::chaos::chaos(&mut MemcachedServer::start(), 200);
}
