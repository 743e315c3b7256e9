//! tooz's memcached lock (`CRONLOCK_KEY_STYLE=tooz` on `memcached://`), as
//! tooz 1.67.2's memcached driver takes it through pymemcache: the key
//! `__TOOZ_LOCK_<name>` holds the node's name (CRONLOCK_NODE, else the host
//! name; coolock's `--node`) as raw bytes with flags 1, stored with `add`
//! and an expiry of the lease (30 s); tooz's heartbeat `touch`es it and its
//! release `get`s it and deletes it when the value is its own name.
//!
//! tooz tells owners apart by that name alone: two hosts with the same
//! CRONLOCK_NODE (or coolock `--node`) are one owner to tooz, and each would
//! release or renew the other's lock. cronlock does as tooz does here, so
//! give every host its own node name.
//!
//! cronlock makes tooz's read-then-write steps atomic with `cas` on the
//! unique `gets` returned: a renewal rewrites the same value with the new
//! expiry, and a release rewrites it with the grace's expiry, or with a
//! negative one, which drops it, so neither touches a lock another node
//! wrote in between. coolock never renews, so its lock lapses after 30 s;
//! cronlock renews its own every third of the lease while the command runs.

use std::time::Duration;

use anyhow::{bail, Result};

use super::settings::MemcachedTarget;
use super::{changing, exptime, Connection, Failure, Link, RawItem, Stored, MAX_KEY, MAX_ROUNDS};
use crate::lock::{Acquire, Claim, Fencing, Keep, Lease, LockStore, Release, Renewal};
use crate::report::Report;

/// The flags pymemcache stores bytes with under tooz's serializer.
const FLAGS: u32 = 1;

/// tooz's locks in one memcached server.
pub struct ToozMemcachedLock<'a> {
    link: Link<'a>,
    /// The node's name: the value that says the lock is ours.
    node: Vec<u8>,
}

/// The key tooz's memcached driver locks `name` with. pymemcache refuses a
/// key with spaces or control characters, or longer than 250 bytes: so
/// does cronlock, where it would otherwise have to escape it.
pub fn tooz_key(name: &[u8]) -> Result<Vec<u8>> {
    let key = [&b"__TOOZ_LOCK_"[..], name].concat();
    if key.len() > MAX_KEY || !key.iter().all(u8::is_ascii_graphic) {
        bail!(
            "CRONLOCK_KEY={:?}: a tooz lock name on memcached must be printable ASCII without spaces, \
             at most {} bytes",
            String::from_utf8_lossy(name),
            MAX_KEY - b"__TOOZ_LOCK_".len()
        );
    }
    Ok(key)
}

impl<'a> ToozMemcachedLock<'a> {
    /// A store on `target` for the node `node`; nothing is sent until the first call.
    pub fn new(target: &'a MemcachedTarget, report: &'a Report, node: &str) -> ToozMemcachedLock<'a> {
        ToozMemcachedLock {
            link: Link::new(target, report),
            node: node.as_bytes().to_vec(),
        }
    }
}

/// Whether `item` is the node's: its name, stored as bytes.
fn owned_by(item: &RawItem, node: &[u8]) -> bool {
    item.flags == FLAGS && item.value == node
}

/// One `cas` of the node's name with `expiry`.
fn rewrite(connection: &mut Connection, key: &[u8], node: &[u8], expiry: i64, cas: u64) -> Result<Stored, Failure> {
    connection.store_flagged(b"cas", key, (FLAGS, node), expiry, Some(cas))
}

