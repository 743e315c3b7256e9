//! TLS and mutual TLS against TLS-only redis-server processes that use a CA
//! made at test time; every failure must exit 201 with a line naming the
//! cause, within CRONLOCK_REDIS_TIMEOUT.

use std::time::{Duration, Instant};

use crate::util::pki::Pki;
use crate::util::*;

fn tls_server(pki: &Pki, cert: &str, require_client_cert: bool) -> RedisServer {
    RedisServer::start_tls(TlsServer {
        pki,
        cert,
        require_client_cert,
    })
}

/// cronlock pointed at `server` with TLS on and `more` settings.
fn tls_env(server: &RedisServer, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = with(
        &server.env(),
        &[("CRONLOCK_TLS", "yes"), ("CRONLOCK_REDIS_TIMEOUT", "3")],
    );
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[track_caller]
fn expect_failure(env: &[(String, String)], needle: &str) {
    let started = Instant::now();
    let run = run(env, &["touch", "/nonexistent/should-not-run"]);
    run.expect(201);
    let stderr = run.stderr();
    eprintln!("[{needle}] {:?} {}", started.elapsed(), stderr.trim_end());
    assert!(stderr.contains(needle), "stderr should name '{needle}': {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn tls_with_a_ca_file_takes_the_lock_with_the_usual_key_value_and_ttl() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", false);
    let env = tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", &pki.file("ca.crt"))]);
    let before = server.now();
    run(&env, &["true"]).expect(0);
    let key = key_for("cronlock.", &["true"]);
    let value: i64 = server.query(&["GET", &key]).parse().unwrap();
    assert!((value - (before + 41)).abs() <= 1, "value {value}, start {before}");
    let ttl: i64 = server.query(&["TTL", &key]).parse().unwrap();
    assert!((40..=41).contains(&ttl), "ttl {ttl}");
    run(&env, &["true"]).expect(200);
}

#[test]
fn rediss_url_is_an_alternative_to_the_separate_variables() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", false);
    let url = format!("rediss://localhost:{}/3", server.port);
    let env = vec![
        ("CRONLOCK_URL".to_string(), url),
        ("CRONLOCK_TLS_CA_FILE".to_string(), pki.file("ca.crt")),
        ("CRONLOCK_KEY".to_string(), "by-url".to_string()),
    ];
    run(&env, &["true"]).expect(0);
    assert_eq!(server.query(&["-n", "3", "EXISTS", "cronlock.by-url"]), "1");
}

#[test]
fn server_name_is_verified_and_can_be_named_when_host_is_an_ip() {
    let pki = Pki::new();
    let server = tls_server(&pki, "wrong-name", false);
    let ca = pki.file("ca.crt");
    expect_failure(
        &tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", &ca)]),
        "does not match the host name",
    );
    let named = tls_env(
        &server,
        &[
            ("CRONLOCK_TLS_CA_FILE", &ca),
            ("CRONLOCK_TLS_SERVER_NAME", "elsewhere.test"),
        ],
    );
    run(&named, &["true"]).expect(0);
}

#[test]
fn unknown_ca_is_refused() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", false);
    expect_failure(
        &tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", &pki.file("other-ca.crt"))]),
        "unknown CA",
    );
    // Without a CA file the system's trust store is used, which does not
    // know our throwaway CA either.
    expect_failure(&tls_env(&server, &[]), "unknown CA");
}

#[test]
fn expired_certificate_is_refused() {
    let pki = Pki::new();
    let server = tls_server(&pki, "expired", false);
    expect_failure(
        &tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", &pki.file("ca.crt"))]),
        "has expired",
    );
}

#[test]
fn skip_verify_accepts_any_certificate_and_says_so() {
    let pki = Pki::new();
    let server = tls_server(&pki, "expired", false);
    let env = tls_env(
        &server,
        &[("CRONLOCK_TLS_SKIP_VERIFY", "true"), ("CRONLOCK_VERBOSE", "yes")],
    );
    let run = run(&env, &["true"]);
    run.expect(0);
    assert!(run.stderr().contains("verification is OFF"), "{}", run.stderr());
}

#[test]
fn tls_client_against_a_plain_port_fails_within_the_timeout() {
    let plain = RedisServer::start();
    let env = with(
        &plain.env(),
        &[
            ("CRONLOCK_TLS", "yes"),
            ("CRONLOCK_TLS_SKIP_VERIFY", "yes"),
            ("CRONLOCK_REDIS_TIMEOUT", "2"),
        ],
    );
    // A plain server either waits for the end of a "line" that never comes
    // (timeout) or answers the ClientHello with an error reply.
    expect_failure(&env, "TLS");
    assert_eq!(plain.query(&["DBSIZE"]), "0");
}

#[test]
fn plain_client_against_a_tls_port_is_told_to_turn_tls_on() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", false);
    let env = with(&server.env(), &[("CRONLOCK_REDIS_TIMEOUT", "3")]);
    expect_failure(&env, "set CRONLOCK_TLS=yes");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", true);
    let ca = pki.file("ca.crt");
    expect_failure(
        &tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", &ca)]),
        "client certificate",
    );
    let (cert, key) = (pki.file("client.crt"), pki.file("client.key"));
    let env = tls_env(
        &server,
        &[
            ("CRONLOCK_TLS_CA_FILE", &ca),
            ("CRONLOCK_TLS_CERT_FILE", &cert),
            ("CRONLOCK_TLS_KEY_FILE", &key),
            ("CRONLOCK_KEY", "mtls"),
        ],
    );
    run(&env, &["true"]).expect(0);
    assert_eq!(server.query(&["EXISTS", "cronlock.mtls"]), "1");
    // The release went over the same kind of connection: the grace is set.
    let ttl: i64 = server.query(&["TTL", "cronlock.mtls"]).parse().unwrap();
    assert!((40..=41).contains(&ttl), "ttl {ttl}");
}

#[test]
fn missing_or_bad_tls_files_are_config_errors() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", false);
    expect_failure(
        &tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", "/nonexistent/ca.pem")]),
        "CRONLOCK_TLS_CA_FILE",
    );
    expect_failure(
        &tls_env(&server, &[("CRONLOCK_TLS_CA_FILE", &pki.file("server.key"))]),
        "CRONLOCK_TLS_CA_FILE",
    );
    let ca = pki.file("ca.crt");
    let crt = pki.file("client.crt");
    expect_failure(
        &tls_env(
            &server,
            &[
                ("CRONLOCK_TLS_CA_FILE", &ca),
                ("CRONLOCK_TLS_CERT_FILE", &crt),
                ("CRONLOCK_TLS_KEY_FILE", &crt),
            ],
        ),
        "CRONLOCK_TLS_KEY_FILE",
    );
}

#[test]
fn reset_works_over_tls() {
    let pki = Pki::new();
    let server = tls_server(&pki, "server", false);
    let env = tls_env(
        &server,
        &[("CRONLOCK_TLS_CA_FILE", &pki.file("ca.crt")), ("CRONLOCK_KEY", "r")],
    );
    run(&env, &["true"]).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(server.query(&["EXISTS", "cronlock.r"]), "0");
}
