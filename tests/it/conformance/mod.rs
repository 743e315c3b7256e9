//! The store conformance suite: one function per lock behaviour, written
//! once and run against every store with a real server. Each store's test
//! file implements [`Fixture`] and calls `conformance::suite!(ItsFixture)`,
//! which makes one `#[test]` per behaviour.
//!
//! Everything is seen from outside, through the built binary, as a user's
//! crontab sees it: exit codes, and whether the command ran.
#![allow(dead_code)]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::*;

/// A store under test: its server (if it has one) and how to point cronlock at it.
pub trait Fixture {
    /// A fresh store, with a private server where the store needs one.
    fn start() -> Self
    where
        Self: Sized;
    /// Variables that point cronlock at this store.
    fn env(&self) -> Vec<(String, String)>;
    /// The settings this store refuses (e.g. `CRONLOCK_LEASE`), each with
    /// a value that asks for it.
    fn lacks(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    /// Stops the server for good; false for a store without one.
    fn stop(&mut self) -> bool;
    /// `CRONLOCK_FENCING`: `None` where the store refuses it, `Some(true)`
    /// where its tokens survive a lost counter (it takes `required`),
    /// `Some(false)` where they may not (it refuses `required`).
    fn fencing(&self) -> Option<bool> {
        None
    }
    /// Restarts the server with its data kept; false where it cannot.
    fn restart(&mut self) -> bool {
        false
    }
    /// Whether the store keeps the runs of `CRONLOCK_HISTORY` (else it
    /// refuses the setting).
    fn keeps_history(&self) -> bool {
        false
    }
}

/// A fixture that is a private server and nothing more: the struct
/// `$name` around the server fixture `$server`, whose own `start`, `env`
/// and `kill` it uses; `fencing` and `history` as [`Fixture`] says, and
/// `restart` where the server can (its own `restart`, data kept).
#[allow(unused_macros)]
macro_rules! server_fixture {
    ($name:ident($server:ty), fencing: $fencing:expr, history: $history:expr $(, $restart:ident)?) => {
        struct $name($server);

        impl $crate::conformance::Fixture for $name {
            fn start() -> $name {
                $name(<$server>::start())
            }

            fn env(&self) -> Vec<(String, String)> {
                self.0.env()
            }

            fn stop(&mut self) -> bool {
                self.0.kill();
                true
            }

            fn fencing(&self) -> Option<bool> {
                $fencing
            }

            fn keeps_history(&self) -> bool {
                $history
            }

            $(
                fn $restart(&mut self) -> bool {
                    self.0.restart();
                    true
                }
            )?
        }
    };
}
#[allow(unused_imports)]
pub(crate) use server_fixture;

/// Makes one `#[test]` per behaviour for the fixture type `$fixture`.
#[allow(unused_macros)]
macro_rules! suite {
    ($fixture:ty) => {
        $crate::conformance::suite!(@tests $fixture:
            takes_the_lock_and_passes_the_exit_code_through,
            a_held_lock_exits_200_without_running,
            ten_contenders_for_a_stale_lock_have_exactly_one_winner,
            grace_counts_from_the_start,
            hold_counts_from_the_end,
            release_never_clobbers_a_new_holder,
            reset_removes_the_lock_and_exits_200,
            a_lease_is_renewed_while_the_command_runs,
            a_lost_lease_kills_the_command_and_exits_201,
            a_sigkilled_holder_is_freed_within_its_lease,
            a_sigkilled_holders_lock_outlives_its_dying_command,
            timeout_kills_the_command_and_exits_202,
            server_gone_before_the_lock_exits_201,
            server_gone_while_the_command_runs_exits_201_after_it,
            what_the_store_lacks_is_refused_with_one_line,
            a_waiter_outlasts_its_holder,
            a_waiter_gives_up_with_200,
            five_started_with_concurrency_two_run_two,
            a_sigkilled_semaphore_holder_frees_its_slot,
            jitter_spreads_starts_within_its_bound,
            fencing_tokens_grow_over_a_thousand_holders,
            fencing_tokens_grow_across_a_restart,
            history_keeps_the_last_runs_and_the_last_success,
            runs_ending_together_all_reach_the_history,
        );
    };
    (@tests $fixture:ty: $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let mut fixture = <$fixture as $crate::conformance::Fixture>::start();
                $crate::conformance::$name(&mut fixture);
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use suite;

fn lacks(fixture: &dyn Fixture, variable: &str) -> bool {
    fixture.lacks().iter().any(|(name, _)| *name == variable)
}

pub fn takes_the_lock_and_passes_the_exit_code_through(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("take");
    run(&fixture.env(), &marker(&dir)).expect(0);
    assert_eq!(runs(&dir), 1);
    run(&fixture.env(), &["sh", "-c", "exit 7"]).expect(7);
}

pub fn a_held_lock_exits_200_without_running(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("held");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "held")]);
    let gated = Gated::new(&dir, "holder");
    let holder = spawn_gated(&env, &gated, "");
    gated.wait_started();
    run(&env, &marker(&dir)).expect(200);
    assert_eq!(runs(&dir), 0, "the command must not run while the lock is held");
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Within the grace (40 s by default) it is still held.
    run(&env, &marker(&dir)).expect(200);
}

