//! The chaos loop (tests/it/chaos/) against DynamoDB on moto's emulator,
//! without server restarts: the emulator keeps its tables in memory, so a
//! restart would lose every lock (and the table), which DynamoDB itself
//! never does. Wrappers and commands are still killed at random.
//! `CHAOS_RUNS` (default 200 here) sets the number of invocations,
//! `CHAOS_SEED` replays a run.

use std::time::Duration;

use crate::util::dynamodb::DynamoServer;

impl crate::chaos::ChaosStore for DynamoServer {
    fn env(&self) -> Vec<(String, String)> {
        DynamoServer::env(self)
    }

    /// A pause instead of a restart (see above).
    fn restart(&mut self, pause: Duration) {
        std::thread::sleep(pause);
    }
}

#[test]
fn killing_wrappers_and_commands_never_lets_two_copies_run() {
    crate::chaos::chaos(&mut DynamoServer::start(), 200);
}
