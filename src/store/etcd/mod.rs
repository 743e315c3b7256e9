//! The etcd store (`CRONLOCK_URL=etcd://host:2379,...`): etcd's own lock
//! recipe, the one `etcdctl lock NAME` and Go's `concurrency.Mutex` use, so
//! cronlock and `etcdctl lock` hosts exclude each other on the same name.
//!
//! The recipe, on NAME = the full key: grant a lease; in one transaction put
//! `NAME/<lease id in lowercase hex>` (empty value, attached to the lease) if
//! that key does not exist, and read the key under `NAME/` with the lowest
//! create revision (passing over other jobs' counters and history, see
//! [`owner_of_line`]). That key's writer owns the lock. A contender that is not
//! first revokes its lease, which deletes its key, and exits 200 (etcdctl
//! would wait in line instead; cron jobs do not).
//!
//! The lease's TTL is the clock, counted by the etcd leader: RELEASE + 1
//! while the command runs (renewed by keep-alives in lease mode), and after
//! it the key moves to a fresh lease whose TTL covers the grace or the hold,
//! then the first lease is revoked. A crashed holder's key goes when its
//! lease expires; nothing is ever "taken over".
//!
//! `CRONLOCK_FENCING`: the token is etcd's revision, the one counter of the
//! whole cluster, which every write moves on, which etcd writes to disk
//! before it answers and never takes back (see [`EtcdLock::fence`] and
//! [`fence_counter`]). Every run also gives its command `ETCD_LOCK_KEY` and
//! `ETCD_LOCK_REV`, as `etcdctl lock NAME COMMAND` does (see
//! [`EtcdLock::job_env`]).
//!
//! `CRONLOCK_HISTORY`: each run's record is a key of its own beside the lock,
//! `NAME:runs:<20 digits>`, and the last success `NAME:succeeded`, neither
//! on a lease (see [`EtcdLock::record_run`] and [`run_key`]).
//!
//! Why the JSON gateway (`POST /v3/...`, served by every etcd 3.4+ member on
//! its client port) and not the `etcd-client` crate: that crate generates
//! its gRPC code at build time with `protoc`, so every build of cronlock
//! would need protobuf-compiler installed; it brings tokio, hyper, h2, tonic
//! and prost (proc-macros among them) for five unary calls; and its TLS is
//! tonic's, which cannot take the rustls configuration `crate::net::tls` builds
//! from `CRONLOCK_TLS_*` (no skip-verify, no server-name override). The
//! gateway needs a hand-written HTTP/1.1 exchange on a socket (`gateway.rs`)
//! and `serde_json`.

mod gateway;
pub mod settings;
pub mod tooz;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use crate::lock::{Acquire, Claim, Feature, Fencing, History, Keep, Lease, LockStore, Release, Renewal, Seen};
use crate::report::Report;
use gateway::{b64, int, unb64, EtcdError, Gateway};
use settings::EtcdTarget;

/// Locks in an etcd cluster.
pub struct EtcdLock<'a> {
    gateway: Gateway<'a>,
    /// The owner record, our key's value (etcdctl writes none and reads none).
    owner: String,
}

impl<'a> EtcdLock<'a> {
    /// A store for `target`; nothing is sent until the first request.
    pub fn new(target: &'a EtcdTarget, report: &'a Report) -> Result<EtcdLock<'a>> {
        Ok(EtcdLock {
            gateway: Gateway::new(target, report)?,
            owner: String::new(),
        })
    }

    /// The recipe's transaction: `my_key` is put on `lease` unless it
    /// exists with create revision `rev` (then it is moved to `lease`); and
    /// the owner, the first key under the prefix by create revision, is
    /// read. Returns (whether it existed as ours, the transaction's
    /// revision, the owner's key, create revision and lease).
    ///
    /// Applied twice (a retry at another member after a lost answer, or a
    /// proposal that committed after its member said it timed out), the
    /// second copy finds our key in place: a put on an existing key keeps
    /// its create revision, so our place in line does not move, and the
    /// value and lease are the same. A copy applied after our lease was
    /// revoked fails as a whole (etcd refuses a put on a lease that is
    /// gone), so no late copy brings a key back. Keys are named after
    /// their lease, which etcd never grants twice: no copy touches anyone
    /// else's key.
    fn put_and_find_owner(&mut self, name: &[u8], my_key: &[u8], rev: i64, lease: i64, value: &str) -> Result<Txn> {
        let prefix = prefix_of(name);
        let put = json!({ "request_put": { "key": b64(my_key), "value": b64(value.as_bytes()), "lease": lease.to_string() } });
        let owner = json!({ "request_range": line_of(&prefix) });
        let body = json!({
            "compare": [{
                "key": b64(my_key),
                "target": "CREATE",
                "result": "EQUAL",
                "create_revision": rev.to_string(),
            }],
            "success": [put, owner],
            "failure": [put, owner],
        });
        let answer = self.gateway.call("/v3/kv/txn", &body, None)?;
        let owner = owner_of_line(kvs(txn_range(&answer, 1)));
        Ok(Txn {
            succeeded: answer.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
            revision: int(answer.get("header").and_then(|h| h.get("revision"))),
            owner,
        })
    }

    fn owner_exists(&mut self, name: &[u8]) -> Result<bool> {
        let answer = self.gateway.call("/v3/kv/range", &line_of(&prefix_of(name)), None)?;
        Ok(owner_of_line(kvs(Some(&answer))).is_some())
    }
}

