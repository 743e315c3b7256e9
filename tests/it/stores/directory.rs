//! The store conformance suite and cronlockctl's suite against the
//! directory store (`file://`).

use crate::util::*;

struct Directory(TempDir);

impl crate::conformance::Fixture for Directory {
    fn start() -> Directory {
        Directory(TempDir::new("locks"))
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "CRONLOCK_URL".to_string(),
            format!("file://{}", self.0.join("locks").display()),
        )]
    }

    fn lacks(&self) -> Vec<(&'static str, &'static str)> {
        vec![("CRONLOCK_LEASE", "3")]
    }

    /// No server: the lock lives in this host's file system.
    fn stop(&mut self) -> bool {
        false
    }

    /// The counter is a file, synced before the job starts.
    fn fencing(&self) -> Option<bool> {
        Some(true)
    }

    fn keeps_history(&self) -> bool {
        true
    }
}

crate::conformance::suite!(Directory);
crate::ctl_suite::suite!(Directory);

#[test]
fn the_lock_file_names_its_owner() {
    let store = <Directory as crate::conformance::Fixture>::start();
    let env = with(
        &crate::conformance::Fixture::env(&store),
        &[("CRONLOCK_KEY", "owned"), ("CRONLOCK_NODE", "web-7")],
    );
    run(&env, &["true"]).expect(0);
    let text = std::fs::read_to_string(store.0.join("locks").join("cronlock.owned")).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().ends_with(" done"), "{text}");
    let owner = lines.next().unwrap();
    assert!(
        owner.starts_with(r#"{"node":"web-7","pid":"#) && owner.contains(r#""command":"true","ended":"#),
        "{text}"
    );
}

#[test]
fn the_fencing_counter_is_a_dot_file_beside_the_lock_that_no_listing_shows() {
    let store = <Directory as crate::conformance::Fixture>::start();
    let env = with(
        &crate::conformance::Fixture::env(&store),
        &[("CRONLOCK_KEY", "fenced"), ("CRONLOCK_FENCING", "required")],
    );
    let token = |env: &[(String, String)]| {
        let result = run(env, &["sh", "-c", "echo \"$CRONLOCK_FENCING_TOKEN\""]);
        result.expect(0);
        result.stdout().trim().to_string()
    };
    let dropped = with(&env, &[("CRONLOCK_GRACE", "-1")]);
    assert_eq!(token(&dropped), "1");
    assert_eq!(token(&dropped), "2");
    let counter = store.0.join("locks").join(".fence.cronlock.fenced");
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "2\n");
    // Kept for its grace, then reset: the lock goes, never the counter.
    assert_eq!(token(&env), "3");
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(token(&dropped), "4");
    let names: Vec<String> = std::fs::read_dir(store.0.join("locks"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".fence.cronlock.fenced"], "no lock, no temporary file left");
    // Neither list nor status takes the counter for a lock.
    let listed = ctl(&env, &["list", "--all-prefixes"]);
    listed.expect(0);
    assert_eq!(listed.stdout(), "");
    ctl(&env, &["status", "--key", "fenced"]).expect(0);
    ctl(&env, &["fence", "cronlock.fenced", "4"]).expect(0);
    ctl(&env, &["fence", "cronlock.fenced", "3"]).expect(1);
    // tooz's file lock gives none.
    let line = expect_refusal(
        &with(&env, &[("CRONLOCK_KEY_STYLE", "tooz"), ("CRONLOCK_FENCING", "on")]),
        "CRONLOCK_KEY_STYLE=tooz",
        &[],
    );
    assert!(line.contains("CRONLOCK_FENCING"), "{line}");
}

/// `cronlockctl history` of `job`, newest first.
fn history(env: &[(String, String)], job: &str) -> Vec<serde_json::Value> {
    let listed = ctl(env, &["--json", "history", "--key", job]);
    listed.expect(0);
    listed.json_lines()
}

