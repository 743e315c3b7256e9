//! tooz's Redis lock (`CRONLOCK_KEY_STYLE=tooz` on `redis://`), as tooz
//! 1.67.2 takes it through redis-py 3.5.3's `Lock`: the key
//! `<namespace>_<name>_lock` (the namespace `_tooz` unless tooz's URL says
//! `?namespace=`, `CRONLOCK_TOOZ_NAMESPACE` here) holds a token of 32 lowercase hex digits (tooz's is a
//! uuid1; only its uniqueness matters, so ours is random), written with
//! `SET key token NX PX <lease in ms>`; it is released by deleting it while
//! it still holds that token, and tooz's heartbeat extends it on the same
//! condition.
//!
//! coolock never sends the heartbeat, so its lock lapses after 30 s; cronlock
//! renews its own every third of the lease while the command runs, so tooz's
//! peers stay out for the whole run. A grace or a hold keeps the key (with
//! our token) until then instead of deleting it.
//!
//! Each step is a Lua script after the shared prelude (which selects
//! CRONLOCK_DB and reads the server's clock), so every compare-and-set is
//! atomic, over the same connection code as the Redis store: TLS, Sentinel
//! and Cluster redirects work alike.

use std::time::Duration;

use anyhow::{bail, Result};

use super::connect::{AuthRejected, Reply, Retry, Session, Unconfirmed};
use super::int;
use super::settings::RedisTarget;
use crate::lock::{Acquire, Claim, Fencing, Keep, Lease, LockStore, Release, Renewal};
use crate::report::Report;

const ACQUIRE: &str = lock_script!("lua/tooz_acquire.lua");
const RENEW: &str = lock_script!("lua/tooz_renew.lua");
const RELEASE: &str = lock_script!("lua/keep.lua", "lua/tooz_release.lua");
const RESET: &str = lock_script!("lua/tooz_reset.lua");

/// tooz's locks in one Redis database.
pub struct ToozRedisLock<'a> {
    session: Session<'a>,
    db: i64,
    /// Ours, written as the key's value.
    token: String,
    /// tooz's namespace, the start of every lock's key.
    namespace: &'a str,
}

/// The key tooz's Redis driver locks `name` with in `namespace`:
/// `"%s_%s_lock" % (namespace, name)` (`tooz/drivers/redis.py`, `RedisLock`).
pub fn tooz_key(namespace: &str, name: &[u8]) -> Vec<u8> {
    [namespace.as_bytes(), b"_", name, b"_lock"].concat()
}

/// Whole seconds left of a PTTL in milliseconds, rounded up; a key without
/// an expiry (-1) reports `otherwise`.
fn seconds_left(pttl: i64, otherwise: i64) -> i64 {
    if pttl < 0 {
        otherwise
    } else {
        (pttl + 999) / 1000
    }
}

impl<'a> ToozRedisLock<'a> {
    /// A store on `target`; nothing is sent until the first call.
    pub fn new(target: &'a RedisTarget, report: &'a Report, namespace: &'a str) -> Result<ToozRedisLock<'a>> {
        Ok(ToozRedisLock {
            session: Session::new(target, report)?,
            db: target.db,
            token: crate::net::random::token(),
            namespace,
        })
    }

    /// `EVAL script 1 key db args...`, as the prelude reads it.
    fn command(&self, script: &str, name: &[u8], args: &[String]) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(script).arg(1).arg(tooz_key(self.namespace, name)).arg(self.db);
        for arg in args {
            cmd.arg(arg);
        }
        cmd
    }

    fn eval(&mut self, script: &str, name: &[u8], args: &[String], retry: Retry) -> Result<Vec<Reply>> {
        let reply = self.session.query(&self.command(script, name, args), retry)?;
        self.values(reply)
    }

