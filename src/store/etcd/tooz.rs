//! tooz's etcd lock (`CRONLOCK_KEY_STYLE=tooz` on `etcd://`), as tooz
//! 1.67.2 takes it with either of its two etcd drivers: `etcd3://` (through
//! python-etcd3) writes the key `/locks/<name>`, `etcd3+http://` (through
//! etcd3gw) the key `/tooz/locks<name>`, with no slash between. Each driver
//! grants a lease (30 s unless the URL says otherwise), then in one
//! transaction puts its key with a 16-byte value on that lease if the key's
//! create revision is 0 (it does not exist); it releases by deleting the
//! key while the key still holds that value.
//!
//! A cronlock host cannot know which driver its coolock peers use, so it
//! takes both keys in one transaction, on one lease: either is enough to
//! keep it out, and it keeps out both kinds of peer. The lease is renewed
//! by keep-alives while the command runs (tooz's heartbeat would; coolock
//! never does), and a grace or hold moves both keys to a lease of what is
//! left, as the recipe in `mod.rs` moves its key.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::gateway::{b64, int, unb64, Gateway};
use super::settings::EtcdTarget;
use super::{now, unconfirmed};
use crate::lock::{Acquire, Claim, Fencing, Keep, Lease, LockStore, Release, Renewal};
use crate::report::Report;

/// python-etcd3's lock prefix, which tooz's `etcd3://` driver uses.
const ETCD3_PREFIX: &[u8] = b"/locks/";
/// tooz's own prefix in its `etcd3+http://` driver (the name follows it directly).
const ETCD3GW_PREFIX: &[u8] = b"/tooz/locks";

/// tooz's locks in an etcd cluster.
pub struct ToozEtcdLock<'a> {
    gateway: Gateway<'a>,
    /// The value written into both keys by the last acquire.
    value: [u8; 16],
}

impl<'a> ToozEtcdLock<'a> {
    /// tooz's locks on `target`; nothing is sent until the first request.
    pub fn new(target: &'a EtcdTarget, report: &'a Report) -> Result<ToozEtcdLock<'a>> {
        Ok(ToozEtcdLock {
            gateway: Gateway::new(target, report)?,
            value: [0; 16],
        })
    }

    /// One transaction that, for each of `name`'s keys still holding our
    /// value, deletes it (`lease` None) or puts it again on `lease`. Returns
    /// how many keys it changed and how many others exist. Applied twice, the
    /// second copy finds the keys gone, or already on `lease`.
    fn settle(&mut self, name: &[u8], lease: Option<i64>) -> Result<(usize, usize)> {
        let each: Vec<Value> = keys(name)
            .iter()
            .map(|key| {
                let change = match lease {
                    None => json!({ "request_delete_range": { "key": b64(key) } }),
                    Some(lease) => json!({ "request_put": {
                        "key": b64(key), "value": b64(&self.value), "lease": lease.to_string(),
                    } }),
                };
                json!({ "request_txn": {
                    "compare": [holds(key, &self.value)],
                    "success": [change],
                    "failure": [{ "request_range": { "key": b64(key), "count_only": true } }],
                } })
            })
            .collect();
        let answer = self.gateway.call("/v3/kv/txn", &json!({ "success": each }), None)?;
        let mut changed = 0;
        let mut others = 0;
        for response in responses(&answer) {
            let inner = response.get("response_txn");
            if inner.and_then(|t| t.get("succeeded")).and_then(Value::as_bool) == Some(true) {
                changed += 1;
            } else {
                let range = inner
                    .and_then(|t| t.get("responses"))
                    .and_then(|r| r.get(0))
                    .and_then(|r| r.get("response_range"));
                if int(range.and_then(|r| r.get("count"))) > 0 {
                    others += 1;
                }
            }
        }
        Ok((changed, others))
    }
}

/// `/locks/<name>` and `/tooz/locks<name>`: the keys of tooz's two etcd drivers.
fn keys(name: &[u8]) -> [Vec<u8>; 2] {
    [[ETCD3_PREFIX, name].concat(), [ETCD3GW_PREFIX, name].concat()]
}

