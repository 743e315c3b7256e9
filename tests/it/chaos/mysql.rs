//! The chaos loop (tests/it/chaos/) against a private MariaDB. `CHAOS_RUNS`
//! (default 200 here: a restart of the server takes a good second) sets the
//! number of invocations, `CHAOS_SEED` replays a run.

use std::time::Duration;

use crate::util::mariadb::MariaDb;

/// MariaDB keeps every committed row across a kill (the fixture's
/// `innodb_flush_log_at_trx_commit=2` writes the log at each commit); the
/// `GET_LOCK`s die with it, as they die with a holder's connection.
struct Mysql(MariaDb);

impl crate::chaos::ChaosStore for Mysql {
    fn env(&self) -> Vec<(String, String)> {
        vec![("CRONLOCK_URL".to_string(), self.0.url("cron", "pw", "cronlock"))]
    }

    fn restart(&mut self, pause: Duration) {
        self.0.kill();
        std::thread::sleep(pause);
        self.0.restart();
    }

    fn cut_connections(&mut self) -> bool {
        let ids = self
            .0
            .sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'cron'");
        for id in ids.lines() {
            // It may have ended meanwhile.
            let _ = self.0.try_sql(&format!("KILL {id}"));
        }
        true
    }
}

#[test]
fn killing_wrappers_commands_and_mariadb_never_lets_two_copies_run() {
    let server = MariaDb::start();
    server.sql("CREATE DATABASE cronlock");
    server.create_user("cron", "pw", &["ALL ON cronlock.*"]);
    crate::chaos::chaos(&mut Mysql(server), 200);
}
