//! The memcached store (`CRONLOCK_URL=memcached://host:port`): the lock
//! protocol over memcached's text protocol, with a client of our own.
//!
//! Why our own client: the `memcache` crate (0.21) pulls in a connection
//! pool and OpenSSL by default, and cannot pipeline `stats` with `gets`,
//! which is what lets every step read the server's clock in the same round
//! trip. The five commands we need (`stats`, `gets`, `add`, `cas`,
//! `delete`) fit in this file.
//!
//! The item's value is "<expiry> <token>[ <owner>]": the unix time at which
//! the lock expires, as in every store, and a random token naming the run
//! that wrote it, so a release or renewal recognises its own lock (and a
//! request whose answer was lost can be retried: the retry sees our token).
//!
//! Each step reads the server's clock (`stats` carries `time`) in the same
//! round trip as `gets`, so hosts with skewed clocks agree on every
//! deadline, as they do with Redis. Taking is `add`; a lock whose expiry has
//! passed is taken over with `cas` on the unique `gets` returned, so of many
//! contenders exactly one succeeds; release and renewal are `cas` too, so
//! they never touch a lock someone else wrote since. Dropping our own lock
//! is a `cas` with a negative expiry (memcached's text `delete` cannot be
//! made conditional). The item's own expiry (one second past the value,
//! as Redis's) is the server's, relative; beyond memcached's 30-day limit
//! for relative times it is sent as the absolute unix time.
//!
//! memcached is a cache: it forgets every lock when it restarts, and evicts
//! items when its memory is full unless started with `-M`. Verbose output
//! says so at the start of every run; the README has the details.
//!
//! `CRONLOCK_FENCING`: a job key's fencing token is the item beside its lock
//! whose wire key ends in `%:fence` (see [`fence_key`]), stored without an
//! expiry. memcached cannot check one item and write another in one step,
//! so the counter is bumped first (a `cas` on the unique `gets` returned,
//! or an `add` when it is missing) and the lock is read after: a later
//! holder can only take the lock after that read, so it bumps later and
//! gets more. The token is the larger of the counter + 1 and the server's
//! clock in microseconds (whole seconds: `stats` has no finer clock), and a
//! missing counter starts at the next second's, so that a counter lost with
//! a restart or an eviction still starts above every token given before, as
//! long as the server's clock keeps going forward, fewer than a million
//! tokens are given a second, and the counter is not lost within the
//! second in which it was made (then the new one starts where it did).
//!
//! `CRONLOCK_HISTORY`: memcached has no lists, so a job key's runs are one
//! item beside its lock, wire key ending in `%:runs`, whose value is the
//! records as lines of JSON, newest first; its last success is another,
//! ending in `%:succeeded`, holding that run's record. Neither expires, and
//! neither is a lock to `list` or `reset` (see [`is_companion`]). A run adds
//! its record by `gets` and a `cas` on the unique it returned (`add` when
//! there is no item yet), and reads again when another run wrote first, so
//! runs that end together each keep their record; the last success is a
//! plain `set`. Like the locks, both are lost to a restart or an eviction:
//! the history is best effort here. memcached refuses an item over 1 MB by
//! default (`-I`), so the runs kept are also cut to [`HISTORY_BYTES`]: the
//! oldest lines go first, whatever `CRONLOCK_HISTORY` asks.

pub mod settings;
pub mod tooz;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::lock::{Acquire, Claim, Fencing, History, Keep, Lease, LockStore, Release, Renewal, Seen};
use crate::net::reconnect::Reconnects;
use crate::report::Report;
use settings::MemcachedTarget;

/// memcached reads a relative expiry above this many seconds (30 days) as
/// an absolute unix time.
const RELATIVE_LIMIT: i64 = 30 * 24 * 3600;
/// The longest key memcached accepts.
const MAX_KEY: usize = 250;
/// The longest reply line we read: a `stats` line or a `VALUE` header.
const MAX_LINE: usize = 4096;
/// The largest value we read (memcached's default item size limit).
const MAX_VALUE: usize = 1 << 20;
/// Rounds of "read, then write conditionally" before we give up on a key
/// that others keep changing under us.
const MAX_ROUNDS: u32 = 10;
/// The same for a fencing counter, which every holder of a semaphore's
/// slots bumps (`CRONLOCK_CONCURRENCY`): each lost round is another
/// holder's bump, so this many holders at once can all get theirs.
const FENCE_ROUNDS: u32 = 100;
/// The end of a fencing counter's wire key. [`wire_key`] writes `%` only
/// before two upper-case hex digits (or, cut short, before the `~` of the
/// md5), so no lock's wire key holds `%:`.
const FENCE_TAIL: &[u8] = b"%:fence";
/// A fencing token's clock part: microseconds a second.
const TICKS: u64 = 1_000_000;
/// The end of the wire key of a job's runs (`CRONLOCK_HISTORY`); see [`FENCE_TAIL`].
const RUNS_TAIL: &[u8] = b"%:runs";
/// The end of the wire key of a job's last success.
const SUCCEEDED_TAIL: &[u8] = b"%:succeeded";
/// The most bytes of records one job's runs keep: half of memcached's
/// default item size limit, so that the item (key and header included)
/// stays well under it.
const HISTORY_BYTES: usize = 512 * 1024;

