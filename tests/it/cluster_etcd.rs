//! The etcd store against a three-member cluster in which a member dies or
//! stops answering: the holder keeps its lock (or loses it with 201 and its
//! command killed) across a leader's death, contenders decide with 200 while
//! the cluster elects a new leader, a dead or stopped member listed first
//! costs little time, and the chaos loop kills members at random.

use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::etcd_cluster::EtcdCluster;
use crate::util::*;

/// How long a contender may take to decide while a member is dead or
/// stopped: one try at a stopped member (cut after 2 s) and the requests
/// of the lock, on a busy machine. Far below `CRONLOCK_REDIS_TIMEOUT`'s
/// default 30 s, which is what a request to a stopped member would cost
/// without a limit per member.
const DECIDES_WITHIN: Duration = Duration::from_secs(6);

/// Lease mode's N for the holders here: renewed every second, and lost 4 s
/// after the last confirmed renewal.
const LEASE: u64 = 4;

/// A job that takes an flock of its own as it starts: finding it taken
/// means that two copies ran at once (noted in `overlaps`). Runs are noted
/// in `ran`, counted by [`runs`].
fn contender_job(dir: &TempDir) -> String {
    format!(
        "exec 9>>{check}; flock -n 9 || {{ echo x >> {overlaps}; exit 99; }}; echo x >> {ran}",
        check = dir.join("check").display(),
        overlaps = dir.join("overlaps").display(),
        ran = dir.join("ran").display()
    )
}

