//! The reconnect schedule of every store with a server: after a failure
//! that a new connection may cure, wait 0 s, then the backoff, then twice
//! it, and so on (the original script's linear backoff), for at most
//! `CRONLOCK_RECONNECT_ATTEMPTS` more tries, each announced in verbose mode;
//! then give up with one line. A terminating signal ends the wait.
//!
//! A server that answers "too many clients" (PostgreSQL's 53300, MySQL's
//! 1040, ZooKeeper closing a connection over `maxClientCnxns`) is alive and
//! busy, not dead: a fleet's herd at the top of the minute meets it for a
//! few hundred milliseconds. Such a refusal is retried after a short
//! jittered pause ([`Reconnects::busy`]), so the herd spreads out and drains,
//! instead of every host waiting out the backoff meant for a dead server.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::net::random::Random;
use crate::process::signals;
use crate::report::Report;

/// The first busy pause; each further one doubles, up to [`BUSY_PAUSE_MAX`],
/// and each is drawn from half to one and a half of that.
const BUSY_PAUSE_FIRST: Duration = Duration::from_millis(20);
/// The longest busy pause.
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(500);

/// The reconnects left to one request.
pub struct Reconnects<'a> {
    report: &'a Report,
    attempts: u32,
    backoff: u64,
    done: u32,
    /// When the first "too many clients" came, and how many followed.
    busy_since: Option<Instant>,
    busy: u32,
    random: Option<Random>,
}

impl<'a> Reconnects<'a> {
    /// The schedule `connection` sets (`CRONLOCK_RECONNECT_*`).
    pub fn of(report: &'a Report, connection: &crate::config::Connection) -> Reconnects<'a> {
        Reconnects::new(report, connection.reconnect_attempts, connection.reconnect_backoff)
    }

    /// `attempts` reconnects at most, `backoff` seconds more each time.
    pub fn new(report: &'a Report, attempts: u32, backoff: u64) -> Reconnects<'a> {
        Reconnects {
            report,
            attempts,
            backoff,
            done: 0,
            busy_since: None,
            busy: 0,
            random: None,
        }
    }

    /// After `server` refused a connection or a request because it has too
    /// many clients: waits a short jittered pause and returns, for as long
    /// as `limit` (the store's `CRONLOCK_REDIS_TIMEOUT`; `None`: no limit)
    /// has not passed since the first such refusal, else the error. Such
    /// refusals do not spend the reconnects of [`Reconnects::after`].
    pub fn busy(&mut self, server: &str, err: &str, limit: Option<Duration>) -> Result<()> {
        let since = *self.busy_since.get_or_insert_with(Instant::now);
        if limit.is_some_and(|limit| since.elapsed() >= limit) {
            bail!(
                "{server}: {err}; still so after {}s of retries (a server at its connection limit: raise the limit, put a pooler in front, or spread the fleet's start with CRONLOCK_JITTER)",
                since.elapsed().as_secs()
            );
        }
        let base = BUSY_PAUSE_FIRST
            .saturating_mul(1 << self.busy.min(10))
            .min(BUSY_PAUSE_MAX);
        let pause = self.random.get_or_insert_with(Random::seeded).around_half(base);
        self.busy += 1;
        // Only every eighth, so that a herd's verbose log stays readable.
        if self.busy % 8 == 1 {
            self.report.info(format_args!(
                "{server}: {err}; busy, trying again in {} ms ({} so far)",
                pause.as_millis(),
                self.busy
            ));
        }
        if let Some(signal) = signals::sleep_unless_told_to_stop(pause) {
            bail!("stopped by {signal} while waiting for {server} to take one more client");
        }
        Ok(())
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