/// Locks in memcached.
pub struct MemcachedLock<'a> {
    link: Link<'a>,
    own: Own,
}

/// What this run writes into its lock's value.
struct Own {
    /// Ours, written into every value this run stores.
    token: String,
    /// Who runs the command, kept beside the expiry when known.
    owner: Option<String>,
}

/// The way to one memcached server, shared by cronlock's lock and tooz's:
/// one connection, opened on first use and again after a failure.
pub(super) struct Link<'a> {
    target: &'a MemcachedTarget,
    report: &'a Report,
    connection: Option<Connection>,
}

/// Why a request failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Could not connect; nothing was sent.
    Connect(String),
    /// The connection broke after a request may have been sent.
    InFlight(String),
    /// Another try will not help (the server is not memcached, or refused a request).
    Fatal(String),
    /// The server is at its connection limit (`-c`): it answered "ERROR Too
    /// many open connections" and closed; see `Reconnects::busy`.
    Busy(String),
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            Failure::InFlight("no answer within CRONLOCK_REDIS_TIMEOUT".to_string())
        } else {
            Failure::InFlight(err.to_string())
        }
    }
}

/// An item as `gets` returns it, its value not yet read.
pub(super) struct RawItem {
    /// The flags it was stored with.
    pub(super) flags: u32,
    /// Its value.
    pub(super) value: Vec<u8>,
    /// memcached's compare-and-swap unique.
    pub(super) cas: u64,
}

/// An item of cronlock's own, as `gets` returns it.
struct Item {
    /// The expiry it says, or 0 when it is not a number (stale, as the
    /// original's bash arithmetic would read it).
    expiry: i64,
    /// The token after the expiry, if any.
    token: Vec<u8>,
    /// memcached's compare-and-swap unique.
    cas: u64,
    /// The owner record after the token, if any.
    owner: Option<String>,
}

impl From<RawItem> for Item {
    /// "<expiry> <token>[ <owner>]"; an expiry that is not a number reads as 0.
    fn from(raw: RawItem) -> Item {
        let mut words = raw.value.split(|&b| b == b' ');
        let expiry = words
            .next()
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let token = words.next().unwrap_or_default().to_vec();
        let rest: Vec<&[u8]> = words.collect();
        let owner = (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest.join(&b' ')).into_owned());
        Item {
            expiry,
            token,
            cas: raw.cas,
            owner,
        }
    }
}

/// What a storage command answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stored {
    /// `STORED`.
    Yes,
    /// `NOT_STORED`, `EXISTS` or `NOT_FOUND`: someone changed the key first.
    Raced,
}

impl<'a> MemcachedLock<'a> {
    /// A store on `target`; nothing is sent until the first call.
    pub fn new(target: &'a MemcachedTarget, report: &'a Report) -> MemcachedLock<'a> {
        report.info(format_args!(
            "memcached at '{}' port '{}' keeps locks in memory only: a restart forgets them all, \
             and a full cache may evict one unless memcached runs with -M",
            target.host, target.port
        ));
        MemcachedLock {
            link: Link::new(target, report),
            own: Own {
                token: crate::net::random::token(),
                owner: None,
            },
        }
    }

    /// Runs `step` with what this run writes, through [`Link::with_retries`].
    fn with_retries<T>(&mut self, mut step: impl FnMut(&Own, &mut Connection) -> Result<T, Failure>) -> Result<T> {
        let own = &self.own;
        self.link.with_retries(|connection| step(own, connection))
    }
}

impl Own {
    /// The item's value; `ended`: when the command ended, for the owner record.
    fn value(&self, expiry: i64, ended: Option<i64>) -> Vec<u8> {
        let mut value = format!("{expiry} {}", self.token).into_bytes();
        if let Some(owner) = &self.owner {
            let owner = match ended {
                Some(at) => crate::lock::owner::with_ended(owner, at),
                None => owner.clone(),
            };
            value.push(b' ');
            value.extend(owner.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        }
        value
    }

    fn ours(&self, item: &Item) -> bool {
        item.token == self.token.as_bytes()
    }
}

impl<'a> Link<'a> {
    /// A link to `target`; nothing is sent until the first step.
    pub(super) fn new(target: &'a MemcachedTarget, report: &'a Report) -> Link<'a> {
        Link {
            target,
            report,
            connection: None,
        }
    }

    /// The server, for messages.
    pub(super) fn describe(&self) -> String {
        format!("memcached at '{}' port '{}'", self.target.host, self.target.port)
    }

