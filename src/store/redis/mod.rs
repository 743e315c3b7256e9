//! The Redis store: the lock protocol as Lua scripts, one round trip each,
//! over our own connection code (plain or TLS, Sentinel, Cluster redirects).
//!
//! Interop with the original script is the point: the key holds the unix
//! time at which the lock expires (start + RELEASE + 1 while the command
//! runs, start + GRACE + 1 afterwards); a value now or in the future means
//! held, one in the past may be taken over. The original reaches this with
//! SETNX/GET/GETSET/EXPIREAT; we do each step as one Lua script, so a
//! takeover has exactly one winner and the release never clobbers a lock
//! that someone else has taken over since.

pub mod connect;
pub mod settings;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::lock::{Acquire, Claim, Fencing, History, Keep, Lease, LockStore, Release, Renewal, Seen};
use crate::report::Report;
use connect::{AuthRejected, Reply, Retry, Session, Unconfirmed};
use nix::sys::signal::Signal;
use settings::RedisTarget;

use crate::process::signals;

/// Each script is the shared prelude followed by its own body, joined at
/// compile time.
macro_rules! lock_script {
    ($($part:literal),+) => {
        concat!(include_str!("lua/prelude.lua") $(, "\n", include_str!($part))+)
    };
}

const ACQUIRE: &str = lock_script!("lua/take.lua", "lua/acquire.lua");
const SLOTS: &str = lock_script!("lua/take.lua", "lua/slots.lua");
const RELEASE: &str = lock_script!("lua/keep.lua", "lua/release.lua");
const RESET: &str = lock_script!("lua/reset.lua");
const RENEW: &str = lock_script!("lua/renew.lua");
const INSPECT: &str = lock_script!("lua/inspect.lua");
const SCAN: &str = lock_script!("lua/scan.lua");
const FENCE: &str = lock_script!("lua/fence.lua");
const FENCE_READ: &str = lock_script!("lua/fence_read.lua");
const HISTORY: &str = lock_script!("lua/history.lua");
const HISTORY_READ: &str = lock_script!("lua/history_read.lua");

// After the scripts' macro, which its scripts use too.
pub mod tooz;

/// Locks in Redis.
pub struct RedisLock<'a> {
    session: Session<'a>,
    /// Where it connects, for the other nodes of a Cluster.
    target: &'a RedisTarget,
    db: i64,
    /// The server timeout: a blocking wait must end well within it.
    timeout: Option<Duration>,
    /// When this waiter last refreshed its marker.
    marked_at: Option<std::time::Instant>,
}

/// The longest a waiter blocks on its wake list before it looks for a
/// terminating signal: a BLPOP every two seconds at most, since a release
/// wakes it anyway.
const WAIT_BLOCK: Duration = Duration::from_secs(2);
/// How long a waiter's marker (`<key>:waiting`) outlives its last refresh.
const WAITING_MARKER_SECONDS: i64 = 10;

impl<'a> RedisLock<'a> {
    /// A store on `target`; nothing is sent until the first call.
    pub fn new(target: &'a RedisTarget, report: &'a Report) -> Result<RedisLock<'a>> {
        Ok(RedisLock {
            session: Session::new(target, report)?,
            target,
            db: target.db,
            timeout: target.connection.timeout,
            marked_at: None,
        })
    }

    /// EVAL with the script text every time: one round trip, no NOSCRIPT
    /// fallback, and the server caches the compiled script anyway.
    fn eval(&mut self, body: &str, key: &[u8], args: &[i64], retry: Retry) -> Result<Vec<Reply>> {
        let reply = self.session.query(&self.eval_cmd(body, key, args), retry)?;
        self.script_reply(reply)
    }

    fn eval_cmd(&self, body: &str, key: &[u8], args: &[i64]) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(body).arg(1).arg(key).arg(self.db);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }

    fn script_reply(&self, reply: Reply) -> Result<Vec<Reply>> {
        match reply {
            Reply::Array(items) => Ok(items),
            Reply::Int(n) => Ok(vec![Reply::Int(n)]),
            other => bail!(
                "{}: unexpected reply to the lock script: {other:?}",
                self.session.describe()
            ),
        }
    }
}

