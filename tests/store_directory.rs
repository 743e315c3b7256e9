//! The store conformance suite against the directory store (`file://`).

mod conformance;
mod util;

use util::*;

struct Directory(TempDir);

impl conformance::Fixture for Directory {
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

conformance::suite!(Directory);