    /// Runs `step` on a connection, reconnecting after a connection failure
    /// with the original's linear backoff. Every step must start by reading
    /// the key and recognise what it wrote itself, so that running it again
    /// after an answer was lost is safe.
    pub(super) fn with_retries<T>(&mut self, mut step: impl FnMut(&mut Connection) -> Result<T, Failure>) -> Result<T> {
        let mut reconnects = Reconnects::of(self.report, &self.target.connection);
        loop {
            let opened = match self.connection.take() {
                Some(connection) => Ok(connection),
                None => Connection::open(&self.target.host, self.target.port, self.target.connection.timeout),
            };
            let result = opened.and_then(|mut connection| step(&mut connection).map(|value| (value, connection)));
            let err = match result {
                Ok((value, connection)) => {
                    self.connection = Some(connection);
                    return Ok(value);
                }
                Err(err) => err,
            };
            let message = match err {
                Failure::Fatal(message) => bail!("{}: {message}", self.describe()),
                Failure::Busy(message) => {
                    reconnects.busy(&self.describe(), &message, self.target.connection.timeout)?;
                    continue;
                }
                Failure::Connect(message) | Failure::InFlight(message) => message,
            };
            reconnects.after(&self.describe(), &message)?;
        }
    }

    /// Lease mode's one try within `limit`: `step` reads the key and, while
    /// it is still ours, rewrites it with a new expiry (setting its flag
    /// once the write is sent) and says until when, or `None` when the
    /// lock is no longer ours.
    pub(super) fn renew(
        &mut self,
        limit: Duration,
        step: impl FnOnce(&mut Connection, &mut bool) -> Result<Option<i64>, Failure>,
    ) -> Renewal {
        let timeout = Some(self.target.connection.timeout_within(limit));
        let mut sent = false;
        let opened = match self.connection.take() {
            Some(connection) => Ok(connection),
            None => Connection::open(&self.target.host, self.target.port, timeout),
        };
        let result = opened.and_then(|mut connection| {
            connection.set_timeout(timeout)?;
            let renewed = step(&mut connection, &mut sent)?;
            // The renewal is done; a socket that cannot take its old timeout
            // back fails the next request, which reconnects.
            let _ = connection.set_timeout(self.target.connection.timeout);
            Ok((renewed, connection))
        });
        match result {
            Ok((renewed, connection)) => {
                self.connection = Some(connection);
                match renewed {
                    Some(expires_at) => Renewal::Renewed { expires_at },
                    None => Renewal::Lost,
                }
            }
            Err(
                Failure::Connect(message)
                | Failure::InFlight(message)
                | Failure::Fatal(message)
                | Failure::Busy(message),
            ) => Renewal::Unconfirmed {
                message: format!("{}: {message}", self.describe()),
                maybe_sent: sent,
            },
        }
    }
}

/// The key as memcached's text protocol can carry it: no spaces or control
/// characters, at most 250 bytes. Other bytes (and `%`, so that distinct
/// keys stay distinct) are %-escaped, and a key still too long is cut and
/// ends with the md5 of the whole.
fn wire_key(key: &[u8]) -> Vec<u8> {
    wire_key_within(key, MAX_KEY)
}

/// [`wire_key`] in at most `room` bytes (at least 233).
fn wire_key_within(key: &[u8], room: usize) -> Vec<u8> {
    let mut out = super::escape::escape(key, |_, b| b.is_ascii_graphic()).into_bytes();
    if out.len() > room {
        out.truncate(200);
        out.extend_from_slice(format!("~{:x}", md5::compute(key)).as_bytes());
    }
    out
}

/// The wire key of the fencing counter of the job key `name`: its own wire
/// key (cut to leave room) and [`FENCE_TAIL`].
fn fence_key(name: &[u8]) -> Vec<u8> {
    companion_key(name, FENCE_TAIL)
}

/// The wire key of an item kept for the job key `name` beside its lock:
/// its own wire key (cut to leave room) and `tail`, one of the tails that
/// start with `%:`.
fn companion_key(name: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut key = wire_key_within(name, MAX_KEY - tail.len());
    key.extend_from_slice(tail);
    key
}

/// Whether the wire key `wire` is a fencing counter or a history item
/// rather than a lock: their tails start with `%:`, which no lock's wire
/// key holds (see [`FENCE_TAIL`]).
fn is_companion(wire: &[u8]) -> bool {
    [FENCE_TAIL, RUNS_TAIL, SUCCEEDED_TAIL]
        .iter()
        .any(|tail| wire.ends_with(tail))
}

/// `record` as one line, whatever it holds.
fn one_line(record: &str) -> String {
    record.replace(['\r', '\n'], " ")
}