pub fn ten_contenders_for_a_stale_lock_have_exactly_one_winner(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("stale");
    let stale = with(&fixture.env(), &[("CRONLOCK_KEY", "stale"), ("CRONLOCK_RELEASE", "0")]);
    let first = Gated::new(&dir, "first");
    let taken_at = unix_now();
    let holder = spawn_gated(&stale, &first, "");
    first.wait_started();
    // RELEASE=0: its time is up once the clock passes start + 1.
    wait_past(taken_at + 2);
    let env = with(
        &fixture.env(),
        &[("CRONLOCK_KEY", "stale"), ("CRONLOCK_RELEASE", "600")],
    );
    let started = dir.join("started");
    let gate = dir.join("contenders.gate");
    let script = format!(
        "echo x >> {}; while [ ! -e {} ]; do sleep 0.05; done",
        started.display(),
        gate.display()
    );
    let mut contenders: Vec<Child> = (0..10)
        .map(|_| {
            cronlock(&env)
                .args(["sh", "-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let count = || {
        std::fs::read_to_string(&started)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let mut codes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The losers end at once with 200; the winner waits at its gate.
    while codes.len() + count() < 10 || codes.len() < 9 {
        assert!(
            Instant::now() < deadline,
            "contenders did not settle: {codes:?}, {} started",
            count()
        );
        contenders.retain_mut(|child| match child.try_wait().unwrap() {
            Some(status) => {
                codes.push(status.code().unwrap_or(-1));
                false
            }
            None => true,
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(), 1, "exactly one contender runs; exits {codes:?}");
    assert!(codes.iter().all(|&code| code == 200), "{codes:?}");
    std::fs::write(&gate, b"").unwrap();
    for child in contenders {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    first.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

pub fn grace_counts_from_the_start(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("grace");
    // A short command with a long grace: held after it ends.
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "short"), ("CRONLOCK_GRACE", "30")]);
    run(&env, &["true"]).expect(0);
    run(&env, &marker(&dir)).expect(200);
    // A negative grace gives the lock back at once.
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "none"), ("CRONLOCK_GRACE", "-1")]);
    run(&env, &["true"]).expect(0);
    run(&env, &marker(&dir)).expect(0);
    // A command that outlives its grace: free as soon as it ends.
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "long"), ("CRONLOCK_GRACE", "1")]);
    let gated = Gated::new(&dir, "long");
    let started_at = unix_now();
    let child = spawn_gated(&env, &gated, "");
    gated.wait_started();
    wait_past(started_at + 3);
    gated.open();
    assert!(child.wait_with_output().unwrap().status.success());
    run(&env, &marker(&dir)).expect(0);
    assert_eq!(runs(&dir), 2);
}

pub fn hold_counts_from_the_end(fixture: &mut dyn Fixture) {
    if lacks(fixture, "CRONLOCK_HOLD") {
        return;
    }
    let dir = TempDir::new("hold");
    let env = with(
        &fixture.env(),
        &[
            ("CRONLOCK_KEY", "hold"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_HOLD", "30"),
        ],
    );
    run(&env, &["true"]).expect(0);
    run(&env, &marker(&dir)).expect(200);
    assert_eq!(runs(&dir), 0);
    // Without it, the same grace frees the lock at once.
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "nohold"), ("CRONLOCK_GRACE", "-1")]);
    run(&env, &["true"]).expect(0);
    run(&env, &marker(&dir)).expect(0);
}