impl EtcdLock<'_> {
    /// The owner (first by create revision) of every lock whose keys lie in
    /// [`from`, `end`): its name is the key up to the last `/`, its expiry
    /// the owner lease's time to live on this host's clock.
    fn holders(&mut self, from: &[u8], end: &[u8]) -> Result<Vec<Seen>> {
        let body = json!({
            "key": b64(from),
            "range_end": b64(end),
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
        });
        let answer = self.gateway.call("/v3/kv/range", &body, None)?;
        let mut found: Vec<Seen> = Vec::new();
        let kvs = answer.get("kvs").and_then(Value::as_array).cloned().unwrap_or_default();
        for kv in kvs {
            let key = unb64(kv.get("key"));
            let lease = int(kv.get("lease"));
            if is_job_record(&key, lease) {
                continue;
            }
            let Some(slash) = key.iter().rposition(|&b| b == b'/') else {
                continue;
            };
            let name = key[..slash].to_vec();
            if found.iter().any(|seen| seen.key == name) {
                continue;
            }
            let now = now();
            let expires_at = match lease {
                0 => None,
                lease => Some(now + self.gateway.time_to_live(lease)?),
            };
            let value = unb64(kv.get("value"));
            let owner = (!value.is_empty()).then(|| String::from_utf8_lossy(&value).into_owned());
            let running = owner.as_ref().filter(|o| o.contains("\"ended\":")).map(|_| false);
            found.push(Seen {
                key: name,
                expires_at,
                now,
                owner,
                running,
            });
        }
        Ok(found)
    }
}

/// The lease requests, and deletes, which tooz's lock (`tooz.rs`) shares
/// with the recipe.
impl Gateway<'_> {
    /// Deletes `keys`, at most [`DELETES_PER_TXN`] in each transaction;
    /// whether any of them was there. A retry of a delete that was applied
    /// deletes whatever is there by then.
    fn delete_keys<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<bool> {
        let mut deleted = false;
        for chunk in keys.chunks(DELETES_PER_TXN) {
            let deletes: Vec<Value> = chunk
                .iter()
                .map(|key| json!({ "request_delete_range": { "key": b64(key.as_ref()) } }))
                .collect();
            let answer = self.call("/v3/kv/txn", &json!({ "success": deletes }), None)?;
            deleted |= answer
                .get("responses")
                .and_then(Value::as_array)
                .is_some_and(|responses| {
                    responses
                        .iter()
                        .any(|r| int(r.get("response_delete_range").and_then(|d| d.get("deleted"))) > 0)
                });
        }
        Ok(deleted)
    }

    /// Grants a lease of `ttl` seconds. Sent twice (a retry at another
    /// member after a lost answer), it grants two: the one we never hear of
    /// carries no key and expires on its own.
    fn grant(&mut self, ttl: i64) -> Result<i64> {
        let answer = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }), None)?;
        match int(answer.get("ID")) {
            0 => Err(anyhow!(
                "etcd granted no lease: {}",
                answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no ID in the answer")
            )),
            id => Ok(id),
        }
    }

    /// Revokes `id` (deleting the keys attached to it); false if it was gone
    /// already, which is also what a retry of a revoke that was applied
    /// finds: the callers then look at the lock itself.
    fn revoke(&mut self, id: i64) -> Result<bool> {
        match self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }), None) {
            Ok(_) => Ok(true),
            Err(err) if lease_not_found(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Seconds left on `lease` (0 when it is expiring or gone).
    fn time_to_live(&mut self, lease: i64) -> Result<i64> {
        let answer = self.call("/v3/lease/timetolive", &json!({ "ID": lease.to_string() }), None)?;
        Ok(int(answer.get("TTL")).max(0))
    }

    /// Sets `id`'s TTL back to the one it was granted, within `limit`;
    /// sent twice, it does so twice.
    fn keep_alive(&mut self, id: i64, limit: Duration) -> Renewal {
        let answer = match self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }), Some(limit)) {
            Ok(answer) => answer,
            Err(err) => return unconfirmed(err),
        };
        match int(answer.get("result").and_then(|r| r.get("TTL"))) {
            ttl if ttl > 0 => Renewal::Renewed {
                expires_at: now() + ttl,
            },
            _ => Renewal::Lost,
        }
    }
}

