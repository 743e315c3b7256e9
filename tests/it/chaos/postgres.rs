//! The chaos loop (tests/it/chaos/) against PostgreSQL, killed with
//! SIGKILL and restarted with its data. `CHAOS_RUNS` (default 200 here)
//! sets the number of invocations, `CHAOS_SEED` replays a run.

use std::time::Duration;

use crate::util::postgres::Postgres;

struct DurablePostgres(Postgres);

impl crate::chaos::ChaosStore for DurablePostgres {
    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "CRONLOCK_URL".to_string(),
            format!("{}?sslmode=disable", self.0.url("locker", "pw", "postgres")),
        )]
    }

    fn restart(&mut self, pause: Duration) {
        self.0.kill();
        std::thread::sleep(pause);
        self.0.restart();
    }

    fn cut_connections(&mut self) -> bool {
        self.0
            .sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'locker'");
        true
    }
}

// This loop found the postmaster's death letting two copies run (the
// store's module comment says how), seen in CI and reproduced here only
// under heavy disk and CPU load.
#[test]
fn killing_wrappers_commands_and_postgres_never_lets_two_copies_run() {
    let server = Postgres::start_durable();
    server.create_user("locker", "pw", &["CREATE ON SCHEMA public"]);
    crate::chaos::chaos(&mut DurablePostgres(server), 200);
}