impl RedisLock<'_> {
    /// Every key matching `pattern` on this node (plain SCAN: a Cluster node
    /// has only database 0), handed to `each` with this store.
    fn scan_keys(&mut self, pattern: &[u8], each: &mut dyn FnMut(&mut Self, Vec<u8>) -> Result<()>) -> Result<()> {
        let mut cursor = b"0".to_vec();
        loop {
            let mut cmd = ::redis::cmd("SCAN");
            cmd.arg(&cursor[..]).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let Reply::Array(page) = self.session.query(&cmd, Retry::Idempotent)? else {
                bail!("unexpected reply to SCAN");
            };
            if let Some(Reply::Array(keys)) = page.get(1) {
                for key in keys {
                    let Reply::Bulk(key) = key else { continue };
                    let companion = [&b":owner"[..], b":wake", b":waiting", b":fence", b":succeeded"]
                        .iter()
                        .any(|tail| key.ends_with(tail));
                    if !companion {
                        each(self, key.clone())?;
                    }
                }
            }
            cursor = match page.first() {
                Some(Reply::Bulk(next)) => next.clone(),
                other => bail!("unexpected SCAN cursor {other:?}"),
            };
            if cursor == b"0" {
                return Ok(());
            }
        }
    }

    /// Runs `script` (acquire.lua or slots.lua) on `keys`; the lease names
    /// the key that was taken.
    fn take(&mut self, script: &str, keys: &[&[u8]], claim: &Claim) -> Result<Acquire> {
        let release = claim.release;
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        cmd.arg(self.db).arg(release).arg(claim.owner.unwrap_or(""));
        let sent = self.session.query(&cmd, Retry::OnlyIfUnsent);
        let reply = match sent.and_then(|reply| self.script_reply(reply)) {
            Ok(reply) => reply,
            Err(err) => {
                self.undo_refused_acquire(keys, release, &err);
                return Err(err);
            }
        };
        let (status, now) = (int(&reply, 0)?, int(&reply, 1)?);
        let index = match reply.get(3) {
            Some(Reply::Int(i)) if *i >= 1 && (*i as usize) <= keys.len() => *i as usize - 1,
            _ => 0,
        };
        let lease = Lease::new(keys[index], now, now + release + 1);
        match status {
            1 => Ok(Acquire::Taken(lease)),
            2 => Ok(Acquire::TakenOver {
                lease,
                expired_ago: now - previous_value(&reply),
            }),
            0 => Ok(Acquire::Held {
                expires_in: previous_value(&reply) - now,
            }),
            other => bail!("unexpected status {other} from the lock script"),
        }
    }

    /// fence.lua on the lock `key` and the `counter`: the token, or `None`
    /// when the lock no longer holds `ours` (empty: not checked).
    fn bump_fence(&mut self, key: &[u8], counter: &[u8], ours: &str) -> Result<Option<u64>> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(FENCE).arg(2).arg(key).arg(counter).arg(self.db).arg(ours);
        // Not idempotent: a second bump would skip a token, which is
        // harmless, but a bump whose answer was lost gives us none.
        let reply = self.session.query(&cmd, Retry::OnlyIfUnsent)?;
        let reply = self.script_reply(reply)?;
        match (int(&reply, 0)?, reply.get(1)) {
            (1, Some(Reply::Bulk(token))) => Ok(Some(parse_token(token)?)),
            (-1, _) => Ok(None),
            other => bail!("unexpected reply from the fencing script: {other:?}"),
        }
    }

    /// AUTH travels with the acquire script. A server without a password
    /// refuses the AUTH but runs the script, so the lock may be ours although
    /// we are about to stop with an error: give it back at once, as the
    /// original (which sends AUTH first) would never have taken it.
    fn undo_refused_acquire(&mut self, keys: &[&[u8]], release: i64, err: &anyhow::Error) {
        let Some(rejected) = err.downcast_ref::<AuthRejected>() else {
            return;
        };
        let Reply::Array(reply) = &rejected.reply else {
            return;
        };
        if let (Ok(1 | 2), Ok(now)) = (int(reply, 0), int(reply, 1)) {
            let index = int(reply, 3).map_or(0, |i| (i.max(1) - 1) as usize);
            let Some(key) = keys.get(index) else { return };
            let lease = Lease::new(key, now, now + release + 1);
            // A grace of -1 keeps it until `start`, which has passed: dropped.
            let _ = self.release(&lease, Keep { grace: -1, hold: 0 });
        }
    }
}