/// What the recipe's transaction found.
struct Txn {
    /// The compare held.
    succeeded: bool,
    /// The store's revision after it (our key's create revision when it was new).
    revision: i64,
    /// The first key under the prefix.
    owner: Option<Owner>,
}

impl Txn {
    /// Whether `my_key` is first in line: its create revision if so, else
    /// the owner. Told by the owner's key, not by comparing the owner's
    /// create revision with this answer's revision: when the transaction
    /// was applied twice, the answer is the second copy's, whose revision
    /// is not our key's. (No key at all cannot follow our put in the same
    /// transaction; it is read as ours, as etcd's `TryLock` would.)
    fn first_in_line(self, my_key: &[u8]) -> std::result::Result<i64, Owner> {
        match self.owner {
            Some(owner) if owner.key == my_key => Ok(owner.create_revision),
            Some(owner) => Err(owner),
            None => Ok(self.revision),
        }
    }
}

/// A key in a lock's line (under `NAME/`); the owner is the first that is
/// no job's record (see [`owner_of_line`]).
struct Owner {
    key: Vec<u8>,
    create_revision: i64,
    lease: i64,
}

impl Owner {
    /// Whether this key is a job's fencing counter or history, not a lock's.
    fn is_job_record(&self) -> bool {
        is_job_record(&self.key, self.lease)
    }
}

/// The range of the line `prefix` (`NAME/`), oldest first, keys only: the
/// owner is the first that [`owner_of_line`] keeps.
fn line_of(prefix: &[u8]) -> Value {
    json!({
        "key": b64(prefix),
        "range_end": b64(&prefix_end(prefix)),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
        "keys_only": true,
    })
}

/// The owner of a line read by [`line_of`]: its first key, passing over
/// the keys without a lease that another job's fencing counter or history
/// leaves there. Those lie in this line only when that job's name is this
/// one's followed by `/` (`cronlock.a/b:fence` under `cronlock.a/`), and
/// they stay for good: counted as waiters, as etcdctl's recipe counts every
/// key, they would keep this lock held for ever. Every contender passes
/// over the same keys, so they still agree on one owner. A lock's key has
/// a lease, so none is passed over. (`etcdctl lock` on this name still
/// waits behind them.) Keys only: the owner's value is never read, and
/// such keys before it are few, one counter, a last success and the
/// records the other job keeps.
fn owner_of_line(kvs: &[Value]) -> Option<Owner> {
    in_line(kvs).find(|owner| !owner.is_job_record())
}