/// The value of a job's runs once `record` (one line) is added in front of
/// `old` (the item's value, if any): at most `keep` lines and
/// [`HISTORY_BYTES`] bytes, the oldest dropped first; `None` when `old`
/// already holds `record` (our write went through, its answer was lost).
fn with_run(old: Option<&[u8]>, record: &str, keep: u32) -> Option<Vec<u8>> {
    let old = old.map(String::from_utf8_lossy).unwrap_or_default();
    if old.lines().any(|line| line == record) {
        return None;
    }
    let mut value = record.as_bytes().to_vec();
    let older = old.lines().filter(|line| !line.is_empty());
    for line in older.take(usize::try_from(keep).unwrap_or(usize::MAX).saturating_sub(1)) {
        if value.len() + 1 + line.len() > HISTORY_BYTES {
            break;
        }
        value.push(b'\n');
        value.extend_from_slice(line.as_bytes());
    }
    Some(value)
}

/// The fencing token after `counter` (`None`: there is none, or it was
/// lost), the server's clock reading `now`; `None` past the largest u64.
fn next_token(counter: Option<u64>, now: i64) -> Option<u64> {
    let clock = u64::try_from(now).unwrap_or(0).saturating_mul(TICKS);
    match counter {
        // Above every token given in this second or before.
        None => clock.checked_add(TICKS),
        Some(counter) => counter.checked_add(1).map(|next| next.max(clock)),
    }
}

/// A fencing counter's value.
fn parse_token(value: &[u8]) -> Result<u64, Failure> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            Failure::Fatal(format!(
                "the fencing counter holds {:?}, not a number",
                String::from_utf8_lossy(value)
            ))
        })
}

/// The key a wire key stands for (the reverse of [`wire_key`]; a key cut
/// to fit stands for itself).
fn unwire_key(wire: &[u8]) -> Vec<u8> {
    super::escape::unescape(wire)
}

/// A lock as cronlockctl sees it.
fn seen(key: Vec<u8>, now: i64, item: Item) -> Seen {
    let running = item
        .owner
        .as_ref()
        .filter(|owner| owner.contains("\"ended\":"))
        .map(|_| false);
    Seen {
        key,
        expires_at: Some(item.expiry),
        now,
        owner: item.owner,
        running,
    }
}

/// The expiry argument for an item that should live until `until` (server
/// time), the server's clock reading `now`.
pub(super) fn exptime(until: i64, now: i64) -> i64 {
    let ttl = until - now;
    if ttl > RELATIVE_LIMIT {
        until
    } else {
        ttl
    }
}

