//! tooz's PostgreSQL lock (`CRONLOCK_KEY_STYLE=tooz` on `postgresql://`), as
//! tooz 1.67.2's `PostgresLock` takes it: the session advisory lock in its
//! two-integer form, keyed by the first two bytes of md5(name) read as
//! numbers 0-255 (`coolock`: md5 `59 27 f9 8d …`, so (89, 39)), taken with
//! `pg_try_advisory_lock(a, b)` on a connection of its own, held for as long
//! as that connection lives, and let go with `pg_advisory_unlock(a, b)`.
//! Advisory locks are per database: only the same pair in the URL's
//! database excludes tooz. No table is used.
//!
//! The lock ends with the command (no grace, no `CRONLOCK_HOLD`) and has
//! nothing to renew. If the server ends the connection while the command
//! runs, the lock is free and a coolock may take it, so the hold check takes
//! it back on a new connection or stops the command (see
//! `crate::store::hold`).

use std::time::Duration;

use anyhow::Result;
use tokio_postgres::types::{ToSql, Type};

use super::settings::PostgresTarget;
use super::{first, get, Failure, PostgresLock};
use crate::lock::{Acquire, Claim, Feature, Fencing, Keep, Lease, LockStore, Release};
use crate::report::Report;
use crate::store::hold::{self, HoldCheck, Retake, HOLD_CHECK_EVERY};

/// $1, $2 the pair. Whether it was taken, the server's clock, our backend.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1, $2), extract(epoch FROM now())::bigint, pg_backend_pid()";

/// $1, $2 the pair. Whether it was ours and is let go.
const UNLOCK: &str = "SELECT pg_advisory_unlock($1, $2)";

/// $1, $2 the pair: tries to take it again on a new connection after the
/// server ended ours. Whether it was taken, and if not the backend that
/// holds it (as `pg_locks` shows a two-integer advisory lock: `classid`
/// and `objid` the pair, `objsubid` 2).
const RETAKE: &str = "WITH s AS (SELECT pg_try_advisory_lock($1, $2) AS got, pg_backend_pid() AS backend)
SELECT s.got, (SELECT min(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
                  AND classid::bigint = $1 AND objid::bigint = $2 AND pid <> s.backend)
FROM s";

/// tooz's key for lock `name`: the first two bytes of its md5, each as a
/// number 0-255.
pub fn tooz_pair(name: &[u8]) -> (i32, i32) {
    let digest = md5::compute(name).0;
    (i32::from(digest[0]), i32::from(digest[1]))
}

/// tooz's advisory locks in a PostgreSQL database.
pub struct ToozPostgresLock<'a> {
    /// The store's own client (TLS, deadlines, reconnects); its connection
    /// is the one that holds the lock.
    pg: PostgresLock<'a>,
    target: &'a PostgresTarget,
    report: &'a Report,
    /// The pair we hold while the command runs.
    held: Option<(i32, i32)>,
    /// The current connection holds it (false after the server ended it).
    has_lock: bool,
    /// The backend that took it, to tell it on its way out from another session.
    backend: i32,
    hold: HoldCheck,
}

impl<'a> ToozPostgresLock<'a> {
    /// tooz's locks in `target`'s database; nothing is sent until the first call.
    pub fn new(target: &'a PostgresTarget, report: &'a Report) -> Result<ToozPostgresLock<'a>> {
        Ok(ToozPostgresLock {
            pg: PostgresLock::new(target, report)?,
            target,
            report,
            held: None,
            has_lock: false,
            backend: 0,
            hold: HoldCheck::new(
                "tooz's advisory lock",
                "the server closed the connection that held tooz's advisory lock, and another session has taken it (a coolock host may be running the job)",
            ),
        })
    }
}

