//! The chaos loop (tests/it/chaos/) against ZooKeeper. `CHAOS_RUNS`
//! (default 150 here: every restart waits for a JVM) sets the number of
//! invocations, `CHAOS_SEED` replays a run.

use std::time::Duration;

use crate::util::zookeeper::ZooKeeper;

impl crate::chaos::ChaosStore for ZooKeeper {
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
    crate::chaos::chaos(&mut ZooKeeper::start(), 150);
}