pub fn release_never_clobbers_a_new_holder(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("clobber");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "job"), ("CRONLOCK_RELEASE", "0")]);
    let first = Gated::new(&dir, "first");
    let taken_at = unix_now();
    let first_run = spawn_gated(&env, &first, "");
    first.wait_started();
    wait_past(taken_at + 2);
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "job"), ("CRONLOCK_RELEASE", "600")]);
    let second = Gated::new(&dir, "second");
    let second_run = spawn_gated(&env, &second, "");
    second.wait_started();
    first.open();
    assert!(first_run.wait_with_output().unwrap().status.success());
    // The first run's release left the second's lock alone.
    run(&env, &marker(&dir)).expect(200);
    assert_eq!(runs(&dir), 0);
    second.open();
    assert!(second_run.wait_with_output().unwrap().status.success());
}

pub fn reset_removes_the_lock_and_exits_200(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("reset");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "reset")]);
    run(&env, &marker(&dir)).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &marker(&dir)).expect(200);
    assert_eq!(runs(&dir), 1, "reset must not run the command");
    run(&env, &marker(&dir)).expect(0);
    assert_eq!(runs(&dir), 2);
    // Resetting a lock nobody holds is fine too.
    run(
        &with(&fixture.env(), &[("CRONLOCK_KEY", "never"), ("CRONLOCK_RESET", "yes")]),
        &["true"],
    )
    .expect(200);
}

