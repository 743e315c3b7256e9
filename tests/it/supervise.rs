//! Running the command: exit statuses, the timeout, and signals.

use std::time::Duration;

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn timeout_kills_the_whole_group_and_exits_202() {
    let redis = RedisServer::start();
    let dir = TempDir::new("timeout");
    let pidfile = dir.join("grandchild");
    let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let result = run(
        &with(&redis.env(), &[("CRONLOCK_TIMEOUT", "1")]),
        &["sh", "-c", &script],
    );
    result.expect(202);
    assert_eq!(
        result.stdout(),
        format!("emergency: had to kill 'sh -c {script}' after 1s timeout\n")
    );
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_until(Duration::from_secs(5), "the grandchild to be gone", || !alive(pid));
    // The lock is released with its grace, as after any run.
    let key = key_for("cronlock.", &["sh", "-c", &script]);
    assert_ne!(redis.query(&["TTL", &key]), "-1");
}

#[test]
fn missing_and_unexecutable_commands_exit_127_and_126() {
    let redis = RedisServer::start();
    let missing = run(&redis.env(), &["definitely-not-a-command-xyz"]);
    missing.expect(127);
    assert!(missing.stderr().contains("command not found"), "{}", missing.stderr());
    let dir = TempDir::new("noexec");
    let file = dir.join("script");
    std::fs::write(&file, b"#!/bin/sh\necho hi\n").unwrap();
    run(&redis.env(), &[file.to_str().unwrap()]).expect(126);
}

#[test]
fn command_killed_by_a_signal_exits_128_plus_n() {
    let redis = RedisServer::start();
    run(&redis.env(), &["sh", "-c", "kill -TERM $$"]).expect(143);
}

#[test]
fn sigterm_to_cronlock_reaches_the_command_and_the_lock_keeps_its_grace() {
    let redis = RedisServer::start();
    let dir = TempDir::new("sigterm");
    let flag = dir.join("started");
    let got = dir.join("got-term");
    let script = format!(
        "trap 'touch {}; exit 3' TERM; touch {}; while :; do sleep 0.05; done",
        got.display(),
        flag.display()
    );
    let env = with(&redis.env(), &[("CRONLOCK_KEY", "term")]);
    let child = cronlock(&env)
        .args(["sh", "-c", &script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the command to start", || flag.exists());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "the command's own code when it exits on its own"
    );
    assert!(got.exists(), "the command saw SIGTERM");
    let ttl: i64 = redis.query(&["TTL", "cronlock.term"]).parse().unwrap();
    assert!((1..=41).contains(&ttl), "released with grace, ttl {ttl}");
}

#[test]
fn no_command_is_a_usage_error() {
    let result = run(&[], &[] as &[&str]);
    result.expect(201);
    assert!(result.stderr().starts_with("cronlock: usage:"), "{}", result.stderr());
}

#[test]
fn the_command_starts_with_no_signal_blocked_or_ignored() {
    let redis = RedisServer::start();
    let result = run(&redis.env(), &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    result.expect(0);
    let out = result.stdout();
    let mask = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{out}");
    // Signals 1-31 (SIGPIPE included) at their defaults. glibc's posix_spawn,
    // which the test harness uses to start cronlock, leaves its two internal
    // real-time signals ignored; that passes through exec and is not ours.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{out}");
}

/// A job whose shell takes an flock and then waits for a child with 512 MiB
/// of touched memory, which takes a while to die after a signal and holds
/// the flock until it has. (Its output goes elsewhere, or the test would
/// wait for it to close.)
struct DyingSlowly {
    dir: TempDir,
    script: String,
}

impl DyingSlowly {
    fn new(name: &str) -> DyingSlowly {
        let dir = TempDir::new(name);
        let script = format!(
            "exec 9>>{}; flock -n 9 || exit 99; {}; exit 0",
            dir.join("check").display(),
            slow_to_die(&dir.join("ready"))
        );
        DyingSlowly { dir, script }
    }

    fn ready(&self) -> bool {
        self.dir.join("ready").exists()
    }

    /// Checked the moment cronlock has exited: nothing of the job may live on.
    fn assert_nothing_left(&self) {
        let free = std::process::Command::new("flock")
            .args(["-n", &self.dir.join("check").display().to_string(), "true"])
            .status()
            .unwrap();
        assert!(
            free.success(),
            "a process of the command still held its flock after cronlock exited"
        );
    }
}

#[test]
fn after_a_timeout_nothing_of_the_command_outlives_cronlock() {
    let redis = RedisServer::start();
    let job = DyingSlowly::new("timeout-dying");
    let result = run(
        &with(&redis.env(), &[("CRONLOCK_TIMEOUT", "3")]),
        &["sh", "-c", &job.script],
    );
    assert!(job.ready(), "the child never got ready: {}", result.stderr());
    result.expect(202);
    job.assert_nothing_left();
}

#[test]
fn after_a_passed_on_sigterm_nothing_of_the_command_outlives_cronlock() {
    // The shell dies of the SIGTERM at once, its child a while later.
    let redis = RedisServer::start();
    let job = DyingSlowly::new("sigterm-dying");
    let mut child = cronlock(&redis.env()).args(["sh", "-c", &job.script]).spawn().unwrap();
    wait_until(Duration::from_secs(20), "the child to fill its memory", || job.ready());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
    job.assert_nothing_left();
}

#[test]
fn the_command_shares_a_process_group_with_the_watchdog_only() {
    let redis = RedisServer::start();
    let script = "g=$(ps -o pgid= -p $$ | tr -d ' '); echo $g; ps -e -o pgid=,comm= | awk -v g=$g '$1 == g {print $2}'";
    let result = run(&redis.env(), &["sh", "-c", script]);
    result.expect(0);
    let out = result.stdout();
    let mut lines = out.lines();
    let group: i32 = lines.next().unwrap().trim().parse().unwrap();
    assert_ne!(group, std::process::id() as i32);
    let members: Vec<&str> = lines.collect();
    assert!(members.contains(&"cronlock-watch"), "{out}");
    assert!(!members.contains(&"cronlock"), "cronlock itself stays outside: {out}");
}

#[test]
fn closed_standard_descriptors_are_opened_on_dev_null() {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    // cron can start a job with stdout closed. The Redis socket must not
    // take descriptor 1 then: the command would write into it.
    let redis = RedisServer::start();
    let dir = TempDir::new("closed-fds");
    let seen = dir.join("seen");
    // $PPID is cronlock: its descriptors, which the command inherits.
    let script = format!("readlink /proc/$PPID/fd/1 /proc/$PPID/fd/2 > {}", seen.display());
    let mut command = cronlock(&with(&redis.env(), &[("CRONLOCK_VERBOSE", "yes")]));
    command.args(["sh", "-c", &script]).stdin(Stdio::null());
    // SAFETY: close is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::libc::close(1);
            nix::libc::close(2);
            Ok(())
        });
    }
    let status = command.status().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "/dev/null\n/dev/null\n");
}
