//! The store conformance suite against a private PostgreSQL server, as a
//! role that may create the table; and TLS in every `sslmode`, against a
//! server that shows certificates of a CA made at test time; the history's
//! tables, for a role that may not create them, and runs ending at once.

use crate::util::pki::Pki;
use crate::util::postgres::Postgres;
use crate::util::*;

struct Pg(Postgres);

impl crate::conformance::Fixture for Pg {
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

    /// The counter is a row in a logged table, its bump flushed at commit.
    fn fencing(&self) -> Option<bool> {
        Some(true)
    }

    /// This fast server may lose the last commits when it is killed: the
    /// lock rows' last changes are written out first, as a server with
    /// PostgreSQL's default durability keeps them. (The fencing bump's
    /// commit is flushed by cronlock itself; see
    /// `a_fencing_token_outlives_a_crash_of_a_server_with_asynchronous_commit`.)
    fn restart(&mut self) -> bool {
        self.0.sql("CHECKPOINT");
        self.0.restart();
        true
    }

    fn keeps_history(&self) -> bool {
        true
    }
}

crate::conformance::suite!(Pg);
crate::ctl_suite::suite!(Pg);

/// The password of the TLS tests' roles.
const TLS_PASSWORD: &str = "tls s3cret";
/// The role that must show a client certificate: its CN.
const CLIENT_CN: &str = "cronlock client";

/// A TLS server with two roles: `locker` may log in over TLS only,
/// `cronlock client` (the client certificate's CN) only with that
/// certificate.
fn tls_server(pki: &Pki) -> Postgres {
    let server = Postgres::start_tls(pki);
    add_role(&server, "locker", "tls_only");
    add_role(&server, CLIENT_CN, "tls_client_cert");
    server
}

/// Role `name`, a member of `group`, with a schema of its own named after
/// it: first in its search_path, so each role makes its own lock table.
fn add_role(server: &Postgres, name: &str, group: &str) {
    let groups: &[&str] = if group.is_empty() { &[] } else { &[group] };
    server.create_user(name, TLS_PASSWORD, groups);
    server.sql(&format!("CREATE SCHEMA AUTHORIZATION \"{name}\""));
}

/// cronlock as `user` on `server` with `?sslmode=MODE` (none when empty),
/// a fresh key per call, and `more` settings.
fn tls_env(server: &Postgres, user: &str, mode: &str, more: &[(&str, &str)]) -> Vec<(String, String)> {
    sql_tls_env(server.url(user, TLS_PASSWORD, "postgres"), "sslmode", mode, more)
}

#[test]
fn tls_modes_take_the_lock_as_a_role_allowed_only_over_tls() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    // pg_hba.conf turns the role away without TLS.
    sql_tls_modes_take_the_lock(
        |mode, more| tls_env(&server, "locker", mode, more),
        SqlTlsModes {
            verified: "verify-full",
            others: &["verify-ca", "require", "prefer"],
            disabled: "disable",
        },
        &pki.file("ca.crt"),
        "no encryption",
        TLS_PASSWORD,
        |key| {
            server.sql(&format!(
                "SELECT running FROM locker.cronlock_locks WHERE name = 'cronlock.{key}'::bytea"
            )) == "f"
        },
    );
}

#[test]
fn a_client_certificate_logs_in_a_role_that_requires_one() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let ca = pki.file("ca.crt");
    let (cert, key) = (pki.file("client.crt"), pki.file("client.key"));
    let client = [
        ("CRONLOCK_TLS_CA_FILE", ca.as_str()),
        ("CRONLOCK_TLS_CERT_FILE", cert.as_str()),
        ("CRONLOCK_TLS_KEY_FILE", key.as_str()),
    ];
    run(&tls_env(&server, CLIENT_CN, "verify-full", &client), &["true"]).expect(0);
    expect_refusal(
        &tls_env(&server, CLIENT_CN, "verify-full", &client[..1]),
        "certificate",
        &[TLS_PASSWORD],
    );
    // The certificate names its role and no other.
    // (PostgreSQL reports the CN mismatch as a failed authentication.)
    add_role(&server, "someone else", "tls_client_cert");
    expect_refusal(
        &tls_env(&server, "someone else", "verify-full", &client),
        "authentication failed",
        &[TLS_PASSWORD],
    );
}