/// A holder whose gated command holds the job's flock, as does its `sleep
/// 300` grandchild: the flock is free only once the whole group is dead.
struct Holder {
    child: Child,
    gated: Gated,
    pidfile: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Holder {
    fn start(env: &[(String, String)], dir: &TempDir) -> Holder {
        let gated = Gated::new(dir, "holder");
        let pidfile = dir.join("holder.pid");
        let log = dir.join("holder.stderr");
        let script = format!(
            "exec 9>>{check}; flock -n 9 || exit 99; sleep 300 & echo $! > {pid}; {gate}",
            check = dir.join("check").display(),
            pid = pidfile.display(),
            gate = gated.script
        );
        let child = cronlock(env)
            .args(["sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        gated.wait_started();
        Holder {
            child,
            gated,
            pidfile,
            log,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// None while it runs; once it has exited, it must have lost its hold
    /// with 201, one line, and its command's group dead.
    fn lost(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().unwrap()?;
        let stderr = self.stderr();
        assert_eq!(status.code(), Some(201), "the holder ended early: {stderr}");
        assert!(stderr.contains("lost"), "{stderr}");
        let grandchild: i32 = std::fs::read_to_string(&self.pidfile).unwrap().trim().parse().unwrap();
        wait_until(Duration::from_secs(5), "the lost holder's group to die", || {
            !alive(grandchild)
        });
        Some(status)
    }

    /// Opens the gate: the command ends and cronlock exits 0. The `sleep`
    /// it left behind is killed, so that its flock goes too.
    fn finish(mut self) {
        self.gated.open();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}", self.stderr());
        self.kill_grandchild();
    }

    fn kill_grandchild(&self) {
        let pid = std::fs::read_to_string(&self.pidfile).ok();
        if let Some(pid) = pid.and_then(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            wait_until(Duration::from_secs(5), "the holder's sleep to die", || !alive(pid));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Gone already when the test went well.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_grandchild();
    }
}

/// Starts a contender running [`contender_job`].
fn spawn_contender(env: &[(String, String)], dir: &TempDir) -> (Child, Instant) {
    let child = cronlock(env)
        .args(["sh", "-c", &contender_job(dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, Instant::now())
}

/// Waits for a contender: its exit code, how long it took, its stderr.
fn finish_contender((child, started): (Child, Instant)) -> (i32, Duration, String) {
    let output = child.wait_with_output().unwrap();
    let took = started.elapsed();
    (
        output.status.code().unwrap_or(-1),
        took,
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// A contender that finished while `holder` ran must have exited 200
/// without running the job, within `within`. Once the holder has lost its
/// hold (201, group dead), a contender may run the job.
fn expect_held(holder: &mut Holder, result: (i32, Duration, String), within: Duration) -> bool {
    let (code, took, stderr) = result;
    let holder_lost = holder.lost().is_some();
    if code == 0 && holder_lost {
        eprintln!("the holder lost its hold; a contender ran the job after it");
        return true;
    }
    assert_eq!(code, 200, "a contender while the lock was held: {stderr}");
    assert!(took < within, "a contender took {took:?}: {stderr}");
    holder_lost
}

fn overlaps(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("overlaps")).unwrap_or_default()
}

/// Contenders one after another until `until`, each checked by [`expect_held`];
/// the slowest's time.
fn contend_until(env: &[(String, String)], dir: &TempDir, holder: &mut Holder, until: Instant) -> (Duration, bool) {
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let result = finish_contender(spawn_contender(env, dir));
        slowest = slowest.max(result.1);
        if expect_held(holder, result, DECIDES_WITHIN) {
            return (slowest, true);
        }
    }
    (slowest, false)
}

#[test]
fn killing_the_leader_while_a_holder_runs_lets_nobody_else_run_the_job() {
    let mut cluster = EtcdCluster::start();
    let dir = TempDir::new("etcd-leader-killed");
    let lease = LEASE.to_string();
    let env = with(
        &cluster.env(),
        &[
            ("CRONLOCK_KEY", "leader-killed"),
            ("CRONLOCK_LEASE", &lease),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let mut holder = Holder::start(&env, &dir);
    let leader = cluster.leader();
    let killed_at = Instant::now();
    cluster.kill(leader);
    // Started at once, so that their requests land during the election.
    let during: Vec<_> = (0..3).map(|_| spawn_contender(&env, &dir)).collect();
    let mut lost = false;
    let mut slowest = Duration::ZERO;
    for contender in during {
        let result = finish_contender(contender);
        slowest = slowest.max(result.1);
        lost |= expect_held(&mut holder, result, DECIDES_WITHIN);
    }
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    eprintln!(
        "new leader agreed {:?} after the kill; contenders during the election took up to {slowest:?}",
        killed_at.elapsed()
    );
    // Past the holder's first lease deadline after the kill: it has
    // renewed through the new leader, or lost its hold.
    if !lost {
        let (slowest, lost_now) = contend_until(&env, &dir, &mut holder, killed_at + Duration::from_secs(LEASE + 1));
        eprintln!("contenders after the election took up to {slowest:?}");
        lost = lost_now;
    }
    assert_eq!(overlaps(&dir), "", "two copies ran at once");
    if lost {
        return;
    }
    assert_eq!(runs(&dir), 0, "a contender ran the job while the holder held it");
    eprintln!("holder's stderr: {}", holder.stderr());
    holder.finish();
    // Released (GRACE=-1): the next contender runs the job, once.
    let (code, _, stderr) = finish_contender(spawn_contender(&env, &dir));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(runs(&dir), 1);
    assert_eq!(overlaps(&dir), "", "two copies ran at once");
}

#[test]
fn killing_a_follower_listed_first_changes_nothing() {
    let mut cluster = EtcdCluster::start();
    let dir = TempDir::new("etcd-follower-killed");
    let follower = cluster.follower();
    let lease = LEASE.to_string();
    let env = [
        ("CRONLOCK_URL".to_string(), cluster.url_from(follower)),
        ("CRONLOCK_KEY".to_string(), "follower-killed".to_string()),
        ("CRONLOCK_LEASE".to_string(), lease),
        ("CRONLOCK_GRACE".to_string(), "-1".to_string()),
    ];
    let mut holder = Holder::start(&env, &dir);
    let killed_at = Instant::now();
    cluster.kill(follower);
    // A refused connection costs nothing: each contender decides at once.
    let (slowest, lost) = contend_until(&env, &dir, &mut holder, killed_at + Duration::from_secs(LEASE + 1));
    eprintln!("contenders with the dead member first took up to {slowest:?}");
    assert!(!lost, "the holder lost its hold to a follower's death");
    assert_eq!(runs(&dir), 0);
    holder.finish();
    let (code, _, stderr) = finish_contender(spawn_contender(&env, &dir));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(runs(&dir), 1);
    assert_eq!(overlaps(&dir), "", "two copies ran at once");
}

/// One run of `args` under `env`: its exit code must be `code`, and it
/// must take less than [`DECIDES_WITHIN`]; returns how long it took.
#[track_caller]
fn timed(env: &[(String, String)], args: &[&str], code: i32) -> Duration {
    let started = Instant::now();
    let result = run(env, args);
    let took = started.elapsed();
    result.expect(code);
    assert!(took < DECIDES_WITHIN, "took {took:?}: {}", result.stderr());
    took
}

#[test]
fn a_stopped_member_listed_first_delays_a_run_by_seconds_not_the_timeout() {
    let mut cluster = EtcdCluster::start();
    let held = with(
        &cluster.env(),
        &[("CRONLOCK_KEY", "stopped"), ("CRONLOCK_GRACE", "120")],
    );
    // Held for its grace by a finished run.
    run(&held, &["true"]).expect(0);

    // A follower stopped: its port accepts, and nothing ever answers.
    let follower = cluster.follower();
    cluster.stop(follower);
    let first = [("CRONLOCK_URL".to_string(), cluster.url_from(follower))];
    let contender = with(&first, &[("CRONLOCK_KEY", "stopped")]);
    let took = timed(&contender, &["true"], 200);
    eprintln!("with a stopped follower first: a contender decided in {took:?}");
    // Taking and releasing a free lock, each request after the first
    // going where the first one was answered.
    let taker = with(&first, &[("CRONLOCK_KEY", "free"), ("CRONLOCK_GRACE", "-1")]);
    let took = timed(&taker, &["true"], 0);
    eprintln!("with a stopped follower first: a taker finished in {took:?}");
    cluster.resume(follower);

    // The leader stopped: the others elect a new one meanwhile.
    let leader = cluster.leader();
    cluster.stop(leader);
    let first = [("CRONLOCK_URL".to_string(), cluster.url_from(leader))];
    let took = timed(&with(&first, &[("CRONLOCK_KEY", "stopped")]), &["true"], 200);
    eprintln!("with a stopped leader first: a contender decided in {took:?}");
    cluster.resume(leader);
}

#[test]
fn a_contender_waits_out_an_election_instead_of_exiting_201() {
    let mut cluster = EtcdCluster::start();
    let held = with(
        &cluster.env(),
        &[("CRONLOCK_KEY", "election"), ("CRONLOCK_GRACE", "120")],
    );
    run(&held, &["true"]).expect(0);
    // Both followers dead: the leader steps down, and the member left
    // answers "no leader" to every request, at once.
    let leader = cluster.leader();
    let followers: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
    for &i in &followers {
        cluster.kill(i);
    }
    wait_until(Duration::from_secs(10), "the lone member to lose its leader", || {
        !cluster.has_leader(leader)
    });
    let env = [
        ("CRONLOCK_URL".to_string(), cluster.url_from(leader)),
        ("CRONLOCK_KEY".to_string(), "election".to_string()),
    ];
    let contender = spawn_contender(&env, &TempDir::new("etcd-election"));
    // Pacing only: the contender meets a cluster without a leader first.
    std::thread::sleep(Duration::from_secs(1));
    // Back with its data, it makes a quorum again, and a leader is elected.
    let back_at = Instant::now();
    cluster.restart(followers[0]);
    eprintln!("a follower restarted and a leader elected in {:?}", back_at.elapsed());
    let (code, took, stderr) = finish_contender(contender);
    assert_eq!(code, 200, "{stderr}");
    assert!(took < DECIDES_WITHIN, "took {took:?}: {stderr}");
    eprintln!("a contender that began without a leader decided in {took:?}");
}

/// The chaos loop's server restarts become member kills: the leader and
/// the followers in turn.
struct ChaosCluster {
    cluster: EtcdCluster,
    kills: usize,
}

impl crate::chaos::ChaosStore for ChaosCluster {
    fn env(&self) -> Vec<(String, String)> {
        self.cluster.env()
    }

    fn restart(&mut self, pause: Duration) {
        self.kills += 1;
        // Every other kill is the leader's; the rest go round the members.
        let victim = if self.kills % 2 == 1 {
            self.cluster.leader()
        } else {
            (self.kills / 2) % self.cluster.len()
        };
        self.cluster.kill(victim);
        std::thread::sleep(pause);
        self.cluster.restart(victim);
    }
}

#[test]
fn killing_members_wrappers_and_commands_never_lets_two_copies_run() {
    let mut store = ChaosCluster {
        cluster: EtcdCluster::start(),
        kills: 0,
    };
    crate::chaos::chaos(&mut store, 200);
}
