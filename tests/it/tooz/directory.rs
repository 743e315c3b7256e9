//! tooz's file lock (`file://DIR`): a POSIX record lock on `DIR/<name>`,
//! both ways with coolock, and the lock that `flock(1)` takes is not it.

use std::process::Stdio;

use crate::tooz::tooz_env;
use crate::util::*;

/// A lock directory, cronlock's settings for it and coolock's URL.
fn directory() -> (TempDir, Vec<(String, String)>, String) {
    let dir = TempDir::new("tooz-file");
    let url = format!("file://{}", dir.path().display());
    let env = vec![("CRONLOCK_URL".to_string(), url.clone())];
    (dir, env, url)
}

crate::tooz::both_ways!(directory());

#[test]
fn the_lock_is_a_record_lock_on_the_named_file_not_a_flock() {
    let (dir, env, _) = directory();
    let tmp = TempDir::new("tooz-file-kinds");
    let marker = tmp.join("ran");
    let touch = format!("touch {}", marker.display());
    // flock(1) on the same file: another kind of lock, which tooz ignores.
    let gated = Gated::new(&tmp, "flock");
    std::fs::write(dir.join("nightly"), b"").unwrap();
    let mut flocked = std::process::Command::new("flock")
        .arg(dir.join("nightly"))
        .args(["sh", "-c", &gated.script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    gated.wait_started();
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(0);
    assert!(marker.exists(), "a flock(1) is not tooz's lock");
    gated.open();
    assert!(flocked.wait().unwrap().success());
    // A run that holds the lock: the kernel lists a POSIX write lock on the file.
    let holder_gate = Gated::new(&tmp, "holder");
    let holder = cronlock(&tooz_env(&env, "nightly"))
        .args(["sh", "-c", &holder_gate.script])
        .spawn()
        .unwrap();
    holder_gate.wait_started();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("nightly")).unwrap());
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(
        locks
            .lines()
            .any(|line| line.contains("POSIX") && line.contains("WRITE") && line.contains(&format!(":{inode} "))),
        "no POSIX write lock on inode {inode}:\n{locks}"
    );
    holder_gate.open();
    assert!(holder.wait_with_output().unwrap().status.success());
}

#[test]
fn the_default_name_is_coolock_and_names_cannot_leave_the_directory() {
    let (dir, env, _) = directory();
    let with_style = with(&env, &[("CRONLOCK_KEY_STYLE", "coolock")]);
    run(&with_style, &["true"]).expect(0);
    assert!(dir.join("coolock").exists(), "the lock file is DIR/coolock");
    let escaped = run(&tooz_env(&env, "../x"), &["true"]);
    escaped.expect(201);
    assert_eq!(escaped.stderr().lines().count(), 1, "{}", escaped.stderr());
    let held = run(&with(&tooz_env(&env, "nightly"), &[("CRONLOCK_HOLD", "5")]), &["true"]);
    held.expect(201);
}
