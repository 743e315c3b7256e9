//! Lease mode (`CRONLOCK_LEASE=N`): the lock lives N seconds at a time and
//! is renewed every N/3 seconds while the command runs, so a host that dies
//! frees its jobs within N seconds instead of CRONLOCK_RELEASE.
//!
//! The value keeps the original's meaning (the unix time the lock expires),
//! so hosts running the original script read a leased lock correctly.

use std::time::{Duration, Instant};

use crate::lock::{Lease, LockStore, Renewal};
use crate::report::Report;
use crate::supervise::Keeper;

/// A renewal that failed is tried again this soon (but never past the deadline).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Renews one lease for the supervisor.
pub struct LeaseKeeper<'a> {
    store: &'a mut dyn LockStore,
    lease: &'a mut Lease,
    seconds: i64,
    report: &'a Report,
    /// When the request behind the last confirmation was sent.
    confirmed_at: Instant,
    next: Instant,
    /// The last try may have renewed without our seeing the answer.
    after_unknown: bool,
}

impl<'a> LeaseKeeper<'a> {
    /// `asked_at`: the moment just before the request that took the lock.
    pub fn new(
        store: &'a mut dyn LockStore,
        lease: &'a mut Lease,
        seconds: i64,
        asked_at: Instant,
        report: &'a Report,
    ) -> LeaseKeeper<'a> {
        let mut keeper = LeaseKeeper {
            store,
            lease,
            seconds,
            report,
            confirmed_at: asked_at,
            next: asked_at,
            after_unknown: false,
        };
        keeper.next = asked_at + keeper.period();
        keeper
    }

    fn period(&self) -> Duration {
        Duration::from_secs((self.seconds / 3).max(1) as u64)
    }
}

impl Keeper for LeaseKeeper<'_> {
    fn due(&self) -> Instant {
        self.next
    }

    /// The server wrote value = its now + N + 1 no earlier than
    /// `confirmed_at`, and its now is rounded down, so until `confirmed_at`
    /// + N the value is not in the past and nobody may take the lock over.
    fn deadline(&self) -> Instant {
        self.confirmed_at + Duration::from_secs(self.seconds as u64)
    }

    fn keep(&mut self) -> Result<(), String> {
        let sent_at = Instant::now();
        let limit = self.deadline().saturating_duration_since(sent_at);
        match self.store.renew(self.lease, self.seconds, self.after_unknown, limit) {
            Renewal::Renewed { expires_at } => {
                self.lease.expires_at = expires_at;
                self.confirmed_at = sent_at;
                self.next = sent_at + self.period();
                self.after_unknown = false;
                self.report.info(format_args!("lease renewed until {expires_at}"));
                Ok(())
            }
            Renewal::Lost => Err("the lock is no longer ours (taken over or deleted)".to_string()),
            Renewal::Unconfirmed { message, maybe_sent } => {
                self.after_unknown |= maybe_sent;
                self.next = (Instant::now() + RETRY_EVERY).min(self.deadline());
                eprintln!("cronlock: lease renewal failed, retrying: {message}");
                Ok(())
            }
        }
    }
}