/// A `Seen` from a lock's value and owner record as the scripts return them.
fn seen(key: Vec<u8>, value: Option<&Reply>, owner: Option<&Reply>, now: i64) -> Option<Seen> {
    let value = match value {
        Some(Reply::Bulk(bytes)) => bytes,
        _ => return None,
    };
    let owner = match owner {
        Some(Reply::Bulk(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    // A command that ended says so in its record (release.lua); one that
    // still runs cannot be told from one whose host died.
    let running = owner.as_ref().filter(|o| o.contains("\"ended\":")).map(|_| false);
    Some(Seen {
        key,
        expires_at: std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()),
        now,
        owner,
        running,
    })
}

/// A SCAN pattern for keys that start with `prefix`.
fn glob_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(prefix.len() + 1);
    for &byte in prefix {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(byte);
    }
    pattern.push(b'*');
    pattern
}

/// The masters of a `CLUSTER SLOTS` reply, each once.
fn masters(ranges: &[Reply]) -> Vec<(String, u16)> {
    let mut nodes = Vec::new();
    for range in ranges {
        if let Reply::Array(parts) = range {
            if let Some(Reply::Array(master)) = parts.get(2) {
                if let (Some(Reply::Bulk(host)), Some(Reply::Int(port))) = (master.first(), master.get(1)) {
                    let node = (String::from_utf8_lossy(host).into_owned(), *port as u16);
                    if !nodes.contains(&node) {
                        nodes.push(node);
                    }
                }
            }
        }
    }
    nodes
}

/// The fencing counter of the job key `name`: `{name}:fence`, whose hash
/// tag puts it in the same Cluster slot as `name` itself (for a name
/// without braces), so that one script can check the lock and bump it.
fn fence_counter(name: &[u8]) -> Vec<u8> {
    companion(name, b"fence")
}

/// `{name}:tail`: a key kept for the job `name` beyond its lock, in the
/// lock's Cluster slot, and outside `list`'s prefix (it starts with a brace).
fn companion(name: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + tail.len() + 3);
    key.push(b'{');
    key.extend_from_slice(name);
    key.extend_from_slice(b"}:");
    key.extend_from_slice(tail);
    key
}

fn parse_token(bytes: &[u8]) -> Result<u64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "the fencing counter holds {:?}, not a number",
                String::from_utf8_lossy(bytes)
            )
        })
}

fn int(values: &[Reply], index: usize) -> Result<i64> {
    match values.get(index) {
        Some(Reply::Int(n)) => Ok(*n),
        other => Err(anyhow!("unexpected reply from the lock script: {other:?}")),
    }
}

/// The previous value as the original's bash arithmetic reads it: not a number → 0.
fn previous_value(values: &[Reply]) -> i64 {
    match values.get(2) {
        Some(Reply::Bulk(bytes)) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0),
        Some(Reply::Int(n)) => *n,
        _ => 0,
    }
}

