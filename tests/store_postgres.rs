//! The store conformance suite against a private PostgreSQL server, as a
//! role that may create the table.

mod conformance;
mod ctl_suite;
mod util;

use util::postgres::Postgres;

struct Pg(Postgres);

impl conformance::Fixture for Pg {
    fn start() -> Pg {
        let server = Postgres::start();
        server.create_user("locker", "s3cret pw", &["CREATE ON SCHEMA public"]);
        Pg(server)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "CRONLOCK_URL".to_string(),
            format!("{}?sslmode=disable", self.0.url("locker", "s3cret pw", "postgres")),
        )]
    }

    fn stop(&mut self) -> bool {
        self.0.kill();
        true
    }
}

conformance::suite!(Pg);
ctl_suite::suite!(Pg);