/// The compare "`key` holds `value`".
fn holds(key: &[u8], value: &[u8]) -> Value {
    json!({ "key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value) })
}

/// A transaction answer's responses (the gateway leaves out an empty list).
fn responses(answer: &Value) -> Vec<Value> {
    answer
        .get("responses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// What the acquire's transaction found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Both keys are ours.
    Ours,
    /// Another holds a key, on this lease (0: a key without a lease).
    Held { lease: i64 },
}

/// Reads the acquire's answer. Its failure branch read both keys: a
/// transaction applied twice (a retry at another member after a lost
/// answer) finds our own value in both, which is ours all the same.
fn found(answer: &Value, value: &[u8]) -> Found {
    if answer.get("succeeded").and_then(Value::as_bool) == Some(true) {
        return Found::Ours;
    }
    let kvs: Vec<Value> = responses(answer)
        .iter()
        .filter_map(|r| r.get("response_range")?.get("kvs")?.get(0).cloned())
        .collect();
    if kvs.len() == 2 && kvs.iter().all(|kv| unb64(kv.get("value")) == value) {
        return Found::Ours;
    }
    let theirs = kvs.iter().find(|kv| unb64(kv.get("value")) != value);
    Found::Held {
        lease: int(theirs.and_then(|kv| kv.get("lease"))),
    }
}

/// Our lease's id, kept in `Lease::token`.
fn lease_id(lease: &Lease) -> Result<i64> {
    lease
        .token
        .as_deref()
        .and_then(|t| t.parse().ok())
        .context("etcd store: a lease without its lease id")
}

impl LockStore for ToozEtcdLock<'_> {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    // Lease mode and CRONLOCK_HOLD both work: `lacks` keeps its default.

    fn fencing(&self) -> Fencing {
        Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's etcd key alone, which coolock hosts take without a fencing token",
        )
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let start = now();
        // The lease tooz grants: its lock_timeout, which the style makes
        // cronlock's lease (30 s unless CRONLOCK_LEASE says otherwise).
        let id = self.gateway.grant(claim.release)?;
        self.value = crate::net::random::uuid4();
        let [etcd3, etcd3gw] = keys(claim.key);
        let new =
            |key: &[u8]| json!({ "key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" });
        let put = |key: &[u8]| json!({ "request_put": { "key": b64(key), "value": b64(&self.value), "lease": id.to_string() } });
        let read = |key: &[u8]| json!({ "request_range": { "key": b64(key) } });
        let body = json!({
            "compare": [new(&etcd3), new(&etcd3gw)],
            "success": [put(&etcd3), put(&etcd3gw)],
            "failure": [read(&etcd3), read(&etcd3gw)],
        });
        let answer = match self.gateway.call("/v3/kv/txn", &body, None) {
            Ok(answer) => answer,
            Err(err) => {
                // Our keys, if they were written, go with the lease.
                let _ = self.gateway.revoke(id);
                return Err(err.context("taking tooz's lock"));
            }
        };
        match found(&answer, &self.value) {
            Found::Ours => {
                let mut lease = Lease::new(claim.key, start, start + claim.release);
                lease.token = Some(id.to_string());
                Ok(Acquire::Taken(lease))
            }
            Found::Held { lease } => {
                // tooz leaves its unused lease to expire; ours goes now.
                self.gateway.revoke(id)?;
                let expires_in = match lease {
                    0 => i64::MAX,
                    lease => self.gateway.time_to_live(lease)?,
                };
                Ok(Acquire::Held { expires_in })
            }
        }
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let id = lease_id(lease)?;
        let now = now();
        let until = keep.until(lease.start, now);
        if until <= now {
            let (deleted, others) = self.settle(&lease.key, None).context("releasing tooz's lock")?;
            // The keys are gone; the lease would expire on its own.
            let _ = self.gateway.revoke(id);
            return Ok(if deleted == 0 && others > 0 {
                Release::NotOurs
            } else {
                Release::Dropped
            });
        }
        let kept = self.gateway.grant(until - now)?;
        let moved = match self.settle(&lease.key, Some(kept)) {
            Ok((moved, _)) => moved,
            Err(err) => {
                let _ = self.gateway.revoke(kept);
                return Err(err.context("keeping tooz's lock"));
            }
        };
        if moved == 0 {
            // Both keys expired or were reset while the command ran.
            self.gateway.revoke(kept)?;
            let _ = self.gateway.revoke(id);
            return Ok(Release::NotOurs);
        }
        self.gateway.revoke(id)?;
        Ok(Release::Kept { until })
    }

    /// A retry of a delete that was applied deletes whatever is there by
    /// then, which is what a reset asks for anyway.
    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        self.gateway.delete_keys(&keys(key)).context("deleting tooz's lock")
    }

    fn renew(&mut self, lease: &Lease, seconds: i64, after_unknown: bool, limit: Duration) -> Renewal {
        let _ = (seconds, after_unknown);
        let id = match lease_id(lease) {
            Ok(id) => id,
            Err(err) => {
                return Renewal::Unconfirmed {
                    message: format!("{err:#}"),
                    maybe_sent: false,
                }
            }
        };
        // A reset deletes the keys but leaves the lease: check both first.
        let [etcd3, etcd3gw] = keys(&lease.key);
        let body = json!({ "compare": [holds(&etcd3, &self.value), holds(&etcd3gw, &self.value)] });
        match self.gateway.call("/v3/kv/txn", &body, Some(limit)) {
            Ok(answer) if answer.get("succeeded").and_then(Value::as_bool) == Some(true) => {
                self.gateway.keep_alive(id, limit)
            }
            Ok(_) => Renewal::Lost,
            Err(err) => unconfirmed(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_driver_has_its_own_key() {
        let [etcd3, etcd3gw] = keys(b"coolock");
        assert_eq!(etcd3, b"/locks/coolock");
        assert_eq!(etcd3gw, b"/tooz/lockscoolock");
    }

    #[test]
    fn the_acquire_reads_who_holds_the_lock() {
        let ours = [7u8; 16];
        let kv = |value: &[u8], lease: &str| json!({ "response_range": { "kvs": [{ "value": b64(value), "lease": lease }] } });
        assert_eq!(found(&json!({ "succeeded": true }), &ours), Found::Ours);
        // Applied twice: the second copy reads our own value in both keys.
        let twice = json!({ "responses": [kv(&ours, "5"), kv(&ours, "5")] });
        assert_eq!(found(&twice, &ours), Found::Ours);
        // A coolock on etcd3+http:// holds only its own key.
        let theirs = json!({ "responses": [{ "response_range": {} }, kv(b"their-uuid-bytes", "9")] });
        assert_eq!(found(&theirs, &ours), Found::Held { lease: 9 });
        // A key put without a lease.
        let bare = json!({ "responses": [kv(b"x", "0"), { "response_range": {} }] });
        assert_eq!(found(&bare, &ours), Found::Held { lease: 0 });
    }

    #[test]
    fn the_token_holds_the_lease_id() {
        let mut lease = Lease::new(b"k", 1, 2);
        assert!(lease_id(&lease).is_err());
        lease.token = Some("7587".into());
        assert_eq!(lease_id(&lease).unwrap(), 7587);
    }
}
