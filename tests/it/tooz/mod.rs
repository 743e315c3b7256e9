//! `CRONLOCK_KEY_STYLE=tooz` against the real coolock (tooz 1.67.2), both
//! ways, on every store where both run: a coolock holder keeps cronlock out
//! (exit 200, or a wait with `CRONLOCK_WAIT`), and a cronlock holder makes
//! coolock give up. The functions here are the checks; each store's file
//! calls them with its server (`env` points cronlock at it, `url` is the
//! tooz URL coolock is given for the same server).

mod directory;
mod etcd;
mod memcached;
mod mysql;
mod postgres;
mod redis;
#[cfg(feature = "zookeeper")]
mod zookeeper;

use std::time::{Duration, Instant};

use crate::util::coolock::Coolock;
use crate::util::*;

/// The coolock install, or skip the test (it prints why and passes).
macro_rules! coolock_or_skip {
    () => {
        match crate::util::coolock::Coolock::installed() {
            Ok(coolock) => coolock,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use coolock_or_skip;

/// `env` with the tooz style and the lock name `name`.
pub fn tooz_env(env: &[(String, String)], name: &str) -> Vec<(String, String)> {
    with(env, &[("CRONLOCK_KEY_STYLE", "tooz"), ("CRONLOCK_KEY", name)])
}

/// A store's `(server, env, url)` in tooz's namespace `ns`: `?namespace=ns`
/// for coolock, `CRONLOCK_TOOZ_NAMESPACE=ns` for cronlock (Redis and
/// ZooKeeper, whose tooz drivers read it).
pub fn namespaced<S>((server, env, url): (S, Vec<(String, String)>, String)) -> (S, Vec<(String, String)>, String) {
    let env = with(&env, &[("CRONLOCK_TOOZ_NAMESPACE", "ns")]);
    (server, env, format!("{url}?namespace=ns"))
}

/// While coolock holds `name`, cronlock exits 200 without running its
/// command; once coolock has released, cronlock takes the lock.
pub fn a_coolock_holder_keeps_cronlock_out(coolock: &Coolock, env: &[(String, String)], url: &str) {
    let home = TempDir::new("coolock-holds");
    let holder = coolock.hold(url, "nightly", &home);
    let marker = home.join("cronlock-ran");
    let touch = format!("touch {}", marker.display());
    run(&tooz_env(env, "nightly"), &["sh", "-c", &touch]).expect(200);
    assert!(!marker.exists(), "cronlock ran while coolock held the lock");
    // Another name is another lock.
    run(&tooz_env(env, "other"), &["true"]).expect(0);
    holder.finish();
    run(
        &with(&tooz_env(env, "nightly"), &[("CRONLOCK_GRACE", "-1")]),
        &["sh", "-c", &touch],
    )
    .expect(0);
    assert!(marker.exists(), "cronlock runs once coolock has released");
}

/// With `CRONLOCK_WAIT`, cronlock waits for coolock's lock (its `waiting`
/// event says it found it held) and runs once coolock has released.
pub fn a_waiting_cronlock_runs_after_coolock(coolock: &Coolock, env: &[(String, String)], url: &str) {
    use std::io::{BufRead, BufReader};
    let home = TempDir::new("coolock-wait");
    let holder = coolock.hold(url, "nightly", &home);
    let marker = home.join("cronlock-ran");
    let mut waiter = cronlock(&with(
        &tooz_env(env, "nightly"),
        // The JSON events say when the waiter has found the lock held.
        &[
            ("CRONLOCK_WAIT", "60"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_LOG_FORMAT", "json"),
        ],
    ))
    .args(["sh", "-c", &format!("touch {}", marker.display())])
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut events = BufReader::new(waiter.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let waiting = loop {
        match events.next() {
            Some(Ok(line)) if line.contains("\"event\":\"waiting\"") => break true,
            Some(Ok(line)) => seen.push(line),
            _ => break false,
        }
    };
    assert!(
        waiting,
        "cronlock did not wait for coolock's lock:\n{}",
        seen.join("\n")
    );
    assert!(!marker.exists(), "cronlock ran while coolock held the lock");
    holder.finish();
    let rest: Vec<String> = events.map_while(Result::ok).collect();
    let status = waiter.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", rest.join("\n"));
    assert!(marker.exists());
}

/// While cronlock holds `name`, coolock gives up (exit 0, its command not
/// run); once cronlock has released, coolock runs.
pub fn a_cronlock_holder_keeps_coolock_out(coolock: &Coolock, env: &[(String, String)], url: &str) {
    let home = TempDir::new("cronlock-holds");
    let gated = Gated::new(&home, "cronlock");
    let holder = cronlock(&with(&tooz_env(env, "nightly"), &[("CRONLOCK_GRACE", "-1")]))
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    let marker = home.join("coolock-ran");
    let touch = format!("touch {}", marker.display());
    coolock.run(url, "nightly", &touch, &home);
    assert!(!marker.exists(), "coolock ran while cronlock held the lock");
    let log = std::fs::read_to_string(Coolock::log(&home)).unwrap_or_default();
    assert!(log.contains("Did not acquire lock"), "coolock's log:\n{log}");
    gated.open();
    expect_success(holder);
    coolock.run(url, "nightly", &touch, &home);
    assert!(marker.exists(), "coolock runs once cronlock has released");
}

/// Waits for a cronlock run and expects exit 0 (its stderr if not).
fn expect_success(child: std::process::Child) {
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a gated holder of `nightly` with `more` settings, calls `check`
/// while its command runs, then lets it finish and expects exit 0.
pub fn while_held(env: &[(String, String)], more: &[(&str, &str)], check: impl FnOnce(Instant)) {
    let tmp = TempDir::new("tooz-holder");
    let gated = Gated::new(&tmp, "holder");
    let spawned = Instant::now();
    let holder = cronlock(&with(&tooz_env(env, "nightly"), more))
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    check(spawned);
    gated.open();
    expect_success(holder);
}

/// With `CRONLOCK_LEASE=3`, the holder's key still has a second or more
/// left (`left`, which panics when the key is gone) `after` its run was
/// spawned, which only renewals can do when `after` is past the first
/// lease's end (plus the store's rounding).
pub fn renewals_keep_the_key(env: &[(String, String)], after: Duration, mut left: impl FnMut() -> Duration) {
    while_held(env, &[("CRONLOCK_LEASE", "3"), ("CRONLOCK_GRACE", "-1")], |spawned| {
        wait_until(Duration::from_secs(15), "the key to outlive its first lease", || {
            let left = left();
            spawned.elapsed() > after && left >= Duration::from_secs(1)
        });
    });
}

/// Makes the three both-ways tests for a store: `$setup` is an expression
/// giving `(server, env, url)`, where `server` keeps the server alive.
#[allow(unused_macros)]
macro_rules! both_ways {
    ($setup:expr) => {
        #[test]
        fn a_coolock_holder_keeps_cronlock_out() {
            let coolock = crate::tooz::coolock_or_skip!();
            let (_server, env, url) = $setup;
            crate::tooz::a_coolock_holder_keeps_cronlock_out(&coolock, &env, &url);
        }

        #[test]
        fn a_waiting_cronlock_runs_after_coolock() {
            let coolock = crate::tooz::coolock_or_skip!();
            let (_server, env, url) = $setup;
            crate::tooz::a_waiting_cronlock_runs_after_coolock(&coolock, &env, &url);
        }

        #[test]
        fn a_cronlock_holder_keeps_coolock_out() {
            let coolock = crate::tooz::coolock_or_skip!();
            let (_server, env, url) = $setup;
            crate::tooz::a_cronlock_holder_keeps_coolock_out(&coolock, &env, &url);
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_ways;

#[test]
fn a_store_tooz_has_no_driver_for_is_refused_with_one_line() {
    let refused = run(
        &[
            ("CRONLOCK_URL".to_string(), "dynamodb://locks".to_string()),
            ("CRONLOCK_KEY_STYLE".to_string(), "tooz".to_string()),
        ],
        &["true"],
    );
    refused.expect(201);
    assert_eq!(refused.stderr().lines().count(), 1, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("no driver for the dynamodb store"),
        "{}",
        refused.stderr()
    );
}
