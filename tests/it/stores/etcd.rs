//! The etcd store: the conformance suite against a private etcd, the lock
//! shared with the real `etcdctl lock` both ways, TLS (`etcds://`) against
//! members that show certificates of a CA made at test time, and bad input.

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::etcd::{ClientCertificates, Etcd};
use crate::util::pki::Pki;
use crate::util::*;

// The tokens are etcd's revisions, on disk before etcd answers.
crate::conformance::server_fixture!(EtcdFixture(Etcd), fencing: Some(true), history: true, restart);

crate::conformance::suite!(EtcdFixture);
crate::ctl_suite::suite!(EtcdFixture);

/// A child killed if a failed assertion leaves it running (an `etcdctl
/// lock` waiting in line would otherwise outlive the test).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Gone already when the test went well.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_lock_key_is_etcdctl_locks_name_slash_lease_id_in_hex() {
    let etcd = Etcd::start();
    let dir = TempDir::new("etcd-key");
    let env = with(&etcd.env(), &[("CRONLOCK_KEY", "job")]);
    let gated = Gated::new(&dir, "job");
    let mut child = Reaped(cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap());
    gated.wait_started();
    let keys = etcd.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let lease = keys[0].strip_prefix("cronlock.job/").expect("NAME/ prefix");
    let id = i64::from_str_radix(lease, 16).expect("hex lease id");
    assert_eq!(format!("{id:x}"), lease, "lowercase, no leading zeros");
    // It is attached to that lease, whose TTL is RELEASE + 1 (86401 s by default).
    let ttl = etcd.ctl(&["lease", "timetolive", lease]);
    assert!(ttl.contains("remaining(864"), "{ttl}");
    gated.open();
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn the_job_gets_etcdctl_locks_variables_with_our_keys_create_revision() {
    let etcd = Etcd::start();
    let dir = TempDir::new("etcd-lock-env");
    let seen = dir.join("seen");
    // With fencing on, so that the counter's bump is there to be told apart.
    let env = with(&etcd.env(), &[("CRONLOCK_KEY", "env"), ("CRONLOCK_FENCING", "on")]);
    let gated = Gated::new(&dir, "job");
    let script = format!(
        "echo \"$ETCD_LOCK_KEY $ETCD_LOCK_REV $CRONLOCK_FENCING_TOKEN\" > {}; {}",
        seen.display(),
        gated.script
    );
    let mut child = Reaped(cronlock(&env).args(["sh", "-c", &script]).spawn().unwrap());
    gated.wait_started();
    let line = std::fs::read_to_string(&seen).unwrap();
    let [key, rev, token] = line.split_whitespace().collect::<Vec<_>>()[..] else {
        panic!("{line:?}");
    };
    assert!(key.starts_with("cronlock.env/"), "{line}");
    // What etcdctl says about the key while the job runs.
    let got: serde_json::Value = serde_json::from_str(&etcd.ctl(&["get", key, "--write-out=json"])).unwrap();
    let kv = &got["kvs"][0];
    assert_eq!(
        kv["create_revision"].as_i64().map(|r| r.to_string()).as_deref(),
        Some(rev),
        "{got}"
    );
    assert_eq!(kv["mod_revision"], kv["create_revision"], "{got}");
    let lease = key.strip_prefix("cronlock.env/").unwrap();
    assert_eq!(
        kv["lease"].as_i64().map(|id| format!("{id:x}")).as_deref(),
        Some(lease),
        "{got}"
    );
    // The token is a later revision, on the job's counter.
    let token: i64 = token.parse().unwrap();
    assert!(token > rev.parse().unwrap(), "{line}");
    let counter: serde_json::Value =
        serde_json::from_str(&etcd.ctl(&["get", "cronlock.env:fence", "--write-out=json"])).unwrap();
    assert_eq!(counter["kvs"][0]["mod_revision"].as_i64(), Some(token), "{counter}");
    gated.open();
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn the_fencing_counter_is_in_no_line_and_in_no_list() {
    let etcd = Etcd::start();
    let env = with(
        &etcd.env(),
        &[
            ("CRONLOCK_KEY", "counted"),
            ("CRONLOCK_FENCING", "on"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    run(&env, &["true"]).expect(0);
    assert_eq!(etcd.keys(), ["cronlock.counted:fence"]);
    // Only the counter is left, and nobody waits behind it.
    let listed = ctl(&env, &["--json", "list"]);
    listed.expect(0);
    assert!(listed.json_lines().is_empty(), "{}", listed.stdout());
    ctl(&env, &["status", "--key", "counted"]).expect(0);
    let output = etcd
        .etcdctl()
        .args(["lock", "cronlock.counted", "--", "true"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    run(&env, &["true"]).expect(0);
    // An unlock leaves it: the tokens' series goes on.
    ctl(&env, &["unlock", "--key", "counted"]);
    assert_eq!(etcd.keys(), ["cronlock.counted:fence"]);
}

/// The job's records kept in etcd, by key.
fn records(etcd: &Etcd, job: &str) -> Vec<String> {
    let prefix = format!("cronlock.{job}:runs:");
    etcd.keys()
        .into_iter()
        .filter(|key| key.strip_prefix(&prefix).is_some_and(|n| n.len() == 20))
        .collect()
}

/// `cronlockctl history` of `job`, newest first.
fn history(env: &[(String, String)], job: &str) -> Vec<serde_json::Value> {
    let listed = ctl(env, &["--json", "history", "--key", job]);
    listed.expect(0);
    listed.json_lines()
}

#[test]
fn the_history_is_in_no_line_and_in_no_list_and_outlives_an_unlock() {
    let etcd = Etcd::start();
    let env = with(
        &etcd.env(),
        &[
            ("CRONLOCK_KEY", "kept"),
            ("CRONLOCK_HISTORY", "2"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    for _ in 0..4 {
        run(&env, &["true"]).expect(0);
    }
    run(&env, &["sh", "-c", "exit 4"]).expect(4);
    // Trimmed to two records, beside the last success; no lock is left.
    let kept = records(&etcd, "kept");
    assert_eq!(kept.len(), 2, "{:?}", etcd.keys());
    let mut expected = kept.clone();
    expected.push("cronlock.kept:succeeded".to_string());
    assert_eq!(etcd.keys(), expected);
    let got: serde_json::Value =
        serde_json::from_str(&etcd.ctl(&["get", "--prefix", "cronlock.kept", "--write-out=json"])).unwrap();
    for kv in got["kvs"].as_array().unwrap() {
        assert!(kv["lease"].is_null(), "no lease: {kv}");
    }
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0]["exit"].as_i64(), runs[1]["exit"].as_i64()), (Some(4), Some(0)));
    // Neither list nor status takes them for locks, nor does etcdctl lock,
    // even where a job's name has a `/`, which puts them in a lock's range.
    run(&with(&env, &[("CRONLOCK_KEY", "other/sub")]), &["true"]).expect(0);
    let listed = ctl(&env, &["--json", "list"]);
    listed.expect(0);
    assert!(listed.json_lines().is_empty(), "{}", listed.stdout());
    ctl(&env, &["status", "--key", "kept"]).expect(0);
    let output = etcd
        .etcdctl()
        .args(["lock", "cronlock.kept", "--", "true"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Neither an unlock nor a reset deletes them.
    ctl(&env, &["unlock", "--key", "kept"]);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(history(&env, "kept").len(), 2);
    assert_eq!(records(&etcd, "kept").len(), 2);
    ctl(&env, &["check", "--key", "kept", "--max-age", "1h"]).expect(0);
}

#[test]
fn runs_that_end_together_each_keep_their_record() {
    let etcd = Etcd::start();
    let dir = TempDir::new("etcd-history-together");
    let env = with(
        &etcd.env(),
        &[
            ("CRONLOCK_KEY", "together"),
            ("CRONLOCK_CONCURRENCY", "6"),
            ("CRONLOCK_HISTORY", "4"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    // Six slots' runs, let go at once: six records written together, and
    // trimmed to four, the last written of them.
    let gates: Vec<Gated> = (0..6).map(|i| Gated::new(&dir, &format!("run{i}"))).collect();
    let mut children: Vec<Reaped> = gates
        .iter()
        .map(|gated| Reaped(cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap()))
        .collect();
    for gated in &gates {
        gated.wait_started();
    }
    for gated in &gates {
        gated.open();
    }
    let mut pids: Vec<u64> = children.iter().map(|child| u64::from(child.0.id())).collect();
    for child in &mut children {
        assert!(child.0.wait().unwrap().success());
    }
    let runs = history(&env, "together");
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert_eq!(records(&etcd, "together").len(), 4, "{:?}", etcd.keys());
    let mut seen: Vec<u64> = runs.iter().map(|run| run["pid"].as_u64().unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 4, "{runs:?}");
    pids.retain(|pid| seen.contains(pid));
    assert_eq!(pids.len(), 4, "every record is one of the runs: {runs:?}");
}

#[test]
fn a_long_history_is_read_in_pages_in_the_order_it_was_written() {
    let etcd = Etcd::start();
    // 45 records, as older runs left them, numbered against the order
    // they were written in: that order, not the keys', is the history's.
    for i in 0..45 {
        let key = format!("cronlock.paged:runs:{:020}", 1000 - i);
        etcd.ctl(&["put", &key, &format!("{{\"n\":{i}}}")]);
    }
    let env = with(
        &etcd.env(),
        &[
            ("CRONLOCK_KEY", "paged"),
            ("CRONLOCK_HISTORY", "40"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    run(&env, &["true"]).expect(0);
    let runs = history(&env, "paged");
    assert_eq!(runs.len(), 40, "{runs:?}");
    assert_eq!(runs[0]["exit"], 0, "{runs:?}");
    let numbers: Vec<i64> = runs[1..].iter().map(|run| run["n"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (6..45).rev().collect::<Vec<_>>());
    assert_eq!(records(&etcd, "paged").len(), 40);
}

#[test]
fn jobs_named_like_anothers_history_keys_keep_their_own() {
    let etcd = Etcd::start();
    let base = with(&etcd.env(), &[("CRONLOCK_HISTORY", "1"), ("CRONLOCK_GRACE", "-1")]);
    let job = |key: &str| with(&base, &[("CRONLOCK_KEY", key)]);
    // A lock kept for its grace, and history, inside `clash`'s range of records.
    let digits = "clash:runs:00000000000000000007";
    run(&with(&job(digits), &[("CRONLOCK_GRACE", "300")]), &["true"]).expect(0);
    run(&job("clash:runs"), &["sh", "-c", "exit 5"]).expect(5);
    for _ in 0..3 {
        run(&job("clash"), &["sh", "-c", "exit 3"]).expect(3);
    }
    for (name, exit) in [("clash", 3), ("clash:runs", 5), (digits, 0)] {
        let runs = history(&base, name);
        assert_eq!(runs.len(), 1, "{name}: {runs:?}");
        assert_eq!(runs[0]["exit"], exit, "{name}: {runs:?}");
    }
    // The trims of `clash` left the other job's lock alone.
    run(&job(digits), &["true"]).expect(200);
    let listed = ctl(&base, &["--json", "list"]);
    listed.expect(0);
    let lines = listed.json_lines();
    assert_eq!(lines.len(), 1, "{}", listed.stdout());
    assert_eq!(lines[0]["key"], format!("cronlock.{digits}"));
}

#[test]
fn a_job_named_like_another_followed_by_a_slash_leaves_its_lock_free() {
    let etcd = Etcd::start();
    let base = with(
        &etcd.env(),
        &[
            ("CRONLOCK_FENCING", "on"),
            ("CRONLOCK_HISTORY", "3"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let job = |key: &str| with(&base, &[("CRONLOCK_KEY", key)]);
    run(&job("nest/inner"), &["true"]).expect(0);
    run(&job("nest/inner"), &["true"]).expect(0);
    // The inner job's counter, records and last success stay in the outer
    // job's line, `cronlock.nest/`, without a lease.
    let inner: Vec<String> = etcd
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("cronlock.nest/"))
        .collect();
    assert_eq!(inner.len(), 4, "{inner:?}");
    // They are nobody's lock: the outer job runs, and its own lock, kept
    // for a grace, is still told from them.
    run(&job("nest"), &["true"]).expect(0);
    run(&with(&job("nest"), &[("CRONLOCK_GRACE", "300")]), &["true"]).expect(0);
    run(&job("nest"), &["true"]).expect(200);
    // A reset of the outer job frees its lock and leaves the inner job's keys.
    run(&with(&job("nest"), &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    let left: Vec<String> = etcd
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("cronlock.nest/"))
        .collect();
    assert_eq!(left, inner);
    run(&job("nest"), &["true"]).expect(0);
    assert_eq!(history(&base, "nest/inner").len(), 2);
    assert_eq!(history(&base, "nest").len(), 3);
}

#[test]
fn a_lock_held_by_etcdctl_exits_200() {
    let etcd = Etcd::start();
    let dir = TempDir::new("etcdctl-holds");
    let gated = Gated::new(&dir, "etcdctl");
    let mut holder = Reaped(
        etcd.etcdctl()
            .args(["lock", "cronlock.shared", "--", "sh", "-c", &gated.script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    gated.wait_started();
    let env = with(&etcd.env(), &[("CRONLOCK_KEY", "shared")]);
    run(&env, &["sh", "-c", &format!("touch {}", dir.join("ran").display())]).expect(200);
    assert!(!dir.join("ran").exists(), "the command must not run");
    // The loser left no key of its own behind.
    assert_eq!(etcd.keys().len(), 1, "{:?}", etcd.keys());
    gated.open();
    assert!(holder.0.wait().unwrap().success());
    wait_until(Duration::from_secs(5), "etcdctl to give the lock back", || {
        etcd.keys().is_empty()
    });
    run(&with(&env, &[("CRONLOCK_GRACE", "-1")]), &["true"]).expect(0);
}

#[test]
fn etcdctl_lock_waits_while_cronlock_holds_it() {
    let etcd = Etcd::start();
    let dir = TempDir::new("cronlock-holds");
    let env = with(&etcd.env(), &[("CRONLOCK_KEY", "shared"), ("CRONLOCK_GRACE", "-1")]);
    let gated = Gated::new(&dir, "job");
    let mut ours = Reaped(cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap());
    gated.wait_started();
    let got = dir.join("etcdctl-got-it");
    let mut waiter = Reaped(
        etcd.etcdctl()
            .args(["lock", "cronlock.shared", "--", "touch"])
            .arg(&got)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // etcdctl's key joins the line behind ours: two keys, and it waits.
    wait_until(Duration::from_secs(5), "etcdctl to queue", || etcd.keys().len() == 2);
    assert!(!got.exists(), "etcdctl lock must not get a lock cronlock holds");
    assert_eq!(waiter.0.try_wait().unwrap(), None);
    gated.open();
    assert!(ours.0.wait().unwrap().success());
    // Released (GRACE=-1): etcdctl gets it now.
    wait_until(Duration::from_secs(10), "etcdctl lock to get the lock", || got.exists());
    assert!(waiter.0.wait().unwrap().success());
}

#[test]
fn grace_keeps_etcdctl_out_until_it_expires() {
    let etcd = Etcd::start();
    let env = with(&etcd.env(), &[("CRONLOCK_KEY", "graced"), ("CRONLOCK_GRACE", "2")]);
    run(&env, &["true"]).expect(0);
    let ended = Instant::now();
    let keys = etcd.keys();
    assert_eq!(keys.len(), 1, "held for the grace: {keys:?}");
    // etcdctl waits in line until the grace lease expires, then gets it.
    let output = etcd
        .etcdctl()
        .args(["lock", "cronlock.graced", "--", "true"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let waited = ended.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited <= Duration::from_secs(6),
        "{waited:?}"
    );
    assert!(etcd.keys().is_empty(), "{:?}", etcd.keys());
    run(&env, &["true"]).expect(0);
}

#[test]
fn a_restarted_member_keeps_the_lock() {
    let mut etcd = Etcd::start();
    let env = with(&etcd.env(), &[("CRONLOCK_KEY", "durable")]);
    run(&env, &["true"]).expect(0);
    etcd.restart();
    run(&env, &["true"]).expect(200);
}

#[test]
fn wrong_credentials_exit_201_with_one_line() {
    let mut etcd = Etcd::start();
    etcd.enable_auth("rootpw");
    etcd.add_cronlock_user("cron", "s3cret");
    let url = format!("etcd://cron:s3cret@127.0.0.1:{}", etcd.port);
    let env = [
        ("CRONLOCK_URL".to_string(), url),
        ("CRONLOCK_KEY".into(), "auth".into()),
    ];
    run(&env, &["true"]).expect(0);
    run(&env, &["true"]).expect(200);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    // The role's prefix covers the fencing counter beside the lock.
    let fenced = with(
        &env,
        &[("CRONLOCK_KEY", "auth-fenced"), ("CRONLOCK_FENCING", "required")],
    );
    let check = format!("{} fence", ctl_bin().display());
    run(&fenced, &["sh", "-c", &check]).expect(0);
    let bad = [(
        "CRONLOCK_URL".to_string(),
        format!("etcd://cron:hunter2@127.0.0.1:{}", etcd.port),
    )];
    let result = run(&bad, &["true"]);
    result.expect(201);
    let stderr = result.stderr();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // Without a user, an auth-enabled cluster refuses the lock.
    run(&etcd.env(), &["true"]).expect(201);
}

#[test]
fn bad_urls_and_unreachable_or_foreign_servers_exit_201_with_one_line() {
    let redis = RedisServer::start();
    let closed = free_port();
    // Something that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (url, says) in [
        ("etcd://".to_string(), "no host"),
        ("etcd://h/some/path".to_string(), "no path"),
        ("etcd://u:pw@h:99999".to_string(), "not a port"),
        (format!("etcd://127.0.0.1:{closed}"), "cannot reach etcd"),
        (format!("etcd://127.0.0.1:{}", redis.port), "etcd's client port"),
        (format!("etcds://127.0.0.1:{}", redis.port), "TLS"),
    ] {
        let env = [
            ("CRONLOCK_URL".to_string(), url.clone()),
            ("CRONLOCK_REDIS_TIMEOUT".to_string(), "2".to_string()),
        ];
        let result = run(&env, &["true"]);
        result.expect(201);
        let stderr = result.stderr();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("pw@"), "{stderr}");
    }
    let result = run(
        &[
            ("CRONLOCK_URL".to_string(), format!("etcd://127.0.0.1:{silent_port}")),
            ("CRONLOCK_REDIS_TIMEOUT".to_string(), "1".to_string()),
        ],
        &["true"],
    );
    result.expect(201);
    assert!(result.stderr().contains("no answer within 1s"), "{}", result.stderr());
}

/// `etcds://` to `etcd` as `user` (none when empty) with `more` settings.
fn tls_env(etcd: &Etcd, user: &str, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let url = match user {
        "" => etcd.url(),
        user => etcd.url().replace("://", &format!("://{user}@")),
    };
    let env = vec![
        ("CRONLOCK_URL".to_string(), url),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
    ];
    with(&env, more)
}

#[test]
fn etcds_takes_the_lock_from_a_member_that_speaks_only_tls() {
    let pki = Pki::new();
    let mut etcd = Etcd::start_tls(&pki, ClientCertificates::Optional);
    etcd.enable_auth("rootpw");
    etcd.add_cronlock_user("cron", "s3cret-tls");
    let ca = pki.file("ca.crt");
    let env = tls_env(
        &etcd,
        "cron:s3cret-tls",
        &[("CRONLOCK_TLS_CA_FILE", &ca), ("CRONLOCK_KEY", "tls")],
    );
    let dir = TempDir::new("etcd-tls");
    let marker = dir.join("ran");
    run(&env, &["sh", "-c", &format!("touch {}", marker.display())]).expect(0);
    assert!(marker.exists(), "the command must run");
    // Held for the grace, as the release over TLS left it.
    assert_eq!(etcd.keys().len(), 1, "{:?}", etcd.keys());
    run(&env, &["true"]).expect(200);
    // The member's name is checked too: localhost is in its certificate.
    let by_name = with(&env, &[("CRONLOCK_KEY", "by-name")]);
    let by_name: Vec<(String, String)> = by_name
        .into_iter()
        .map(|(k, v)| (k, v.replace("127.0.0.1", "localhost")))
        .collect();
    run(&by_name, &["true"]).expect(0);
    // The port speaks nothing but TLS: the runs above used it.
    let plain = tls_env(&etcd, "cron:s3cret-tls", &[]);
    let plain: Vec<(String, String)> = plain
        .into_iter()
        .map(|(k, v)| (k, v.replace("etcds://", "etcd://")))
        .collect();
    expect_refusal(&plain, "etcds://", &["s3cret-tls"]);
}

#[test]
fn etcds_shows_the_client_certificate_to_a_member_that_requires_one() {
    let pki = Pki::new();
    let etcd = Etcd::start_tls(&pki, ClientCertificates::Required);
    let (ca, cert, key) = (pki.file("ca.crt"), pki.file("client.crt"), pki.file("client.key"));
    let client = [
        ("CRONLOCK_TLS_CA_FILE", ca.as_str()),
        ("CRONLOCK_TLS_CERT_FILE", cert.as_str()),
        ("CRONLOCK_TLS_KEY_FILE", key.as_str()),
    ];
    run(&tls_env(&etcd, "", &client), &["true"]).expect(0);
    assert_eq!(etcd.keys().len(), 1, "{:?}", etcd.keys());
    expect_refusal(&tls_env(&etcd, "", &client[..1]), "CRONLOCK_TLS_CERT_FILE", &[]);
}

#[test]
fn etcds_refuses_a_member_it_cannot_verify_with_one_line() {
    let pki = Pki::new();
    let etcd = Etcd::start_tls(&pki, ClientCertificates::Optional);
    let ca = pki.file("ca.crt");
    let with_ca = [("CRONLOCK_TLS_CA_FILE", ca.as_str())];
    let password = "s3cret-tls";
    let user = format!("cron:{password}");
    expect_refusal(
        &tls_env(&etcd, &user, &[("CRONLOCK_TLS_CA_FILE", &pki.file("other-ca.crt"))]),
        "unknown CA",
        &[password],
    );
    etcd.use_certificate(&pki, "wrong-name");
    expect_refusal(
        &tls_env(&etcd, &user, &with_ca),
        "does not match the host name",
        &[password],
    );
    run(
        &tls_env(&etcd, "", &[with_ca[0], ("CRONLOCK_TLS_SERVER_NAME", "elsewhere.test")]),
        &["true"],
    )
    .expect(0);
    etcd.use_certificate(&pki, "expired");
    expect_refusal(&tls_env(&etcd, &user, &with_ca), "has expired", &[password]);
    // A member without TLS.
    let plain = Etcd::start();
    let url = plain.url().replace("etcd://", &format!("etcds://{user}@"));
    expect_refusal(
        &[
            ("CRONLOCK_URL".to_string(), url),
            ("CRONLOCK_TLS_CA_FILE".to_string(), ca.clone()),
            ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
        ],
        "TLS",
        &[password],
    );
}
