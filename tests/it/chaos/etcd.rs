//! The chaos loop (tests/it/chaos/) against etcd, killed with SIGKILL and
//! restarted with its data. `CHAOS_RUNS` (default 200 here) sets the number
//! of invocations, `CHAOS_SEED` replays a run.

use std::time::Duration;

use crate::util::etcd::Etcd;

impl crate::chaos::ChaosStore for Etcd {
    fn env(&self) -> Vec<(String, String)> {
        Etcd::env(self)
    }

    fn restart(&mut self, pause: Duration) {
        self.kill();
        std::thread::sleep(pause);
        Etcd::restart(self);
    }
}

#[test]
fn killing_wrappers_commands_and_etcd_never_lets_two_copies_run() {
    crate::chaos::chaos(&mut Etcd::start(), 200);
}
