//! What a run tells people: information lines on stderr for
//! `CRONLOCK_VERBOSE=yes` ([`Report`]), one line per lock event to the
//! local syslog ([`syslog`]), and for the systems that watch cron
//! ([`watcher`]): JSON events ([`events`]), pings ([`ping`]) and metrics
//! files ([`metrics`]), with the times they carry ([`clock`]).

pub mod clock;
pub mod events;
pub mod metrics;
pub mod ping;
pub mod syslog;
pub mod watcher;

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
