//! The lock protocol, shared by every store: what a store is asked to do
//! and what it answers. The stores themselves live in `crate::store`.
//!
//! Every store keeps the original script's meaning of a lock: it expires at
//! a unix time, start + RELEASE + 1 while the command runs and afterwards
//! the later of start + GRACE + 1 and end + HOLD + 1; a lock whose time is
//! now or later is held, one in the past may be taken over by exactly one
//! contender, and a release never touches a lock that is no longer ours.
//!
//! Around the protocol: [`take`] takes it for every store alike (jitter,
//! semaphore slots, waiting), [`lease`] keeps it while the command runs, and
//! [`owner`] is the record of who holds it.

pub mod lease;
pub mod owner;
pub mod take;

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;

/// What a run asks for when it tries to take a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The full key (prefix included).
    pub key: &'a [u8],
    /// Seconds after which a running holder may be taken over
    /// (`CRONLOCK_RELEASE`, or the lease in lease mode).
    pub release: i64,
    /// Who runs the command (node, pid, start, command line), for stores
    /// that record it beside the lock; see `crate::lock::owner`.
    pub owner: Option<&'a str>,
}

/// A lock we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The full key (prefix included).
    pub key: Vec<u8>,
    /// When we took it (unix seconds, the store's clock).
    pub start: i64,
    /// The value we wrote: start + RELEASE + 1.
    pub expires_at: i64,
    /// A store's own proof of ownership (a row's token, a node's path, a
    /// lease id), for stores whose release checks more than the expiry.
    pub token: Option<String>,
    /// A moment just before the request that wrote `expires_at`, from which
    /// lease mode counts its first deadline: set by `take::take` around each
    /// try, or by a store whose write comes well after its try began (a
    /// takeover that pauses first).
    pub asked_at: Option<Instant>,
}

impl Lease {
    /// A lease without a token.
    pub fn new(key: &[u8], start: i64, expires_at: i64) -> Lease {
        Lease {
            key: key.to_vec(),
            start,
            expires_at,
            token: None,
            asked_at: None,
        }
    }
}

/// The result of trying to take the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Nobody held it.
    Taken(Lease),
    /// A holder whose time had run out was replaced.
    TakenOver {
        /// Our lease.
        lease: Lease,
        /// How many seconds ago the previous holder's time ran out.
        expired_ago: i64,
    },
    /// Someone holds it; `expires_in` seconds are left (0: expiring now).
    Held {
        /// Seconds until it may be taken over.
        expires_in: i64,
    },
}

/// How long the lock outlives the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// `CRONLOCK_GRACE`: kept until start + grace + 1 (negative: dropped at once).
    pub grace: i64,
    /// `CRONLOCK_HOLD`: kept until the end + hold + 1; 0 for none.
    pub hold: i64,
}

impl Keep {
    /// The unix time until which the lock is kept, for a run that started at
    /// `start` and ended at `now` (both on the store's clock): the later of
    /// the grace, counted from the start, and the hold, counted from the end.
    pub fn until(self, start: i64, now: i64) -> i64 {
        let grace = start + self.grace + 1;
        if self.hold > 0 {
            grace.max(now + self.hold + 1)
        } else {
            grace
        }
    }
}

/// What the release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The lock stays until this unix time (the grace or the hold).
    Kept {
        /// Unix time at which it expires.
        until: i64,
    },
    /// The grace was already over: the lock is gone.
    Dropped,
    /// Someone else holds it now; it was left alone.
    NotOurs,
}

/// What one lease renewal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours, now until this unix time.
    Renewed {
        /// The new value.
        expires_at: i64,
    },
    /// Someone else holds it (or nobody: it was deleted).
    Lost,
    /// No answer in time.
    Unconfirmed {
        /// Why, for the log.
        message: String,
        /// The renewal may have run without our seeing the answer.
        maybe_sent: bool,
    },
}