pub fn a_lease_is_renewed_while_the_command_runs(fixture: &mut dyn Fixture) {
    if lacks(fixture, "CRONLOCK_LEASE") {
        return;
    }
    let dir = TempDir::new("lease");
    let env = with(
        &fixture.env(),
        &[
            ("CRONLOCK_KEY", "lease"),
            ("CRONLOCK_LEASE", "3"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let gated = Gated::new(&dir, "job");
    let started_at = unix_now();
    let child = spawn_gated(&env, &gated, "");
    gated.wait_started();
    // Well past the first lease: still held, so it was renewed.
    wait_past(started_at + 6);
    run(&env, &marker(&dir)).expect(200);
    gated.open();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    run(&env, &marker(&dir)).expect(0);
}

pub fn a_lost_lease_kills_the_command_and_exits_201(fixture: &mut dyn Fixture) {
    if lacks(fixture, "CRONLOCK_LEASE") {
        return;
    }
    let dir = TempDir::new("lost");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "lost"), ("CRONLOCK_LEASE", "3")]);
    let gated = Gated::new(&dir, "job");
    let pidfile = dir.join("pid");
    let child = cronlock(&env)
        .args([
            "sh",
            "-c",
            &format!("sleep 300 & echo $! > {}; {}", pidfile.display(), gated.script),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    // An operator removes the lock: the next renewal finds it gone.
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(201), "{stderr}");
    assert!(stderr.contains("lease of cronlock.lost lost"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_until(Duration::from_secs(5), "the command's group to die", || {
        !alive(grandchild)
    });
}

pub fn a_sigkilled_holder_is_freed_within_its_lease(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("crash");
    let lease = !lacks(fixture, "CRONLOCK_LEASE");
    let mut env = with(&fixture.env(), &[("CRONLOCK_KEY", "crash")]);
    if lease {
        env = with(&env, &[("CRONLOCK_LEASE", "3")]);
    }
    let gated = Gated::new(&dir, "job");
    let mut child = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let crashed = Instant::now();
    wait_until(Duration::from_secs(15), "another run to take the lock", || {
        run(&env, &marker(&dir)).code() == 0
    });
    // The lease plus 1 s of value plus the second in which it still counts
    // as held; a store without leases frees it at once.
    let bound = if lease {
        Duration::from_secs(6)
    } else {
        Duration::from_secs(1)
    };
    assert!(crashed.elapsed() <= bound, "{:?}", crashed.elapsed());
    assert_eq!(runs(&dir), 1);
}

/// A SIGKILLed cronlock's command dies a moment after it, not with it: the
/// kernel tears a large process down before it closes its files. Stores
/// that free a crashed holder's lock at once (a connection's lock, a flock)
/// must not free it before the command is dead. The job holds an flock of
/// its own from a process with 512 MiB of touched memory; the next run
/// checks that flock as it starts.
pub fn a_sigkilled_holders_lock_outlives_its_dying_command(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("dying");
    let mut env = with(&fixture.env(), &[("CRONLOCK_KEY", "dying")]);
    if !lacks(fixture, "CRONLOCK_LEASE") {
        env = with(&env, &[("CRONLOCK_LEASE", "3")]);
    }
    let check = dir.join("check");
    let ready = dir.join("ready");
    let big = format!(
        "exec 9>>{}; flock -n 9 || exit 99; exec {}",
        check.display(),
        slow_to_die(&ready)
    );
    let mut holder = cronlock(&env).args(["sh", "-c", &big]).spawn().unwrap();
    wait_until(
        Duration::from_secs(20),
        "the holder's command to fill its memory",
        || ready.exists(),
    );
    kill(Pid::from_raw(holder.id() as i32), Signal::SIGKILL).unwrap();
    holder.wait().unwrap();
    let next = format!("exec 9>>{}; flock -n 9 || exit 99", check.display());
    let mut codes = Vec::new();
    wait_until(Duration::from_secs(15), "another run to take the lock", || {
        let code = run(&env, &["sh", "-c", &next]).code();
        codes.push(code);
        code != 200
    });
    assert_eq!(
        codes.last(),
        Some(&0),
        "99: the next run started while the old command lived; codes {codes:?}"
    );
}

pub fn timeout_kills_the_command_and_exits_202(fixture: &mut dyn Fixture) {
    let env = with(&fixture.env(), &[("CRONLOCK_TIMEOUT", "1"), ("CRONLOCK_KEY", "slow")]);
    let result = run(&env, &["sleep", "30"]);
    result.expect(202);
    assert!(
        result
            .stdout()
            .contains("emergency: had to kill 'sleep 30' after 1s timeout"),
        "{}",
        result.stdout()
    );
}

pub fn server_gone_before_the_lock_exits_201(fixture: &mut dyn Fixture) {
    if !fixture.stop() {
        return;
    }
    let dir = TempDir::new("gone");
    let env = with(&fixture.env(), &[("CRONLOCK_RECONNECT_ATTEMPTS", "1")]);
    let result = run(&env, &marker(&dir));
    result.expect(201);
    assert_eq!(runs(&dir), 0);
    assert_eq!(result.stderr().trim_end().lines().count(), 1, "{}", result.stderr());
}

pub fn server_gone_while_the_command_runs_exits_201_after_it(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("gone-later");
    let env = with(
        &fixture.env(),
        &[("CRONLOCK_RECONNECT_ATTEMPTS", "1"), ("CRONLOCK_KEY", "later")],
    );
    let gated = Gated::new(&dir, "job");
    let child = spawn_gated(&env, &gated, "; echo finished; exit 4");
    gated.wait_started();
    if !fixture.stop() {
        gated.open();
        child.wait_with_output().unwrap();
        return;
    }
    gated.open();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "finished\n",
        "the command ran to its end"
    );
    assert_eq!(output.status.code(), Some(201), "{stderr}");
    assert!(stderr.contains("exit status 4"), "{stderr}");
}

pub fn what_the_store_lacks_is_refused_with_one_line(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("lacks");
    for (variable, value) in fixture.lacks() {
        let result = run(&with(&fixture.env(), &[(variable, value)]), &marker(&dir));
        result.expect(201);
        let stderr = result.stderr();
        assert!(
            stderr.contains(variable) && stderr.contains("not supported"),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    assert_eq!(runs(&dir), 0);
}

pub fn a_waiter_outlasts_its_holder(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("wait");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "wait"), ("CRONLOCK_GRACE", "-1")]);
    let gated = Gated::new(&dir, "holder");
    let holder = spawn_gated(&env, &gated, "");
    gated.wait_started();
    // The waiter's lines go to a file, so the test can see it try.
    let log = dir.join("waiter.log");
    let waiter = cronlock(&with(&env, &[("CRONLOCK_WAIT", "30"), ("CRONLOCK_VERBOSE", "yes")]))
        .args(marker(&dir))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(Duration::from_secs(15), "the waiter to find the lock held", || {
        said().contains("is held; trying again")
    });
    gated.open();
    assert!(holder.wait_with_output().unwrap().status.success());
    let status = waiter.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(0), "{}", said());
    assert_eq!(runs(&dir), 1);
}

