//! A fleet's herd against a stock ZooKeeper: 120 cronlock runs released at
//! one instant against a server that takes at most 60 connections from one
//! address (stock `maxClientCnxns`) and closes the others. Each run must
//! wait its turn instead of failing with 201.

mod util;

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use util::zookeeper::ZooKeeper;
use util::*;

/// Twice the server's limit.
const RUNS: usize = 120;
/// Stock ZooKeeper's `maxClientCnxns`.
const LIMIT: u32 = 60;
/// Generous: the herd drains in a few seconds here.
const DEADLINE: Duration = Duration::from_secs(25);

/// Starts `RUNS` runs (the `i`th under `env_of(i)`) held at a barrier,
/// releases them together, and returns each one's exit code and how long
/// after the release it ended.
fn herd(dir: &TempDir, env_of: impl Fn(usize) -> Vec<(String, String)>) -> Vec<(i32, Duration)> {
    let barrier = dir.join("barrier");
    let gate = Flock::lock(File::create(&barrier).unwrap(), FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", barrier.display()));
    let mut children: Vec<(Child, Option<(i32, Duration)>)> = (0..RUNS)
        .map(|i| {
            let child = cronlock_behind(&env_of(i), &barrier)
                .args(marker(dir))
                .stdout(Stdio::null())
                .stderr(File::create(dir.join(&format!("{i}.stderr"))).unwrap())
                .spawn()
                .unwrap();
            (child, None)
        })
        .collect();
    // Every shell waits at the barrier before any is let go (a shell still
    // starting would join the herd late): /proc/locks lists each waiter
    // (`-> FLOCK ...`) with the file's device and inode.
    let inode = format!(
        ":{} ",
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&barrier).unwrap())
    );
    wait_until(Duration::from_secs(20), "every run to wait at the barrier", || {
        let waiting = std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("-> FLOCK") && line.contains(&inode))
            .count();
        waiting >= RUNS
    });
    let released = Instant::now();
    drop(gate);
    while children.iter().any(|(_, ended)| ended.is_none()) {
        assert!(
            released.elapsed() < DEADLINE,
            "the herd did not drain within {DEADLINE:?}"
        );
        for (child, ended) in children.iter_mut().filter(|(_, ended)| ended.is_none()) {
            if let Some(status) = child.try_wait().unwrap() {
                *ended = Some((status.code().unwrap_or(-1), released.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    children.into_iter().filter_map(|(_, ended)| ended).collect()
}

/// The exit codes' counts; the times, and the slowest run's log, are
/// shown in the test's output.
fn summary(what: &str, dir: &TempDir, ended: &[(i32, Duration)]) -> std::collections::BTreeMap<i32, usize> {
    let mut codes = std::collections::BTreeMap::new();
    for (code, _) in ended {
        *codes.entry(*code).or_insert(0) += 1;
    }
    let mut times: Vec<Duration> = ended.iter().map(|(_, at)| *at).collect();
    times.sort();
    eprintln!(
        "herd ({what}): {RUNS} runs, exit codes {codes:?}, decided after median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    if let Some(i) = (0..RUNS).max_by_key(|i| ended[*i].1) {
        let stderr = std::fs::read_to_string(dir.join(&format!("{i}.stderr"))).unwrap_or_default();
        eprintln!("herd ({what}): run {i} said: {stderr}");
    }
    codes
}

/// Default settings (the backoff too: the test helper's 0 is not a
/// fleet's), verbose only so that the slowest run's log can be shown.
fn env(zk: &ZooKeeper, key: &str) -> Vec<(String, String)> {
    with(
        &zk.env(),
        &[
            ("CRONLOCK_KEY", key),
            ("CRONLOCK_RECONNECT_BACKOFF", "5"),
            ("CRONLOCK_VERBOSE", "yes"),
        ],
    )
}

#[test]
fn a_herd_of_one_job_over_the_connection_limit_runs_it_once_and_nobody_fails() {
    let zk = ZooKeeper::start_with_client_limit(LIMIT);
    let dir = TempDir::new("herd-one");
    let ended = herd(&dir, |_| env(&zk, "herd"));
    let codes = summary("one job", &dir, &ended);
    assert_eq!(runs(&dir), 1, "{codes:?}");
    assert_eq!(codes.get(&0), Some(&1), "{codes:?}");
    assert_eq!(codes.get(&200), Some(&(RUNS - 1)), "{codes:?}");
}

#[test]
fn a_herd_of_distinct_jobs_over_the_connection_limit_runs_every_one() {
    let zk = ZooKeeper::start_with_client_limit(LIMIT);
    let dir = TempDir::new("herd-many");
    let ended = herd(&dir, |i| env(&zk, &format!("herd-{i}")));
    let codes = summary("distinct jobs", &dir, &ended);
    assert_eq!(codes.get(&0), Some(&RUNS), "{codes:?}");
    assert_eq!(runs(&dir), RUNS);
}
