//! ZooKeeper as an ensemble of three servers, one of which dies: the
//! holder keeps its lock through a fail-over (or, when no server confirms
//! its session in time, kills its command before the session can expire),
//! contenders stay out, and the chaos loop runs across member kills.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::zookeeper::Ensemble;
use crate::util::*;

/// The session timeout cronlock asks for, which the test servers grant.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

/// One job whose copies notice each other: each takes an flock of its own
/// as it starts (held by the shell, so until its whole group is dead), and
/// one that finds it taken notes an overlap. `tail` follows (the gate).
fn job(dir: &TempDir, tail: &str) -> String {
    format!(
        "exec 9>>{check}; flock -n 9 || {{ echo overlap >> {overlaps}; exit 99; }}; echo x >> {ran}{tail}",
        check = dir.join("check").display(),
        overlaps = dir.join("overlaps").display(),
        ran = dir.join("ran").display(),
    )
}

fn overlaps(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("overlaps")).unwrap_or_default()
}

/// The job run once under `env`, not gated.
fn contend(env: &[(String, String)], dir: &TempDir) -> Run {
    run(env, &["sh", "-c", &job(dir, "")])
}

/// Runs contenders one after another for `window`, while `holder` runs (or
/// until it has ended), and returns their exit codes' counts.
fn contend_for(
    window: Duration,
    env: &[(String, String)],
    dir: &TempDir,
    holder: &mut Child,
) -> std::collections::BTreeMap<i32, usize> {
    let mut codes = std::collections::BTreeMap::new();
    let until = Instant::now() + window;
    while Instant::now() < until {
        let result = contend(env, dir);
        *codes.entry(result.code()).or_insert(0) += 1;
        assert!(
            matches!(result.code(), 0 | 200),
            "a contender exited {}: {}",
            result.code(),
            result.stderr()
        );
        if result.code() == 0 {
            assert!(
                holder.try_wait().unwrap().is_some(),
                "a contender ran the job while the holder still ran"
            );
        }
    }
    codes
}

