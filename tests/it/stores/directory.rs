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