pub fn a_waiter_gives_up_with_200(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("wait-out");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "busy")]);
    let gated = Gated::new(&dir, "holder");
    let holder = spawn_gated(&env, &gated, "");
    gated.wait_started();
    let started = Instant::now();
    run(&with(&env, &[("CRONLOCK_WAIT", "1")]), &marker(&dir)).expect(200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it gave up before its wait was over"
    );
    assert_eq!(runs(&dir), 0);
    gated.open();
    assert!(holder.wait_with_output().unwrap().status.success());
}

pub fn five_started_with_concurrency_two_run_two(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("semaphore");
    let env = with(
        &fixture.env(),
        &[("CRONLOCK_KEY", "sem"), ("CRONLOCK_CONCURRENCY", "2")],
    );
    let started = dir.join("started");
    let gate = dir.join("gate");
    let script = format!(
        "echo x >> {}; while [ ! -e {} ]; do sleep 0.05; done",
        started.display(),
        gate.display()
    );
    let mut children: Vec<Child> = (0..5)
        .map(|_| {
            cronlock(&env)
                .args(["sh", "-c", &script])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let count = || {
        std::fs::read_to_string(&started)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let mut codes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while codes.len() < 3 || count() < 2 {
        assert!(
            Instant::now() < deadline,
            "did not settle: {codes:?}, {} started",
            count()
        );
        children.retain_mut(|child| match child.try_wait().unwrap() {
            Some(status) => {
                let mut said = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut said);
                codes.push((status.code().unwrap_or(-1), said));
                false
            }
            None => true,
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    // The gate opens before any assertion, so no copy is left behind.
    let started_copies = count();
    std::fs::write(&gate, b"").unwrap();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    assert_eq!(started_copies, 2, "exactly two copies run; exits {codes:?}");
    assert!(codes.iter().all(|(code, _)| *code == 200), "{codes:?}");
    for output in outputs {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    // A third copy is held while both slots keep their grace.
    run(&env, &["true"]).expect(200);
}

pub fn a_sigkilled_semaphore_holder_frees_its_slot(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("sem-crash");
    let lease = !lacks(fixture, "CRONLOCK_LEASE");
    let mut env = with(
        &fixture.env(),
        &[("CRONLOCK_KEY", "semcrash"), ("CRONLOCK_CONCURRENCY", "2")],
    );
    if lease {
        env = with(&env, &[("CRONLOCK_LEASE", "3")]);
    }
    let first = Gated::new(&dir, "first");
    let second = Gated::new(&dir, "second");
    let keeper = spawn_gated(&env, &first, "");
    first.wait_started();
    let mut victim = cronlock(&env).args(["sh", "-c", &second.script]).spawn().unwrap();
    second.wait_started();
    run(&env, &marker(&dir)).expect(200);
    kill(Pid::from_raw(victim.id() as i32), Signal::SIGKILL).unwrap();
    victim.wait().unwrap();
    let crashed = Instant::now();
    wait_until(Duration::from_secs(15), "another run to take the freed slot", || {
        run(&env, &marker(&dir)).code() == 0
    });
    let bound = if lease {
        Duration::from_secs(6)
    } else {
        Duration::from_secs(1)
    };
    assert!(crashed.elapsed() <= bound, "{:?}", crashed.elapsed());
    first.open();
    assert!(keeper.wait_with_output().unwrap().status.success());
}

pub fn jitter_spreads_starts_within_its_bound(fixture: &mut dyn Fixture) {
    let mut pauses = Vec::new();
    for n in 0..8 {
        let key = format!("jitter{n}");
        let env = with(
            &fixture.env(),
            &[
                ("CRONLOCK_KEY", &key),
                ("CRONLOCK_JITTER", "1"),
                ("CRONLOCK_VERBOSE", "yes"),
            ],
        );
        let result = run(&env, &["true"]);
        result.expect(0);
        let stderr = result.stderr();
        let millis: u64 = stderr
            .split("jitter: sleeping ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no jitter line: {stderr}"));
        pauses.push(millis);
    }
    assert!(pauses.iter().all(|&ms| ms <= 1000), "{pauses:?}");
    pauses.dedup();
    assert!(pauses.len() > 1, "every run slept the same: {pauses:?}");
}

/// How many holders the fencing series has, and how many runs contend.
const FENCED_HOLDERS: usize = 1000;
const FENCING_CONTENDERS: usize = 2;

/// `env` for the fencing tests: the lock `fenced`, dropped at each end.
fn fenced(fixture: &dyn Fixture) -> Vec<(String, String)> {
    with(
        &fixture.env(),
        &[
            ("CRONLOCK_KEY", "fenced"),
            ("CRONLOCK_FENCING", "on"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    )
}

/// Runs `env`'s lock until `holders` runs have held it, from `contenders`
/// threads at once; returns the tokens in the order the holders ran.
fn fenced_series(env: &[(String, String)], dir: &TempDir, holders: usize, contenders: usize) -> Vec<u64> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let log = dir.join("tokens");
    // Appended under the lock: holders never overlap (no takeover of a
    // running holder here), so the file's order is the holders' order.
    let script = format!("printf '%s\\n' \"$CRONLOCK_FENCING_TOKEN\" >> {}", log.display());
    let held = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..contenders {
            scope.spawn(|| {
                while held.load(Ordering::SeqCst) < holders {
                    let result = run(env, &["sh", "-c", &script]);
                    match result.code() {
                        0 => {
                            held.fetch_add(1, Ordering::SeqCst);
                        }
                        200 => {}
                        other => panic!("exit {other}: {}", result.stderr()),
                    }
                }
            });
        }
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tokens: Vec<u64> = text
        .lines()
        .map(|line| line.parse().unwrap_or_else(|_| panic!("not a token: {line:?}")))
        .collect();
    assert_eq!(tokens.len(), held.into_inner(), "one token per holder");
    tokens
}

#[track_caller]
fn assert_strictly_increasing(tokens: &[u64]) {
    if let Some(at) = tokens.windows(2).position(|pair| pair[0] >= pair[1]) {
        panic!(
            "holder {} got {} after {}: {:?}",
            at + 1,
            tokens[at + 1],
            tokens[at],
            &tokens[at.saturating_sub(3)..(at + 4).min(tokens.len())]
        );
    }
}

pub fn fencing_tokens_grow_over_a_thousand_holders(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("fenced");
    let env = fenced(fixture);
    let Some(durable) = fixture.fencing() else {
        let refused = run(&env, &marker(&dir));
        refused.expect(201);
        assert!(refused.stderr().contains("CRONLOCK_FENCING"), "{}", refused.stderr());
        assert_eq!(refused.stderr().trim_end().lines().count(), 1, "{}", refused.stderr());
        assert_eq!(runs(&dir), 0);
        return;
    };
    let required = run(&with(&env, &[("CRONLOCK_FENCING", "required")]), &["true"]);
    if durable {
        required.expect(0);
    } else {
        required.expect(201);
        assert!(required.stderr().contains("required"), "{}", required.stderr());
        assert_eq!(required.stderr().trim_end().lines().count(), 1, "{}", required.stderr());
    }
    let tokens = fenced_series(&env, &dir, FENCED_HOLDERS, FENCING_CONTENDERS);
    assert!(tokens.len() >= FENCED_HOLDERS);
    assert_strictly_increasing(&tokens);

    // The job checks its token with cronlockctl, which reads the key and
    // the token from the job's environment: it is the newest.
    let checked = dir.join("checked");
    let check = format!(
        "{} fence; echo \"$? $CRONLOCK_LOCK_KEY $CRONLOCK_FENCING_TOKEN\" > {}",
        ctl_bin().display(),
        checked.display()
    );
    run(&env, &["sh", "-c", &check]).expect(0);
    let line = std::fs::read_to_string(&checked).unwrap();
    let [code, key, token] = line.split_whitespace().collect::<Vec<_>>()[..] else {
        panic!("{line:?}");
    };
    assert_eq!(code, "0", "the holder's own token is the newest: {line}");
    let token: u64 = token.parse().unwrap();
    assert!(token > *tokens.last().unwrap(), "{line}");
    // Afterwards an older holder's token is refused, the newest is not.
    ctl(&env, &["fence", key, &tokens.last().unwrap().to_string()]).expect(1);
    ctl(&env, &["fence", key, &token.to_string()]).expect(0);
}

pub fn fencing_tokens_grow_across_a_restart(fixture: &mut dyn Fixture) {
    if fixture.fencing() != Some(true) {
        return;
    }
    let dir = TempDir::new("fenced-restart");
    let env = fenced(fixture);
    let mut tokens = fenced_series(&env, &dir, 3, 1);
    if !fixture.restart() {
        return;
    }
    let after = TempDir::new("fenced-restarted");
    tokens.extend(fenced_series(&env, &after, 3, 1));
    assert_strictly_increasing(&tokens);
}

pub fn history_keeps_the_last_runs_and_the_last_success(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("history");
    let env = with(
        &fixture.env(),
        &[
            ("CRONLOCK_KEY", "hist"),
            ("CRONLOCK_HISTORY", "3"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    if !fixture.keeps_history() {
        let refused = run(&env, &marker(&dir));
        refused.expect(201);
        assert!(
            refused.stderr().contains("CRONLOCK_HISTORY") && refused.stderr().contains("not supported"),
            "{}",
            refused.stderr()
        );
        assert_eq!(refused.stderr().trim_end().lines().count(), 1, "{}", refused.stderr());
        assert_eq!(runs(&dir), 0);
        ctl(&env, &["history", "--key", "hist"]).expect(2);
        return;
    }
    ctl(&env, &["history", "--key", "hist"]).expect(1);
    ctl(&env, &["check", "--key", "hist", "--max-age", "1h"]).expect(1);
    let fencing = fixture.fencing().is_some();
    let first = if fencing {
        with(&env, &[("CRONLOCK_FENCING", "on")])
    } else {
        env.clone()
    };
    run(&first, &["true"]).expect(0);
    for _ in 0..3 {
        run(&env, &["sh", "-c", "exit 3"]).expect(3);
    }
    // Three runs kept, newest first; the success is out of the list but
    // still the last success.
    let listed = ctl(&env, &["--json", "history", "--key", "hist"]);
    listed.expect(0);
    let lines = listed.json_lines();
    assert_eq!(lines.len(), 3, "{}", listed.stdout());
    for line in &lines {
        assert_eq!(line["exit"], 3, "{line}");
        assert!(
            line["ended"].as_i64().unwrap() >= line["start"].as_i64().unwrap(),
            "{line}"
        );
        assert_eq!(line["command"], "sh -c exit 3");
        assert!(line["node"].is_string() && line["pid"].is_u64(), "{line}");
    }
    assert!(
        lines[0]["pid"] != lines[1]["pid"] && lines[1]["pid"] != lines[2]["pid"],
        "{}",
        listed.stdout()
    );
    let checked = ctl(&env, &["--json", "check", "--key", "hist", "--max-age", "1h"]);
    checked.expect(0);
    let last = &checked.json_lines()[0]["last_success"];
    assert_eq!(last["exit"], 0, "{}", checked.stdout());
    if fencing {
        assert!(last["token"].as_u64().is_some(), "{}", checked.stdout());
    }
    // Once the success is older than the age asked, check alerts.
    let ended = last["ended"].as_i64().unwrap();
    wait_past(ended + 1);
    let stale = ctl(&env, &["check", "--key", "hist", "--max-age", "1s"]);
    stale.expect(1);
    assert!(
        stale.stdout().contains("no successful run within 1 s"),
        "{}",
        stale.stdout()
    );
    // Another job has none.
    ctl(&env, &["check", "--key", "never", "--max-age", "1d"]).expect(1);
}

pub fn runs_ending_together_all_reach_the_history(fixture: &mut dyn Fixture) {
    if !fixture.keeps_history() {
        return;
    }
    let env = with(
        &fixture.env(),
        &[("CRONLOCK_KEY", "together"), ("CRONLOCK_GRACE", "-1")],
    );
    // Six copies (CRONLOCK_CONCURRENCY=6) whose commands end at one gate:
    // no record may be lost to another's write, and the cap holds after.
    runs_ending_at_once(&env, 6, 100);
    let listed = ctl(&env, &["--json", "history", "--key", "together"]);
    listed.expect(0);
    let mut pids: Vec<u64> = listed
        .json_lines()
        .iter()
        .map(|run| run["pid"].as_u64().unwrap())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 6, "{}", listed.stdout());
    runs_ending_at_once(&env, 6, 4);
    // Runs ending together may leave a record or two over the cap for a
    // moment (PostgreSQL trims from its snapshot); the next run cuts it.
    run(&with(&env, &[("CRONLOCK_HISTORY", "4")]), &["true"]).expect(0);
    let listed = ctl(&env, &["--json", "history", "--key", "together"]);
    assert_eq!(listed.json_lines().len(), 4, "{}", listed.stdout());
}