impl LockStore for RedisLock<'_> {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        self.take(ACQUIRE, &[claim.key], claim)
    }

    /// All slots in one script; a Cluster, whose slots the semaphore's keys
    /// part, refuses a script with keys of several slots (CROSSSLOT): there
    /// the slots are tried one request each.
    fn acquire_slot(&mut self, claim: &Claim, slots: u32) -> Result<Acquire> {
        if slots <= 1 {
            return self.acquire(claim);
        }
        let keys: Vec<Vec<u8>> = (1..=slots).map(|slot| crate::lock::slot_key(claim.key, slot)).collect();
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        match self.take(SLOTS, &keys, claim) {
            Err(err) if format!("{err:#}").contains("CROSSSLOT") => {
                let mut soonest = i64::MAX;
                for key in keys {
                    match self.acquire(&Claim { key, ..*claim })? {
                        Acquire::Held { expires_in } => soonest = soonest.min(expires_in),
                        taken => return Ok(taken),
                    }
                }
                Ok(Acquire::Held { expires_in: soonest })
            }
            other => other,
        }
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let reply = self.eval(
            RELEASE,
            &lease.key,
            &[lease.start, keep.grace, lease.expires_at, keep.hold],
            Retry::Idempotent,
        )?;
        match int(&reply, 0)? {
            1 => Ok(Release::Kept { until: int(&reply, 2)? }),
            2 => Ok(Release::Dropped),
            -1 => Ok(Release::NotOurs),
            other => bail!("unexpected status {other} from the release script"),
        }
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let reply = self.eval(INSPECT, key, &[], Retry::Idempotent)?;
        let now = int(&reply, 0)?;
        Ok(seen(key.to_vec(), reply.get(1), reply.get(2), now))
    }

    /// SCAN, never KEYS. A Cluster's keys are spread over its masters: each
    /// is scanned, and each lock read on its own node.
    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let pattern = glob_prefix(prefix);
        let mut found = Vec::new();
        match self
            .session
            .query(&::redis::cmd("CLUSTER").arg("SLOTS").clone(), Retry::Idempotent)
        {
            Ok(Reply::Array(ranges)) => {
                for (host, port) in masters(&ranges) {
                    let mut target = self.target.clone();
                    (target.host, target.port, target.sentinel) = (host, port, None);
                    let mut node = RedisLock::new(&target, self.session.report())?;
                    node.scan_keys(&pattern, &mut |lock, key| {
                        if let Some(seen) = lock.inspect(&key)? {
                            found.push(seen);
                        }
                        Ok(())
                    })?;
                }
            }
            _ => {
                let mut cursor = b"0".to_vec();
                loop {
                    let mut cmd = self.eval_cmd(SCAN, b"", &[]);
                    cmd.arg(&cursor[..]).arg(&pattern[..]);
                    let page = self.session.query(&cmd, Retry::Idempotent)?;
                    let reply = self.script_reply(page)?;
                    let now = int(&reply, 0)?;
                    for lock in reply[2..].chunks(3) {
                        if let [Reply::Bulk(key), value, owner] = lock {
                            found.extend(seen(key.clone(), Some(value), Some(owner), now));
                        }
                    }
                    cursor = match reply.get(1) {
                        Some(Reply::Bulk(next)) => next.clone(),
                        other => bail!("unexpected SCAN cursor {other:?}"),
                    };
                    if cursor == b"0" {
                        break;
                    }
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn fencing(&self) -> Fencing {
        Fencing::BestEffort(
            "Redis replicates asynchronously, so after a failover only the servers' clocks keep the tokens growing",
        )
    }

    /// One script checks that the lock is ours and bumps the counter. Where
    /// a Cluster keeps the two on different nodes (a semaphore's slot, a
    /// CRONLOCK_SLOT fire time, a key with braces), the counter is bumped
    /// first and the lock checked after: a later holder can only have taken
    /// the lock after that check, so it bumps later and gets more.
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let counter = fence_counter(name);
        let ours = lease.expires_at.to_string();
        match self.bump_fence(&lease.key, &counter, &ours) {
            Err(err) if format!("{err:#}").contains("CROSSSLOT") => {
                let token = self.bump_fence(&counter, &counter, "")?;
                let value = self
                    .session
                    .query(::redis::cmd("GET").arg(&lease.key[..]), Retry::Idempotent)?;
                let still_ours = matches!(&value, Reply::Bulk(bytes) if bytes[..] == *ours.as_bytes());
                Ok(token.filter(|_| still_ours))
            }
            other => other,
        }
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let reply = self.eval(FENCE_READ, &fence_counter(name), &[], Retry::Idempotent)?;
        match reply.get(1) {
            Some(Reply::Bulk(bytes)) => Ok(Some(parse_token(bytes)?)),
            _ => Ok(None),
        }
    }

    fn keeps_history(&self) -> bool {
        true
    }

    /// A capped list `{name}:runs` and the last success `{name}:succeeded`,
    /// in one script; neither expires, and a reset leaves both.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(HISTORY)
            .arg(2)
            .arg(companion(name, b"runs"))
            .arg(companion(name, b"succeeded"))
            .arg(self.db)
            .arg(record)
            .arg(i64::from(succeeded))
            .arg(keep);
        let reply = self.session.query(&cmd, Retry::OnlyIfUnsent)?;
        self.script_reply(reply).map(drop)
    }

    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(HISTORY_READ)
            .arg(2)
            .arg(companion(name, b"runs"))
            .arg(companion(name, b"succeeded"))
            .arg(self.db);
        let reply = self.session.query(&cmd, Retry::Idempotent)?;
        let reply = self.script_reply(reply)?;
        let text = |reply: &Reply| match reply {
            Reply::Bulk(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        };
        let runs = match reply.get(1) {
            Some(Reply::Array(runs)) => runs.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        Ok(History {
            runs,
            last_success: reply.get(2).and_then(text),
        })
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let reply = self.eval(RESET, key, &[], Retry::Idempotent)?;
        Ok(int(&reply, 0)? > 0)
    }

    /// Blocks on `<key>:wake`, which a release pushes a token to when a
    /// waiter's marker `<key>:waiting` is there (release.lua): the waiter
    /// that has blocked longest is woken at once. Holders that send no token
    /// (the original script, a Cluster whose slots part these keys) leave
    /// waiters to their periodic tries.
    fn wait_for_release(&mut self, key: &[u8], limit: Duration) -> Result<Option<Signal>> {
        let deadline = std::time::Instant::now() + limit;
        // A server timeout shorter than the block would read as a dead
        // server; and BLPOP cannot SELECT, which the scripts do for
        // CRONLOCK_DB: both wait by sleeping.
        if self
            .timeout
            .is_some_and(|t| t <= WAIT_BLOCK + Duration::from_millis(500))
            || self.db != 0
        {
            return Ok(signals::sleep_unless_told_to_stop(limit));
        }
        let refresh_due = self
            .marked_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(WAITING_MARKER_SECONDS as u64 / 2));
        if refresh_due {
            let mut marker = key.to_vec();
            marker.extend_from_slice(b":waiting");
            let mut set = ::redis::cmd("SET");
            set.arg(&marker).arg(1).arg("EX").arg(WAITING_MARKER_SECONDS);
            self.session.query(&set, Retry::Idempotent)?;
            self.marked_at = Some(std::time::Instant::now());
        }
        let mut wake = key.to_vec();
        wake.extend_from_slice(b":wake");
        loop {
            if let Some(signal) = signals::take_pending_termination() {
                return Ok(Some(signal));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Whole seconds, rounded up, which every Redis version takes.
            let block = left.min(WAIT_BLOCK).as_millis().div_ceil(1000) as u64;
            let mut blpop = ::redis::cmd("BLPOP");
            blpop.arg(&wake).arg(block);
            if let Reply::Array(_) = self.session.query(&blpop, Retry::Idempotent)? {
                return Ok(None);
            }
        }
    }

    fn renew(&mut self, lease: &Lease, seconds: i64, after_unknown: bool, limit: Duration) -> Renewal {
        let cmd = self.eval_cmd(
            RENEW,
            &lease.key,
            &[lease.expires_at, seconds, i64::from(after_unknown)],
        );
        let reply = match self.session.query_once(&cmd, limit) {
            Ok(reply) => self.script_reply(reply),
            Err(Unconfirmed { message, maybe_sent }) => return Renewal::Unconfirmed { message, maybe_sent },
        };
        match reply.and_then(|values| Ok((int(&values, 0)?, values))) {
            Ok((1, values)) => match int(&values, 2) {
                Ok(expires_at) => Renewal::Renewed { expires_at },
                Err(err) => Renewal::Unconfirmed {
                    message: format!("{err:#}"),
                    maybe_sent: true,
                },
            },
            Ok(_) => Renewal::Lost,
            Err(err) => Renewal::Unconfirmed {
                message: format!("{err:#}"),
                maybe_sent: true,
            },
        }
    }
}