    fn values(&self, reply: Reply) -> Result<Vec<Reply>> {
        match reply {
            Reply::Array(values) => Ok(values),
            Reply::Int(n) => Ok(vec![Reply::Int(n)]),
            other => bail!(
                "{}: unexpected reply to the lock script: {other:?}",
                self.session.describe()
            ),
        }
    }
}

impl LockStore for ToozRedisLock<'_> {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn fencing(&self) -> Fencing {
        Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's Redis key alone, which coolock hosts take without a fencing token",
        )
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let ms = claim.release.saturating_mul(1000);
        let token = self.token.clone();
        // Our token makes a resent acquire safe: it finds the key ours.
        let reply = match self.eval(ACQUIRE, claim.key, &[token.clone(), ms.to_string()], Retry::Idempotent) {
            Ok(reply) => reply,
            Err(err) => {
                // AUTH went with the script, which a server without a
                // password ran anyway: give back what it may have taken.
                if let Some(AuthRejected {
                    reply: Reply::Array(values),
                    ..
                }) = err.downcast_ref()
                {
                    if int(values, 0).ok() == Some(1) {
                        let gone = Keep { grace: -1, hold: 0 };
                        let _ = self.release(&Lease::new(claim.key, 0, 0), gone);
                    }
                }
                return Err(err);
            }
        };
        let now = int(&reply, 1)?;
        match int(&reply, 0)? {
            1 => {
                let mut lease = Lease::new(claim.key, now, now + claim.release);
                lease.token = Some(token);
                Ok(Acquire::Taken(lease))
            }
            0 => Ok(Acquire::Held {
                expires_in: seconds_left(int(&reply, 2)?, claim.release),
            }),
            other => bail!("unexpected status {other} from tooz's acquire script"),
        }
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let args = [
            self.token.clone(),
            lease.start.to_string(),
            keep.grace.to_string(),
            keep.hold.to_string(),
        ];
        let reply = self.eval(RELEASE, &lease.key, &args, Retry::Idempotent)?;
        match int(&reply, 0)? {
            1 => Ok(Release::Kept { until: int(&reply, 2)? }),
            2 => Ok(Release::Dropped),
            -1 => Ok(Release::NotOurs),
            other => bail!("unexpected status {other} from tooz's release script"),
        }
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let reply = self.eval(RESET, key, &[], Retry::Idempotent)?;
        Ok(int(&reply, 0)? > 0)
    }

    /// One try at tooz's heartbeat; the token settles a renewal whose
    /// answer was lost (it left our token in place), so `after_unknown`
    /// needs no special case.
    fn renew(&mut self, lease: &Lease, seconds: i64, _after_unknown: bool, limit: Duration) -> Renewal {
        let cmd = self.command(
            RENEW,
            &lease.key,
            &[self.token.clone(), seconds.saturating_mul(1000).to_string()],
        );
        let reply = match self.session.query_once(&cmd, limit) {
            Ok(reply) => self.values(reply),
            Err(Unconfirmed { message, maybe_sent }) => return Renewal::Unconfirmed { message, maybe_sent },
        };
        match reply.and_then(|values| Ok((int(&values, 0)?, int(&values, 1)?))) {
            Ok((1, now)) => Renewal::Renewed {
                expires_at: now + seconds,
            },
            Ok(_) => Renewal::Lost,
            Err(err) => Renewal::Unconfirmed {
                message: format!("{err:#}"),
                maybe_sent: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_toozs() {
        assert_eq!(tooz_key("_tooz", b"coolock"), b"_tooz_coolock_lock");
        assert_eq!(tooz_key("_tooz", b"a b"), b"_tooz_a b_lock");
        assert_eq!(tooz_key("ns", b"coolock"), b"ns_coolock_lock");
    }

    #[test]
    fn the_seconds_left_round_up() {
        assert_eq!(seconds_left(30_000, 7), 30);
        assert_eq!(seconds_left(29_001, 7), 30);
        assert_eq!(seconds_left(0, 7), 0);
        assert_eq!(seconds_left(-1, 7), 7, "no expiry");
    }
}
