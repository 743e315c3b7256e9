//! tooz's MySQL lock (`CRONLOCK_KEY_STYLE=tooz` on `mysql://`), as tooz
//! 1.67.2's `MySQLLock` takes it: the named lock `GET_LOCK('<name>', 0)` on a
//! connection of its own, taken only when the answer is 1, held for as long
//! as that connection lives, and let go with `RELEASE_LOCK('<name>')` before
//! the connection is closed. No table, no row: the name alone is the lock,
//! so coolock hosts and cronlock hosts exclude each other.
//!
//! The lock ends with the command (no grace, no `CRONLOCK_HOLD`) and has
//! nothing to renew. What it does need is the hold check: if the server
//! ends the connection while the command runs, the name is free and a
//! coolock may take it and start the job, so the name is taken back on a
//! new connection or the command is stopped (see `crate::store::hold`).

use std::time::Duration;

use anyhow::{Context, Result};
use mysql::prelude::Queryable;
use mysql::Conn;

use super::settings::MysqlTarget;
use super::{ended, Failure, MysqlLock, IDLE_SECONDS};
use crate::lock::{Acquire, Claim, Feature, Fencing, Keep, Lease, LockStore, Release};
use crate::report::Report;
use crate::store::hold::{self, HoldCheck, Retake, HOLD_CHECK_EVERY};

/// tooz's named locks on a MySQL or MariaDB server.
pub struct ToozMysqlLock<'a> {
    /// The store's own connector (TLS, timeouts, reconnects); its main
    /// connection is the one that holds the name.
    mysql: MysqlLock<'a>,
    target: &'a MysqlTarget,
    report: &'a Report,
    /// The name we hold while the command runs.
    held: Option<String>,
    /// The current connection holds the name (false after the server ended it).
    has_get_lock: bool,
    hold: HoldCheck,
}

/// The key as a `GET_LOCK` name: tooz's names are text.
fn lock_name(key: &[u8]) -> Result<&str> {
    std::str::from_utf8(key).context("CRONLOCK_KEY: a tooz lock name is text (UTF-8)")
}

/// `GET_LOCK(name, 0)` on `conn`, the name a bound parameter, after making
/// the connection last as long as the command may (the server's default
/// `wait_timeout` would end an idle one after 8 hours). Whether it was
/// taken (1; 0 is held elsewhere, NULL an error on the server's side, both
/// "not taken" to tooz), and the server's clock.
fn get_lock(conn: &mut Conn, name: &str) -> Result<(bool, i64), mysql::Error> {
    conn.query_drop(format!("SET SESSION wait_timeout = {IDLE_SECONDS}"))?;
    let answer: Option<(Option<i64>, i64)> = conn.exec_first("SELECT GET_LOCK(?, 0), UNIX_TIMESTAMP()", (name,))?;
    Ok(answer.map_or((false, 0), |(got, now)| (got == Some(1), now)))
}

impl<'a> ToozMysqlLock<'a> {
    /// tooz's locks on `target`; nothing is sent until the first call.
    pub fn new(target: &'a MysqlTarget, report: &'a Report) -> Result<ToozMysqlLock<'a>> {
        Ok(ToozMysqlLock {
            mysql: MysqlLock::new(target, report)?,
            target,
            report,
            held: None,
            has_get_lock: false,
            hold: HoldCheck::new(
                "tooz's GET_LOCK",
                "the server closed the connection that held tooz's GET_LOCK, and another session has taken the name (a coolock host may be running the job)",
            ),
        })
    }
}

impl LockStore for ToozMysqlLock<'_> {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        hold::tooz_lacks(feature)
    }

    fn fencing(&self) -> Fencing {
        Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's GET_LOCK alone, which coolock hosts take without a fencing token",
        )
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let name = lock_name(claim.key)?;
        let (got, now) = self.mysql.with_retries(|store| {
            let result = get_lock(store.conn()?, name);
            result.map_err(|err| store.classify(err, false))
        })?;
        if !got {
            // As tooz does: the connection goes with the failed try.
            self.mysql.conn = None;
            return Ok(Acquire::Held {
                expires_in: claim.release,
            });
        }
        self.held = Some(name.to_string());
        self.has_get_lock = true;
        Ok(Acquire::Taken(Lease::new(claim.key, now, now + claim.release + 1)))
    }

    fn release(&mut self, _lease: &Lease, keep: Keep) -> Result<Release> {
        hold::tooz_no_grace(keep, self.report);
        let Some(name) = self.held.take() else {
            return Ok(Release::NotOurs);
        };
        let conn = self.mysql.conn.take();
        if !std::mem::take(&mut self.has_get_lock) {
            // Lost with its connection while the command ran.
            return Ok(Release::NotOurs);
        }
        let Some(mut conn) = conn.filter(|conn| !ended(conn)) else {
            // The server ended the connection, and the name went with it.
            return Ok(Release::Dropped);
        };
        // 1: ours, let go; 0: another session's; NULL: nobody's.
        let released: Result<Option<Option<i64>>, _> = conn.exec_first("SELECT RELEASE_LOCK(?)", (name.as_str(),));
        // Closing the connection frees the name in any case.
        drop(conn);
        match released {
            Ok(Some(Some(1))) => Ok(Release::Dropped),
            Ok(_) => Ok(Release::NotOurs),
            Err(err) => match self.mysql.classify(err, false) {
                Failure::Fatal(err) => Err(err),
                // The connection broke: the server frees the name as it notices.
                _ => Ok(Release::Dropped),
            },
        }
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let name = lock_name(key)?;
        anyhow::bail!(
            "tooz's lock {name:?} on MySQL lives as long as its holder's connection; it cannot be cleared (end that connection: KILL IS_USED_LOCK('{name}'))"
        )
    }

    fn hold_check_every(&self) -> Option<Duration> {
        self.held.as_ref().map(|_| HOLD_CHECK_EVERY)
    }

    fn check_hold(&mut self, _lease: &Lease) -> Result<(), String> {
        let Some(name) = self.held.clone() else {
            return Ok(());
        };
        if self.has_get_lock {
            if self.mysql.conn.as_ref().is_some_and(|conn| !ended(conn)) {
                return Ok(());
            }
            // The server ended it (a KILL, a restart, a proxy): the name is
            // free, and a coolock may take it at once. Take it back first,
            // or stop the command.
            self.mysql.conn = None;
            self.has_get_lock = false;
        }
        let limit = hold::retake_limit(&self.target.connection);
        // A connection from a check that found the name taken is tried again.
        let retaken = match self.mysql.conn.take() {
            Some(conn) => Ok(conn),
            None => self.mysql.open(Some(limit)),
        }
        .and_then(|mut conn| {
            let result = get_lock(&mut conn, &name);
            let got = result.map_err(|err| self.mysql.classify(err, false))?.0;
            self.mysql.conn = Some(conn);
            Ok(got)
        });
        let found = match retaken {
            // Nobody can take the name through a server we cannot reach.
            Err(Failure::Retry(why) | Failure::Busy(why) | Failure::Conflict(why)) => Retake::Unreachable(why),
            Err(Failure::NoTable) => Retake::Failed("unexpected answer".to_string()),
            Err(Failure::Fatal(err)) => Retake::Failed(format!("{err:#}")),
            Ok(true) => {
                self.has_get_lock = true;
                self.report
                    .info(format_args!("reconnected and took tooz's GET_LOCK back"));
                Retake::Back
            }
            // Another session, or our old connection not yet closed by the
            // server: MySQL cannot tell them apart.
            Ok(false) => Retake::Other,
        };
        self.hold.judge(found, self.report)
    }
}
