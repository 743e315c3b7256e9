//! The reconnect schedule of every store with a server: after a failure
//! that a new connection may cure, wait 0 s, then the backoff, then twice
//! it, and so on (the original script's linear backoff), for at most
//! `CRONLOCK_RECONNECT_ATTEMPTS` more tries, each announced in verbose mode;
//! then give up with one line. A terminating signal ends the wait.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::report::Report;
use crate::signals;

/// The reconnects left to one request.
pub struct Reconnects<'a> {
    report: &'a Report,
    attempts: u32,
    backoff: u64,
    done: u32,
}

impl<'a> Reconnects<'a> {
    /// `attempts` reconnects at most, `backoff` seconds more each time.
    pub fn new(report: &'a Report, attempts: u32, backoff: u64) -> Reconnects<'a> {
        Reconnects {
            report,
            attempts,
            backoff,
            done: 0,
        }
    }

    /// After a failed try at `server` (as messages name it): the error to
    /// stop with once every reconnect is spent, else waits for the next one.
    pub fn after(&mut self, server: &str, err: &str) -> Result<()> {
        if self.done >= self.attempts {
            let tries = self.done + 1;
            bail!(
                "cannot reach {server} ({err}) after {tries} attempt{}",
                if tries == 1 { "" } else { "s" }
            );
        }
        let wait = Duration::from_secs(u64::from(self.done) * self.backoff);
        self.report.info(format_args!(
            "{server}: {err}; reconnecting in {}s ({} of {})",
            wait.as_secs(),
            self.done + 1,
            self.attempts
        ));
        if let Some(signal) = signals::sleep_unless_told_to_stop(wait) {
            bail!("stopped by {signal} while waiting to reconnect to {server}");
        }
        self.done += 1;
        Ok(())
    }
}
