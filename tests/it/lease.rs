//! Lease mode (CRONLOCK_LEASE=N): a short TTL renewed while the command
//! runs; a lost or unconfirmable lease kills the command.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

fn value(redis: &RedisServer, key: &str) -> i64 {
    redis.query(&["GET", key]).parse().unwrap_or(0)
}

#[test]
fn lease_is_renewed_while_the_command_runs_then_the_grace_applies() {
    let redis = RedisServer::start();
    let dir = TempDir::new("lease");
    let gated = Gated::new(&dir, "job");
    let env = with(&redis.env(), &[("CRONLOCK_LEASE", "3"), ("CRONLOCK_KEY", "leased")]);
    let start = redis.now();
    let child = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let first = value(&redis, "cronlock.leased");
    assert!((first - (start + 4)).abs() <= 1, "value {first}, start {start}");
    let ttl: i64 = redis.query(&["TTL", "cronlock.leased"]).parse().unwrap();
    assert!((1..=5).contains(&ttl), "a lease-sized TTL, not RELEASE: {ttl}");
    // Renewed every second (N/3): the value moves forward twice.
    wait_until(Duration::from_secs(10), "two renewals", || {
        value(&redis, "cronlock.leased") >= first + 2
    });
    let ttl: i64 = redis.query(&["TTL", "cronlock.leased"]).parse().unwrap();
    assert!((1..=5).contains(&ttl), "ttl {ttl}");
    gated.open();
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(0));
    assert_eq!(value(&redis, "cronlock.leased"), start + 41);
}

#[test]
fn a_lost_lease_kills_the_command_and_exits_201() {
    let redis = RedisServer::start();
    let dir = TempDir::new("lost");
    let gated = Gated::new(&dir, "job");
    let pidfile = dir.join("pid");
    let script = format!("sleep 300 & echo $! > {}; {}", pidfile.display(), gated.script);
    let env = with(&redis.env(), &[("CRONLOCK_LEASE", "3"), ("CRONLOCK_KEY", "stolen")]);
    let child = cronlock(&env)
        .args(["sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    // Another owner (as after a takeover) writes its own value.
    redis.query(&["SET", "cronlock.stolen", "4000000000"]);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(201), "{stderr}");
    assert!(stderr.contains("lease of cronlock.stolen lost"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(grandchild), "the whole group was killed");
    assert_eq!(
        redis.query(&["GET", "cronlock.stolen"]),
        "4000000000",
        "the new owner's lock is left alone"
    );
}

#[test]
fn a_host_that_loses_redis_kills_its_command_before_the_lease_runs_out() {
    let mut redis = RedisServer::start();
    let dir = TempDir::new("cut-off");
    let gated = Gated::new(&dir, "job");
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_LEASE", "3"),
            ("CRONLOCK_KEY", "cut"),
            ("CRONLOCK_RECONNECT_ATTEMPTS", "0"),
        ],
    );
    let child = cronlock(&env)
        .args(["sh", "-c", &gated.script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    let expires = value(&redis, "cronlock.cut");
    let now = redis.now();
    let killed_redis = Instant::now();
    redis.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(201), "{stderr}");
    assert!(stderr.contains("could not be renewed before it ran out"), "{stderr}");
    // Dead before the value it last wrote could be taken over.
    assert!(
        killed_redis.elapsed() <= Duration::from_secs((expires - now + 1) as u64),
        "{:?} vs {}s left",
        killed_redis.elapsed(),
        expires - now
    );
}

#[test]
fn lease_settings_are_checked() {
    let redis = RedisServer::start();
    for bad in ["2", "-1", "x"] {
        let result = run(&with(&redis.env(), &[("CRONLOCK_LEASE", bad)]), &["true"]);
        result.expect(201);
        assert!(result.stderr().contains("CRONLOCK_LEASE"), "{}", result.stderr());
    }
    let dir = TempDir::new("lease-dir");
    let url = format!("file://{}", dir.path().display());
    let result = run(
        &[("CRONLOCK_URL".into(), url), ("CRONLOCK_LEASE".into(), "5".into())],
        &["true"],
    );
    result.expect(201);
    run(&with(&redis.env(), &[("CRONLOCK_LEASE", "0")]), &["true"]).expect(0);
}

/// A waiter (CRONLOCK_WAIT) that takes the lock after longer than its lease
/// counts the lease from its taking try, not from its first: its command
/// runs to the end, renewed as usual.
#[test]
fn a_lease_taken_after_a_long_wait_is_counted_from_the_taking() {
    let redis = RedisServer::start();
    let dir = TempDir::new("late-lease");
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_LEASE", "3"),
            ("CRONLOCK_KEY", "late"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let first = Gated::new(&dir, "first");
    let holder = spawn_gated(&env, &first, "");
    first.wait_started();
    let second = Gated::new(&dir, "second");
    let waiter = spawn_gated(&with(&env, &[("CRONLOCK_WAIT", "30")]), &second, "");
    // Longer than the lease before the waiter can take the lock.
    wait_past(unix_now() + 4);
    first.open();
    assert!(holder.wait_with_output().unwrap().status.success());
    second.wait_started();
    // Past the first renewal, with the command still running.
    wait_past(unix_now() + 2);
    second.open();
    let output = waiter.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
