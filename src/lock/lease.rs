//! Keeping the lock while the command runs: lease mode's renewals, and the
//! check of a lock that hangs on a connection.
//!
//! Lease mode (`CRONLOCK_LEASE=N`): the lock lives N seconds at a time and
//! is renewed every N/3 seconds while the command runs, so a host that dies
//! frees its jobs within N seconds instead of CRONLOCK_RELEASE. The value
//! keeps the original's meaning (the unix time the lock expires), so hosts
//! running the original script read a leased lock correctly.
//!
//! A store whose lock also hangs on a connection (PostgreSQL's advisory
//! lock) asks for that hold to be checked every so often
//! ([`LockStore::hold_check_every`]): when the server closes that
//! connection while the holder lives, another run may soon take the job
//! over, and the store says whether it got the hold back.

use std::time::{Duration, Instant};

use crate::lock::{Lease, LockStore, Renewal};
use crate::process::supervise::Keeper;
use crate::report::Report;

/// A renewal that failed is tried again this soon (but never past the deadline).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Keeps one lock for the supervisor: renews its lease (lease mode) and
/// checks the store's hold on it (where the store asks for that).
pub struct LockKeeper<'a> {
    store: &'a mut dyn LockStore,
    lease: &'a mut Lease,
    report: &'a Report,
    renewals: Option<Renewals>,
    checks: Option<Checks>,
}

/// Lease mode's schedule.
struct Renewals {
    seconds: i64,
    /// When the request behind the last confirmation was sent.
    confirmed_at: Instant,
    next: Instant,
    /// The last try may have renewed without our seeing the answer.
    after_unknown: bool,
}

/// The hold checks' schedule.
struct Checks {
    every: Duration,
    next: Instant,
}

impl Renewals {
    fn period(&self) -> Duration {
        Duration::from_secs((self.seconds / 3).max(1) as u64)
    }

    /// The server wrote value = its now + N + 1 no earlier than
    /// `confirmed_at`, and its now is rounded down, so until `confirmed_at`
    /// + N the value is not in the past and nobody may take the lock over.
    fn deadline(&self) -> Instant {
        self.confirmed_at + Duration::from_secs(self.seconds as u64)
    }
}

impl<'a> LockKeeper<'a> {
    /// `lease_seconds`: lease mode's N, if on. `asked_at`: the moment just
    /// before the request that took the lock. None when there is nothing
    /// to keep (no lease, and a store whose hold needs no checks).
    pub fn new(
        store: &'a mut dyn LockStore,
        lease: &'a mut Lease,
        lease_seconds: Option<i64>,
        asked_at: Instant,
        report: &'a Report,
    ) -> Option<LockKeeper<'a>> {
        let checks = store.hold_check_every().map(|every| Checks {
            every,
            next: Instant::now() + every,
        });
        let renewals = lease_seconds.map(|seconds| {
            let mut renewals = Renewals {
                seconds,
                confirmed_at: asked_at,
                next: asked_at,
                after_unknown: false,
            };
            renewals.next = asked_at + renewals.period();
            renewals
        });
        if renewals.is_none() && checks.is_none() {
            return None;
        }
        Some(LockKeeper {
            store,
            lease,
            report,
            renewals,
            checks,
        })
    }

    fn renew(&mut self) -> Result<(), String> {
        let Some(renewals) = self.renewals.as_mut() else {
            return Ok(());
        };
        let sent_at = Instant::now();
        let limit = renewals.deadline().saturating_duration_since(sent_at);
        match self
            .store
            .renew(self.lease, renewals.seconds, renewals.after_unknown, limit)
        {
            Renewal::Renewed { expires_at } => {
                self.lease.expires_at = expires_at;
                renewals.confirmed_at = sent_at;
                renewals.next = sent_at + renewals.period();
                renewals.after_unknown = false;
                self.report.info(format_args!("lease renewed until {expires_at}"));
                Ok(())
            }
            Renewal::Lost => Err("the lock is no longer ours (taken over or deleted)".to_string()),
            Renewal::Unconfirmed { message, maybe_sent } => {
                renewals.after_unknown |= maybe_sent;
                renewals.next = (Instant::now() + RETRY_EVERY).min(renewals.deadline());
                eprintln!("cronlock: lease renewal failed, retrying: {message}");
                Ok(())
            }
        }
    }
}

impl Keeper for LockKeeper<'_> {
    fn due(&self) -> Instant {
        let renewal = self.renewals.as_ref().map(|r| r.next);
        let check = self.checks.as_ref().map(|c| c.next);
        // `new` makes no keeper that has neither.
        renewal.into_iter().chain(check).min().unwrap_or_else(Instant::now)
    }

    fn deadline(&self) -> Option<Instant> {
        self.renewals.as_ref().map(Renewals::deadline)
    }

    fn keep(&mut self) -> Result<(), String> {
        let now = Instant::now();
        if let Some(checks) = self.checks.as_mut().filter(|c| now >= c.next) {
            checks.next = now + checks.every;
            self.store.check_hold(self.lease)?;
        }
        if self.renewals.as_ref().is_some_and(|r| now >= r.next) {
            self.renew()?;
        }
        Ok(())
    }
}
