//! The store conformance suite against a private PostgreSQL server, as a
//! role that may create the table; and TLS in every `sslmode`, against a
//! server that shows certificates of a CA made at test time.

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