#[test]
fn tls_refuses_a_server_it_cannot_verify_with_one_line() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let ca = pki.file("ca.crt");
    let other = pki.file("other-ca.crt");
    let refused = |mode: &str, ca: &str, expected: &str| {
        expect_refusal(
            &tls_env(&server, "locker", mode, &[("CRONLOCK_TLS_CA_FILE", ca)]),
            expected,
            &[TLS_PASSWORD],
        );
    };
    let taken = |mode: &str, more: &[(&str, &str)]| {
        run(&tls_env(&server, "locker", mode, more), &["true"]).expect(0);
    };
    // A certificate from a CA we were not told to trust.
    refused("verify-full", &other, "unknown CA");
    refused("verify-ca", &other, "unknown CA");
    taken("require", &[]);
    // Issued for another name: only verify-full looks at it, and
    // CRONLOCK_TLS_SERVER_NAME names the one to expect.
    server.use_certificate(&pki, "wrong-name");
    refused("verify-full", &ca, "does not match the host name");
    taken("verify-ca", &[("CRONLOCK_TLS_CA_FILE", &ca)]);
    taken(
        "verify-full",
        &[
            ("CRONLOCK_TLS_CA_FILE", &ca),
            ("CRONLOCK_TLS_SERVER_NAME", "elsewhere.test"),
        ],
    );
    // Expired.
    server.use_certificate(&pki, "expired");
    refused("verify-full", &ca, "has expired");
    refused("verify-ca", &ca, "has expired");
    taken("require", &[]);
    // A server without TLS: prefer goes on without it, the others refuse.
    server.sql("ALTER SYSTEM SET ssl = off");
    server.reload();
    add_role(&server, "plain", "");
    run(&tls_env(&server, "plain", "prefer", &[]), &["true"]).expect(0);
    for mode in ["require", "verify-ca", "verify-full"] {
        expect_refusal(
            &tls_env(&server, "plain", mode, &[("CRONLOCK_TLS_CA_FILE", &ca)]),
            "the server offers no TLS",
            &[TLS_PASSWORD],
        );
    }
}