/// The job under `env`, held at `gated`'s gate; returns once it runs.
fn spawn_holder(env: &[(String, String)], dir: &TempDir, gated: &Gated) -> Child {
    let holder = cronlock(env)
        .args(["sh", "-c", &job(dir, &format!("; {}", gated.script))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    holder
}

/// Waits (with a deadline) for the holder to end, and what it printed.
fn finish(mut holder: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(15);
    while holder.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the holder did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    holder.wait_with_output().unwrap()
}

#[test]
fn killing_the_leader_under_a_holder_never_lets_a_second_copy_start() {
    let mut ensemble = Ensemble::start();
    let dir = TempDir::new("leader");
    let env = with(
        &ensemble.env(),
        &[
            ("CRONLOCK_KEY", "job"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_VERBOSE", "yes"),
        ],
    );
    let gated = Gated::new(&dir, "holder");
    let mut holder = spawn_holder(&env, &dir, &gated);
    let leader = ensemble.leader().expect("a leader");
    let killed = Instant::now();
    ensemble.kill(leader);
    // Past the time by which a session nobody could confirm would have
    // expired: either the holder still holds, or it has stopped its command
    // before any contender got in.
    let codes = contend_for(SESSION_TIMEOUT + Duration::from_secs(2), &env, &dir, &mut holder);
    let new_leader = ensemble.leader();
    eprintln!(
        "leader {leader} killed; {:?} later contenders exited {codes:?}, the new leader is {new_leader:?}",
        killed.elapsed()
    );
    gated.open();
    let output = finish(holder);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => eprintln!("the holder kept its lock"),
        Some(201) => {
            eprintln!("the holder lost its lock: {stderr}");
            assert!(stderr.contains("hold of cronlock.job lost"), "{stderr}");
            assert!(stderr.contains("process group was killed"), "{stderr}");
        }
        other => panic!("the holder exited {other:?}: {stderr}"),
    }
    assert_eq!(overlaps(&dir), "", "two copies ran at once");
    // Once the holder is gone the job runs again.
    let before = std::fs::read_to_string(dir.join("ran")).unwrap().lines().count();
    contend(&env, &dir).expect(0);
    let after = std::fs::read_to_string(dir.join("ran")).unwrap().lines().count();
    assert_eq!(after, before + 1);
}

#[test]
fn killing_the_follower_a_holder_is_connected_to_changes_nothing() {
    let mut ensemble = Ensemble::start();
    let dir = TempDir::new("follower");
    let followers = ensemble.followers();
    assert_eq!(followers.len(), 2);
    let env = with(
        &ensemble.env(),
        &[
            ("CRONLOCK_KEY", "job"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_VERBOSE", "yes"),
        ],
    );
    // The holder knows only the followers: it is connected to one of them,
    // and fails over to the other.
    let holder_env = with(&env, &[("CRONLOCK_URL", &ensemble.url_of(&followers))]);
    let gated = Gated::new(&dir, "holder");
    let mut holder = spawn_holder(&holder_env, &dir, &gated);
    let serving = ensemble.serving_sessions();
    assert_eq!(serving.len(), 1, "{serving:?}");
    assert!(followers.contains(&serving[0]), "{serving:?} {followers:?}");
    ensemble.kill(serving[0]);
    // Longer than the session goes unconfirmed before a holder gives up,
    // and than the session's timeout: the holder runs on, nobody else.
    let codes = contend_for(SESSION_TIMEOUT + Duration::from_secs(1), &env, &dir, &mut holder);
    assert_eq!(codes.keys().collect::<Vec<_>>(), [&200], "{codes:?}");
    assert!(holder.try_wait().unwrap().is_none(), "the holder ended");
    gated.open();
    let output = finish(holder);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(overlaps(&dir), "");
    contend(&env, &dir).expect(0);
    assert_eq!(std::fs::read_to_string(dir.join("ran")).unwrap().lines().count(), 2);
}

#[test]
fn freezing_the_whole_ensemble_kills_the_holders_command_before_its_session_can_expire() {
    let ensemble = Ensemble::start();
    let dir = TempDir::new("frozen");
    let env = with(&ensemble.env(), &[("CRONLOCK_KEY", "frozen")]);
    let holder = DoomedHolder::start(&env, &dir);
    // Frozen, no member answers and every connection stays open, as when
    // the network between the holder and the ensemble fails.
    let frozen = Instant::now();
    for member in 0..3 {
        ensemble.pause(member);
    }
    holder.expect_hold_lost("cronlock.frozen", "no ZooKeeper server has confirmed the session");
    let killed_after = frozen.elapsed();
    eprintln!("the holder's command was killed {killed_after:?} after the ensemble froze");
    assert!(
        killed_after < SESSION_TIMEOUT,
        "the holder ran on for {killed_after:?}, past its session's timeout"
    );
    wait_until(Duration::from_secs(10), "the session timeout to pass", || {
        frozen.elapsed() > SESSION_TIMEOUT + Duration::from_secs(1)
    });
    for member in 0..3 {
        ensemble.resume(member);
    }
    wait_until(Duration::from_secs(20), "another run to take the job", || {
        run(&env, &marker(&dir)).code() == 0
    });
    assert_eq!(runs(&dir), 1);
}

/// The ensemble for the chaos loop: a restart kills one member (the leader
/// or one picked by the loop's random pause), waits, and starts it again.
struct Members {
    ensemble: Ensemble,
}

impl crate::chaos::ChaosStore for Members {
    fn env(&self) -> Vec<(String, String)> {
        self.ensemble.env()
    }

    fn restart(&mut self, pause: Duration) {
        let millis = pause.as_millis() as usize;
        let victim = match self.ensemble.leader() {
            Some(leader) if millis.is_multiple_of(2) => leader,
            _ => millis / 2 % self.ensemble.members.len(),
        };
        self.ensemble.kill(victim);
        std::thread::sleep(pause);
        self.ensemble.restart(victim);
    }
}

#[test]
fn killing_wrappers_commands_and_ensemble_members_never_lets_two_copies_run() {
    crate::chaos::chaos(
        &mut Members {
            ensemble: Ensemble::start(),
        },
        120,
    );
}
