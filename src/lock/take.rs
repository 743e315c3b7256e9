//! Taking the lock, for every store alike: the start-up jitter
//! (`CRONLOCK_JITTER`), the slots of a semaphore (`CRONLOCK_CONCURRENCY`) and
//! waiting for a held lock to come free (`CRONLOCK_WAIT`).
//!
//! A semaphore of N is N locks: slot 1 is the plain key, so N = 1 is exactly
//! the normal lock (same key, same value), and slot i > 1 is the key plus
//! `:i`. Each slot is taken or taken over by the store's own atomic step, so a
//! holder that dies frees its slot as it would free a plain lock (its TTL, its
//! lease, or at once where the store can tell).

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::lock::{Acquire, Claim, Lease, LockStore};
use crate::net::random::Random;
use crate::process::signals;
use crate::report::Report;

/// The first pause of a waiter, doubled after each try up to [`MAX_PAUSE`].
/// A second, so that with the store's own blocking a waiter costs at most
/// two commands a second.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a waiter.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How to take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Sleep a random 0..=jitter before the first try.
    pub jitter: Duration,
    /// How long to wait for a held lock; zero for not at all.
    pub wait: Duration,
    /// How many copies may run at once (1: a plain lock).
    pub slots: u32,
}

/// What came of it.
#[derive(Debug)]
pub enum Taken {
    /// We hold a slot.
    Ours {
        /// The slot's lease.
        lease: Lease,
        /// How many seconds ago a stale holder's time ran out, when we took it over.
        expired_ago: Option<i64>,
        /// From the first try to the one that took it: the time spent waiting.
        waited: Duration,
    },
    /// Every slot is held, and the wait (if any) is over; the soonest expiry
    /// of any slot is `expires_in` seconds away.
    Held {
        /// Seconds until the soonest slot may be taken over.
        expires_in: i64,
        /// From the first try to giving up.
        waited: Duration,
    },
    /// A terminating signal arrived while we slept; nothing is held.
    Stopped(Signal),
}

/// Takes a slot of `claim.key` as `plan` says. `on_wait` hears once, with
/// the seconds until the soonest slot may be taken over, that every slot
/// is held and the wait for one begins.
pub fn take(
    store: &mut dyn LockStore,
    claim: &Claim,
    plan: Plan,
    report: &Report,
    on_wait: &mut dyn FnMut(i64),
) -> Result<Taken> {
    let mut random = Random::seeded();
    if !plan.jitter.is_zero() {
        let pause = random.up_to(plan.jitter);
        report.info(format_args!("jitter: sleeping {} ms first", pause.as_millis()));
        if let Some(signal) = signals::sleep_unless_told_to_stop(pause) {
            return Ok(Taken::Stopped(signal));
        }
    }
    let first_try = Instant::now();
    let deadline = first_try + plan.wait;
    let mut pause = FIRST_PAUSE;
    let mut waiting = false;
    loop {
        let tried_at = Instant::now();
        let soonest = match store.acquire_slot(claim, plan.slots)? {
            Acquire::Taken(mut lease) => {
                lease.asked_at.get_or_insert(tried_at);
                return Ok(Taken::Ours {
                    lease,
                    expired_ago: None,
                    waited: tried_at - first_try,
                });
            }
            Acquire::TakenOver { mut lease, expired_ago } => {
                lease.asked_at.get_or_insert(tried_at);
                return Ok(Taken::Ours {
                    lease,
                    expired_ago: Some(expired_ago),
                    waited: tried_at - first_try,
                });
            }
            Acquire::Held { expires_in } => expires_in,
        };
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Ok(Taken::Held {
                expires_in: soonest,
                waited: now - first_try,
            });
        }
        if !waiting {
            waiting = true;
            on_wait(soonest);
        }
        // A holder in its grace has a known end: no need to try before it.
        // A running one ends whenever it ends: back off, with jitter so
        // that waiters on many hosts do not try in step.
        let known_end = Duration::from_secs(soonest.max(0) as u64 + 1);
        let sleep = random.around(pause).min(known_end).min(left);
        report.info(format_args!(
            "lock {} is held; trying again in {} ms",
            String::from_utf8_lossy(claim.key),
            sleep.as_millis()
        ));
        if let Some(signal) = store.wait_for_release(claim.key, sleep)? {
            return Ok(Taken::Stopped(signal));
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