/// One lock as a store sees it, for the operator tool (`cronlockctl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The full key.
    pub key: Vec<u8>,
    /// The lock's expiry, unix seconds (the original's value); `None` for a
    /// value that is not a number, which the original reads as expired.
    pub expires_at: Option<i64>,
    /// The store's clock when it looked.
    pub now: i64,
    /// The owner record (see `crate::lock::owner`), when there is one.
    pub owner: Option<String>,
    /// Whether the holder's command still runs, where the store can tell
    /// (a flock, a session, a lease); `None` where only the record speaks.
    pub running: Option<bool>,
}

/// Settings that not every store can honour. A store that lacks one says
/// why, and the run stops with that reason before anything is locked,
/// instead of silently ignoring the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `CRONLOCK_LEASE`: renewals while the command runs.
    Lease,
    /// `CRONLOCK_HOLD`: keeping the lock after the command, counted from its end.
    Hold,
}

impl Feature {
    /// The variable that asks for it.
    pub fn variable(self) -> &'static str {
        match self {
            Feature::Lease => "CRONLOCK_LEASE",
            Feature::Hold => "CRONLOCK_HOLD",
        }
    }
}

/// What a store keeps of a job's runs (`CRONLOCK_HISTORY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The newest runs, newest first, each one line of JSON.
    pub runs: Vec<String>,
    /// The last run that exited 0, however old.
    pub last_success: Option<String>,
}

/// How far a store's fencing tokens (`CRONLOCK_FENCING`) can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// The store gives none, for this reason.
    Unsupported(&'static str),
    /// They grow for as long as the store keeps its data, but a lost
    /// counter (an evicted item, a server that keeps nothing on disk) may
    /// start again lower, for this reason: `CRONLOCK_FENCING=required`
    /// refuses the store.
    BestEffort(&'static str),
    /// They grow as long as the store's data survives (its own revision
    /// or a counter it writes to disk).
    Durable,
}

/// A place where locks live.
pub trait LockStore {
    /// The store's kind, for messages ("redis", "directory", ...).
    fn kind(&self) -> &'static str;
    /// Why this store cannot do `feature`, or `None` when it can.
    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        let _ = feature;
        None
    }
    /// Tries to take `claim.key`, writing start + `claim.release` + 1 as its expiry.
    fn acquire(&mut self, claim: &Claim) -> Result<Acquire>;
    /// `CRONLOCK_CONCURRENCY`: takes the first of `slots` slots of
    /// `claim.key` that is free or stale (see [`slot_key`]); the
    /// lease names the slot. When all are held, the soonest expiry. The
    /// default tries them one request each; a store may do it in one.
    fn acquire_slot(&mut self, claim: &Claim, slots: u32) -> Result<Acquire> {
        slot_by_slot(self, claim, slots)
    }
    /// After the command: keep the lock as `keep` says, if it is still ours.
    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release>;
    /// Removes `key` whoever holds it; true if it existed.
    fn reset(&mut self, key: &[u8]) -> Result<bool>;
    /// A waiter's pause (`CRONLOCK_WAIT`) while `key` is held: returns after
    /// at most `limit`, sooner where the store can tell that the lock was
    /// given back, or when a terminating signal arrives (returned). The
    /// default sleeps; a store with notifications wakes at the release.
    fn wait_for_release(&mut self, key: &[u8], limit: Duration) -> Result<Option<Signal>> {
        let _ = key;
        Ok(crate::process::signals::sleep_unless_told_to_stop(limit))
    }
    /// The lock `key` as it stands, or `None` when there is none.
    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let _ = key;
        anyhow::bail!("the {} store cannot show its locks yet", self.kind())
    }
    /// Every lock whose key starts with `prefix` (all locks for an empty one).
    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let _ = prefix;
        anyhow::bail!("the {} store cannot list its locks yet", self.kind())
    }
    /// How often [`LockStore::check_hold`] should run while the command
    /// runs; `None` (the default) for a lock that hangs on no connection.
    fn hold_check_every(&self) -> Option<Duration> {
        None
    }
    /// While the command runs, for a store whose lock also hangs on a
    /// connection: `Err(why)` when that hold is gone and could not be taken
    /// back, so that another run may take the job over (the command is
    /// then killed). Cannot tell (the server unreachable): `Ok`.
    fn check_hold(&mut self, lease: &Lease) -> Result<(), String> {
        let _ = lease;
        Ok(())
    }
    /// Whether [`LockStore::fence`] works here, and how far to trust it.
    fn fencing(&self) -> Fencing {
        Fencing::Unsupported("it has no fencing tokens yet")
    }
    /// `CRONLOCK_FENCING`: the next fencing token of the counter `name`
    /// (the job's key), taken while `lease` is still ours, so that every
    /// later holder of the lock gets a larger one. `None`: the lock was
    /// taken over before the token was (nothing was bumped that a later
    /// holder could fall behind, or the bump is harmless: see the store).
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let _ = (lease, name);
        anyhow::bail!("the {} store has no fencing tokens", self.kind())
    }
    /// The newest fencing token given for `name`, `None` if none was.
    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let _ = name;
        anyhow::bail!("the {} store has no fencing tokens", self.kind())
    }
    /// Whether [`LockStore::record_run`] works here (`CRONLOCK_HISTORY`).
    fn keeps_history(&self) -> bool {
        false
    }
    /// `CRONLOCK_HISTORY`: adds `record` (one line of JSON, see
    /// `owner::run_record`) to the runs kept for the job key `name`,
    /// keeping the newest `keep`; a run that `succeeded` is also kept as the
    /// job's last success, however many runs come after it.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let _ = (name, record, succeeded, keep);
        anyhow::bail!("the {} store keeps no run history", self.kind())
    }
    /// The runs kept for `name`, newest first, and its last success.
    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let _ = name;
        anyhow::bail!("the {} store keeps no run history", self.kind())
    }
    /// Variables the command gets beside cronlock's own, where a peer tool
    /// gives its child some (etcdctl lock's `ETCD_LOCK_KEY`).
    fn job_env(&self, lease: &Lease) -> Vec<(String, String)> {
        let _ = lease;
        Vec::new()
    }
    /// Lease mode: one try, within `limit`, to extend the lock to now +
    /// `seconds` + 1 if it is still ours. `after_unknown`: the previous try
    /// may have renewed without our seeing the answer.
    fn renew(&mut self, lease: &Lease, seconds: i64, after_unknown: bool, limit: Duration) -> Renewal {
        let _ = (lease, seconds, after_unknown, limit);
        Renewal::Unconfirmed {
            message: format!("the {} store has no lease mode", self.kind()),
            maybe_sent: false,
        }
    }
}

