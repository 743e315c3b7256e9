//! What a run tells people: information lines on stderr for
//! `CRONLOCK_VERBOSE=yes` ([`Report`]), and one line per lock event to the
//! local syslog ([`syslog`]).

pub mod syslog;

use std::fmt::Arguments;
use std::io::Write;

/// Where verbose lines go; quiet unless asked.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Print information lines.
    pub verbose: bool,
}

impl Report {
    /// One `cronlock: ...` line on stderr when verbose. Never pass a password here.
    pub fn info(&self, message: Arguments) {
        if self.verbose {
            let _ = writeln!(std::io::stderr(), "cronlock: {message}");
        }
    }
}
