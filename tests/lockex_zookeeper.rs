//! CRONLOCK_KEY_STYLE=lockex against the real lockex (kazoo 2.2's Lock) on
//! one private ZooKeeper: each tool sees the other's lock. lockex comes from
//! `CRONLOCK_TEST_LOCKEX` (a `pip install --target` directory, which
//! scripts/test.sh makes as target/lockex when python2 is there); without it
//! or python2 these tests print why and pass.

mod util;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use util::zookeeper::ZooKeeper;
use util::*;

/// The lockex install, or why there is none.
fn lockex_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("CRONLOCK_TEST_LOCKEX")
        .map(PathBuf::from)
        .ok_or("CRONLOCK_TEST_LOCKEX is not set (scripts/test.sh sets it)")?;
    if !dir.join("bin/lockex").is_file() {
        return Err(format!("{}/bin/lockex is missing", dir.display()));
    }
    let python = Command::new("python2")
        .env("PYENV_VERSION", "2.7.18")
        .args(["-c", "import sys"])
        .status();
    if !python.is_ok_and(|s| s.success()) {
        return Err("python2 is not installed".into());
    }
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

/// lockex (in a session of its own: on exit it signals its process group).
fn lockex(dir: &PathBuf, zk: &ZooKeeper, args: &[&str]) -> Command {
    let mut command = Command::new("setsid");
    command
        .arg("python2")
        .arg(dir.join("bin/lockex"))
        .args(["-z", &format!("127.0.0.1:{}", zk.port), "--no-blocking"])
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
fn hold_and_concurrency_are_refused_in_the_lockex_style() {
    let zk = ZooKeeper::start();
    for (variable, value) in [("CRONLOCK_HOLD", "10"), ("CRONLOCK_CONCURRENCY", "2")] {
        let result = run(&with(&lockex_style(&zk, "job"), &[(variable, value)]), &["true"]);
        result.expect(201);
        assert!(result.stderr().contains(variable), "{}", result.stderr());
        assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
    }
}