/// The keys of a line read by [`line_of`], oldest first.
fn in_line(kvs: &[Value]) -> impl Iterator<Item = Owner> + '_ {
    kvs.iter().map(|kv| Owner {
        key: unb64(kv.get("key")),
        create_revision: int(kv.get("create_revision")),
        lease: int(kv.get("lease")),
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `NAME/`, as `concurrency.NewMutex` appends the separator.
fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// `NAME/<lease id as Go's %x prints it>`.
fn key_of(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix_of(name);
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// What a job's fencing counter's key ends with.
const FENCE_SUFFIX: &[u8] = b":fence";

/// The fencing counter of the job key `name`: `NAME:fence`, a key without
/// a lease (it outlives every lock) whose mod revision is the newest token.
///
/// Beside the lock's keys, not among them: a key under `NAME/` that never
/// goes would be first in line for ever, for `etcdctl lock` too. Under
/// the same prefix as `NAME`, so that a role granted `CRONLOCK_PREFIX`
/// (`etcdctl role grant-permission --prefix`) may write it. A lock's key
/// ends in a lease id in hex, never in `:fence`, so `list` tells them apart.
/// When one job's name is another's followed by `/` (`cronlock.a` and
/// `cronlock.a/b`), the second job's counter lies in the first's line: the
/// recipe there passes over it ([`owner_of_line`]), and a reset of the first
/// leaves it. (The second job's lock keys, while it runs, are in that line
/// too, and hold the first lock, as they do for etcdctl.)
fn fence_counter(name: &[u8]) -> Vec<u8> {
    [name, FENCE_SUFFIX].concat()
}

/// Whether the key `key` on the lease `lease` is a fencing counter rather
/// than a lock's key (those always have a lease).
fn is_fence_counter(key: &[u8], lease: i64) -> bool {
    lease == 0 && key.ends_with(FENCE_SUFFIX)
}

/// What follows the job key in the keys of its run records.
const RUNS_INFIX: &[u8] = b":runs:";
/// How many digits end a run record's key.
const RUN_DIGITS: usize = 20;
/// What the key of a job's last success ends with.
const SUCCEEDED_SUFFIX: &[u8] = b":succeeded";
/// The most deletes sent in one transaction: etcd refuses a transaction of
/// more than `--max-txn-ops` operations, 128 by default.
const DELETES_PER_TXN: usize = 100;
/// The most records read in one answer: the gateway reads answers of up to
/// 1 MB, and a record carries the command line.
const RUNS_PER_PAGE: i64 = 32;

/// The key of one run record of the job key `name`:
/// `NAME:runs:<number as 20 digits>`, a key without a lease.
///
/// Beside the lock, not under `NAME/`, for the reasons the fencing counter
/// is (see [`fence_counter`]); when one job's name is another's followed by
/// `/`, the second job's records and last success lie in the first lock's
/// line, and are passed over there as its counter is. The number is the time in
/// microseconds followed by four digits of the pid, so that `etcdctl get
/// --prefix` shows a host's runs in order; the history itself is ordered by
/// the keys' create revisions, the order etcd wrote them in, which no
/// host's clock skews. Two runs that pick the same number do not overwrite
/// each other: the put is made only if the key does not exist.
///
/// Other jobs' keys may share the range `NAME:runs:` (a job named
/// `NAME:runs:7` has its lock at `NAME:runs:7/<lease>`, its own records at
/// `NAME:runs:7:runs:…`): none of them is exactly 20 digits after
/// `NAME:runs:`, and [`is_run_key_of`] leaves them out of every read, trim
/// and count. A job named `NAME:runs` (records `NAME:runs:runs:…`, counter
/// `NAME:runs:fence`) lies outside the digits' range altogether.
fn run_key(name: &[u8], number: u128) -> Vec<u8> {
    // 16 digits of microseconds last until the year 2286; a wrap then
    // still gives 20 digits, and only the keys' names lose their order.
    let digits = format!("{:020}", number % 10u128.pow(RUN_DIGITS as u32));
    [name, RUNS_INFIX, digits.as_bytes()].concat()
}

/// The number of this run's record key (see [`run_key`]).
fn run_number() -> u128 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    micros * 10_000 + u128::from(std::process::id() % 10_000)
}

/// Whether the key `key` on the lease `lease` is some job's fencing counter
/// or history, kept beside its lock without a lease, rather than a lock's.
fn is_job_record(key: &[u8], lease: i64) -> bool {
    is_fence_counter(key, lease) || is_history_key(key, lease)
}

/// The range that holds the job key `name`'s run records: the keys that
/// start with `NAME:runs:` and a digit.
fn runs_range(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    ([name, RUNS_INFIX, b"0"].concat(), [name, RUNS_INFIX, b":"].concat())
}

/// Whether `key` is one of the job key `name`'s run records, rather than
/// another job's key in the same range.
fn is_run_key_of(key: &[u8], name: &[u8]) -> bool {
    key.len() == name.len() + RUNS_INFIX.len() + RUN_DIGITS
        && key.starts_with(name)
        && key[name.len()..].starts_with(RUNS_INFIX)
        && key[key.len() - RUN_DIGITS..].iter().all(u8::is_ascii_digit)
}

/// The key of the job key `name`'s last success: `NAME:succeeded`.
fn succeeded_key(name: &[u8]) -> Vec<u8> {
    [name, SUCCEEDED_SUFFIX].concat()
}

/// Whether the key `key` on the lease `lease` belongs to some job's history
/// rather than to a lock (a lock's key has a lease, and ends in its id).
fn is_history_key(key: &[u8], lease: i64) -> bool {
    let record = key.len() >= RUNS_INFIX.len() + RUN_DIGITS && {
        let (head, digits) = key.split_at(key.len() - RUN_DIGITS);
        head.ends_with(RUNS_INFIX) && digits.iter().all(u8::is_ascii_digit)
    };
    lease == 0 && (record || key.ends_with(SUCCEEDED_SUFFIX))
}

/// The `index`th response of a transaction's answer, where it is a range's.
fn txn_range(answer: &Value, index: usize) -> Option<&Value> {
    answer.get("responses")?.get(index)?.get("response_range")
}

/// The key-values of a range's answer (none when it found none: the
/// gateway leaves empty fields out).
fn kvs(range: Option<&Value>) -> &[Value] {
    range
        .and_then(|r| r.get("kvs"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: every key after the prefix.
    vec![0]
}

fn lease_not_found(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<EtcdError>())
        .any(|e| e.0.contains("lease not found"))
}

/// Our lease id and key's create revision, kept in `Lease::token`.
fn token(lease: &Lease) -> Result<(i64, i64)> {
    lease
        .token
        .as_deref()
        .and_then(|t| t.split_once(' '))
        .and_then(|(id, rev)| Some((id.parse().ok()?, rev.parse().ok()?)))
        .ok_or_else(|| anyhow!("etcd store: a lease without its lease id"))
}

impl LockStore for EtcdLock<'_> {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Lease | Feature::Hold => None,
        }
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let name = claim.key;
        let start = now();
        let expires_at = start + claim.release + 1;
        let id = self.gateway.grant(claim.release + 1)?;
        let my_key = key_of(name, id);
        self.owner = claim.owner.unwrap_or("").to_string();
        let owner_record = self.owner.clone();
        let taken = match self.put_and_find_owner(name, &my_key, 0, id, &owner_record) {
            Ok(txn) => txn,
            Err(err) => {
                // Our key, if it was written, goes with the lease.
                let _ = self.gateway.revoke(id);
                return Err(err);
            }
        };
        match taken.first_in_line(&my_key) {
            Err(owner) => {
                // Not first in line: leave the line, as `TryLock` does.
                self.gateway.revoke(id)?;
                let expires_in = match owner.lease {
                    0 => i64::MAX,
                    lease => self.gateway.time_to_live(lease)?,
                };
                Ok(Acquire::Held { expires_in })
            }
            Ok(mine) => {
                let mut lease = Lease::new(name, start, expires_at);
                lease.token = Some(format!("{id} {mine}"));
                Ok(Acquire::Taken(lease))
            }
        }
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let (id, rev) = token(lease)?;
        let now = now();
        let until = keep.until(lease.start, now);
        if until <= now {
            // Revoking the lease deletes our key with it.
            if self.gateway.revoke(id)? {
                return Ok(Release::Dropped);
            }
            return Ok(if self.owner_exists(&lease.key)? {
                Release::NotOurs
            } else {
                Release::Dropped
            });
        }
        // The key moves to a lease that lasts the grace; its create
        // revision, and so its place in line, stays.
        let kept = self.gateway.grant(until - now)?;
        let my_key = key_of(&lease.key, id);
        let record = crate::lock::owner::with_ended(&self.owner, now);
        let txn = match self.put_and_find_owner(&lease.key, &my_key, rev, kept, &record) {
            Ok(txn) => txn,
            Err(err) => {
                let _ = self.gateway.revoke(kept);
                return Err(err);
            }
        };
        let first = txn.owner.as_ref().is_some_and(|owner| owner.key == my_key);
        if !txn.succeeded && !first {
            // Our key had expired (or was reset) and someone else is in
            // line first: put back nothing.
            self.gateway.revoke(kept)?;
            let _ = self.gateway.revoke(id);
            return Ok(Release::NotOurs);
        }
        // Reset while we ran and nobody else came: the grace is claimed
        // again, as the original script does.
        self.gateway.revoke(id)?;
        Ok(Release::Kept { until })
    }

    /// etcd writes every change to disk before it answers, a cluster
    /// agrees on each revision before it is given, and no revision is
    /// given twice, across restarts and leader changes. Only a cluster
    /// restored from an older snapshot starts again lower, unless it is
    /// restored with `etcdutl snapshot restore --bump-revision`.
    fn fencing(&self) -> Fencing {
        Fencing::Durable
    }

    /// One transaction: if our key still has the create revision our take
    /// gave it (the recipe's own test of ownership, Go's `Mutex.IsOwner`;
    /// gone with our lease or a reset, it has none), put the job's counter
    /// [`fence_counter`]; the token is the transaction's revision, the
    /// counter's new mod revision. A later holder is first in line only
    /// once our key is gone, so its transaction comes after ours and gets a
    /// larger revision.
    ///
    /// Applied twice (a retry at another member after a lost answer), the
    /// second copy bumps the counter again while our key is there, and its
    /// revision, the one we hear of, is then the newest; when our key went
    /// in between, it changes nothing, and we stop without a token (the
    /// first copy's bump came before any later holder's).
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let (id, rev) = token(lease)?;
        let my_key = key_of(&lease.key, id);
        let counter = fence_counter(name);
        let body = json!({
            "compare": [{
                "key": b64(&my_key),
                "target": "CREATE",
                "result": "EQUAL",
                "create_revision": rev.to_string(),
            }],
            // The owner record of the last holder to take a token, for
            // whoever reads the counter with etcdctl.
            "success": [{ "request_put": { "key": b64(&counter), "value": b64(self.owner.as_bytes()) } }],
        });
        let answer = self
            .gateway
            .call("/v3/kv/txn", &body, None)
            .with_context(|| format!("bumping the fencing counter {}", String::from_utf8_lossy(&counter)))?;
        if !answer.get("succeeded").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(None);
        }
        match int(answer.get("header").and_then(|h| h.get("revision"))) {
            revision if revision > 0 => Ok(Some(revision as u64)),
            _ => Err(anyhow!("etcd's answer to the fencing transaction has no revision")),
        }
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let counter = fence_counter(name);
        let answer = self
            .gateway
            .call("/v3/kv/range", &json!({ "key": b64(&counter) }), None)
            .with_context(|| format!("reading the fencing counter {}", String::from_utf8_lossy(&counter)))?;
        let revision = answer
            .get("kvs")
            .and_then(|kvs| kvs.get(0))
            .map(|kv| int(kv.get("mod_revision")))
            .unwrap_or(0);
        Ok((revision > 0).then_some(revision as u64))
    }

    fn keeps_history(&self) -> bool {
        true
    }

    /// One transaction: if the record's key [`run_key`] does not exist, put
    /// the record there, and `NAME:succeeded` when the run succeeded, then
    /// read the keys of the job's records, oldest first by create revision;
    /// then, when there are more than `keep`, a second one deletes the
    /// oldest. Neither key has a lease, and a reset deletes only `NAME/`.
    ///
    /// Applied twice (a retry at another member after a lost answer), the
    /// second copy finds the key there with our record in it, and its
    /// answer still lists the keys; a key there with another record is
    /// another run's that picked the same number, and ours takes the next.
    /// Runs that end together each put their own key, and each deletes the
    /// oldest beyond `keep` of the keys it read (a delete of a key already
    /// gone changes nothing). Each deletes only keys older than the newest
    /// `keep` it read, and every key written after its read is newer still:
    /// the job never keeps fewer than `keep`, and no more once the last of
    /// them has trimmed. A trim that fails (only a warning) is made up for by
    /// the next run's.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let (from, end) = runs_range(name);
        let list = json!({ "request_range": {
            "key": b64(&from),
            "range_end": b64(&end),
            "keys_only": true,
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
        } });
        let mut listed = None;
        // A taken number is another run's record: ours takes the next.
        for number in (run_number()..).take(5) {
            let key = run_key(name, number);
            let mut success = vec![json!({ "request_put": { "key": b64(&key), "value": b64(record.as_bytes()) } })];
            if succeeded {
                success.push(json!({ "request_put": {
                    "key": b64(&succeeded_key(name)),
                    "value": b64(record.as_bytes()),
                } }));
            }
            success.push(list.clone());
            let body = json!({
                "compare": [{ "key": b64(&key), "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                "success": success,
                "failure": [{ "request_range": { "key": b64(&key) } }, list],
            });
            let answer = self
                .gateway
                .call("/v3/kv/txn", &body, None)
                .with_context(|| format!("adding the run to the history of {shown}"))?;
            if answer.get("succeeded").and_then(Value::as_bool).unwrap_or(false) {
                listed = Some(kvs(txn_range(&answer, success.len() - 1)).to_vec());
                break;
            }
            if unb64(kvs(txn_range(&answer, 0)).first().and_then(|kv| kv.get("value"))) == record.as_bytes() {
                listed = Some(kvs(txn_range(&answer, 1)).to_vec());
                break;
            }
        }
        let listed = listed.ok_or_else(|| {
            anyhow!("adding the run to the history of {shown}: five record keys in a row were taken by other runs")
        })?;
        let records: Vec<Vec<u8>> = listed
            .iter()
            .map(|kv| unb64(kv.get("key")))
            .filter(|key| is_run_key_of(key, name))
            .collect();
        let excess = records.len().saturating_sub(keep as usize);
        self.gateway
            .delete_keys(&records[..excess])
            .with_context(|| format!("trimming the history of {shown} to {keep} runs"))?;
        Ok(())
    }

    /// One transaction reads the newest records (by create revision) and
    /// the last success; a longer history is read on in pages, each below
    /// the create revision where the last ended.
    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let (from, end) = runs_range(name);
        let page = |below: Option<i64>| {
            let mut range = json!({
                "key": b64(&from),
                "range_end": b64(&end),
                "sort_order": "DESCEND",
                "sort_target": "CREATE",
                "limit": RUNS_PER_PAGE.to_string(),
            });
            if let Some(below) = below {
                range["max_create_revision"] = json!((below - 1).to_string());
            }
            range
        };
        let body = json!({ "success": [
            { "request_range": page(None) },
            { "request_range": { "key": b64(&succeeded_key(name)) } },
        ] });
        let answer = self
            .gateway
            .call("/v3/kv/txn", &body, None)
            .with_context(|| format!("reading the history of {shown}"))?;
        let text = |kv: &Value| String::from_utf8_lossy(&unb64(kv.get("value"))).into_owned();
        let last_success = kvs(txn_range(&answer, 1)).first().map(text);
        let mut runs = Vec::new();
        let mut range = txn_range(&answer, 0).cloned();
        loop {
            let found = kvs(range.as_ref());
            runs.extend(
                found
                    .iter()
                    .filter(|kv| is_run_key_of(&unb64(kv.get("key")), name))
                    .map(text),
            );
            let more = range.as_ref().and_then(|r| r.get("more")).and_then(Value::as_bool) == Some(true);
            let Some(oldest) = found.last().map(|kv| int(kv.get("create_revision"))) else {
                break;
            };
            if !more || oldest <= 1 {
                break;
            }
            range = Some(
                self.gateway
                    .call("/v3/kv/range", &page(Some(oldest)), None)
                    .with_context(|| format!("reading the history of {shown}"))?,
            );
        }
        Ok(History { runs, last_success })
    }

    /// `ETCD_LOCK_KEY` and `ETCD_LOCK_REV`, the variables `etcdctl lock
    /// NAME COMMAND` gives its command, so that a job moved from etcdctl
    /// keeps reading them. `ETCD_LOCK_KEY` is the same: the lock's key,
    /// `NAME/<lease id in hex>`. `ETCD_LOCK_REV` is our key's create
    /// revision, where etcdctl's is the revision of the answer that gave it
    /// the lock: the same when the lock was free, a later one when it had
    /// waited in line (cronlock never does; a run that waits tries again
    /// with a new key). Ours is what Go's `Mutex.IsOwner` compares: a job
    /// can add `create_revision(ETCD_LOCK_KEY) == ETCD_LOCK_REV` to its own
    /// etcd transactions to write only while the lock is its. It is not
    /// `CRONLOCK_FENCING_TOKEN`, which is taken after, on the job's counter.
    fn job_env(&self, lease: &Lease) -> Vec<(String, String)> {
        etcdctl_env(lease)
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let prefix = prefix_of(key);
        Ok(self.holders(&prefix, &prefix_end(&prefix))?.into_iter().next())
    }

    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let end = if prefix.is_empty() { vec![0] } else { prefix_end(prefix) };
        let mut found = self.holders(prefix, &end)?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// A retry of a delete that was applied deletes whatever is there by
    /// then, which is what a reset asks for anyway.
    ///
    /// Another job's fencing counter and history in the line (see
    /// [`owner_of_line`]) are that job's, and stay: the rest of the line is
    /// then deleted key by key.
    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let prefix = prefix_of(key);
        let line = self
            .gateway
            .call("/v3/kv/range", &line_of(&prefix), None)
            .context("reading the lock")?;
        let (records, ours): (Vec<Owner>, Vec<Owner>) = in_line(kvs(Some(&line))).partition(Owner::is_job_record);
        if records.is_empty() {
            let body = json!({ "key": b64(&prefix), "range_end": b64(&prefix_end(&prefix)) });
            let answer = self
                .gateway
                .call("/v3/kv/deleterange", &body, None)
                .context("deleting the lock")?;
            return Ok(int(answer.get("deleted")) > 0);
        }
        let ours: Vec<Vec<u8>> = ours.into_iter().map(|key| key.key).collect();
        self.gateway.delete_keys(&ours).context("deleting the lock")
    }

    fn renew(&mut self, lease: &Lease, seconds: i64, after_unknown: bool, limit: Duration) -> Renewal {
        let _ = (seconds, after_unknown);
        let (id, _) = match token(lease) {
            Ok(token) => token,
            Err(err) => {
                return Renewal::Unconfirmed {
                    message: format!("{err:#}"),
                    maybe_sent: false,
                }
            }
        };
        let my_key = key_of(&lease.key, id);
        // A reset deletes the key but leaves the lease: look for the key first.
        let body = json!({ "key": b64(&my_key), "count_only": true });
        match self.gateway.call("/v3/kv/range", &body, Some(limit)) {
            Ok(answer) if int(answer.get("count")) == 0 => Renewal::Lost,
            Ok(_) => self.gateway.keep_alive(id, limit),
            Err(err) => unconfirmed(err),
        }
    }
}