impl LockStore for MemcachedLock<'_> {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let key = wire_key(claim.key);
        self.own.owner = claim.owner.map(str::to_string);
        // What we last tried to write, in case its answer was lost.
        let mut tried: Option<Acquire> = None;
        self.with_retries(|store, connection| {
            for _ in 0..MAX_ROUNDS {
                let (now, item) = connection.look(&key)?;
                if let (Some(item), Some(outcome)) = (&item, &tried) {
                    if store.ours(item) {
                        return Ok(outcome.clone());
                    }
                }
                let expires_at = now + claim.release + 1;
                let lease = Lease {
                    key: claim.key.to_vec(),
                    start: now,
                    expires_at,
                    token: Some(store.token.clone()),
                    asked_at: None,
                };
                let value = store.value(expires_at, None);
                let expiry = exptime(expires_at + 1, now);
                let stored = match item {
                    None => {
                        tried = Some(Acquire::Taken(lease.clone()));
                        connection.store(b"add", &key, &value, expiry, None)?
                    }
                    Some(item) if item.expiry >= now => {
                        return Ok(Acquire::Held {
                            expires_in: item.expiry - now,
                        })
                    }
                    Some(item) => {
                        tried = Some(Acquire::TakenOver {
                            lease: lease.clone(),
                            expired_ago: now - item.expiry,
                        });
                        connection.store(b"cas", &key, &value, expiry, Some(item.cas))?
                    }
                };
                if stored == Stored::Yes {
                    if let Some(outcome) = tried.take() {
                        return Ok(outcome);
                    }
                }
                // Someone else wrote first: look again (it is theirs now).
                tried = None;
            }
            Err(changing())
        })
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let key = wire_key(&lease.key);
        self.with_retries(|store, connection| {
            for _ in 0..MAX_ROUNDS {
                let (now, item) = connection.look(&key)?;
                let keep_until = keep.until(lease.start, now);
                let value = store.value(keep_until, Some(now));
                let (stored, outcome) = match item {
                    None if keep_until <= now => return Ok(Release::Dropped),
                    // Reset while we ran: claim the grace again, as the Redis store does.
                    None => (
                        connection.store(b"add", &key, &value, exptime(keep_until, now), None)?,
                        Release::Kept { until: keep_until },
                    ),
                    Some(item) if !store.ours(&item) => return Ok(Release::NotOurs),
                    // An expiry in the past: stored and gone at once.
                    Some(item) if keep_until <= now => (
                        connection.store(b"cas", &key, &value, -1, Some(item.cas))?,
                        Release::Dropped,
                    ),
                    Some(item) => (
                        connection.store(b"cas", &key, &value, exptime(keep_until, now), Some(item.cas))?,
                        Release::Kept { until: keep_until },
                    ),
                };
                if stored == Stored::Yes {
                    return Ok(outcome);
                }
            }
            Err(changing())
        })
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let wire = wire_key(key);
        let (now, item) = self.with_retries(|_, connection| connection.look(&wire))?;
        Ok(item.map(|item| seen(key.to_vec(), now, item)))
    }

    /// memcached has no SCAN: `lru_crawler metadump all` (memcached 1.4.31
    /// and later) names every item, and each one under the prefix is read.
    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let names = self.with_retries(|_, connection| connection.metadump())?;
        let mut found = Vec::new();
        for wire in names {
            if is_companion(&wire) {
                continue;
            }
            let key = unwire_key(&wire);
            if !key.starts_with(prefix) {
                continue;
            }
            let (now, item) = self.with_retries(|_, connection| connection.look(&wire))?;
            found.extend(item.map(|item| seen(key, now, item)));
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn fencing(&self) -> Fencing {
        Fencing::BestEffort(
            "memcached keeps nothing on disk and may evict the counter, so after a restart or an eviction only the server's clock keeps the tokens growing",
        )
    }

    /// The counter bumped first, the lock checked after; see the module's
    /// comment. A bump whose answer was lost is made again: a token skipped
    /// is harmless.
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let counter = fence_key(name);
        let lock = wire_key(&lease.key);
        self.with_retries(|store, connection| {
            for _ in 0..FENCE_ROUNDS {
                let (now, item) = connection.look_raw(&counter)?;
                let old = item.as_ref().map(|item| parse_token(&item.value)).transpose()?;
                let token = next_token(old, now)
                    .ok_or_else(|| Failure::Fatal("the fencing counter is at its largest value".to_string()))?;
                let value = token.to_string();
                // No expiry: the counter must outlive every lock of the job.
                let cas = item.map(|item| item.cas);
                let verb: &[u8] = if cas.is_some() { b"cas" } else { b"add" };
                if connection.store(verb, &counter, value.as_bytes(), 0, cas)? == Stored::Raced {
                    continue;
                }
                let (_, lock) = connection.look(&lock)?;
                return Ok(lock.filter(|item| store.ours(item)).map(|_| token));
            }
            Err(Failure::Fatal(format!(
                "the fencing counter kept changing under us ({FENCE_ROUNDS} tries)"
            )))
        })
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let counter = fence_key(name);
        self.with_retries(|_, connection| {
            let (_, item) = connection.look_raw(&counter)?;
            item.map(|item| parse_token(&item.value)).transpose()
        })
    }

    fn keeps_history(&self) -> bool {
        true
    }

    /// The runs' item rewritten by `cas` on what `gets` returned (`add`
    /// when missing), read again after another run's write; then the last
    /// success `set`. A retry after a lost answer finds our record already
    /// there and leaves the runs alone.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let record = one_line(record);
        if record.len() > HISTORY_BYTES {
            bail!(
                "the run's record is {} bytes, more than the {HISTORY_BYTES} a job's history keeps in memcached",
                record.len()
            );
        }
        let runs = companion_key(name, RUNS_TAIL);
        let success = companion_key(name, SUCCEEDED_TAIL);
        self.with_retries(|_, connection| {
            let mut added = false;
            // Each lost round is another run's record: as many runs as
            // FENCE_ROUNDS ending together all get theirs in.
            for _ in 0..FENCE_ROUNDS {
                let (_, item) = connection.look_raw(&runs)?;
                let Some(value) = with_run(item.as_ref().map(|item| &item.value[..]), &record, keep) else {
                    added = true;
                    break;
                };
                let cas = item.map(|item| item.cas);
                let verb: &[u8] = if cas.is_some() { b"cas" } else { b"add" };
                // No expiry: the history outlives every lock of the job.
                if connection.store(verb, &runs, &value, 0, cas)? == Stored::Yes {
                    added = true;
                    break;
                }
            }
            if !added {
                return Err(Failure::Fatal(format!(
                    "the job's runs kept changing under us ({FENCE_ROUNDS} tries)"
                )));
            }
            if succeeded {
                connection.store(b"set", &success, record.as_bytes(), 0, None)?;
            }
            Ok(())
        })
    }

    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let runs = companion_key(name, RUNS_TAIL);
        let success = companion_key(name, SUCCEEDED_TAIL);
        self.with_retries(|_, connection| {
            let (_, runs) = connection.look_raw(&runs)?;
            let (_, success) = connection.look_raw(&success)?;
            let text = |item: RawItem| String::from_utf8_lossy(&item.value).into_owned();
            Ok(History {
                runs: runs
                    .map(text)
                    .map(|runs| runs.lines().filter(|line| !line.is_empty()).map(String::from).collect())
                    .unwrap_or_default(),
                last_success: success.map(text).filter(|record| !record.is_empty()),
            })
        })
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let key = wire_key(key);
        self.with_retries(|_, connection| connection.delete(&key))
    }

    /// One try: a read, then a `cas` if the lock still carries our token.
    /// The token also settles a renewal whose answer was lost (it leaves
    /// our token in place), so `after_unknown` needs no special case.
    fn renew(&mut self, lease: &Lease, seconds: i64, _after_unknown: bool, limit: Duration) -> Renewal {
        let key = wire_key(&lease.key);
        let own = &self.own;
        self.link.renew(limit, |connection, sent| {
            let (now, item) = connection.look(&key)?;
            let Some(item) = item.filter(|item| own.ours(item)) else {
                return Ok(None);
            };
            let expires_at = now + seconds + 1;
            let value = own.value(expires_at, None);
            *sent = true;
            let stored = connection.store(b"cas", &key, &value, exptime(expires_at + 1, now), Some(item.cas))?;
            Ok((stored == Stored::Yes).then_some(expires_at))
        })
    }
}