/// [`LockStore::acquire_slot`]'s default, for a store that overrides it
/// only in some cases: each slot's key tried in turn, one `acquire` each.
pub fn slot_by_slot<S: LockStore + ?Sized>(store: &mut S, claim: &Claim, slots: u32) -> Result<Acquire> {
    let mut soonest = i64::MAX;
    for slot in 1..=slots.max(1) {
        let key = slot_key(claim.key, slot);
        match store.acquire(&Claim { key: &key, ..*claim })? {
            Acquire::Held { expires_in } => soonest = soonest.min(expires_in),
            taken => return Ok(taken),
        }
    }
    Ok(Acquire::Held { expires_in: soonest })
}

/// The key of slot `slot` (1-based) of a semaphore on `key`.
pub fn slot_key(key: &[u8], slot: u32) -> Vec<u8> {
    let mut name = key.to_vec();
    if slot > 1 {
        name.extend_from_slice(format!(":{slot}").as_bytes());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_later_of_grace_and_hold_wins() {
        let grace_only = Keep { grace: 40, hold: 0 };
        assert_eq!(grace_only.until(100, 200), 141);
        let both = Keep { grace: 40, hold: 10 };
        assert_eq!(both.until(100, 120), 141, "grace from the start is later");
        assert_eq!(both.until(100, 200), 211, "hold from the end is later");
        let negative = Keep { grace: -1, hold: 0 };
        assert_eq!(negative.until(100, 100), 100);
    }

    #[test]
    fn slot_one_is_the_plain_key() {
        assert_eq!(slot_key(b"cronlock.x", 1), b"cronlock.x");
        assert_eq!(slot_key(b"cronlock.x", 2), b"cronlock.x:2");
        assert_eq!(slot_key(b"cronlock.x", 10), b"cronlock.x:10");
    }
}