/// `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` for the holder of `lease` (see
/// [`EtcdLock::job_env`]); none for a lease without its id.
fn etcdctl_env(lease: &Lease) -> Vec<(String, String)> {
    let Ok((id, rev)) = token(lease) else {
        return Vec::new();
    };
    vec![
        (
            "ETCD_LOCK_KEY".to_string(),
            String::from_utf8_lossy(&key_of(&lease.key, id)).into_owned(),
        ),
        ("ETCD_LOCK_REV".to_string(), rev.to_string()),
    ]
}

/// A renewal whose request may have been sent but got no answer.
fn unconfirmed(err: anyhow::Error) -> Renewal {
    Renewal::Unconfirmed {
        message: format!("{err:#}"),
        maybe_sent: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_etcdctl_lock() {
        assert_eq!(
            key_of(b"cronlock.job", 0x694d_8a1b_2c3d_4e5f),
            b"cronlock.job/694d8a1b2c3d4e5f"
        );
        assert_eq!(key_of(b"a", 10), b"a/a");
        assert_eq!(prefix_end(b"cronlock.job/"), b"cronlock.job0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn another_jobs_counter_and_history_are_passed_over_in_a_line() {
        let kv = |key: &[u8], rev: i64, lease: i64| json!({ "key": b64(key), "create_revision": rev.to_string(), "lease": lease.to_string() });
        let inner = b"cronlock.a/b";
        let lock = key_of(b"cronlock.a", 0x2a);
        let line = [
            kv(&fence_counter(inner), 3, 0),
            kv(&run_key(inner, 5), 4, 0),
            kv(&succeeded_key(inner), 5, 0),
            kv(&lock, 9, 0x2a),
        ];
        let owner = owner_of_line(&line).unwrap();
        assert_eq!((owner.key, owner.create_revision, owner.lease), (lock, 9, 0x2a));
        assert!(owner_of_line(&line[..3]).is_none());
        // A key without a lease that is no record (`etcdctl put`) holds the
        // lock, for etcdctl and for us alike.
        let put = b"cronlock.a/by-hand".to_vec();
        let owner = owner_of_line(&[kv(&put, 2, 0), line[3].clone()]).unwrap();
        assert_eq!((owner.key, owner.lease), (put, 0));
    }

    #[test]
    fn a_transaction_applied_twice_still_finds_our_key_first() {
        let my_key = key_of(b"k", 7);
        // The second copy's answer: our key existed (the compare failed),
        // and the revision is the second copy's, not our key's.
        let second = Txn {
            succeeded: false,
            revision: 12,
            owner: Some(Owner {
                key: my_key.clone(),
                create_revision: 11,
                lease: 7,
            }),
        };
        assert_eq!(second.first_in_line(&my_key).ok(), Some(11));
        let first = Txn {
            succeeded: true,
            revision: 11,
            owner: Some(Owner {
                key: my_key.clone(),
                create_revision: 11,
                lease: 7,
            }),
        };
        assert_eq!(first.first_in_line(&my_key).ok(), Some(11));
        let behind = Txn {
            succeeded: true,
            revision: 12,
            owner: Some(Owner {
                key: key_of(b"k", 5),
                create_revision: 3,
                lease: 5,
            }),
        };
        assert_eq!(behind.first_in_line(&my_key).err().map(|o| o.lease), Some(5));
    }

    #[test]
    fn the_fencing_counter_lies_beside_the_lock_and_is_no_lock() {
        let counter = fence_counter(b"cronlock.job");
        assert_eq!(counter, b"cronlock.job:fence");
        assert!(!counter.starts_with(&prefix_of(b"cronlock.job")));
        assert!(is_fence_counter(&counter, 0));
        // A lock's key always has a lease, and ends in its id.
        assert!(!is_fence_counter(&key_of(b"cronlock.job:fence", 7), 7));
        assert!(!is_fence_counter(&counter, 7));
    }

    #[test]
    fn history_keys_lie_beside_the_lock_and_are_no_lock() {
        let name = b"cronlock.job";
        let record = run_key(name, 17_644_608_000_000_004_242);
        assert_eq!(record, b"cronlock.job:runs:17644608000000004242");
        assert_eq!(run_key(name, 7), b"cronlock.job:runs:00000000000000000007");
        assert!(is_run_key_of(&record, name));
        let (from, end) = runs_range(name);
        assert!(from.as_slice() <= record.as_slice() && record < end);
        assert_eq!(succeeded_key(name), b"cronlock.job:succeeded");
        for key in [record.clone(), succeeded_key(name)] {
            assert!(!key.starts_with(&prefix_of(name)));
            assert!(is_history_key(&key, 0), "{key:?}");
            assert!(!is_history_key(&key, 7), "{key:?}");
            assert!(!is_fence_counter(&key, 0));
        }
        assert!(!is_history_key(&fence_counter(name), 0));
        // Other jobs' keys in the same range are not the job's records.
        let runs_job = [&name[..], b":runs"].concat();
        assert!(!is_run_key_of(&run_key(&runs_job, 7), name));
        assert!(run_key(&runs_job, 7) >= end);
        let digits_job = [&name[..], b":runs:00000000000000000007"].concat();
        for other in [
            key_of(&digits_job, 0x1f),
            fence_counter(&digits_job),
            run_key(&digits_job, 8),
            succeeded_key(&digits_job),
        ] {
            assert!(from.as_slice() <= other.as_slice() && other < end, "{other:?}");
            assert!(!is_run_key_of(&other, name), "{other:?}");
        }
        // A lock's key is never taken for history, whatever its job's name.
        assert!(!is_history_key(&key_of(&record, 7), 7));
        assert!(!is_history_key(&key_of(&succeeded_key(name), 7), 7));
    }

    #[test]
    fn the_job_gets_etcdctls_variables_from_the_lease() {
        let mut lease = Lease::new(b"cronlock.job", 1, 2);
        lease.token = Some(format!("{} 42", 0x694d_8a1b_2c3d_4e5f_i64));
        assert_eq!(
            etcdctl_env(&lease),
            vec![
                ("ETCD_LOCK_KEY".to_string(), "cronlock.job/694d8a1b2c3d4e5f".to_string()),
                ("ETCD_LOCK_REV".to_string(), "42".to_string()),
            ]
        );
        assert!(etcdctl_env(&Lease::new(b"k", 1, 2)).is_empty());
    }

    #[test]
    fn the_token_holds_the_lease_and_revision() {
        let mut lease = Lease::new(b"k", 1, 2);
        assert!(token(&lease).is_err());
        lease.token = Some("7587 42".into());
        assert_eq!(token(&lease).unwrap(), (7587, 42));
    }
}