/// One connection, speaking the text protocol.
pub(super) struct Connection {
    stream: BufReader<TcpStream>,
    timeout: Option<Duration>,
}

impl Connection {
    fn open(host: &str, port: u16, timeout: Option<Duration>) -> Result<Connection, Failure> {
        let tcp =
            crate::net::transport::connect_tcp(host, port, timeout).map_err(|err| Failure::Connect(err.to_string()))?;
        Ok(Connection {
            stream: BufReader::with_capacity(4096, tcp),
            timeout,
        })
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.timeout != timeout {
            self.stream.get_ref().set_read_timeout(timeout)?;
            self.stream.get_ref().set_write_timeout(timeout)?;
            self.timeout = timeout;
        }
        Ok(())
    }

    fn send(&mut self, request: &[u8]) -> Result<(), Failure> {
        let tcp = self.stream.get_mut();
        tcp.write_all(request).map_err(|err| match err.kind() {
            // Refused before a byte went out: the server is not there (any more).
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Failure::InFlight(err.to_string()),
            _ => Failure::from(err),
        })
    }

    /// One reply line without its CRLF. Anything too long or not ending in
    /// CRLF is not memcached talking.
    fn line(&mut self) -> Result<Vec<u8>, Failure> {
        let mut line = Vec::new();
        let read = (&mut self.stream).take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
        if read == 0 {
            return Err(Failure::InFlight("connection closed by the server".to_string()));
        }
        if !line.ends_with(b"\r\n") {
            return Err(not_memcached(&line));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    /// `stats` and `gets` in one round trip: the server's clock, and the
    /// item if there is one.
    pub(super) fn look_raw(&mut self, key: &[u8]) -> Result<(i64, Option<RawItem>), Failure> {
        let mut request = b"stats\r\ngets ".to_vec();
        request.extend_from_slice(key);
        request.extend_from_slice(b"\r\n");
        self.send(&request)?;
        let now = self.server_time()?;
        let item = self.raw_item()?;
        Ok((now, item))
    }

    /// [`Connection::look_raw`], the item read as cronlock's own.
    fn look(&mut self, key: &[u8]) -> Result<(i64, Option<Item>), Failure> {
        let (now, raw) = self.look_raw(key)?;
        Ok((now, raw.map(Item::from)))
    }

    /// The seconds the item `key` has left (`mg <key> t`, memcached 1.6 and
    /// later): `Some(-1)` for an item that never expires, `None` when
    /// there is no such item or the server has no meta commands.
    pub(super) fn ttl(&mut self, key: &[u8]) -> Result<Option<i64>, Failure> {
        let mut request = b"mg ".to_vec();
        request.extend_from_slice(key);
        request.extend_from_slice(b" t\r\n");
        self.send(&request)?;
        let line = self.line()?;
        if line == b"ERROR" || line == b"EN" {
            return Ok(None);
        }
        let Some(flags) = line.strip_prefix(b"HD") else {
            return Err(reply_error(&line));
        };
        Ok(flags
            .split(|&b| b == b' ')
            .find_map(|flag| flag.strip_prefix(b"t"))
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse().ok()))
    }

    /// Every item's key, by `lru_crawler metadump all`, whose lines read
    /// `key=<url-encoded key> exp=... ...` and end with `END`.
    fn metadump(&mut self) -> Result<Vec<Vec<u8>>, Failure> {
        self.send(b"lru_crawler metadump all\r\n")?;
        let mut keys = Vec::new();
        loop {
            // The dump's own lines end in a bare LF; its END and errors in CRLF.
            let mut line = Vec::new();
            if (&mut self.stream).take(MAX_LINE as u64).read_until(b'\n', &mut line)? == 0 {
                return Err(Failure::InFlight("connection closed by the server".to_string()));
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line == b"END" {
                return Ok(keys);
            }
            if line.starts_with(b"ERROR") || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"BUSY") {
                return Err(Failure::Fatal(format!(
                    "this memcached cannot list its items ({})",
                    shown(&line)
                )));
            }
            if let Some(encoded) = line.split(|&b| b == b' ').next().and_then(|f| f.strip_prefix(b"key=")) {
                // URL-encoded by memcached; our wire keys only hold %-escapes of our own.
                keys.push(unwire_key(encoded));
            }
        }
    }

    fn server_time(&mut self) -> Result<i64, Failure> {
        let mut now = None;
        loop {
            let line = self.line()?;
            if line == b"END" {
                return now.ok_or_else(|| not_memcached(b"stats without a time"));
            }
            let Some(stat) = line.strip_prefix(b"STAT ") else {
                return Err(not_memcached(&line));
            };
            if let Some(time) = stat.strip_prefix(b"time ") {
                now = std::str::from_utf8(time).ok().and_then(|t| t.parse::<i64>().ok());
            }
        }
    }

    fn raw_item(&mut self) -> Result<Option<RawItem>, Failure> {
        let header = self.line()?;
        if header == b"END" {
            return Ok(None);
        }
        // VALUE <key> <flags> <bytes> <cas unique>
        let fields: Vec<&[u8]> = header.split(|&b| b == b' ').collect();
        let number = |i: usize| {
            fields
                .get(i)
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| f.parse::<u64>().ok())
        };
        let (Some(&b"VALUE"), Some(flags), Some(bytes), Some(cas)) = (fields.first(), number(2), number(3), number(4))
        else {
            return Err(reply_error(&header));
        };
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        if bytes > MAX_VALUE {
            return Err(Failure::Fatal(format!(
                "the lock's value is {bytes} bytes: not a cronlock lock"
            )));
        }
        let mut value = vec![0; bytes + 2];
        self.stream.read_exact(&mut value)?;
        if !value.ends_with(b"\r\n") {
            return Err(not_memcached(&value));
        }
        value.truncate(bytes);
        if self.line()? != b"END" {
            return Err(not_memcached(b"more than one item for one key"));
        }
        Ok(Some(RawItem {
            flags: u32::try_from(flags).unwrap_or(u32::MAX),
            value,
            cas,
        }))
    }

