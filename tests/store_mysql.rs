//! The store conformance suite against a private MariaDB server, and what
//! only the MySQL store does: sera's `GET_LOCK` names, a crashed holder
//! freed at once, the lock table made on first use, and bad input.

mod conformance;
mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use util::mariadb::MariaDb;
use util::*;

/// A private server with a `cronlock` database and a user allowed everything in it.
struct Mysql(MariaDb);

impl Mysql {
    fn start() -> Mysql {
        let server = MariaDb::start();
        server.sql("CREATE DATABASE cronlock");
        server.create_user("cron", "s3cret:@/pw", &["ALL ON cronlock.*"]);
        Mysql(server)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CRONLOCK_URL".to_string(),
                self.0.url("cron", "s3cret:@/pw", "cronlock"),
            ),
            ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
        ]
    }
}

impl conformance::Fixture for Mysql {
    fn start() -> Mysql {
        Mysql::start()
    }

    fn env(&self) -> Vec<(String, String)> {
        Mysql::env(self)
    }

    fn stop(&mut self) -> bool {
        self.0.kill();
        true
    }
}

conformance::suite!(Mysql);
