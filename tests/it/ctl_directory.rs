//! cronlockctl against the directory store: the shared suite.

use crate::util::*;

struct Directory(TempDir);

impl crate::conformance::Fixture for Directory {
    fn start() -> Directory {
        Directory(TempDir::new("ctl-locks"))
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "CRONLOCK_URL".to_string(),
            format!("file://{}", self.0.join("locks").display()),
        )]
    }

    fn stop(&mut self) -> bool {
        false
    }
}

crate::ctl_suite::suite!(Directory);