    /// `add` or `set` (cas: None) or `cas`, with flags 0.
    fn store(
        &mut self,
        verb: &[u8],
        key: &[u8],
        value: &[u8],
        expiry: i64,
        cas: Option<u64>,
    ) -> Result<Stored, Failure> {
        self.store_flagged(verb, key, (0, value), expiry, cas)
    }

    /// `add` (cas: None) or `cas` of `value` with its flags.
    pub(super) fn store_flagged(
        &mut self,
        verb: &[u8],
        key: &[u8],
        (flags, value): (u32, &[u8]),
        expiry: i64,
        cas: Option<u64>,
    ) -> Result<Stored, Failure> {
        let mut request = verb.to_vec();
        request.push(b' ');
        request.extend_from_slice(key);
        request.extend_from_slice(format!(" {flags} {expiry} {}", value.len()).as_bytes());
        if let Some(cas) = cas {
            request.extend_from_slice(format!(" {cas}").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        self.send(&request)?;
        let line = self.line()?;
        match line.as_slice() {
            b"STORED" => Ok(Stored::Yes),
            b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Ok(Stored::Raced),
            _ => Err(reply_error(&line)),
        }
    }

    pub(super) fn delete(&mut self, key: &[u8]) -> Result<bool, Failure> {
        let mut request = b"delete ".to_vec();
        request.extend_from_slice(key);
        request.extend_from_slice(b"\r\n");
        self.send(&request)?;
        let line = self.line()?;
        match line.as_slice() {
            b"DELETED" => Ok(true),
            b"NOT_FOUND" => Ok(false),
            _ => Err(reply_error(&line)),
        }
    }
}

/// Others kept writing the key between our read and our write.
pub(super) fn changing() -> Failure {
    Failure::Fatal(format!("the lock kept changing under us ({MAX_ROUNDS} tries)"))
}

/// memcached's own error replies (`SERVER_ERROR out of memory ...`) are
/// passed on; anything else means another program answers on that port.
fn reply_error(line: &[u8]) -> Failure {
    for prefix in [&b"SERVER_ERROR "[..], b"CLIENT_ERROR "] {
        if line.starts_with(prefix) {
            return Failure::Fatal(format!("the server refused: {}", shown(line)));
        }
    }
    not_memcached(line)
}

fn not_memcached(bytes: &[u8]) -> Failure {
    // What memcached writes to a connection over its limit (`-c`) before
    // closing it, whatever the first request was.
    if bytes.starts_with(b"ERROR Too many open connections") {
        return Failure::Busy(shown(bytes));
    }
    Failure::Fatal(format!("not a memcached server (it answered: {})", shown(bytes)))
}

/// The start of a reply, printable.
fn shown(bytes: &[u8]) -> String {
    let text: String = bytes.escape_ascii().to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_safe_for_the_text_protocol() {
        assert_eq!(wire_key(b"cronlock.abc"), b"cronlock.abc");
        assert_eq!(wire_key(b"a b\r\n%\xff"), b"a%20b%0D%0A%25%FF");
        assert_ne!(wire_key(b"a b"), wire_key(b"a%20b"));
        let long = wire_key(&[b'x'; 300]);
        assert!(long.len() <= MAX_KEY, "{}", long.len());
        assert_ne!(long, wire_key(&[b'x'; 301]));
    }

    #[test]
    fn fencing_counters_are_no_locks_wire_key() {
        for name in [&b"cronlock.abc"[..], b"a%:fence", b"%", &[b'%'; 300], &[b'x'; 300]] {
            let counter = fence_key(name);
            assert!(counter.len() <= MAX_KEY, "{}", counter.len());
            assert!(counter.ends_with(FENCE_TAIL));
            let lock = wire_key(name);
            assert!(!lock.windows(2).any(|pair| pair == b"%:"), "{lock:?}");
        }
        assert_eq!(fence_key(b"cronlock.abc"), b"cronlock.abc%:fence");
        assert_ne!(fence_key(&[b'x'; 300]), fence_key(&[b'x'; 301]));
    }

    #[test]
    fn history_items_are_no_locks_wire_key() {
        for name in [&b"cronlock.abc"[..], b"a%:runs", &[b'%'; 300], &[b'x'; 300]] {
            for tail in [RUNS_TAIL, SUCCEEDED_TAIL] {
                let key = companion_key(name, tail);
                assert!(key.len() <= MAX_KEY, "{}", key.len());
                assert!(is_companion(&key), "{key:?}");
                assert_ne!(key, fence_key(name));
            }
            assert!(!is_companion(&wire_key(name)));
        }
        assert_eq!(companion_key(b"cronlock.abc", RUNS_TAIL), b"cronlock.abc%:runs");
        assert_eq!(
            companion_key(b"cronlock.abc", SUCCEEDED_TAIL),
            b"cronlock.abc%:succeeded"
        );
    }

    #[test]
    fn the_runs_keep_the_newest_lines_within_their_count_and_size() {
        let lines = |value: Vec<u8>| String::from_utf8(value).unwrap();
        let first = with_run(None, "{\"n\":1}", 3).unwrap();
        assert_eq!(lines(first.clone()), "{\"n\":1}");
        let mut value = first;
        for n in 2..=5 {
            value = with_run(Some(&value), &format!("{{\"n\":{n}}}"), 3).unwrap();
        }
        assert_eq!(lines(value.clone()), "{\"n\":5}\n{\"n\":4}\n{\"n\":3}");
        // A write whose answer was lost is not made twice.
        assert_eq!(with_run(Some(&value), "{\"n\":4}", 3), None);
        // Past the size cap the oldest lines go, whatever the count.
        let big = "x".repeat(HISTORY_BYTES / 3);
        let mut value = with_run(None, &format!("1{big}"), 1000).unwrap();
        for n in 2..=4 {
            value = with_run(Some(&value), &format!("{n}{big}"), 1000).unwrap();
        }
        assert!(value.len() <= HISTORY_BYTES);
        let kept: Vec<char> = lines(value).lines().filter_map(|line| line.chars().next()).collect();
        assert_eq!(kept, ['4', '3']);
        assert_eq!(one_line("a\r\nb"), "a  b");
    }

    #[test]
    fn fencing_tokens_follow_the_servers_clock_and_never_go_back() {
        // A new (or lost) counter starts at the next second's microseconds.
        assert_eq!(next_token(None, 1_000), Some(1_001_000_000));
        // Within the second, one more each time; then the clock again.
        assert_eq!(next_token(Some(1_001_000_000), 1_000), Some(1_001_000_001));
        assert_eq!(next_token(Some(1_001_000_001), 1_002), Some(1_002_000_000));
        // A clock gone back leaves the counter to grow by one.
        assert_eq!(next_token(Some(5_000_000_000), 1_000), Some(5_000_000_001));
        assert_eq!(next_token(Some(u64::MAX), 1_000), None);
        assert!(parse_token(b"12").is_ok_and(|token| token == 12));
        assert!(parse_token(b"twelve").is_err());
    }

    #[test]
    fn long_expiries_are_sent_as_unix_times() {
        assert_eq!(exptime(1_000_100, 1_000_000), 100);
        assert_eq!(
            exptime(1_000_000 + RELATIVE_LIMIT + 1, 1_000_000),
            1_000_000 + RELATIVE_LIMIT + 1
        );
    }

    #[test]
    fn a_server_over_its_connection_limit_is_busy_not_foreign() {
        assert!(matches!(
            not_memcached(b"ERROR Too many open connections\r\n"),
            Failure::Busy(_)
        ));
        assert!(matches!(not_memcached(b"+PONG"), Failure::Fatal(_)));
    }
}
