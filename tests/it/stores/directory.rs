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
