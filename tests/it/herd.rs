//! The top of the minute: N cronlock runs released at one instant against
//! each store, whose server keeps its stock connection limit, with
//! cronlock's default settings. N runs of one job run it exactly once and
//! the rest exit 200; N different jobs all run; no run exits 201. Each
//! herd prints how long after the release the last run decided (its 200,
//! or its job's start). `HERD_N` sets N for every store (scripts/herd.sh
//! runs 100, 300 and 1,000), `HERD_REPORT` names a file that gets one line
//! of figures per herd.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "dynamodb")]
use crate::util::dynamodb::DynamoServer;
use crate::util::etcd::Etcd;
#[cfg(feature = "mysql")]
use crate::util::mariadb::MariaDb;
use crate::util::memcached::MemcachedServer;
#[cfg(feature = "postgres")]
use crate::util::postgres::Postgres;
#[cfg(feature = "zookeeper")]
use crate::util::zookeeper::ZooKeeper;
use crate::util::*;
use nix::fcntl::{Flock, FlockArg};

/// How long a herd may take to decide before the test fails: far more than
/// any store needs (see docs/performance.md; 2,048 debug-build runs on a
/// loaded 2-core machine took 21 s on memcached), far less than a run that
/// waits out the reconnect backoff meant for a dead server would take
/// (5 + 10 + 15 + 20 + 25 s with the default settings).
const DECIDED_WITHIN: Duration = Duration::from_secs(30);

/// One herd's outcome.
struct Herd {
    /// Exit code of each run.
    codes: Vec<i32>,
    /// How many jobs started.
    started: usize,
    /// Per run, the time from the release until it decided: its job's
    /// start, or its exit when it did not start one.
    decided: Vec<Duration>,
    /// stderr of each run.
    errors: Vec<String>,
}

impl Herd {
    fn count(&self, code: i32) -> usize {
        self.codes.iter().filter(|&&c| c == code).count()
    }

