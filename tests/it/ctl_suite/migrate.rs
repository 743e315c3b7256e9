//! `cronlockctl migrate coolock`: coolock's settings files turned into a
//! cronlock.conf, and that file given to cronlock. No store server: the
//! end-to-end runs use the file store.

use crate::util::*;

/// The settings of coolock's README example, in a file of our own words:
/// ZooKeeper through the `kazoo` scheme, every option at its default, the
/// log size with a trailing comment.
const README_EXAMPLE: &str = "\
# where tooz keeps the lock
coordination-backend: kazoo://localhost:2181

lock: coolock
# seconds the lock is held at the least
guard-time: 30
# node: host-a
wait-timeout: 0

log-file: /var/log/coolock.log
log-level: info
log-max-size: 20971520 # bytes
rotate-log-copies: 5
";

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `cronlockctl migrate coolock ARGS` with HOME at `home`.
fn migrate(home: &TempDir, args: &[&str]) -> Run {
    let env = [("HOME".to_string(), home.path().display().to_string())];
    ctl(&env, &[&["migrate", "coolock"][..], args].concat())
}

#[test]
fn the_readme_example_becomes_the_tooz_lock_on_zookeeper() {
    let dir = TempDir::new("migrate-readme");
    let file = write(&dir, "coolock.conf", README_EXAMPLE);
    let out = migrate(&dir, &[&file]);
    out.expect(0);
    let stdout = out.stdout();
    let settings: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        settings,
        [
            "CRONLOCK_URL=zookeeper://localhost:2181",
            "CRONLOCK_KEY_STYLE=tooz",
            "CRONLOCK_KEY=coolock",
            "CRONLOCK_GRACE=30",
            "CRONLOCK_WAIT=0",
        ],
        "{stdout}"
    );
    assert!(stdout.contains("start + GRACE + 1"), "{stdout}");
    let dropped = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# not carried over: "))
        .unwrap_or_else(|| panic!("no not-carried-over line: {stdout}"));
    for name in ["log-file", "log-level", "log-max-size", "rotate-log-copies"] {
        assert!(dropped.contains(&format!("{name} (")), "{name}: {dropped}");
    }
    let stderr = out.stderr();
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("cronlockctl: not carried over: ")),
        "{stderr}"
    );
}

#[test]
fn reads_dot_coolock_in_home_and_later_files_win() {
    let home = TempDir::new("migrate-home");
    write(
        &home,
        ".coolock",
        "coordination-backend = redis://cache.example:6379?db=2\nlock nightly\n",
    );
    // The name coolock's README gives, which coolock itself never reads.
    write(&home, "coolock", "lock: from-the-readme-name\n");
    let out = migrate(&home, &[]);
    out.expect(0);
    let stdout = out.stdout();
    assert!(
        stdout.contains("CRONLOCK_URL=redis://cache.example:6379/2\n"),
        "{stdout}"
    );
    assert!(stdout.contains("CRONLOCK_KEY=nightly\n"), "{stdout}");
    assert!(out.stderr().is_empty(), "{}", out.stderr());
    let first = write(
        &home,
        "first",
        "coordination-backend: memcached://mc1\nlock: a\nnode: web-1\n",
    );
    let second = write(&home, "second", "lock: 'b c'\n");
    let out = migrate(&home, &[&first, &second]);
    out.expect(0);
    let stdout = out.stdout();
    assert!(stdout.contains("CRONLOCK_URL=memcached://mc1\n"), "{stdout}");
    assert!(stdout.contains("CRONLOCK_KEY='b c'\n"), "{stdout}");
    assert!(stdout.contains("CRONLOCK_NODE=web-1\n"), "{stdout}");
}

#[test]
fn consul_and_bad_files_exit_2_with_one_line_and_no_password() {
    let dir = TempDir::new("migrate-refused");
    for (text, expected) in [
        (
            "coordination-backend: consul://u:hunter2@c1:8500\n",
            "no cronlock store",
        ),
        ("coordination-backend: redis://:hunter2@h:70000\n", "not a port number"),
        (
            "coordination-backend: redis://:hunter2@h\ncolour: blue\n",
            "unknown setting \"colour\"",
        ),
        ("lock: nightly\n", "no coordination-backend"),
    ] {
        let file = write(&dir, "coolock.conf", text);
        let out = migrate(&dir, &[&file]);
        out.expect(2);
        let stderr = out.stderr();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains("hunter2") && out.stdout().is_empty(), "{stderr}");
    }
    let missing = dir.join("missing").display().to_string();
    migrate(&dir, &[&missing]).expect(2);
    ctl(&[], &["migrate", "golock"]).expect(2);
    ctl(&[], &["migrate"]).expect(2);
}

/// The printed conf, given to cronlock as its config file, takes the lock
/// `lock:` names: the key it shows, tooz's lock file, and a second run kept
/// out while the first holds it.
#[test]
fn cronlock_takes_the_lock_the_printed_conf_names() {
    let dir = TempDir::new("migrate-run");
    let locks = dir.join("locks");
    let settings = format!(
        "coordination-backend: file://{}\nlock: nightly-backup\nguard-time: 0\n",
        locks.display()
    );
    let file = write(&dir, "coolock.conf", &settings);
    let out = migrate(&dir, &[&file]);
    out.expect(0);
    let conf = write(&dir, "cronlock.conf", &out.stdout());
    let env = [
        ("CRONLOCK_CONFIG".to_string(), conf),
        ("CRONLOCK_SHOW_KEY".to_string(), "yes".to_string()),
    ];
    let gated = Gated::new(&dir, "holder");
    let mut holder = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    assert!(locks.join("nightly-backup").exists(), "tooz's lock file DIR/<lock>");
    let marker = dir.join("second-ran");
    let second = run(&env, &["touch", &marker.display().to_string()]);
    second.expect(200);
    assert!(
        second.stderr().contains("cronlock: key nightly-backup\n"),
        "{}",
        second.stderr()
    );
    assert!(
        !marker.exists(),
        "the second run must not run while the first holds the lock"
    );
    gated.open();
    assert!(holder.wait().unwrap().success());
    run(&env, &["touch", &marker.display().to_string()]).expect(0);
    assert!(marker.exists());
}

/// The real coolock, on the settings the file gives, keeps a cronlock run
/// on the printed conf out.
#[test]
fn a_coolock_on_the_same_settings_keeps_the_migrated_cronlock_out() {
    let coolock = crate::tooz::coolock_or_skip!();
    let dir = TempDir::new("migrate-coolock");
    let url = format!("file://{}", dir.join("locks").display());
    let file = write(
        &dir,
        "coolock.conf",
        &format!("coordination-backend: {url}\nlock: nightly\n"),
    );
    let out = migrate(&dir, &[&file]);
    out.expect(0);
    let env = [(
        "CRONLOCK_CONFIG".to_string(),
        write(&dir, "cronlock.conf", &out.stdout()),
    )];
    let home = TempDir::new("migrate-coolock-home");
    let holder = coolock.hold(&url, "nightly", &home);
    let marker = dir.join("ran");
    run(&env, &["touch", &marker.display().to_string()]).expect(200);
    assert!(!marker.exists(), "cronlock ran while coolock held the lock");
    holder.finish();
    run(&env, &["touch", &marker.display().to_string()]).expect(0);
    assert!(marker.exists());
}