impl LockStore for ToozMemcachedLock<'_> {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    fn fencing(&self) -> Fencing {
        Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's memcached key alone, which coolock hosts take without a fencing token",
        )
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let key = tooz_key(claim.key)?;
        let node = &self.node;
        // Whether an `add` was sent: then finding our name means it ran.
        let mut tried = false;
        self.link.with_retries(|connection| {
            for _ in 0..MAX_ROUNDS {
                let (now, item) = connection.look_raw(&key)?;
                let lease = Lease::new(claim.key, now, now + claim.release);
                match item {
                    Some(item) if tried && owned_by(&item, node) => return Ok(Acquire::Taken(lease)),
                    Some(_) => {
                        let left = connection.ttl(&key)?;
                        return Ok(Acquire::Held {
                            expires_in: left.filter(|t| *t >= 0).unwrap_or(claim.release),
                        });
                    }
                    None => {
                        tried = true;
                        let added = connection.store_flagged(b"add", &key, (FLAGS, node), claim.release, None)?;
                        if added == Stored::Yes {
                            return Ok(Acquire::Taken(lease));
                        }
                        // Someone added it first: look again (it is theirs).
                        tried = false;
                    }
                }
            }
            Err(changing())
        })
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let key = tooz_key(&lease.key)?;
        let node = &self.node;
        self.link.with_retries(|connection| {
            for _ in 0..MAX_ROUNDS {
                let (now, item) = connection.look_raw(&key)?;
                let keep_until = keep.until(lease.start, now);
                // An expiry in the past drops it, but only if it is unchanged.
                let (expiry, outcome) = if keep_until <= now {
                    (-1, Release::Dropped)
                } else {
                    (exptime(keep_until, now), Release::Kept { until: keep_until })
                };
                let stored = match item {
                    None if keep_until <= now => return Ok(Release::Dropped),
                    // Gone while we ran (reset, or lapsed): the grace is
                    // claimed again, as the store's own lock does.
                    None => connection.store_flagged(b"add", &key, (FLAGS, node), expiry, None)?,
                    Some(item) if !owned_by(&item, node) => return Ok(Release::NotOurs),
                    Some(item) => rewrite(connection, &key, node, expiry, item.cas)?,
                };
                if stored == Stored::Yes {
                    return Ok(outcome);
                }
            }
            Err(changing())
        })
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let key = tooz_key(key)?;
        self.link.with_retries(|connection| connection.delete(&key))
    }

    /// tooz's heartbeat (`touch`), made conditional: the same value with
    /// the new expiry, by `cas`, while the value is still our name.
    fn renew(&mut self, lease: &Lease, seconds: i64, _after_unknown: bool, limit: Duration) -> Renewal {
        let key = match tooz_key(&lease.key) {
            Ok(key) => key,
            Err(err) => {
                return Renewal::Unconfirmed {
                    message: format!("{err:#}"),
                    maybe_sent: false,
                }
            }
        };
        let node = &self.node;
        self.link.renew(limit, |connection, sent| {
            let (now, item) = connection.look_raw(&key)?;
            let Some(item) = item.filter(|item| owned_by(item, node)) else {
                return Ok(None);
            };
            *sent = true;
            let stored = rewrite(connection, &key, node, exptime(now + seconds, now), item.cas)?;
            Ok((stored == Stored::Yes).then_some(now + seconds))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_toozs_and_must_fit_the_text_protocol() {
        assert_eq!(tooz_key(b"coolock").unwrap(), b"__TOOZ_LOCK_coolock");
        for bad in [&b"a b"[..], b"a\r\n", b"\xff", &[b'x'; 239]] {
            assert!(tooz_key(bad).is_err(), "{bad:?}");
        }
        assert!(tooz_key(&[b'x'; 238]).is_ok());
    }

    #[test]
    fn only_our_name_stored_as_bytes_is_ours() {
        let item = |flags, value: &[u8]| RawItem {
            flags,
            value: value.to_vec(),
            cas: 1,
        };
        assert!(owned_by(&item(1, b"web1"), b"web1"));
        assert!(!owned_by(&item(1, b"web2"), b"web1"));
        assert!(!owned_by(&item(0, b"web1"), b"web1"), "not stored as tooz stores bytes");
    }
}