/// The names in the lock directory, sorted.
fn names(store: &Directory) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.0.join("locks"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_history_is_two_dot_files_beside_the_lock_that_no_listing_shows_nor_a_reset_removes() {
    let store = <Directory as crate::conformance::Fixture>::start();
    let env = with(
        &crate::conformance::Fixture::env(&store),
        &[
            ("CRONLOCK_KEY", "kept"),
            ("CRONLOCK_HISTORY", "2"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    for _ in 0..3 {
        run(&env, &["true"]).expect(0);
    }
    run(&env, &["sh", "-c", "exit 4"]).expect(4);
    // Lines of JSON, newest first, cut to two; the last success alone.
    assert_eq!(names(&store), [".runs.cronlock.kept", ".succeeded.cronlock.kept"]);
    let locks = store.0.join("locks");
    let runs = std::fs::read_to_string(locks.join(".runs.cronlock.kept")).unwrap();
    let lines: Vec<serde_json::Value> = runs.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{runs}");
    assert_eq!((&lines[0]["exit"], &lines[1]["exit"]), (&4.into(), &0.into()), "{runs}");
    let success = std::fs::read_to_string(locks.join(".succeeded.cronlock.kept")).unwrap();
    assert_eq!(success.lines().count(), 1, "{success}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&success).unwrap()["exit"], 0);
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["exit"], &runs[1]["exit"]), (&4.into(), &0.into()));
    // Nothing is listed but the lock kept for its grace.
    let kept = with(&env, &[("CRONLOCK_GRACE", "60")]);
    run(&kept, &["true"]).expect(0);
    let listed = ctl(&env, &["--json", "list", "--all-prefixes"]);
    listed.expect(0);
    let found = listed.json_lines();
    assert_eq!(found.len(), 1, "{}", listed.stdout());
    assert_eq!(found[0]["key"], "cronlock.kept");
    // An unlock and a reset take the lock, never the history.
    ctl(&env, &["unlock", "--key", "kept"]).expect(0);
    run(&kept, &["true"]).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(
        names(&store),
        [".runs.cronlock.kept", ".succeeded.cronlock.kept"],
        "no lock, no temporary file left"
    );
    let listed = ctl(&env, &["list", "--all-prefixes"]);
    listed.expect(0);
    assert_eq!(listed.stdout(), "");
    ctl(&env, &["status", "--key", "kept"]).expect(0);
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["exit"], &runs[1]["exit"]), (&0.into(), &0.into()));
    ctl(&env, &["check", "--key", "kept", "--max-age", "1h"]).expect(0);
    // tooz's file lock keeps none, and says so in one line.
    let line = expect_refusal(&with(&env, &[("CRONLOCK_KEY_STYLE", "tooz")]), "CRONLOCK_HISTORY", &[]);
    assert!(line.contains("not supported"), "{line}");
}

#[test]
fn runs_that_end_together_each_keep_their_record_and_the_cut_holds() {
    let store = <Directory as crate::conformance::Fixture>::start();
    let env = with(
        &crate::conformance::Fixture::env(&store),
        &[
            ("CRONLOCK_KEY", "together"),
            ("CRONLOCK_CONCURRENCY", "8"),
            ("CRONLOCK_HISTORY", "10"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let pids_of = |runs: &[serde_json::Value]| {
        let mut pids: Vec<u64> = runs.iter().map(|run| run["pid"].as_u64().unwrap()).collect();
        pids.sort_unstable();
        pids
    };
    // The runs wait for the directory's flock, held here while they end,
    // and go for it all at once when it is let go.
    let behind_the_flock = |open: &dyn Fn()| {
        let dir = std::fs::File::open(store.0.join("locks")).unwrap();
        let held = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive).unwrap();
        open();
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(held);
    };
    let mut first = super::memcached::end_together_around(&env, 8, behind_the_flock);
    first.sort_unstable();
    assert_eq!(pids_of(&history(&env, "together")), first, "no record lost");
    let mut second = super::memcached::end_together_around(&env, 8, behind_the_flock);
    second.sort_unstable();
    let runs = history(&env, "together");
    assert_eq!(runs.len(), 10);
    assert_eq!(pids_of(&runs[..8]), second, "the second eight are the newest eight");
}
