//! Sentinel: master lookup over one or several sentinels, their password,
//! TLS to sentinels and master alike, and a forced failover.

use std::time::Duration;

use crate::util::pki::Pki;
use crate::util::*;

fn sentinel_env(sentinel_hosts: &str, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("CRONLOCK_USE_SENTINEL".to_string(), "yes".to_string()),
        ("CRONLOCK_SENTINEL_HOST".to_string(), sentinel_hosts.to_string()),
        ("CRONLOCK_SENTINEL_MASTER".to_string(), "jobs".to_string()),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "3".to_string()),
        // Nothing listens here: a lookup that ignored Sentinel would fail.
        ("CRONLOCK_PORT".to_string(), free_port().to_string()),
    ];
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[test]
fn lock_follows_the_master_after_a_forced_failover() {
    let (master, replica, sentinel) = sentinel_with_replica("jobs");
    let env = sentinel_env(&format!("127.0.0.1:{}", sentinel.port), &[("CRONLOCK_KEY", "before")]);
    run(&env, &["true"]).expect(0);
    assert_eq!(master.query(&["EXISTS", "cronlock.before"]), "1");

    sentinel
        .cli(&["SENTINEL", "FAILOVER", "jobs"])
        .expect("failover accepted");
    wait_until(
        Duration::from_secs(30),
        "sentinel to name the replica as master",
        || {
            sentinel.master_port("jobs") == Some(replica.port)
                && replica.cli(&["ROLE"]).is_some_and(|role| role.starts_with("master"))
        },
    );
    let env = sentinel_env(&format!("127.0.0.1:{}", sentinel.port), &[("CRONLOCK_KEY", "after")]);
    run(&env, &["true"]).expect(0);
    assert_eq!(replica.query(&["EXISTS", "cronlock.after"]), "1");
    let ttl: i64 = replica.query(&["TTL", "cronlock.after"]).parse().unwrap();
    assert!((40..=41).contains(&ttl), "ttl {ttl}");
    // The lock taken before the failover was replicated and is still held.
    run(&with(&env, &[("CRONLOCK_KEY", "before")]), &["true"]).expect(200);
}

#[test]
fn several_sentinels_are_tried_in_turn_and_an_unknown_master_is_final() {
    let master = RedisServer::start();
    let sentinel = SentinelServer::start("jobs", &master, &[], None);
    let dead = free_port();
    let hosts = format!("127.0.0.1:{dead}, 127.0.0.1:{}", sentinel.port);
    run(&sentinel_env(&hosts, &[("CRONLOCK_KEY", "list")]), &["true"]).expect(0);
    assert_eq!(master.query(&["EXISTS", "cronlock.list"]), "1");

    let unknown = run(
        &sentinel_env(&hosts, &[("CRONLOCK_SENTINEL_MASTER", "nosuch")]),
        &["true"],
    );
    unknown.expect(201);
    assert!(
        unknown.stderr().contains("unknown master 'nosuch'"),
        "{}",
        unknown.stderr()
    );

    let none = run(
        &sentinel_env(&format!("127.0.0.1:{dead}"), &[("CRONLOCK_RECONNECT_ATTEMPTS", "1")]),
        &["true"],
    );
    none.expect(201);
    assert!(none.stderr().contains("after 2 attempts"), "{}", none.stderr());
}

#[test]
fn sentinel_password_is_sent_to_the_sentinel() {
    let master = RedisServer::start();
    let sentinel = SentinelServer::start("jobs", &master, &[], Some("sentinel pw"));
    let hosts = format!("127.0.0.1:{}", sentinel.port);
    let missing = run(&sentinel_env(&hosts, &[]), &["true"]);
    missing.expect(201);
    assert!(
        missing.stderr().contains("CRONLOCK_SENTINEL_AUTH"),
        "{}",
        missing.stderr()
    );
    let wrong = run(&sentinel_env(&hosts, &[("CRONLOCK_SENTINEL_AUTH", "nope")]), &["true"]);
    wrong.expect(201);
    assert!(!wrong.stderr().contains("nope"), "{}", wrong.stderr());
    run(
        &sentinel_env(
            &hosts,
            &[("CRONLOCK_SENTINEL_AUTH", "sentinel pw"), ("CRONLOCK_KEY", "pw")],
        ),
        &["true"],
    )
    .expect(0);
    assert_eq!(master.query(&["EXISTS", "cronlock.pw"]), "1");
}

#[test]
fn tls_applies_to_the_sentinel_and_the_master() {
    let pki = Pki::new();
    let master = RedisServer::start_tls(TlsServer {
        pki: &pki,
        cert: "server",
        require_client_cert: false,
    });
    let sentinel = SentinelServer::start("jobs", &master, &RedisServer::tls_conf(&pki), None);
    let hosts = format!("127.0.0.1:{}", sentinel.port);
    let ca = pki.file("ca.crt");
    let env = sentinel_env(
        &hosts,
        &[
            ("CRONLOCK_TLS", "yes"),
            ("CRONLOCK_TLS_CA_FILE", &ca),
            ("CRONLOCK_KEY", "tls"),
        ],
    );
    run(&env, &["true"]).expect(0);
    assert_eq!(master.query(&["EXISTS", "cronlock.tls"]), "1");
    // Without TLS the sentinel itself refuses us.
    let plain = run(&sentinel_env(&hosts, &[]), &["true"]);
    plain.expect(201);
    assert!(plain.stderr().contains("CRONLOCK_TLS=yes"), "{}", plain.stderr());
}
