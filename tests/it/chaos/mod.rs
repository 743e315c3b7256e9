//! A chaos loop, run against every store that has a server: many runs of
//! one job on one key while wrappers, commands and the server are killed at
//! random moments, and (where the lock hangs on a connection) the server
//! ends cronlock's connections. The job takes an flock of its own as it
//! starts; if it ever finds it taken, two copies ran at once, and the test
//! fails. `CHAOS_RUNS` (each store's file gives a default) sets the number
//! of invocations, `CHAOS_SEED` replays a run.

#![allow(dead_code)]

#[cfg(feature = "dynamodb")]
mod dynamodb;
mod etcd;
mod memcached;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod redis;
#[cfg(feature = "zookeeper")]
mod zookeeper;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::*;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// xorshift64*: enough randomness for timings, and replayable from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A store whose server the chaos loop may kill and bring back.
pub trait ChaosStore {
    /// Variables that point cronlock at the store.
    fn env(&self) -> Vec<(String, String)>;
    /// Kills the server, waits `pause`, and starts it again on the same
    /// port with the same data: every acknowledged write must survive, as a
    /// lock store's must.
    fn restart(&mut self, pause: Duration);
    /// Ends every cronlock connection from the server's side while the
    /// server stays up (an operator's kill, an idle timeout), for stores
    /// whose lock hangs on a connection; the others do nothing and say so
    /// (false).
    fn cut_connections(&mut self) -> bool {
        false
    }
}