    /// The stderr of the first few runs that exited neither 0 nor 200.
    fn failures(&self) -> String {
        self.codes
            .iter()
            .zip(&self.errors)
            .filter(|(code, _)| !matches!(code, 0 | 200))
            .take(5)
            .map(|(code, err)| format!("exit {code}: {err}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `HERD_N`, or the store's default.
fn size(default: usize) -> usize {
    std::env::var("HERD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Releases `n` runs of cronlock under `env` at one instant: one job (the
/// same `CRONLOCK_KEY` for all) or `n` different ones. Each run's command
/// touches a file of its own, whose mtime is its start.
fn release(env: &[(String, String)], n: usize, same_job: bool) -> Herd {
    release_then(env, n, same_job, || {})
}

/// [`release`], calling `at_release` on a thread of its own the moment the
/// runs are let go (a failover, say).
fn release_then(
    env: &[(String, String)],
    n: usize,
    same_job: bool,
    at_release: impl FnOnce() + Send + 'static,
) -> Herd {
    let dir = TempDir::new("herd");
    let started = dir.join("started");
    let errors = dir.join("errors");
    std::fs::create_dir_all(&started).unwrap();
    std::fs::create_dir_all(&errors).unwrap();
    // The barrier: every run waits for a shared flock on this file behind
    // `flock -s`, which gets it once the test lets go of its exclusive one.
    let barrier_path = dir.join("barrier");
    let barrier = Flock::lock(File::create(&barrier_path).unwrap(), FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("flock: {e}"));
    let inode = std::fs::metadata(&barrier_path).unwrap().ino();
    let mut children: Vec<Option<Child>> = (0..n)
        .map(|i| {
            let key = if same_job {
                "herd".to_string()
            } else {
                format!("herd-{i}")
            };
            let mut command = Command::new("flock");
            command.arg("-s").arg(&barrier_path).arg(bin());
            clean_env(&mut command, &with(env, &[("CRONLOCK_KEY", &key)]));
            // Default settings: the tests' fast reconnects are not a user's.
            command.env_remove("CRONLOCK_RECONNECT_BACKOFF");
            command
                .args(["touch", &started.join(i.to_string()).display().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(errors.join(i.to_string())).unwrap());
            Some(command.spawn().expect("spawn flock"))
        })
        .collect();
    wait_until(Duration::from_secs(60), "every run to wait at the barrier", || {
        waiters(inode) >= n
    });
    let released = SystemTime::now();
    drop(barrier);
    let action = std::thread::spawn(at_release);
    let mut exited = vec![released; n];
    let mut codes = vec![-1; n];
    let mut left = n;
    let deadline = std::time::Instant::now() + DECIDED_WITHIN + Duration::from_secs(60);
    while left > 0 {
        for (i, slot) in children.iter_mut().enumerate() {
            if let Some(child) = slot {
                if let Some(status) = child.try_wait().unwrap() {
                    exited[i] = SystemTime::now();
                    codes[i] = status.code().unwrap_or(-1);
                    *slot = None;
                    left -= 1;
                }
            }
        }
        if std::time::Instant::now() > deadline {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!(
                "{left} of {n} runs still running after {:?}",
                DECIDED_WITHIN + Duration::from_secs(60)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    action.join().expect("the action at the release");
    let decided = (0..n)
        .map(|i| {
            let moment = start_of(&started.join(i.to_string())).unwrap_or(exited[i]);
            moment.duration_since(released).unwrap_or_default()
        })
        .collect();
    Herd {
        started: std::fs::read_dir(&started).unwrap().count(),
        errors: (0..n)
            .map(|i| std::fs::read_to_string(errors.join(i.to_string())).unwrap_or_default())
            .collect(),
        codes,
        decided,
    }
}

/// How many processes wait for a lock on the file with inode `inode`
/// (the `->` lines of /proc/locks).
fn waiters(inode: u64) -> usize {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let tag = format!(":{inode} ");
    locks
        .lines()
        .filter(|line| line.contains("->") && line.contains(&tag))
        .count()
}

/// When the job that made `path` started (the file's mtime).
fn start_of(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    Some(UNIX_EPOCH + Duration::new(meta.mtime() as u64, meta.mtime_nsec() as u32))
}

/// Median and max of `times`, in seconds.
fn spread(times: &[Duration]) -> (f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2].as_secs_f64();
    let max = sorted.last().map_or(0.0, Duration::as_secs_f64);
    (median, max)
}

/// Prints a herd's figures, and appends them to `HERD_REPORT` when set.
fn report(store: &str, kind: &str, herd: &Herd) {
    let (median, max) = spread(&herd.decided);
    let line = format!(
        "{store}\t{kind}\t{}\t{median:.3}\t{max:.3}\t{}\t{}\t{}",
        herd.codes.len(),
        herd.started,
        herd.count(200),
        herd.codes.len() - herd.count(0) - herd.count(200)
    );
    eprintln!(
        "herd: {store} {kind} N={}: decided median {median:.3} s, max {max:.3} s; {} started, {} × 200, {} other",
        herd.codes.len(),
        herd.started,
        herd.count(200),
        herd.codes.len() - herd.count(0) - herd.count(200)
    );
    if let Some(path) = std::env::var_os("HERD_REPORT").map(PathBuf::from) {
        let mut file = File::options().create(true).append(true).open(&path).unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

/// Both herds against the store that `env` names: `n` runs of one job,
/// then `n` different jobs.
fn herds(store: &str, env: &[(String, String)], n: usize) {
    let one = release(env, n, true);
    report(store, "same-job", &one);
    assert_eq!(
        one.count(201),
        0,
        "{store}: runs of one job exited 201:\n{}",
        one.failures()
    );
    assert_eq!(
        one.started,
        1,
        "{store}: one job must run exactly once:\n{}",
        one.failures()
    );
    assert_eq!(
        one.count(0),
        1,
        "{store}: the run that took the lock exits 0:\n{}",
        one.failures()
    );
    assert_eq!(
        one.count(200),
        n - 1,
        "{store}: every other run exits 200:\n{}",
        one.failures()
    );
    let (_, max) = spread(&one.decided);
    assert!(
        max < DECIDED_WITHIN.as_secs_f64(),
        "{store}: the last run of one job decided after {max:.1} s"
    );

    let all = release(env, n, false);
    report(store, "distinct-jobs", &all);
    assert_eq!(
        all.count(201),
        0,
        "{store}: different jobs exited 201:\n{}",
        all.failures()
    );
    assert_eq!(
        all.count(200),
        0,
        "{store}: different jobs exited 200, though nobody held them:\n{}",
        all.failures()
    );
    assert_eq!(all.started, n, "{store}: every job must run:\n{}", all.failures());
    let (_, max) = spread(&all.decided);
    assert!(
        max < DECIDED_WITHIN.as_secs_f64(),
        "{store}: the last of the different jobs started after {max:.1} s"
    );
}

#[test]
fn redis_herd_runs_one_job_once_and_every_job_once() {
    let server = RedisServer::start();
    herds("redis", &server.env(), size(300));
}

#[test]
fn directory_herd_runs_one_job_once_and_every_job_once() {
    let dir = TempDir::new("locks");
    let env = vec![(
        "CRONLOCK_URL".to_string(),
        format!("file://{}", dir.join("locks").display()),
    )];
    herds("directory", &env, size(300));
}

/// MariaDB's stock `max_connections` is 151: twice that.
#[cfg(feature = "mysql")]
#[test]
fn mysql_herd_beyond_max_connections_runs_one_job_once_and_every_job_once() {
    let server = MariaDb::start();
    server.sql("CREATE DATABASE cronlock");
    server.create_user("cron", "s3cret", &["ALL ON cronlock.*"]);
    let env = vec![("CRONLOCK_URL".to_string(), server.url("cron", "s3cret", "cronlock"))];
    herds("mysql", &env, size(302));
}

/// PostgreSQL's stock `max_connections` is 100: twice that.
#[cfg(feature = "postgres")]
#[test]
fn postgres_herd_beyond_max_connections_runs_one_job_once_and_every_job_once() {
    let server = Postgres::start();
    server.create_user("locker", "s3cret", &["CREATE ON SCHEMA public"]);
    let env = vec![(
        "CRONLOCK_URL".to_string(),
        format!("{}?sslmode=disable", server.url("locker", "s3cret", "postgres")),
    )];
    herds("postgres", &env, size(200));
}

/// memcached's stock connection limit (`-c`) is 1,024: twice that.
#[test]
fn memcached_herd_beyond_its_connection_limit_runs_one_job_once_and_every_job_once() {
    let server = MemcachedServer::start();
    herds("memcached", &server.env(), size(2048));
}

#[test]
fn etcd_herd_runs_one_job_once_and_every_job_once() {
    let server = Etcd::start();
    herds("etcd", &server.env(), size(300));
}

/// ZooKeeper's stock `maxClientCnxns` is 60 connections from one address,
/// and every run here comes from 127.0.0.1: twice that. The server closes
/// the connections over it at once, and each such run tries again.
#[cfg(feature = "zookeeper")]
#[test]
fn zookeeper_herd_beyond_max_client_cnxns_runs_one_job_once_and_every_job_once() {
    let server = ZooKeeper::start_with_client_limit(60);
    herds("zookeeper", &server.env(), size(120));
}

/// moto serves one request at a time (tests/it/util/dynamodb.rs): a smaller herd.
#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb_herd_runs_one_job_once_and_every_job_once() {
    let server = DynamoServer::start();
    herds("dynamodb", &server.env(), size(100));
}

/// A master, its replica in sync, and a Sentinel that has seen both;
/// the variables that send cronlock through that Sentinel.
fn sentinel_pair() -> (RedisServer, RedisServer, SentinelServer, Vec<(String, String)>) {
    let (master, replica, sentinel) = sentinel_with_replica("jobs");
    let env = vec![
        ("CRONLOCK_USE_SENTINEL".to_string(), "yes".to_string()),
        (
            "CRONLOCK_SENTINEL_HOST".to_string(),
            format!("127.0.0.1:{}", sentinel.port),
        ),
        ("CRONLOCK_SENTINEL_MASTER".to_string(), "jobs".to_string()),
    ];
    (master, replica, sentinel, env)
}

/// Asks the Sentinel on `port` to fail `jobs` over now.
fn failover(port: u16) {
    let answer = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SENTINEL", "FAILOVER", "jobs"])
        .output()
        .expect("redis-cli");
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("OK"),
        "failover refused: {answer:?}"
    );
}

/// A herd of one job through Sentinel, released as Sentinel starts to fail
/// the master over: the job runs once, every other run exits 200, none 201.
#[test]
fn sentinel_herd_released_at_a_failover_runs_the_job_once() {
    let (_master, replica, sentinel, env) = sentinel_pair();
    let port = sentinel.port;
    let n = size(200);
    let herd = release_then(&env, n, true, move || failover(port));
    report("sentinel-failover", "same-job", &herd);
    assert_eq!(herd.count(201), 0, "runs exited 201:\n{}", herd.failures());
    assert_eq!(herd.started, 1, "the job must run exactly once:\n{}", herd.failures());
    assert_eq!(
        herd.count(200),
        n - 1,
        "every other run exits 200:\n{}",
        herd.failures()
    );
    wait_until(
        Duration::from_secs(30),
        "sentinel to name the replica as master",
        || sentinel.master_port("jobs") == Some(replica.port),
    );
}

/// A holder runs its job while Sentinel fails the master over; herds of the
/// same job keep coming all through the failover. Every one of them exits
/// 200 (the lock was on the replica before it was promoted), the holder's
/// release after the failover reaches the new master (exit 0, not 201 for
/// a write sent to the demoted one), and then the job runs again, once.
#[test]
fn sentinel_holder_keeps_its_job_across_a_failover_while_herds_exit_200() {
    let (_master, replica, sentinel, env) = sentinel_pair();
    let dir = TempDir::new("sentinel-holder");
    let gated = Gated::new(&dir, "holder");
    // No grace for the holder: its release frees the lock. The herds keep
    // the default grace, so the one run that takes it after the release
    // keeps it from the stragglers of its own herd.
    let holder = spawn_gated(
        &with(&env, &[("CRONLOCK_KEY", "herd"), ("CRONLOCK_GRACE", "0")]),
        &gated,
        "",
    );
    gated.wait_started();
    failover(sentinel.port);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut after_switch = 0;
    while after_switch < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "sentinel did not fail over within 30 s"
        );
        if sentinel.master_port("jobs") == Some(replica.port) {
            after_switch += 1;
        }
        let wave = release(&env, size(50), true);
        assert_eq!(
            wave.started,
            0,
            "a run started the job beside its holder:\n{}",
            wave.failures()
        );
        assert_eq!(
            wave.count(200),
            wave.codes.len(),
            "every run exits 200:\n{}",
            wave.failures()
        );
    }
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "the holder's release after the failover: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let next = release(&env, size(50), true);
    assert_eq!(
        next.started,
        1,
        "the job runs once after the release:\n{}",
        next.failures()
    );
    assert_eq!(next.count(201), 0, "{}", next.failures());
}