impl LockStore for ToozPostgresLock<'_> {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        hold::tooz_lacks(feature)
    }

    fn fencing(&self) -> Fencing {
        Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's advisory lock alone, which coolock hosts take without a fencing token",
        )
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let (a, b) = tooz_pair(claim.key);
        let params: [(&(dyn ToSql + Sync), Type); 2] = [(&a, Type::INT4), (&b, Type::INT4)];
        let rows = self
            .pg
            .query(TRY_LOCK, &params)
            .map_err(|failure| self.pg.fatal(failure))?;
        let row = first(&rows)?;
        let (got, now, backend): (bool, i64, i32) = (get(row, 0)?, get(row, 1)?, get(row, 2)?);
        if !got {
            // As tooz does: the connection goes with the failed try.
            self.pg.client = None;
            return Ok(Acquire::Held {
                expires_in: claim.release,
            });
        }
        self.held = Some((a, b));
        self.has_lock = true;
        self.backend = backend;
        Ok(Acquire::Taken(Lease::new(claim.key, now, now + claim.release + 1)))
    }

    fn release(&mut self, _lease: &Lease, keep: Keep) -> Result<Release> {
        hold::tooz_no_grace(keep, self.report);
        let Some((a, b)) = self.held.take() else {
            return Ok(Release::NotOurs);
        };
        if !std::mem::take(&mut self.has_lock) {
            // Lost with its connection while the command ran.
            self.pg.client = None;
            return Ok(Release::NotOurs);
        }
        if self.pg.connection_closed() {
            // The server ended the connection, and the lock went with it.
            self.pg.client = None;
            return Ok(Release::Dropped);
        }
        let params: [(&(dyn ToSql + Sync), Type); 2] = [(&a, Type::INT4), (&b, Type::INT4)];
        let unlocked = self.pg.try_query(UNLOCK, &params, self.target.connection.timeout);
        // Closing the connection frees the lock in any case.
        self.pg.client = None;
        match unlocked {
            Ok(rows) => Ok(if get::<bool>(first(&rows)?, 0)? {
                Release::Dropped
            } else {
                Release::NotOurs
            }),
            // The connection broke: the server frees the lock as it notices.
            Err(Failure::Retry(_) | Failure::Busy(_)) => Ok(Release::Dropped),
            Err(failure) => Err(self.pg.fatal(failure)),
        }
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let (a, b) = tooz_pair(key);
        anyhow::bail!(
            "tooz's advisory lock ({a}, {b}) lives as long as its holder's connection; it cannot be cleared (end that connection: pg_terminate_backend of the pid pg_locks shows for it)"
        )
    }

    fn hold_check_every(&self) -> Option<Duration> {
        self.held.map(|_| HOLD_CHECK_EVERY)
    }

    fn check_hold(&mut self, _lease: &Lease) -> Result<(), String> {
        let Some((a, b)) = self.held else {
            return Ok(());
        };
        if self.has_lock && !self.pg.connection_closed() {
            return Ok(());
        }
        // The server ended our connection (a terminate, a restart, a proxy):
        // the lock is free, and a coolock may take it at once. Take it back
        // first, or stop the command. try_query opens the new connection.
        self.has_lock = false;
        let params: [(&(dyn ToSql + Sync), Type); 2] = [(&a, Type::INT4), (&b, Type::INT4)];
        let limit = hold::retake_limit(&self.target.connection);
        let found = match self.pg.try_query(RETAKE, &params, Some(limit)) {
            // Nobody can take it through a server we cannot reach.
            Err(Failure::Retry(why) | Failure::Busy(why)) => Retake::Unreachable(why),
            Err(Failure::NoTable) => Retake::Failed("unexpected answer".to_string()),
            Err(Failure::Fatal(err)) => Retake::Failed(format!("{err:#}")),
            Ok(rows) => {
                let answer = first(&rows).and_then(|row| Ok((get::<bool>(row, 0)?, get::<Option<i32>>(row, 1)?)));
                match answer {
                    Err(err) => Retake::Failed(format!("{err:#}")),
                    Ok((true, _)) => {
                        self.has_lock = true;
                        self.report.info(format_args!(
                            "reconnected and took tooz's advisory lock ({a}, {b}) back"
                        ));
                        Retake::Back
                    }
                    // Our old backend has told us it is ending but not yet let go.
                    Ok((false, holder)) if holder == Some(self.backend) => Retake::Ending,
                    Ok((false, _)) => Retake::Other,
                }
            }
        };
        self.hold.judge(found, self.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_is_the_first_two_md5_bytes() {
        // md5("coolock") = 5927f98d...
        assert_eq!(tooz_pair(b"coolock"), (0x59, 0x27));
        assert_eq!(tooz_pair(b"coolock"), (89, 39));
        // Bytes past 127 stay 128-255, as Python 2's ord() reads them:
        // md5("b") = 92eb...
        assert_eq!(tooz_pair(b"b"), (146, 235));
        assert_eq!(tooz_pair(b"nightly"), (10, 227));
    }
}
