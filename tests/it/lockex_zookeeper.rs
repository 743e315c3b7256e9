//! CRONLOCK_KEY_STYLE=lockex against the real lockex (kazoo 2.2's Lock, and
//! its Semaphore for `--concurrent`) on one private ZooKeeper: each tool
//! sees the other's lock and leases. lockex comes from
//! `CRONLOCK_TEST_LOCKEX` (a `pip install --target` directory, which
//! scripts/test.sh makes as target/lockex when python2 is there); without it
//! or python2 these tests print why and pass.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::zookeeper::ZooKeeper;
use crate::util::*;

/// The lockex install, or why there is none.
fn lockex_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("CRONLOCK_TEST_LOCKEX")
        .map(PathBuf::from)
        .ok_or("CRONLOCK_TEST_LOCKEX is not set (scripts/test.sh sets it)")?;
    if !dir.join("bin/lockex").is_file() {
        return Err(format!("{}/bin/lockex is missing", dir.display()));
    }
    python2_installed()?;
    Ok(dir)
}

macro_rules! lockex_or_skip {
    () => {
        match lockex_dir() {
            Ok(dir) => dir,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

/// lockex --no-blocking (in a session of its own: on exit it signals its
/// process group).
fn lockex(dir: &PathBuf, zk: &ZooKeeper, args: &[&str]) -> Command {
    lockex_waiting(dir, zk, "--no-blocking", args)
}

/// lockex with `--blocking` (its default) or `--no-blocking`.
fn lockex_waiting(dir: &PathBuf, zk: &ZooKeeper, blocking: &str, args: &[&str]) -> Command {
    let mut command = Command::new("setsid");
    command
        .arg("python2")
        .arg(dir.join("bin/lockex"))
        .args(["-z", &format!("127.0.0.1:{}", zk.port), blocking])
        .args(args)
        .env("PYTHONPATH", dir)
        .env("PYENV_VERSION", "2.7.18")
        .stdin(Stdio::null());
    command
}

fn lockex_style(zk: &ZooKeeper, key: &str) -> Vec<(String, String)> {
    with(&zk.env(), &[("CRONLOCK_KEY_STYLE", "lockex"), ("CRONLOCK_KEY", key)])
}

#[test]
fn a_lock_lockex_holds_is_held_for_cronlock() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("lockex-holds");
    let gated = Gated::new(&tmp, "lockex");
    let mut holder: Child = lockex(&dir, &zk, &["-i", "job", "--", &gated.script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    gated.wait_started();
    let marker = tmp.join("ran");
    run(
        &lockex_style(&zk, "job"),
        &["sh", "-c", &format!("touch {}", marker.display())],
    )
    .expect(200);
    assert!(!marker.exists(), "cronlock ran while lockex held the lock");
    gated.open();
    assert!(holder.wait().unwrap().success());
    run(&lockex_style(&zk, "job"), &["true"]).expect(0);
}

#[test]
fn a_lock_cronlock_holds_is_held_for_lockex() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("cronlock-holds");
    let gated = Gated::new(&tmp, "cronlock");
    let holder = cronlock(&lockex_style(&zk, "job"))
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    let marker = tmp.join("ran");
    let touch = format!("touch {}", marker.display());
    // lockex exits 0 when --no-blocking finds the lock taken; only the
    // marker tells.
    lockex(&dir, &zk, &["-i", "job", "--", &touch]).output().unwrap();
    assert!(!marker.exists(), "lockex ran while cronlock held the lock");
    gated.open();
    assert!(holder.wait_with_output().unwrap().status.success());
    lockex(&dir, &zk, &["-i", "job", "--", &touch]).output().unwrap();
    assert!(marker.exists(), "lockex runs once cronlock has released");
}

#[test]
fn both_tools_name_a_command_alike() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let output = lockex(&dir, &zk, &["--", "true", "a", "b"]).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let lockname = log
        .split_whitespace()
        .find_map(|word| word.strip_prefix("lockname="))
        .unwrap_or_else(|| panic!("no lockname in lockex's log:\n{log}"))
        .to_string();
    let shown = run(
        &with(
            &zk.env(),
            &[("CRONLOCK_KEY_STYLE", "lockex"), ("CRONLOCK_SHOW_KEY", "yes")],
        ),
        &["true", "a", "b"],
    );
    shown.expect(0);
    assert!(
        shown.stderr().contains(&format!("cronlock: key {lockname}\n")),
        "{}",
        shown.stderr()
    );
}

#[test]
fn hold_is_refused_in_the_lockex_style() {
    let zk = ZooKeeper::start();
    let result = run(&with(&lockex_style(&zk, "job"), &[("CRONLOCK_HOLD", "10")]), &["true"]);
    result.expect(201);
    assert!(result.stderr().contains("CRONLOCK_HOLD"), "{}", result.stderr());
    assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
}

/// The lockex style with `CRONLOCK_CONCURRENCY=n`: lockex's `--concurrent n`.
fn semaphore_of(zk: &ZooKeeper, key: &str, n: u32) -> Vec<(String, String)> {
    with(&lockex_style(zk, key), &[("CRONLOCK_CONCURRENCY", &n.to_string())])
}

/// Waits (with a deadline) until `child` has exited, and returns its status.
/// A minute: lockex looks at its command every 3 s, then closes its kazoo
/// session, which waits on a ZooKeeper server that shares 2 cores with the
/// other tests' servers (once over 20 s in CI).
fn exited(child: &mut Child) -> std::process::ExitStatus {
    exited_logged(child, None)
}

/// [`exited`], showing the tail of the holder's `log` if it does not exit.
fn exited_logged(child: &mut Child, log: Option<&std::path::Path>) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for the holder to exit; its log:\n{}",
                log.map(log_tail).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn leases_cronlock_holds_count_for_lockex() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("cronlock-leases");
    let gates: Vec<Gated> = (0..2).map(|i| Gated::new(&tmp, &format!("cronlock{i}"))).collect();
    let mut holders: Vec<Child> = gates
        .iter()
        .map(|gated| {
            cronlock(&semaphore_of(&zk, "job", 2))
                .args(["sh", "-c", &gated.script])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for gated in &gates {
        gated.wait_started();
    }
    let marker = tmp.join("ran");
    let touch = format!("touch {}", marker.display());
    // lockex exits 0 when --no-blocking finds no lease; only the marker tells.
    let refused = lockex(&dir, &zk, &["-c", "2", "-i", "job", "--", &touch])
        .output()
        .unwrap();
    assert!(
        !marker.exists(),
        "lockex ran while cronlock held both leases:\n{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    gates[0].open();
    assert!(exited(&mut holders[0]).success());
    let allowed = lockex(&dir, &zk, &["-c", "2", "-i", "job", "--", &touch])
        .output()
        .unwrap();
    assert!(
        marker.exists(),
        "lockex did not run with a lease free:\n{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    gates[1].open();
    assert!(exited(&mut holders[1]).success());
}

#[test]
fn leases_lockex_holds_count_for_cronlock() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("lockex-leases");
    let gates: Vec<Gated> = (0..2).map(|i| Gated::new(&tmp, &format!("lockex{i}"))).collect();
    // One after the other: lockex --no-blocking gives up when another
    // contender is counting the leases at the same moment.
    let mut holders = Vec::new();
    for gated in &gates {
        let holder = lockex(&dir, &zk, &["-c", "2", "-i", "job", "--", &gated.script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        holders.push(holder);
        gated.wait_started();
    }
    let marker = tmp.join("ran");
    let touch = ["sh", "-c", &format!("touch {}", marker.display())].map(String::from);
    run(&semaphore_of(&zk, "job", 2), &touch).expect(200);
    assert!(!marker.exists(), "cronlock ran while lockex held both leases");
    gates[0].open();
    assert!(exited(&mut holders[0]).success());
    run(&semaphore_of(&zk, "job", 2), &touch).expect(0);
    assert!(marker.exists(), "cronlock did not run with a lease free");
    gates[1].open();
    assert!(exited(&mut holders[1]).success());
}

#[test]
fn a_blocking_lockex_gets_the_lease_cronlock_frees() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("lockex-blocks");
    let gates: Vec<Gated> = (0..3).map(|i| Gated::new(&tmp, &format!("copy{i}"))).collect();
    let mut holders: Vec<Child> = gates[..2]
        .iter()
        .map(|gated| {
            let holder = cronlock(&semaphore_of(&zk, "job", 2))
                .args(["sh", "-c", &gated.script])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            gated.wait_started();
            holder
        })
        .collect();
    let mut waiter = lockex_waiting(
        &dir,
        &zk,
        "--blocking",
        &["-c", "2", "-i", "job", "--", &gates[2].script],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(tmp.join("waiter.log")).unwrap())
    .spawn()
    .unwrap();
    // kazoo waits for a lease inside the semaphore's gate, which cronlockctl
    // shows as a lock of its own.
    wait_until(Duration::from_secs(20), "lockex to wait in the gate", || {
        ctl(&lockex_style(&zk, "job"), &["status", "--key", "job-__lock__"]).code() == 1
    });
    // cronlock waits its while for the gate, then finds every lease taken.
    run(&semaphore_of(&zk, "job", 2), &["true"]).expect(200);
    gates[0].open();
    assert!(exited(&mut holders[0]).success());
    gates[2].wait_started();
    run(&semaphore_of(&zk, "job", 2), &["true"]).expect(200);
    gates[1].open();
    gates[2].open();
    assert!(exited(&mut holders[1]).success());
    assert!(exited_logged(&mut waiter, Some(&tmp.join("waiter.log"))).success());
    run(&semaphore_of(&zk, "job", 2), &["true"]).expect(0);
}

#[test]
fn a_different_lease_count_is_refused_both_ways() {
    let dir = lockex_or_skip!();
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("lease-count");
    // lockex makes the pool of 3; cronlock with 2 (or with a plain lock)
    // stops with one line naming the count.
    let made = lockex(&dir, &zk, &["-c", "3", "-i", "three", "--", "true"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    for n in [2, 1] {
        let refused = run(&semaphore_of(&zk, "three", n), &["true"]);
        refused.expect(201);
        assert_eq!(refused.stderr().lines().count(), 1, "{}", refused.stderr());
        assert!(
            refused
                .stderr()
                .contains(&format!("CRONLOCK_CONCURRENCY={n} does not match"))
                && refused.stderr().contains("CRONLOCK_CONCURRENCY=3"),
            "{}",
            refused.stderr()
        );
    }
    run(&semaphore_of(&zk, "three", 3), &["true"]).expect(0);
    // cronlock makes the pool of 2; kazoo refuses lockex's 3.
    run(&semaphore_of(&zk, "two", 2), &["true"]).expect(0);
    let marker = tmp.join("ran");
    let touch = format!("touch {}", marker.display());
    let refused = lockex(&dir, &zk, &["-c", "3", "-i", "two", "--", &touch])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&refused.stderr);
    assert!(!marker.exists(), "lockex ran with another lease count");
    assert!(log.contains("Inconsistent max leases: 2, expected: 3"), "{log}");
}

#[test]
fn no_more_than_n_of_n_plus_two_started_at_once_run() {
    let zk = ZooKeeper::start();
    let tmp = TempDir::new("leases-at-once");
    const N: usize = 3;
    let gates: Vec<Gated> = (0..N + 2).map(|i| Gated::new(&tmp, &format!("copy{i}"))).collect();
    let mut copies: Vec<Child> = gates
        .iter()
        .map(|gated| {
            cronlock(&semaphore_of(&zk, "job", N as u32))
                .args(["sh", "-c", &gated.script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = || gates.iter().filter(|gated| gated.has_started()).count();
    let mut codes = vec![None; copies.len()];
    // Every copy either runs (and waits at its gate) or is refused.
    wait_until(Duration::from_secs(30), "every copy to run or be refused", || {
        for (copy, code) in copies.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                *code = copy.try_wait().unwrap().map(|status| status.code());
            }
        }
        started() + codes.iter().filter(|code| code.is_some()).count() == copies.len()
    });
    assert_eq!(started(), N, "copies running at once");
    assert_eq!(
        codes.iter().flatten().flatten().filter(|&&c| c == 200).count(),
        2,
        "{codes:?}"
    );
    for gated in &gates {
        gated.open();
    }
    for (copy, code) in copies.iter_mut().zip(&codes) {
        if code.is_none() {
            assert!(exited(copy).success());
        }
    }
    // The leases went with their commands.
    run(&semaphore_of(&zk, "job", N as u32), &["true"]).expect(0);
}
