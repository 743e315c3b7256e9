//! What the stores whose lock hangs on a connection (PostgreSQL's advisory
//! lock, MySQL's `GET_LOCK`) share: how long a takeover of a run whose
//! connection is gone waits first, and how a holder whose connection the
//! server ended judges what it found when it tried to take its lock back.
//!
//! The two go together. A contender keeps the lock [`TAKEOVER_AFTER`]
//! before it touches the crashed run's record; a holder that still runs
//! looks at its connection every [`HOLD_CHECK_EVERY`], and once it finds the
//! lock held by another session on two checks in a row it kills its
//! command, well before that contender gets there.

use std::time::Duration;

use crate::config::Connection;
use crate::lock::{Feature, Keep};
use crate::report::Report;

/// How long a contender keeps the lock of a run whose connection is gone
/// before it takes that run's record over.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(2);

/// How often a holder looks at the connection that holds its lock.
pub const HOLD_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The longest a holder waits for the server while taking its lock back:
/// a third of the takeover's pause, or less if `timeout`
/// (`CRONLOCK_REDIS_TIMEOUT`) says so.
pub fn retake_limit(connection: &Connection) -> Duration {
    connection.timeout_within(TAKEOVER_AFTER / 3)
}

/// A contender's pause before it takes over a run whose connection is gone.
pub fn pause_before_takeover(report: &Report) {
    report.info(format_args!(
        "the run holding the lock has lost its connection; taking it over in {}s unless it changes",
        TAKEOVER_AFTER.as_secs()
    ));
    std::thread::sleep(TAKEOVER_AFTER);
}

/// What a holder found when it tried to take its lock back on a new
/// connection.
pub enum Retake {
    /// Taken back, and the record moved onto the new connection.
    Back,
    /// The server could not be reached (why): nobody can take the record
    /// over through it.
    Unreachable(String),
    /// Our old connection still holds it on its way out (nobody else can).
    Ending,
    /// Another session holds it.
    Other,
    /// Taken back, but the record is no longer ours.
    NotOurs,
    /// The lock table is gone.
    TableGone,
    /// Taking it back failed otherwise (why).
    Failed(String),
}

/// One holder's checks, from one to the next.
pub struct HoldCheck {
    /// The lock as messages name it ("the advisory lock").
    lock: &'static str,
    /// Why the command is killed when another session holds the lock.
    taken: &'static str,
    /// The last check found the lock held by another session.
    other_seen: bool,
    /// The last check could not reach the server, and said so.
    unreachable_said: bool,
}

impl HoldCheck {
    pub fn new(lock: &'static str, taken: &'static str) -> HoldCheck {
        HoldCheck {
            lock,
            taken,
            other_seen: false,
            unreachable_said: false,
        }
    }

    /// What the supervisor is told: `Err(why)` kills the command.
    pub fn judge(&mut self, found: Retake, report: &Report) -> Result<(), String> {
        if let Retake::Unreachable(why) = &found {
            if !self.unreachable_said {
                report.info(format_args!(
                    "the connection holding {} is gone; cannot take it back yet: {why}",
                    self.lock
                ));
                self.unreachable_said = true;
            }
            return Ok(());
        }
        self.unreachable_said = false;
        match found {
            Retake::Back => {
                self.other_seen = false;
                Ok(())
            }
            Retake::Unreachable(_) | Retake::Ending => Ok(()),
            // Maybe a run that is only looking (it lets go within its
            // statement or as it disconnects), or our old connection on
            // its way out; a takeover keeps it TAKEOVER_AFTER, several
            // checks. Next check.
            Retake::Other if !self.other_seen => {
                self.other_seen = true;
                Ok(())
            }
            Retake::Other => Err(self.taken.to_string()),
            Retake::NotOurs => Err("the lock is no longer ours (taken over or deleted)".to_string()),
            Retake::TableGone => Err("the lock table is gone".to_string()),
            Retake::Failed(why) => Err(format!(
                "the connection holding {} is gone, and taking it back failed: {why}",
                self.lock
            )),
        }
    }
}

/// Why tooz's lock on a connection (`GET_LOCK`, the advisory lock) cannot
/// do `feature`: it lives exactly as long as its session.
pub fn tooz_lacks(feature: Feature) -> Option<&'static str> {
    Some(match feature {
        Feature::Hold => "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's session lock, which ends with the command",
        Feature::Lease => "tooz's lock lives as long as its connection; there is nothing to renew",
    })
}

/// Says, when verbose, that tooz's session lock keeps no grace period: it
/// goes with the connection at the end of the command, as coolock's does
/// (coolock's guard time only keeps its own process alive a while).
pub fn tooz_no_grace(keep: Keep, report: &Report) {
    if keep.grace >= 0 {
        report.info(format_args!(
            "CRONLOCK_KEY_STYLE=tooz: no grace period, the lock ends with the command as tooz's does"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_session_kills_the_command_on_the_second_check_in_a_row_only() {
        let report = Report { verbose: false };
        let mut check = HoldCheck::new("the lock", "taken");
        assert_eq!(check.judge(Retake::Other, &report), Ok(()));
        assert_eq!(check.judge(Retake::Back, &report), Ok(()));
        assert_eq!(check.judge(Retake::Other, &report), Ok(()));
        assert_eq!(check.judge(Retake::Unreachable("down".into()), &report), Ok(()));
        assert_eq!(check.judge(Retake::Other, &report), Err("taken".to_string()));
    }
}