#[test]
fn first_runs_that_create_the_table_at_the_same_moment_all_take_their_locks() {
    // Concurrent CREATE TABLE IF NOT EXISTS can fail on the table's row
    // type ("type ... already exists"); a run that loses that race must go
    // on with the table the other made, not exit 201.
    let pg = <Pg as crate::conformance::Fixture>::start();
    let env = crate::conformance::Fixture::env(&pg);
    for round in 0..10 {
        pg.0.sql("DROP TABLE IF EXISTS public.cronlock_locks");
        let runs: Vec<_> = (0..6)
            .map(|i| {
                cronlock(&with(
                    &env,
                    &[("CRONLOCK_KEY", &format!("first{i}")), ("CRONLOCK_GRACE", "-1")],
                ))
                .arg("true")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        for child in runs {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn a_fencing_token_outlives_a_crash_of_a_server_with_asynchronous_commit() {
    // This server acknowledges commits before it writes them out
    // (synchronous_commit = off): a kill loses the last ones, and the bump
    // of a token a job has seen must not be among them.
    let mut pg = <Pg as crate::conformance::Fixture>::start();
    let env = with(
        &crate::conformance::Fixture::env(&pg),
        &[
            ("CRONLOCK_KEY", "fenced"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_FENCING", "on"),
        ],
    );
    let mut newest = String::new();
    for _ in 0..3 {
        let result = run(&env, &["sh", "-c", "echo \"$CRONLOCK_FENCING_TOKEN\""]);
        result.expect(0);
        newest = result.stdout().trim().to_string();
    }
    assert_eq!(newest, "3");
    pg.0.restart();
    ctl(&env, &["fence", "cronlock.fenced", &newest]).expect(0);
}

#[test]
fn a_role_that_may_not_create_the_fencing_table_is_told_its_name() {
    let pg = <Pg as crate::conformance::Fixture>::start();
    pg.0.create_user("cron", "pw", &[]);
    pg.0.sql(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         CREATE TABLE cronlock_locks (name bytea PRIMARY KEY, expires_at bigint NOT NULL, token text NOT NULL, \
             running boolean NOT NULL DEFAULT false, backend integer, server text, owner text); \
         GRANT SELECT, INSERT, UPDATE, DELETE ON cronlock_locks TO cron;",
    );
    let env = vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("{}?sslmode=disable", pg.0.url("cron", "pw", "postgres")),
        ),
        ("CRONLOCK_KEY".to_string(), "fenced".to_string()),
        ("CRONLOCK_GRACE".to_string(), "-1".to_string()),
    ];
    // Without fencing the table is never asked for.
    run(&env, &["true"]).expect(0);
    let fenced = with(&env, &[("CRONLOCK_FENCING", "on")]);
    expect_refusal(&fenced, "table cronlock_locks_fence does not exist", &[]);
    pg.0.sql(
        "CREATE TABLE cronlock_locks_fence (name bytea PRIMARY KEY, token bigint NOT NULL); \
         GRANT SELECT, INSERT, UPDATE ON cronlock_locks_fence TO cron;",
    );
    let result = run(&fenced, &["sh", "-c", "echo \"$CRONLOCK_FENCING_TOKEN\""]);
    result.expect(0);
    assert_eq!(result.stdout().trim(), "1");
    // tooz's advisory lock carries no token.
    let line = expect_refusal(
        &with(&fenced, &[("CRONLOCK_KEY_STYLE", "tooz")]),
        "CRONLOCK_KEY_STYLE=tooz",
        &[],
    );
    assert!(line.contains("CRONLOCK_FENCING"), "{line}");
}

#[test]
fn the_history_gets_tables_of_its_own_that_no_reset_or_listing_touches() {
    let pg = <Pg as crate::conformance::Fixture>::start();
    pg.0.create_user("cron", "pw", &[]);
    pg.0.sql(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         CREATE TABLE cronlock_locks (name bytea PRIMARY KEY, expires_at bigint NOT NULL, token text NOT NULL, \
             running boolean NOT NULL DEFAULT false, backend integer, server text, owner text); \
         GRANT SELECT, INSERT, UPDATE, DELETE ON cronlock_locks TO cron;",
    );
    let env = vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("{}?sslmode=disable", pg.0.url("cron", "pw", "postgres")),
        ),
        ("CRONLOCK_KEY".to_string(), "hist".to_string()),
        ("CRONLOCK_GRACE".to_string(), "-1".to_string()),
    ];
    let kept = with(&env, &[("CRONLOCK_HISTORY", "2")]);
    let tables = || {
        pg.0.sql(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('cronlock_locks_runs', 'cronlock_locks_succeeded')",
        )
    };
    run(&env, &["true"]).expect(0);
    ctl(&kept, &["history", "--key", "hist"]).expect(1);
    assert_eq!(
        tables(),
        "0",
        "neither a run without a history nor a look at none makes them"
    );
    // A role that may not create them: the run goes on, and one warning
    // names them.
    let warned = run(&kept, &["true"]);
    warned.expect(0);
    assert_eq!(warned.stderr().lines().count(), 1, "{}", warned.stderr());
    assert!(
        warned
            .stderr()
            .contains("CRONLOCK_HISTORY needs the tables cronlock_locks_runs and cronlock_locks_succeeded: PostgreSQL at '127.0.0.1'"),
        "{}",
        warned.stderr()
    );
    // Made by their owner, one at a time: only the missing one is asked
    // for (CREATE TABLE IF NOT EXISTS needs the right even for a table
    // that exists).
    pg.0.sql(
        "CREATE TABLE cronlock_locks_runs (id bigint GENERATED BY DEFAULT AS IDENTITY, name bytea NOT NULL, \
             record text NOT NULL, PRIMARY KEY (name, id))",
    );
    let warned = run(&kept, &["true"]);
    warned.expect(0);
    assert!(
        warned
            .stderr()
            .contains("table cronlock_locks_succeeded does not exist and user 'cron' may not create it"),
        "{}",
        warned.stderr()
    );
    // With the grants the README gives, they are enough.
    pg.0.sql("CREATE TABLE cronlock_locks_succeeded (name bytea PRIMARY KEY, record text NOT NULL)");
    let refused = run(&kept, &["true"]);
    refused.expect(0);
    assert!(
        refused
            .stderr()
            .contains("CRONLOCK_HISTORY needs SELECT, INSERT and DELETE on cronlock_locks_runs"),
        "{}",
        refused.stderr()
    );
    pg.0.sql(
        "GRANT SELECT, INSERT, DELETE ON cronlock_locks_runs TO cron; \
         GRANT SELECT, INSERT, UPDATE ON cronlock_locks_succeeded TO cron;",
    );
    let recorded = run(&kept, &["true"]);
    recorded.expect(0);
    assert_eq!(recorded.stderr(), "");
    for _ in 0..3 {
        run(&kept, &["sh", "-c", "exit 3"]).expect(3);
    }
    let count = || {
        pg.0.sql("SELECT count(*) FROM cronlock_locks_runs WHERE name = 'cronlock.hist'::bytea")
    };
    assert_eq!(count(), "2");
    let listed = ctl(&kept, &["--json", "history", "--key", "hist"]);
    listed.expect(0);
    let exits: Vec<_> = listed.json_lines().iter().map(|run| run["exit"].clone()).collect();
    assert_eq!(exits, [3, 3]);
    // A lock in its grace is the only thing cronlockctl lists; a reset and
    // an unlock take it, never the history.
    run(&with(&kept, &[("CRONLOCK_GRACE", "60")]), &["sh", "-c", "exit 5"]).expect(5);
    let all = ctl(&env, &["--json", "list", "--all-prefixes"]);
    all.expect(0);
    let keys: Vec<_> = all.json_lines().iter().map(|lock| lock["key"].clone()).collect();
    assert_eq!(keys, ["cronlock.hist"]);
    ctl(&env, &["unlock", "--key", "hist"]).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    let all = ctl(&env, &["list", "--all-prefixes"]);
    all.expect(0);
    assert_eq!(all.stdout(), "");
    assert_eq!(count(), "2");
    let checked = ctl(&kept, &["--json", "check", "--key", "hist", "--max-age", "1h"]);
    checked.expect(0);
    assert_eq!(
        checked.json_lines()[0]["last_success"]["exit"],
        0,
        "{}",
        checked.stdout()
    );
}

#[test]
fn runs_that_end_at_once_all_reach_the_history_and_the_trim_catches_up() {
    let pg = <Pg as crate::conformance::Fixture>::start();
    let env = with(
        &crate::conformance::Fixture::env(&pg),
        &[("CRONLOCK_KEY", "herd"), ("CRONLOCK_GRACE", "-1")],
    );
    let count = || {
        pg.0.sql("SELECT count(*) FROM cronlock_locks_runs WHERE name = 'cronlock.herd'::bytea")
            .parse::<usize>()
            .unwrap()
    };
    runs_ending_at_once(&env, 8, 100);
    assert_eq!(count(), 8, "no run may be lost");
    runs_ending_at_once(&env, 8, 100);
    assert_eq!(count(), 16);
    // Each trim keeps what its snapshot shows: a run or two more than N
    // for a moment, and exactly N after the next run.
    runs_ending_at_once(&env, 8, 3);
    assert!((3..=10).contains(&count()), "{}", count());
    run(&with(&env, &[("CRONLOCK_HISTORY", "3")]), &["true"]).expect(0);
    assert_eq!(count(), 3);
}