/// Runs the loop against `store`, `default_runs` invocations unless
/// `CHAOS_RUNS` says otherwise; panics on any overlap.
pub fn chaos(store: &mut dyn ChaosStore, default_runs: usize) {
    let runs: usize = std::env::var("CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_runs);
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("chaos: {runs} runs, CHAOS_SEED={seed}");
    let mut rng = Rng(seed);

    let work = TempDir::new("chaos");
    let check = work.join("check");
    let overlaps = work.join("overlaps");
    let ran = work.join("ran");
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // fd 9 is inherited by sleep, so the flock is held as long as any part
    // of the job lives, and the kernel drops it when the last part dies.
    // Each job notes its shell, its wrapper (the shell's parent) and the
    // time; one that finds the flock taken also notes the last holder's.
    let job = format!(
        "exec 9>>{check}; flock -n 9 || {{ echo \"$$ $PPID $(date +%s.%N) after $(tail -n 1 {ran})\" >> {overlaps}; exit 99; }}; echo \"$$ $PPID $(date +%s.%N)\" >> {ran}; sleep 0.0$(( $$ % 6 ))",
        check = check.display(),
        overlaps = overlaps.display(),
        ran = ran.display()
    );
    let env = with(
        &store.env(),
        &[
            ("CRONLOCK_KEY", "chaos"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_RELEASE", "1"),
            ("CRONLOCK_REDIS_TIMEOUT", "2"),
            // Reconnects 0 s then 1 s later: a release outlives a restart.
            ("CRONLOCK_RECONNECT_ATTEMPTS", "2"),
            ("CRONLOCK_RECONNECT_BACKOFF", "1"),
            ("CRONLOCK_KILL_AFTER", "1"),
            // Kept per wrapper, shown only if two copies ever run at once.
            ("CRONLOCK_VERBOSE", "yes"),
        ],
    );

    let started = Instant::now();
    let mut actions = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut invoked = 0;
    while invoked < runs {
        // A lock left by a killed wrapper runs out after RELEASE; wait for
        // that, so that every round has a lock to fight over. (A probe run
        // that gets it gives it back at once: GRACE is -1.)
        wait_until(Duration::from_secs(10), "the lock to be free", || {
            run(&env, &["true"]).code() == 0
        });
        let mut wrappers: Vec<Child> = (0..4)
            .map(|i| {
                let log = logs.join(format!("{invoked}-{i}"));
                let wrapper = cronlock(&env)
                    .args(["sh", "-c", &job])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap();
                let _ = std::fs::rename(&log, logs.join(wrapper.id().to_string()));
                wrapper
            })
            .collect();
        invoked += wrappers.len();
        std::thread::sleep(Duration::from_millis(rng.below(40)));
        let victim = rng.below(wrappers.len() as u64) as usize;
        let wrapper_pid = Pid::from_raw(wrappers[victim].id() as i32);
        let action = rng.below(6);
        let at = unix_time();
        match action {
            0 => {
                actions.push(("SIGKILL a wrapper", format!("{at:.6} SIGKILL wrapper {wrapper_pid}")));
                let _ = kill(wrapper_pid, Signal::SIGKILL);
            }
            1 => {
                actions.push(("SIGTERM a wrapper", format!("{at:.6} SIGTERM wrapper {wrapper_pid}")));
                let _ = kill(wrapper_pid, Signal::SIGTERM);
            }
            2 => {
                // The newest job's process group (the watchdog's, which its
                // shell joined), if one runs.
                let group = std::fs::read_to_string(&ran).ok().and_then(|s| {
                    let shell = s.lines().last()?.split(' ').next()?.parse::<i32>().ok()?;
                    process_group(shell)
                });
                if let Some(group) = group {
                    actions.push(("SIGKILL a job", format!("{at:.6} SIGKILL group {group}")));
                    let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
                }
            }
            3 => {
                let pause = Duration::from_millis(rng.below(300));
                actions.push(("restart", format!("{at:.6} restart the server after {pause:?}")));
                store.restart(pause);
                actions.push(("", format!("{:.6} server back", unix_time())));
            }
            4 if store.cut_connections() => {
                actions.push(("cut connections", format!("{at:.6} cut the connections")));
            }
            _ => {}
        }
        for wrapper in &mut wrappers {
            let deadline = Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = wrapper.try_wait().unwrap() {
                    break status;
                }
                assert!(Instant::now() < deadline, "a wrapper hung");
                std::thread::sleep(Duration::from_millis(5));
            };
            let label = match status.code() {
                Some(code) => code.to_string(),
                None => format!(
                    "signal {}",
                    std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                ),
            };
            *statuses.entry(label).or_default() += 1;
        }
    }
    let overlapped = std::fs::read_to_string(&overlaps).unwrap_or_default();
    let jobs = std::fs::read_to_string(&ran).unwrap_or_default().lines().count();
    let mut done = std::collections::BTreeMap::<&str, usize>::new();
    for (kind, _) in actions.iter().filter(|(kind, _)| !kind.is_empty()) {
        *done.entry(kind).or_default() += 1;
    }
    eprintln!(
        "chaos: {invoked} invocations in {:?}, {jobs} jobs ran, exit statuses {statuses:?}, actions {done:?}",
        started.elapsed()
    );
    if !overlapped.is_empty() {
        report_overlaps(&overlapped, &actions, &logs);
    }
    assert!(
        overlapped.is_empty(),
        "two copies ran at once (seed {seed}): {overlapped}"
    );
    assert!(jobs >= runs / 10, "too few jobs ran to prove anything: {jobs}");
    assert!(!statuses.contains_key("99"), "a job saw another one running");
    let allowed = ["0", "143", "137", "200", "201", "signal 9", "signal 15"];
    for status in statuses.keys() {
        assert!(
            allowed.contains(&status.as_str()),
            "unexpected exit status {status} (seed {seed})"
        );
    }
}

fn unix_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The process group of `pid`, from /proc (field 5 of its stat line).
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(2)?.parse().ok()
}

/// Shows, for each overlap, both jobs' wrappers' verbose logs and the
/// chaos actions around them.
fn report_overlaps(overlapped: &str, actions: &[(&str, String)], logs: &std::path::Path) {
    eprintln!("chaos: overlaps (shell, wrapper, time, after: the holder's shell, wrapper, time):\n{overlapped}");
    let lines: Vec<&str> = actions.iter().map(|(_, line)| line.as_str()).collect();
    eprintln!("chaos: actions:\n{}", lines.join("\n"));
    for line in overlapped.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        for wrapper in [fields.get(1), fields.get(5)].into_iter().flatten() {
            let log = std::fs::read_to_string(logs.join(wrapper)).unwrap_or_default();
            eprintln!("chaos: wrapper {wrapper}'s log:\n{log}");
        }
    }
}
