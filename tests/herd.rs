//! The top of the minute: N cronlock runs released at one instant against
//! each store, whose server keeps its stock connection limit, with
//! cronlock's default settings. N runs of one job run it exactly once and
//! the rest exit 200; N different jobs all run; no run exits 201. Each
//! herd prints how long after the release the last run decided (its 200,
//! or its job's start). `HERD_N` sets N for every store (scripts/herd.sh
//! runs 100, 300 and 1,000), `HERD_REPORT` names a file that gets one line
//! of figures per herd.

mod util;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use util::dynamodb::DynamoServer;
use util::etcd::Etcd;
use util::mariadb::MariaDb;
use util::memcached::MemcachedServer;
use util::postgres::Postgres;
use util::*;

/// How long a herd may take to decide before the test fails: far more than
/// any store needs (see docs/performance.md), far less than a run that
/// waits out the reconnect backoff meant for a dead server would take.
const DECIDED_WITHIN: Duration = Duration::from_secs(20);

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
#[test]
fn mysql_herd_beyond_max_connections_runs_one_job_once_and_every_job_once() {
    let server = MariaDb::start();
    server.sql("CREATE DATABASE cronlock");
    server.create_user("cron", "s3cret", &["ALL ON cronlock.*"]);
    let env = vec![("CRONLOCK_URL".to_string(), server.url("cron", "s3cret", "cronlock"))];
    herds("mysql", &env, size(302));
}

/// PostgreSQL's stock `max_connections` is 100: twice that.
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

/// moto serves one request at a time (tests/util/dynamodb.rs): a smaller herd.
#[test]
fn dynamodb_herd_runs_one_job_once_and_every_job_once() {
    let server = DynamoServer::start();
    herds("dynamodb", &server.env(), size(100));
}
