//! The chaos loop (tests/chaos_loop/) against ZooKeeper. `CHAOS_RUNS`
//! (default 150 here: every restart waits for a JVM) sets the number of
//! invocations, `CHAOS_SEED` replays a run.

mod chaos_loop;
mod util;

use std::time::Duration;

use util::zookeeper::ZooKeeper;

impl chaos_loop::ChaosStore for ZooKeeper {
    fn env(&self) -> Vec<(String, String)> {
        ZooKeeper::env(self)
    }

    fn restart(&mut self, pause: Duration) {
        self.kill();
        std::thread::sleep(pause);
        ZooKeeper::restart(self);
    }
}

#[test]
fn killing_wrappers_commands_and_zookeeper_never_lets_two_copies_run() {
    chaos_loop::chaos(&mut ZooKeeper::start(), 150);
}
