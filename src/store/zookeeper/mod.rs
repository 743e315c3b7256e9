//! The ZooKeeper store (`CRONLOCK_URL=zookeeper://host:port,.../chroot`):
//! the lock as znodes, timed by the servers' clock, freed by session expiry.
//!
//! Client: `zookeeper-client` (kezhuw), the maintained Rust client (ZooKeeper
//! 3.4 to 3.9 protocol, multi-ops, chroots, released in 2025); the sync
//! `zookeeper` crate is built on mio 0.6 and has had no release since 2022.
//! It is async, so this store starts a current-thread tokio runtime of its own
//! and a thread that drives it for the whole run: a ZooKeeper session lives
//! only as long as it is pinged, and cronlock's main thread spends the
//! command's run in `sigwait`. That thread (and async-io's reactor thread)
//! inherit the signal mask blocked in `run()`, so signals still reach the
//! supervisor only; the watchdog's fork copies just the forking thread and
//! runs only system calls, so the extra threads do not hurt it.
//!
//! Opening the session: the client reports only that no server gave one,
//! the same whether nobody listens or a server closed the connection. A
//! plain TCP connection then tells them apart. A server that closes it at
//! once is over its `maxClientCnxns` (60 per address by default: a fleet's
//! herd at second 0 meets it), one that answers `srvr` is alive: both are
//! tried again after a short jittered pause, for up to
//! `CRONLOCK_REDIS_TIMEOUT`. Nobody listening follows the reconnect
//! schedule of every store (`CRONLOCK_RECONNECT_*`); a connection taken
//! and never answered is not ZooKeeper, and ends the run.
//!
//! While the command runs the lock (in every key style) lives only as long
//! as the session: once the servers have heard nothing from it for the
//! session timeout they expire it, drop its ephemeral nodes, and another
//! host may take the job. So the session thread sends a `sync` (which
//! reaches the leader) six times per session timeout and keeps when the
//! last answered one was sent, and the hold check kills the command once
//! that is two thirds of the timeout ago, or the session is known expired:
//! before the servers can free the lock. A fail-over to another server of
//! the ensemble within that time changes nothing.
//!
//! Default key styles: `/cronlock/<key>` (the key %-escaped into one node
//! name) is a persistent node whose data is `<N> run` or `<N> keep`; the
//! lock expires at floor(ctime / 1000) + N, the node's creation time on the
//! server's clock, so nothing depends on this host's clock. While a command
//! runs, `/cronlock/<key>/run` is an ephemeral node of the holder's session:
//! a `run` record without it belongs to a holder whose session is gone
//! (killed host, SIGKILLed cronlock), and is free at once. The server's
//! present time comes from a write to `/cronlock` itself (its new mtime).
//! The `run` node's data is the holder's owner record (see `crate::lock::owner`),
//! so the record keeps the format every version parses. A release that keeps
//! the lock replaces it, in the same multi-op, with a persistent `run` node
//! holding the record with `"ended"` added: under a `keep` record only the
//! expiry counts, and a contender replaces whatever `run` node it finds.
//! Every change of the record is a compare-and-set on its data version inside
//! one multi-op, so exactly one contender wins a takeover, and a release
//! never touches a record someone else has rewritten.
//!
//! `CRONLOCK_FENCING`: the token is a zxid, the ensemble's transaction
//! number, which only grows and is kept on disk with the data. Each job key
//! has a counter, the persistent node `/cronlock/<key>#fence` beside its
//! lock (`#` is never in a lock's node name, and cronlockctl skips it),
//! which neither a release nor a reset removes. One multi-op checks the
//! versions of the lock's record and `run` node, read just before with the
//! `run` node our session's, and writes the counter: the token is that
//! write's zxid, the counter's new mzxid. A read of the `run` node behind
//! it in the same round trip confirms it is still our session's: versions
//! alone would not tell a record that a reset removed and a fresh take made
//! again at the same versions from ours.
//!
//! `CRONLOCK_HISTORY` (the default style only): a job key's runs are the
//! persistent sequential nodes `run-<10 digits>` under the persistent node
//! `/cronlock/<key>#runs`, one record each, and its last success the
//! persistent node `/cronlock/<key>#succeeded`: beside the lock and its
//! counter, never removed by a release or a reset, and skipped by
//! cronlockctl as the counter is. One multi-op creates the run's node (and
//! sets the last success), and a listing of `#runs` goes right behind it in
//! the same round trip; then the oldest beyond the count kept are deleted.
//! The server numbers the nodes in the order it creates them, so runs that
//! end together each get a node of their own, and each deletes only nodes
//! older than the newest `keep` it listed: never too many, and once the
//! last of them has trimmed, no more are left than kept (see
//! `record_run_default`).
//!
//! `CRONLOCK_KEY_STYLE=lockex`: kazoo 2.2's Lock recipe, as lockex uses it:
//! an ephemeral sequential `<uuid hex>__lock__<10 digits>` under
//! `/lockex/<id>` with `host:pid` as data; the lowest sequence holds the
//! lock, and a loser removes its node again. lockex has no expiry, grace or
//! hold: the lock ends with the command (or the session). cronlockctl shows
//! such a lock as held while it has contenders, with the lowest one's data
//! as its owner and no expiry.
//!
//! With `CRONLOCK_CONCURRENCY=N` > 1 in that style: kazoo 2.2's Semaphore,
//! as `lockex --concurrent N` uses it. `/lockex/<id>` is the lease pool, a
//! persistent node whose data is N (written by whoever creates it; kazoo
//! refuses to take a lease when a number there differs from its own N, and
//! so does cronlock). A lease is an ephemeral `<uuid hex>` child of the pool
//! with `host:pid` as data. Counting the leases and creating one happen
//! under kazoo's Lock on the sibling `/lockex/<id>-__lock__` (the gate),
//! so a lease is only created while fewer than N exist, whichever tool
//! counts.
//!
//! `CRONLOCK_KEY_STYLE=tooz`: kazoo 2.9's Lock recipe, as tooz 1.67.2 (and
//! so coolock) takes it: an ephemeral sequential `<uuid hex>__lock__<10
//! digits>` under `/tooz/locks/<name>` with the node name as data; only
//! children named so contend, and the lowest holds the lock (`tooz.rs`).
//! The recipe itself, in both versions, is in `kazoo.rs`. As with lockex,
//! the lock ends with the command (or the session), and cronlockctl shows
//! it as held while it has contenders.

mod kazoo;
pub mod settings;
mod tooz;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use zookeeper_client::{
    Acls, Client, CreateMode, CreateOptions, Error as ZkError, MultiWriteError, MultiWriteResult, MultiWriter,
    SessionState, Stat,
};

use crate::config::Config;
use crate::key::KeyStyle;
use crate::lock::{Acquire, Claim, Feature, Fencing, History, Keep, Lease, LockStore, Release, Renewal, Seen};
use crate::net::reconnect::Reconnects;
use crate::report::Report;
use kazoo::{Recipe, LOCK_MARK};
use settings::ZooKeeperTarget;

/// The session timeout asked for. A SIGKILLed holder's lock is free this
/// long after its death; the server clamps it to 2-20 ticks (4 s at least
/// with the default `tickTime=2000`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request (or the connection) may take before it is an error.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);
/// How long the plain TCP connection that tells a busy server from a dead
/// one may take, and then its answer: past the first SYN retransmission
/// (1 s), for a server whose accept queue a herd has filled.
const PROBE_LIMIT: Duration = Duration::from_millis(1500);
/// Heartbeats sent per session timeout, to confirm the session while a
/// command runs.
const HEARTBEATS_PER_TIMEOUT: u32 = 6;
/// How often the supervisor asks whether the session is still confirmed
/// (a look at the heartbeat's last answer, no request).
const HOLD_CHECK_EVERY: Duration = Duration::from_millis(100);
/// Where default-style locks live.
const ROOT: &str = "/cronlock";
/// What ends a fencing counter's node name after the job key's own
/// (`/cronlock/<key>#fence`): [`node_path`] escapes `#`, so no lock's node
/// is named so.
const FENCE_MARK: &str = "#fence";
/// What ends the node name of a job key's run records' parent
/// (`/cronlock/<key>#runs`).
const RUNS_MARK: &str = "#runs";
/// What ends the node name of a job key's last success
/// (`/cronlock/<key>#succeeded`).
const SUCCEEDED_MARK: &str = "#succeeded";
/// What a run record's node is named before the sequence number the
/// server adds (`run-0000000042`).
const RUN_PREFIX: &str = "run-";
/// The largest run record kept. A record carries the command line, a
/// succeeded run's multi-op carries it twice, and ZooKeeper refuses a
/// request over 1 MB (`jute.maxbuffer`); a history read gets up to 1000
/// of them.
const RECORD_LIMIT: usize = 64 * 1024;
/// Where lockex's locks live (`/lockex/<id>`, as `crate::key` names them).
const LOCKEX_ROOT: &str = "/lockex";
/// The largest owner record stored: ZooKeeper refuses node data over 1 MB
/// (`jute.maxbuffer`), and a command line may be longer. A longer record is
/// left out rather than failing the take.
const OWNER_LIMIT: usize = 64 * 1024;
/// Rounds of read-and-decide before a contended acquire gives up.
const ROUNDS: usize = 20;
/// How long a semaphore's take waits for its gate. A contender that counts
/// holds it for a few round trips; a blocking lockex holds it while it
/// waits for a lease (every lease is taken then), and a killed contender
/// until its session expires (30 s for lockex). kazoo without blocking, as
/// `lockex --no-blocking`, does not wait at all: cronlock waits, so that a
/// free lease is not missed because another host was counting at the same
/// moment.
const GATE_WAIT: Duration = Duration::from_secs(5);

/// Whose lock the store takes (`CRONLOCK_KEY_STYLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// cronlock's own record under [`ROOT`], whatever the key's style.
    Record,
    /// lockex's: kazoo 2.2's Lock in `/lockex/<id>` (the key).
    Lockex,
    /// tooz's: kazoo 2.9's Lock in `/tooz/locks/<name>`.
    Tooz,
}

/// The store: connects on the first request.
pub struct ZooKeeperLock<'a> {
    target: &'a ZooKeeperTarget,
    style: Style,
    /// `CRONLOCK_NODE`, the data of tooz's contender node.
    node: &'a str,
    /// Where tooz's locks live, in the tooz style (`/tooz/locks` in tooz's
    /// default namespace); empty in the others.
    tooz_locks: String,
    report: &'a Report,
    session: Option<Session>,
    /// The hold check found the session lost or unconfirmed for too long,
    /// and the command was killed for it: the release does not wait for a
    /// server (closing the session drops our ephemeral node if one can).
    hold_lost: bool,
    /// The hold check has said (in verbose mode) that the session goes
    /// unconfirmed.
    unconfirmed_said: bool,
    /// Our owner record (see `crate::lock::owner`), kept from the take for the
    /// release, which adds when the command ended.
    owner: Vec<u8>,
}

/// A connected session and the runtime that keeps it alive.
struct Session {
    runtime: Arc<Runtime>,
    client: Client,
    /// A moment no later than the session's creation request.
    born: Instant,
    /// Milliseconds after `born` at which the last answered heartbeat was
    /// sent: a server has heard from the session since then at least.
    confirmed: Arc<AtomicU64>,
    /// The task that sends the heartbeats; it holds a handle of the client,
    /// so it must end before the session can be closed.
    heartbeat: JoinHandle<()>,
}

impl<'a> ZooKeeperLock<'a> {
    /// Checks what can be checked without a server.
    pub fn new(config: &'a Config, target: &'a ZooKeeperTarget, report: &'a Report) -> Result<ZooKeeperLock<'a>> {
        let style = match config.key_style {
            KeyStyle::Lockex => Style::Lockex,
            KeyStyle::Tooz => Style::Tooz,
            _ => Style::Record,
        };
        let tooz_locks = match style {
            // The settings fill in the row's default, tooz's `tooz`.
            Style::Tooz => tooz::locks(config.tooz_namespace.as_deref().unwrap_or_default())?,
            _ => String::new(),
        };
        Ok(ZooKeeperLock {
            target,
            style,
            node: &config.node,
            tooz_locks,
            report,
            session: None,
            hold_lost: false,
            unconfirmed_said: false,
            owner: Vec::new(),
        })
    }

    fn shown(&self) -> String {
        let hosts: Vec<String> = self.target.hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!("zookeeper {}", hosts.join(","))
    }

    /// The session, connected on first use.
    fn session(&mut self) -> Result<&Session> {
        if self.session.is_none() {
            let session = connect(self.target, &self.shown(), self.report)?;
            self.report.info(format_args!(
                "zookeeper session {:x} ({} ms)",
                session.client.session_id().0,
                session.client.session_timeout().as_millis()
            ));
            self.session = Some(session);
        }
        self.session.as_ref().ok_or_else(|| anyhow!("no session"))
    }

    fn acquire_default(&mut self, claim: &Claim) -> Result<Acquire> {
        let node = node_path(claim.key);
        let run = format!("{node}/run");
        let fresh = record(claim.release + 1, "run");
        self.owner = claim
            .owner
            .filter(|owner| owner.len() <= OWNER_LIMIT)
            .unwrap_or("")
            .as_bytes()
            .to_vec();
        let owner = self.owner.clone();
        let owner = owner.as_slice();
        let session = self.session()?;
        for _ in 0..ROUNDS {
            let mut multi = session.client.new_multi_writer();
            multi.add_create(&node, fresh.as_bytes(), &persistent())?;
            multi.add_create(&run, owner, &ephemeral())?;
            // Every operation of a multi carries the same time: run's mtime
            // is node's ctime, which a create in a multi may not report.
            multi.add_set_data(&run, owner, None)?;
            match session.commit(multi) {
                Ok(results) => {
                    let start = results.last().and_then(set_stat).map(|s| seconds(s.mtime)).unwrap_or(0);
                    return Ok(Acquire::Taken(self.lease(claim, start)));
                }
                Err(ZkError::NodeExists) => {}
                Err(ZkError::NoNode) => {
                    session.ensure(ROOT)?;
                    continue;
                }
                Err(err) => return Err(anyhow!(err).context(format!("taking {node}"))),
            }
            let (read, now) = session.call_pair(session.client.get_data(&node), session.touch())?;
            let (data, stat) = match read {
                Ok(found) => found,
                Err(ZkError::NoNode) => continue,
                Err(err) => return Err(anyhow!(err).context(format!("reading {node}"))),
            };
            let now = seconds(
                now.map_err(anyhow::Error::from)
                    .context("reading the server's time")?
                    .mtime,
            );
            let (n, kind) = parse_record(&data).with_context(|| format!("{node} is not a cronlock record"))?;
            let expiry = seconds(stat.ctime) + n;
            let running = stat.num_children > 0;
            let orphan = kind == "run" && !running;
            if !orphan && expiry >= now {
                return Ok(Acquire::Held {
                    expires_in: expiry - now,
                });
            }
            let mut multi = session.client.new_multi_writer();
            let taken = record(now - seconds(stat.ctime) + claim.release + 1, "run");
            multi.add_set_data(&node, taken.as_bytes(), Some(stat.version))?;
            if running {
                multi.add_delete(&run, None)?;
            }
            multi.add_create(&run, owner, &ephemeral())?;
            match session.commit(multi) {
                Ok(_) => {
                    let lease = self.lease(claim, now);
                    return Ok(Acquire::TakenOver {
                        lease,
                        expired_ago: if orphan { 0 } else { now - expiry },
                    });
                }
                // Another contender changed it first: look again.
                Err(ZkError::BadVersion | ZkError::NoNode | ZkError::NodeExists) => continue,
                Err(err) => return Err(anyhow!(err).context(format!("taking over {node}"))),
            }
        }
        bail!("{node}: still contended after {ROUNDS} tries")
    }

    fn lease(&self, claim: &Claim, start: i64) -> Lease {
        let mut lease = Lease::new(claim.key, start, start + claim.release + 1);
        lease.token = self.session.as_ref().map(|s| format!("{:x}", s.client.session_id().0));
        lease
    }

    /// Reads the record, whether its `run` node is our session's, and the time.
    fn read_ours(&mut self, key: &[u8]) -> Result<Inspected> {
        let node = node_path(key);
        let run = format!("{node}/run");
        let session = self.session()?;
        let ours = session.client.session_id().0;
        let (read, owner) = session.call_pair(session.client.get_data(&node), session.client.check_stat(&run))?;
        let now = seconds(session.call(session.touch())?.mtime);
        let record = match read {
            Ok((data, stat)) => Some((parse_record(&data)?.0, stat)),
            Err(ZkError::NoNode) => None,
            Err(err) => return Err(anyhow!(err).context(format!("reading {node}"))),
        };
        let owner = owner.map_err(anyhow::Error::from)?;
        Ok(Inspected {
            node,
            run,
            record,
            ours: owner.is_some_and(|s| s.ephemeral_owner == ours),
            now,
        })
    }

    fn release_default(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let seen = self.read_ours(&lease.key)?;
        let Some((_, stat)) = seen.record.filter(|_| seen.ours) else {
            return Ok(Release::NotOurs);
        };
        let until = keep.until(lease.start, seen.now);
        let ended = match std::str::from_utf8(&self.owner) {
            Ok("") | Err(_) => None,
            Ok(owner) => Some(crate::lock::owner::with_ended(owner, seen.now)),
        };
        let session = self.session()?;
        let mut multi = session.client.new_multi_writer();
        multi.add_delete(&seen.run, None)?;
        let kept = until > seen.now;
        if kept {
            let data = record(until - seconds(stat.ctime), "keep");
            multi.add_set_data(&seen.node, data.as_bytes(), Some(stat.version))?;
            // The owner record stays with the kept lock, saying when the
            // command ended; nothing reads this node's liveness under `keep`.
            if let Some(ended) = &ended {
                multi.add_create(&seen.run, ended.as_bytes(), &persistent())?;
            }
        } else {
            multi.add_delete(&seen.node, Some(stat.version))?;
        }
        match session.commit(multi) {
            Ok(_) if kept => Ok(Release::Kept { until }),
            Ok(_) => Ok(Release::Dropped),
            Err(ZkError::BadVersion | ZkError::NoNode) => Ok(Release::NotOurs),
            Err(err) => Err(anyhow!(err).context(format!("releasing {}", seen.node))),
        }
    }

    fn renew_default(&mut self, lease: &Lease, seconds_: i64) -> Result<Renewal> {
        let seen = self.read_ours(&lease.key)?;
        let Some((_, stat)) = seen.record.filter(|_| seen.ours) else {
            return Ok(Renewal::Lost);
        };
        let data = record(seen.now - seconds(stat.ctime) + seconds_ + 1, "run");
        let session = self.session()?;
        match session.call(session.client.set_data(&seen.node, data.as_bytes(), Some(stat.version))) {
            Ok(_) => Ok(Renewal::Renewed {
                expires_at: seen.now + seconds_ + 1,
            }),
            Err(ZkError::BadVersion | ZkError::NoNode) => Ok(Renewal::Lost),
            Err(err) => Err(err.into()),
        }
    }

    /// `CRONLOCK_FENCING` in the default style: the job key `name`'s next
    /// token, while `lease` is ours (see the module's notes).
    fn fence_default(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let node = node_path(&lease.key);
        let run = format!("{node}/run");
        let counter = fence_path(name);
        let session = self.session()?;
        let ours = session.client.session_id().0;
        // The counter is created by the first token's multi-op, so that its
        // mzxid is always a token given.
        let mut create = false;
        for _ in 0..ROUNDS {
            let (record, held) =
                session.call_pair(session.client.check_stat(&node), session.client.check_stat(&run))?;
            let record = record
                .map_err(anyhow::Error::from)
                .with_context(|| format!("reading {node}"))?;
            let held = held
                .map_err(anyhow::Error::from)
                .with_context(|| format!("reading {run}"))?;
            let (Some(record), Some(held)) = (record, held) else {
                return Ok(None);
            };
            if held.ephemeral_owner != ours {
                return Ok(None);
            }
            let mut multi = session.client.new_multi_writer();
            multi.add_check_version(&node, record.version)?;
            multi.add_check_version(&run, held.version)?;
            if create {
                multi.add_create(&counter, b"", &persistent())?;
            }
            multi.add_set_data(&counter, b"", None)?;
            // Sent in this order, answered in this order: the read sees the
            // multi-op's effect (a session reads its own writes).
            let commit = multi.commit();
            let (committed, after) = session.call_pair(commit, session.client.check_stat(&run))?;
            match committed {
                Ok(results) => {
                    let stat = results
                        .last()
                        .and_then(set_stat)
                        .ok_or_else(|| anyhow!("bumping {counter}: the server gave no stat"))?;
                    let token = u64::try_from(stat.mzxid)
                        .map_err(|_| anyhow!("{counter}: a negative zxid ({})", stat.mzxid))?;
                    let after = after
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("reading {run}"))?;
                    // Not ours: another holder's take came before our write,
                    // and its own token after it; ours is withheld.
                    return Ok(after.filter(|stat| stat.ephemeral_owner == ours).map(|_| token));
                }
                // The record or its run node changed since we read them.
                Err(MultiWriteError::OperationFailed {
                    index: 0 | 1,
                    source: ZkError::BadVersion | ZkError::NoNode,
                }) => return Ok(None),
                // No counter yet (or one deleted by hand: its new zxids are
                // still larger than every old token).
                Err(MultiWriteError::OperationFailed {
                    source: ZkError::NoNode,
                    ..
                }) => create = true,
                // Another holder of the job (a semaphore's other slot, an
                // earlier fire time's) created it meanwhile.
                Err(MultiWriteError::OperationFailed {
                    source: ZkError::NodeExists,
                    ..
                }) => create = false,
                Err(err) => return Err(anyhow!(ZkError::from(err)).context(format!("bumping {counter}"))),
            }
        }
        bail!("{counter}: still contended after {ROUNDS} tries")
    }

    /// The newest token of the job key `name`: the counter's mzxid.
    fn newest_fence_default(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let counter = fence_path(name);
        let session = self.session()?;
        // A follower may lag the leader, and show an older token as the
        // newest: a sync first brings the server ours reads from up to date.
        let (synced, read) = session.call_pair(session.client.sync(&counter), session.client.check_stat(&counter))?;
        match synced {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(err) => return Err(anyhow!(err).context(format!("syncing {counter}"))),
        }
        let read = read
            .map_err(anyhow::Error::from)
            .with_context(|| format!("reading {counter}"))?;
        read.map(|stat| u64::try_from(stat.mzxid).map_err(|_| anyhow!("{counter}: a negative zxid ({})", stat.mzxid)))
            .transpose()
    }

    /// `CRONLOCK_HISTORY` in the default style (see the module's notes and
    /// [`LockStore::record_run`]).
    ///
    /// A failed operation fails the whole multi-op and changes nothing, so
    /// the one retried (after making the nodes it found missing) cannot add
    /// the record twice; an answer that never came (a lost connection, a
    /// timeout) is an error, and the run's record may or may not be there.
    fn record_run_default(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        if record.len() > RECORD_LIMIT {
            bail!(
                "the run's record is {} bytes, more than the {RECORD_LIMIT} a job's history keeps in ZooKeeper",
                record.len()
            );
        }
        let runs = runs_path(name);
        let last = succeeded_path(name);
        let session = self.session()?;
        let mut listed = None;
        // Twice at most: the second try follows the creation of the nodes
        // the first found missing.
        for _ in 0..2 {
            let mut multi = session.client.new_multi_writer();
            multi.add_create(
                &format!("{runs}/{RUN_PREFIX}"),
                record.as_bytes(),
                &persistent_sequential(),
            )?;
            if succeeded {
                multi.add_set_data(&last, record.as_bytes(), None)?;
            }
            // Sent in this order, answered in this order: the listing
            // sees our node (a session reads its own writes).
            let commit = multi.commit();
            let (committed, children) = session.call_pair(commit, session.client.list_children(&runs))?;
            match committed {
                Ok(_) => {
                    listed = Some(
                        children
                            .map_err(anyhow::Error::from)
                            .with_context(|| format!("listing {runs}"))?,
                    );
                    break;
                }
                // The job's first run kept (or one after a hand's delete):
                // the empty nodes are made, and another run that makes them
                // at the same moment is as good.
                Err(MultiWriteError::OperationFailed {
                    source: ZkError::NoNode,
                    ..
                }) => {
                    session.ensure(&runs)?;
                    if succeeded {
                        session.ensure(&last)?;
                    }
                }
                Err(err) => return Err(anyhow!(ZkError::from(err)).context(format!("adding a run under {runs}"))),
            }
        }
        let listed = listed.ok_or_else(|| anyhow!("adding a run under {runs}: its nodes went missing again"))?;
        // Only nodes older than the newest `keep` listed go; every node
        // created after the listing is newer still. A delete that finds the
        // node gone met another run's trim.
        let records = runs_oldest_first(listed);
        let excess = records.len().saturating_sub(keep.max(1) as usize);
        let deletes: Vec<_> = records[..excess]
            .iter()
            .map(|child| session.client.delete(&format!("{runs}/{child}"), None))
            .collect();
        for deleted in session.call_all(deletes)? {
            match deleted {
                Ok(()) | Err(ZkError::NoNode) => {}
                Err(err) => return Err(anyhow!(err).context(format!("trimming {runs} to {keep} runs"))),
            }
        }
        Ok(())
    }

    /// The run records, newest first, and the last success: a `sync` (a
    /// follower may lag the leader, and miss the newest run), the listing
    /// and the last success in one round trip, then every record's data in
    /// another.
    fn run_history_default(&mut self, name: &[u8]) -> Result<History> {
        let runs = runs_path(name);
        let last = succeeded_path(name);
        let session = self.session()?;
        let synced = session.client.sync(&runs);
        let children = session.client.list_children(&runs);
        let success = session.client.get_data(&last);
        let (synced, (children, success)) = session.call_pair(synced, async { (children.await, success.await) })?;
        match synced {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(err) => return Err(anyhow!(err).context(format!("syncing {runs}"))),
        }
        let children = match children {
            Ok(children) => children,
            Err(ZkError::NoNode) => Vec::new(),
            Err(err) => return Err(anyhow!(err).context(format!("listing {runs}"))),
        };
        // Made empty by a run that then failed: no success yet.
        let last_success = match success {
            Ok((data, _)) if data.is_empty() => None,
            Ok((data, _)) => Some(String::from_utf8_lossy(&data).into_owned()),
            Err(ZkError::NoNode) => None,
            Err(err) => return Err(anyhow!(err).context(format!("reading {last}"))),
        };
        let mut records = runs_oldest_first(children);
        records.reverse();
        let reads: Vec<_> = records
            .iter()
            .map(|child| session.client.get_data(&format!("{runs}/{child}")))
            .collect();
        let mut kept = Vec::with_capacity(records.len());
        for (child, read) in records.iter().zip(session.call_all(reads)?) {
            match read {
                Ok((data, _)) => kept.push(String::from_utf8_lossy(&data).into_owned()),
                // Trimmed by a run that ended since the listing.
                Err(ZkError::NoNode) => {}
                Err(err) => return Err(anyhow!(err).context(format!("reading {runs}/{child}"))),
            }
        }
        Ok(History {
            runs: kept,
            last_success,
        })
    }

    /// Where the lock on `key` lives, and which kazoo's recipe takes it,
    /// in the lockex and tooz styles; `None` in cronlock's own.
    fn kazoo_dir(&self, key: &[u8]) -> Result<Option<(String, Recipe)>> {
        Ok(match self.style {
            Style::Record => None,
            Style::Lockex => Some((String::from_utf8_lossy(key).into_owned(), Recipe::Kazoo22)),
            Style::Tooz => Some((tooz::lock_dir(&self.tooz_locks, key)?, Recipe::Kazoo29)),
        })
    }

    /// kazoo's lock on `dir`, as lockex (with `host:pid` as its node's data)
    /// or tooz (with the node name) takes it.
    fn acquire_kazoo(&mut self, claim: &Claim, dir: &str, recipe: Recipe) -> Result<Acquire> {
        let data = match self.style {
            Style::Tooz => self.node.to_string(),
            _ => format!("{}:{}", hostname(), std::process::id()),
        };
        let session = self.session()?;
        // kazoo's Lock does not look, but a plain lock among a semaphore's
        // leases neither counts as one for its holders nor sees them: with
        // either tool, more than N would run. Refused, as a different N is.
        let not_a_pool = |pool: &[u8]| match kazoo_leases(pool).filter(|&n| n != 1) {
            Some(leases) if recipe == Recipe::Kazoo22 => bail!(
                "CRONLOCK_CONCURRENCY=1 does not match: {dir} is lockex's semaphore of {leases} leases \
                 (--concurrent {leases}), which its plain lock does not count; set \
                 CRONLOCK_CONCURRENCY={leases}, or delete {dir} while no copy runs"
            ),
            _ => Ok(()),
        };
        let taken = session.try_kazoo_lock(dir, data.as_bytes(), recipe, not_a_pool)?;
        Ok(kazoo_outcome(claim, taken))
    }

    /// `lockex --concurrent N`: a lease of kazoo's Semaphore on the pool
    /// `claim.key`, taken under its gate.
    fn acquire_lockex_lease(&mut self, claim: &Claim, slots: u32) -> Result<Acquire> {
        let pool = String::from_utf8_lossy(claim.key).into_owned();
        let gate = format!("{pool}-{LOCK_MARK}");
        let data = format!("{}:{}", hostname(), std::process::id());
        let session = self.session()?;
        session.ensure(&gate)?;
        session.ensure_pool(&pool, slots)?;
        let Some(entered) = session.enter_gate(&gate, &data)? else {
            self.report.info(format_args!(
                "{gate} stayed taken for {}s (by a lockex waiting for a lease, or a killed contender's until its session expires)",
                GATE_WAIT.as_secs()
            ));
            return Ok(Acquire::Held {
                expires_in: claim.release,
            });
        };
        let taken = session.take_lease(&pool, slots, &data);
        // Left taken, the gate would shut every other host out for as long
        // as the command runs: failing to leave it is an error, and the
        // session's end (which frees our lease too) leaves it.
        match session.call(session.client.delete(&entered, None)) {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(err) => return Err(anyhow!(err).context(format!("leaving {entered}"))),
        }
        Ok(kazoo_outcome(claim, taken?))
    }

    /// Our contender node in the lockex and tooz styles.
    fn kazoo_node(&self, lease: &Lease) -> Result<String> {
        let name = lease.token.as_deref().ok_or_else(|| anyhow!("no contender node"))?;
        let (dir, _) = self.kazoo_dir(&lease.key)?.ok_or_else(|| anyhow!("not a kazoo lock"))?;
        Ok(format!("{dir}/{name}"))
    }
}

/// A kazoo lock's or lease's take: our node's name and stat when we hold
/// it. kazoo's locks and leases have no expiry, so a holder is reported as
/// a fresh one.
fn kazoo_outcome(claim: &Claim, taken: Option<(String, Stat)>) -> Acquire {
    match taken {
        Some((name, stat)) => {
            let start = seconds(stat.ctime);
            let mut lease = Lease::new(claim.key, start, start + claim.release + 1);
            lease.token = Some(name);
            Acquire::Taken(lease)
        }
        None => Acquire::Held {
            expires_in: claim.release,
        },
    }
}

/// What `inspect` found.
struct Inspected {
    node: String,
    run: String,
    /// The record's N and stat, if the node exists.
    record: Option<(i64, Stat)>,
    /// The `run` node exists and is our session's.
    ours: bool,
    /// The server's time, in seconds.
    now: i64,
}

/// A default-style lock as read for cronlockctl.
struct Found {
    /// The record's data and stat.
    data: Vec<u8>,
    stat: Stat,
    /// The `run` node's data (the owner record) and stat, if it exists.
    run: Option<(Vec<u8>, Stat)>,
}

/// What cronlockctl shows of a default-style lock, the server's clock
/// reading `now`.
fn seen_default(key: Vec<u8>, found: Found, now: i64) -> Seen {
    let owner = found
        .run
        .as_ref()
        .filter(|(data, _)| !data.is_empty())
        .map(|(data, _)| String::from_utf8_lossy(data).into_owned());
    let (expires_at, running) = match parse_record(&found.data) {
        // A record that is not cronlock's: no expiry to show (a take stops
        // on it with an error).
        Err(_) => (None, None),
        Ok((n, kind)) => {
            let expiry = seconds(found.stat.ctime) + n;
            match (kind, &found.run) {
                // A live run: its session's ephemeral node.
                ("run", Some((_, run))) if run.ephemeral_owner != 0 => (Some(expiry), Some(true)),
                // The holder's session is gone: a take treats the lock as
                // expired at once, and so is it shown.
                ("run", _) => (Some(expiry.min(now - 1)), Some(false)),
                _ => (Some(expiry), Some(false)),
            }
        }
    };
    Seen {
        key,
        expires_at,
        now,
        owner,
        running,
    }
}

impl LockStore for ZooKeeperLock<'_> {
    fn kind(&self) -> &'static str {
        "zookeeper"
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Hold => match self.style {
                Style::Record => None,
                Style::Lockex => {
                    Some("with CRONLOCK_KEY_STYLE=lockex the lock is lockex's, which ends with the command")
                }
                Style::Tooz => Some(
                    "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's (kazoo's lock recipe), which ends with the command",
                ),
            },
            Feature::Lease => None,
        }
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        match self.kazoo_dir(claim.key)? {
            Some((dir, recipe)) => self.acquire_kazoo(claim, &dir, recipe),
            None => self.acquire_default(claim),
        }
    }

    /// In the lockex style, lockex's semaphore: N leases of one pool, not N
    /// keys (see the module's notes).
    fn acquire_slot(&mut self, claim: &Claim, slots: u32) -> Result<Acquire> {
        if self.style == Style::Lockex && slots > 1 {
            self.acquire_lockex_lease(claim, slots)
        } else {
            crate::lock::slot_by_slot(self, claim, slots)
        }
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        if self.hold_lost {
            return Ok(Release::NotOurs);
        }
        let peer = match self.style {
            Style::Record => return self.release_default(lease, keep),
            Style::Lockex => "lockex",
            Style::Tooz => "tooz",
        };
        if keep.grace >= 0 {
            self.report.info(format_args!(
                "CRONLOCK_KEY_STYLE={peer}: no grace period, the lock ends with the command as {peer}'s does"
            ));
        }
        let node = self.kazoo_node(lease)?;
        let session = self.session()?;
        match session.call(session.client.delete(&node, None)) {
            Ok(()) => Ok(Release::Dropped),
            Err(ZkError::NoNode) => Ok(Release::NotOurs),
            Err(err) => Err(anyhow!(err).context(format!("deleting {node}"))),
        }
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let kazoo = self.kazoo_dir(key)?;
        let session = self.session()?;
        if let Some((dir, recipe)) = kazoo {
            return session.kazoo_holder(key, &dir, recipe);
        }
        let Some(found) = session.read_default(key)? else {
            return Ok(None);
        };
        let now = session.now()?;
        Ok(Some(seen_default(key.to_vec(), found, now)))
    }

    /// The locks of the configured style: under `/cronlock` by default,
    /// under `/lockex` in the lockex style, under `/tooz/locks` (or the
    /// namespace's `locks`) in tooz's (only the names without a `/`).
    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let style = self.style;
        let tooz_locks = self.tooz_locks.clone();
        let session = self.session()?;
        let root = match style {
            Style::Record => ROOT,
            Style::Lockex => LOCKEX_ROOT,
            Style::Tooz => tooz_locks.as_str(),
        };
        let names = match session.call(session.client.list_children(root)) {
            Ok(names) => names,
            Err(ZkError::NoNode) => return Ok(Vec::new()),
            Err(err) => return Err(anyhow!(err).context(format!("listing {root}"))),
        };
        let mut found = Vec::new();
        if style == Style::Lockex {
            for name in names {
                let key = format!("{LOCKEX_ROOT}/{name}").into_bytes();
                if key.starts_with(prefix) {
                    found.extend(session.kazoo_holder(&key, &format!("{root}/{name}"), Recipe::Kazoo22)?);
                }
            }
        } else if style == Style::Tooz {
            for name in names {
                if name.as_bytes().starts_with(prefix) {
                    found.extend(session.kazoo_holder(name.as_bytes(), &format!("{root}/{name}"), Recipe::Kazoo29)?);
                }
            }
        } else {
            let now = session.now()?;
            for name in names.iter().filter(|name| !is_companion(name)) {
                let key = key_of_node(name);
                if key.starts_with(prefix) {
                    if let Some(lock) = session.read_default(&key)? {
                        found.push(seen_default(key, lock, now));
                    }
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let kazoo = self.kazoo_dir(key)?;
        let session = self.session()?;
        if let Some((dir, _)) = kazoo {
            return session.clear_kazoo_lock(&dir);
        }
        let node = node_path(key);
        match session.call(session.client.delete(&format!("{node}/run"), None)) {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(err) => return Err(anyhow!(err).context(format!("deleting {node}/run"))),
        }
        match session.call(session.client.delete(&node, None)) {
            Ok(()) => Ok(true),
            Err(ZkError::NoNode) => Ok(false),
            Err(err) => Err(anyhow!(err).context(format!("deleting {node}"))),
        }
    }

    fn fencing(&self) -> Fencing {
        match self.style {
            // A zxid only grows, and the ensemble keeps it with its data.
            Style::Record => Fencing::Durable,
            Style::Lockex => Fencing::Unsupported(
                "with CRONLOCK_KEY_STYLE=lockex the lock is lockex's (kazoo's lock recipe), which has no fencing tokens",
            ),
            Style::Tooz => Fencing::Unsupported(
                "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's (kazoo's lock recipe), which has no fencing tokens",
            ),
        }
    }

    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        if let Fencing::Unsupported(why) = self.fencing() {
            bail!("no fencing tokens: {why}");
        }
        self.fence_default(lease, name)
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        if let Fencing::Unsupported(why) = self.fencing() {
            bail!("no fencing tokens: {why}");
        }
        self.newest_fence_default(name)
    }

    /// In cronlock's own style only: lockex's and tooz's hosts share the
    /// lock but keep no history.
    fn keeps_history(&self) -> bool {
        self.style == Style::Record
    }

    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        if !self.keeps_history() {
            bail!("no run history: the lock is lockex's or tooz's (CRONLOCK_KEY_STYLE), whose hosts keep none");
        }
        self.record_run_default(name, record, succeeded, keep)
    }

    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        if !self.keeps_history() {
            bail!("no run history: the lock is lockex's or tooz's (CRONLOCK_KEY_STYLE), whose hosts keep none");
        }
        self.run_history_default(name)
    }

    fn hold_check_every(&self) -> Option<Duration> {
        self.session.as_ref().map(|_| HOLD_CHECK_EVERY)
    }

    /// The lock (in every key style) lives only as long as our session:
    /// once the servers expire it, its ephemeral node is gone and another
    /// host may take the job. The command is stopped before that can
    /// happen: as soon as the session is known lost, or has gone
    /// unconfirmed for longer than the servers are sure to keep it. A
    /// fail-over to another server within that time changes nothing.
    fn check_hold(&mut self, _lease: &Lease) -> Result<(), String> {
        let Some(session) = self.session.as_ref() else {
            return Ok(());
        };
        let state = session.client.state();
        let silent = session.unconfirmed_for();
        let trusted = session.trusted_for();
        let timeout = session.client.session_timeout();
        let lost = match state {
            SessionState::Expired => Some("the ZooKeeper session expired, and the servers dropped its lock".to_string()),
            SessionState::Closed | SessionState::AuthFailed => Some(format!("the ZooKeeper session ended ({state})")),
            _ if silent > trusted => Some(format!(
                "no ZooKeeper server has confirmed the session for {:.1}s; the servers expire it, and free the lock, after {:.1}s without a word from it",
                silent.as_secs_f64(),
                timeout.as_secs_f64()
            )),
            _ => None,
        };
        if let Some(why) = lost {
            self.hold_lost = true;
            return Err(why);
        }
        let every = timeout / HEARTBEATS_PER_TIMEOUT;
        if silent > every * 2 && !self.unconfirmed_said {
            self.unconfirmed_said = true;
            self.report.info(format_args!(
                "no ZooKeeper server has confirmed the session for {} ms ({state}); the command is killed at {} ms unless one does",
                silent.as_millis(),
                trusted.as_millis()
            ));
        } else if silent <= every * 2 && self.unconfirmed_said {
            self.unconfirmed_said = false;
            self.report
                .info(format_args!("the ZooKeeper session is confirmed again ({state})"));
        }
        Ok(())
    }

    /// A renewal also proves the session alive: a lost session has lost its
    /// ephemeral node, which is lease loss.
    fn renew(&mut self, lease: &Lease, seconds_: i64, _after_unknown: bool, _limit: Duration) -> Renewal {
        let result = if self.style != Style::Record {
            self.kazoo_node(lease).and_then(|node| {
                let session = self.session()?;
                let ours = session.client.session_id().0;
                match session.call(session.client.check_stat(&node)) {
                    Ok(Some(stat)) if stat.ephemeral_owner == ours => {
                        let now = seconds(session.call(session.touch())?.mtime);
                        Ok(Renewal::Renewed {
                            expires_at: now + seconds_ + 1,
                        })
                    }
                    Ok(_) => Ok(Renewal::Lost),
                    Err(err) => Err(err.into()),
                }
            })
        } else {
            self.renew_default(lease, seconds_)
        };
        match result {
            Ok(renewal) => renewal,
            // An expired session cannot come back: its ephemeral node is gone.
            Err(err) if matches!(err.downcast_ref::<ZkError>(), Some(ZkError::SessionExpired)) => Renewal::Lost,
            Err(err) => Renewal::Unconfirmed {
                message: format!("{}: {err:#}", self.shown()),
                maybe_sent: true,
            },
        }
    }
}

impl Drop for ZooKeeperLock<'_> {
    /// Closes the session, so that the server drops our ephemeral nodes now
    /// rather than a session timeout later.
    fn drop(&mut self) {
        if let Some(Session {
            runtime,
            client,
            heartbeat,
            ..
        }) = self.session.take()
        {
            // The session closes once the last handle of its client is gone,
            // the heartbeat's too.
            heartbeat.abort();
            let _ = within(&runtime, Duration::from_millis(100), heartbeat);
            let mut watcher = client.state_watcher();
            drop(client);
            // After a lost hold the servers have not been answering: a
            // command already killed for it should not wait on them long.
            let patience = Duration::from_millis(if self.hold_lost { 100 } else { 500 });
            let _ = within(&runtime, patience, watcher.changed());
        }
    }
}

impl Session {
    /// The session `client` opened (its creation asked for no earlier than
    /// `born`), its heartbeats started.
    fn start(runtime: Arc<Runtime>, client: Client, born: Instant) -> Session {
        let confirmed = Arc::new(AtomicU64::new(0));
        let every = client.session_timeout() / HEARTBEATS_PER_TIMEOUT;
        let heartbeat = runtime.spawn(heartbeat(client.clone(), born, Arc::clone(&confirmed), every));
        Session {
            runtime,
            client,
            born,
            confirmed,
            heartbeat,
        }
    }

    /// How long ago the last answered heartbeat was sent.
    fn unconfirmed_for(&self) -> Duration {
        let confirmed = Duration::from_millis(self.confirmed.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(confirmed)
    }

    /// How long the session may go unconfirmed before its holder must stop
    /// its command: the servers expire it (and drop its ephemeral nodes,
    /// which frees the lock) once they have heard nothing from it for the
    /// session timeout, counted from no earlier than the last confirmed
    /// heartbeat's sending. A third of the timeout is left for the hold
    /// check's period, the kill, and the servers' clocks running a little
    /// faster than ours.
    fn trusted_for(&self) -> Duration {
        self.client.session_timeout() * 2 / 3
    }

    /// Runs one request to its end, within [`REQUEST_LIMIT`].
    fn call<T>(&self, request: impl std::future::Future<Output = Result<T, ZkError>>) -> Result<T, ZkError> {
        within(&self.runtime, REQUEST_LIMIT, request).unwrap_or(Err(ZkError::Timeout))
    }

    /// Two requests in one round trip: the client sends each when its future
    /// is made, and the server answers a session's requests in order.
    fn call_pair<A, B>(
        &self,
        a: impl std::future::Future<Output = A>,
        b: impl std::future::Future<Output = B>,
    ) -> Result<(A, B), ZkError> {
        within(&self.runtime, REQUEST_LIMIT, async { (a.await, b.await) }).ok_or(ZkError::Timeout)
    }

    /// Requests already sent (the client sends each when its future is
    /// made), their answers in order, all within [`REQUEST_LIMIT`].
    fn call_all<T>(&self, requests: Vec<impl std::future::Future<Output = T>>) -> Result<Vec<T>, ZkError> {
        within(&self.runtime, REQUEST_LIMIT, async {
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(request.await);
            }
            answers
        })
        .ok_or(ZkError::Timeout)
    }

    /// Commits a multi-op; a failed operation reports its own error.
    fn commit(&self, mut multi: MultiWriter<'_>) -> Result<Vec<MultiWriteResult>, ZkError> {
        let commit = multi.commit();
        self.call(async move { commit.await.map_err(ZkError::from) })
    }

    /// The server's present time, in seconds. Before any default-style lock
    /// exists there is no `/cronlock` to write to; then (in the lockex
    /// style, which has no expiry) this host's clock serves.
    fn now(&self) -> Result<i64> {
        match self.call(self.touch()) {
            Ok(stat) => Ok(seconds(stat.mtime)),
            Err(ZkError::NoNode) => Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)),
            Err(err) => Err(anyhow!(err).context("reading the server's time")),
        }
    }

    /// A default-style lock's record and its `run` node, in one round trip;
    /// `None` when there is no record.
    fn read_default(&self, key: &[u8]) -> Result<Option<Found>> {
        let node = node_path(key);
        let run = format!("{node}/run");
        let (read, run_read) = self.call_pair(self.client.get_data(&node), self.client.get_data(&run))?;
        let (data, stat) = match read {
            Ok(found) => found,
            Err(ZkError::NoNode) => return Ok(None),
            Err(err) => return Err(anyhow!(err).context(format!("reading {node}"))),
        };
        let run = match run_read {
            Ok(found) => Some(found),
            Err(ZkError::NoNode) => None,
            Err(err) => return Err(anyhow!(err).context(format!("reading {run}"))),
        };
        Ok(Some(Found { data, stat, run }))
    }

    /// Creates kazoo's lease pool `pool` with `slots` as its data, or checks
    /// the number an existing one holds as kazoo does: data that is not a
    /// number is ignored, a different number refused.
    fn ensure_pool(&self, pool: &str, slots: u32) -> Result<()> {
        // kazoo creates the pool empty, then writes N: created with N here,
        // it ends the same, and no reader sees it empty.
        match self.call(self.client.create(pool, slots.to_string().as_bytes(), &persistent())) {
            Ok(_) => return Ok(()),
            Err(ZkError::NodeExists) => {}
            Err(err) => return Err(anyhow!(err).context(format!("creating {pool}"))),
        }
        let data = match self.call(self.client.get_data(pool)) {
            Ok((data, _)) => data,
            // Reset meanwhile: the next take creates it again.
            Err(ZkError::NoNode) => return Ok(()),
            Err(err) => return Err(anyhow!(err).context(format!("reading {pool}"))),
        };
        match kazoo_leases(&data) {
            Some(leases) if leases != i128::from(slots) => bail!(
                "CRONLOCK_CONCURRENCY={slots} does not match: {pool} is lockex's semaphore of {leases} leases \
                 (--concurrent {leases}), and kazoo refuses a different count; set \
                 CRONLOCK_CONCURRENCY={leases}, or delete {pool} while no copy runs"
            ),
            _ => Ok(()),
        }
    }

    /// kazoo's Lock on `gate`, waited for up to [`GATE_WAIT`]: our node's
    /// path once it is the lowest, `None` (our node removed) when the time
    /// is up.
    fn enter_gate(&self, gate: &str, data: &str) -> Result<Option<String>> {
        let prefix = kazoo::prefix();
        let (_, sequence) = self
            .call(
                self.client
                    .create(&format!("{gate}/{prefix}"), data.as_bytes(), &ephemeral_sequential()),
            )
            .map_err(anyhow::Error::from)
            .with_context(|| format!("creating a contender under {gate}"))?;
        let name = format!("{prefix}{sequence}");
        let ours = format!("{gate}/{name}");
        let deadline = Instant::now() + GATE_WAIT;
        loop {
            let children = Recipe::Kazoo22.contenders(self.call(self.client.list_children(gate))?);
            let index = children
                .iter()
                .position(|child| *child == name)
                .ok_or_else(|| anyhow!("{ours} is gone (was the session lost?)"))?;
            if index == 0 {
                return Ok(Some(ours));
            }
            // As kazoo: wait for the one before ours to go, then look again.
            let before = format!("{gate}/{}", children[index - 1]);
            let (stat, watcher) = self.call(self.client.check_and_watch_stat(&before))?;
            let left = deadline.saturating_duration_since(Instant::now());
            if stat.is_some() && (left.is_zero() || within(&self.runtime, left, watcher.changed()).is_none()) {
                match self.call(self.client.delete(&ours, None)) {
                    Ok(()) | Err(ZkError::NoNode) => return Ok(None),
                    Err(err) => return Err(anyhow!(err).context(format!("removing {ours}"))),
                }
            }
        }
    }

    /// Under the gate, as kazoo's `_get_lease`: a lease (its name and stat)
    /// when the pool has fewer than `slots` children, whatever they are.
    fn take_lease(&self, pool: &str, slots: u32, data: &str) -> Result<Option<(String, Stat)>> {
        let children = self
            .call(self.client.list_children(pool))
            .map_err(anyhow::Error::from)
            .with_context(|| format!("listing {pool}"))?;
        if children.len() >= slots as usize {
            return Ok(None);
        }
        let name = crate::net::random::uuid4_hex();
        let path = format!("{pool}/{name}");
        let (stat, _) = self
            .call(self.client.create(&path, data.as_bytes(), &ephemeral()))
            .map_err(anyhow::Error::from)
            .with_context(|| format!("creating {path}"))?;
        Ok(Some((name, stat)))
    }

    /// A write whose stat carries the server's present time.
    fn touch(&self) -> impl std::future::Future<Output = Result<Stat, ZkError>> + Send + '_ {
        self.client.set_data(ROOT, b"", None)
    }

    /// Creates `path`, its parents and [`ROOT`] (whose writes tell the
    /// time) as empty persistent nodes where missing.
    fn ensure(&self, path: &str) -> Result<()> {
        let ends = path.match_indices('/').map(|(i, _)| i).filter(|&i| i > 0);
        for prefix in ends.map(|i| &path[..i]).chain([path, ROOT]) {
            match self.call(self.client.create(prefix, b"", &persistent())) {
                Ok(_) | Err(ZkError::NodeExists) => {}
                Err(err) => return Err(anyhow!(err).context(format!("creating {prefix}"))),
            }
        }
        Ok(())
    }
}

/// Opens a session with one of `target`'s servers (named `shown` in
/// messages). A server that takes the TCP connection and closes it (over
/// its `maxClientCnxns` in a herd, or not serving yet) is tried again after
/// a short jittered pause, for up to `CRONLOCK_REDIS_TIMEOUT`; none
/// reachable at all follows the reconnect schedule of every store.
fn connect(target: &ZooKeeperTarget, shown: &str, report: &Report) -> Result<Session> {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("starting the ZooKeeper client's runtime")?,
    );
    // Drives the session (pings, answers) while the main thread waits for
    // the command; it ends with the process.
    let driver = Arc::clone(&runtime);
    std::thread::Builder::new()
        .name("zookeeper".into())
        .spawn(move || driver.block_on(std::future::pending::<()>()))
        .context("starting the ZooKeeper session thread")?;
    let hosts: Vec<String> = target
        .hosts
        .iter()
        .map(|(host, port)| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        })
        .collect();
    let cluster = format!("{}{}", hosts.join(","), target.chroot.as_deref().unwrap_or(""));
    let mut reconnects = Reconnects::of(report, &target.connection);
    loop {
        // Before the request that creates the session: no server can have
        // heard from it earlier.
        let born = Instant::now();
        let connecting = Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_fail_eagerly()
            .connect(&cluster);
        match within(&runtime, REQUEST_LIMIT, connecting) {
            Some(Ok(client)) => return Ok(Session::start(runtime, client, born)),
            // The client says the same whether nobody listens or a server
            // closed the connection; a plain TCP connection tells them apart.
            Some(Err(ZkError::NoHosts)) => match probe(&target.hosts) {
                Unserved::Busy(why) => reconnects.busy(shown, &why, target.connection.timeout)?,
                Unserved::Down(why) => reconnects.after(shown, &why)?,
                Unserved::Silent(server) => {
                    bail!("{shown}: {server} took the connection but gave no answer (is it a ZooKeeper server?)")
                }
            },
            Some(Err(err)) => bail!("{shown}: cannot open a session: {err}"),
            None => bail!(
                "{shown}: no ZooKeeper answer within {}s (is it a ZooKeeper server?)",
                REQUEST_LIMIT.as_secs()
            ),
        }
    }
}

/// Why no server gave us a session.
enum Unserved {
    /// A server is alive but turned us away (why): over its connection
    /// limit, or not serving yet.
    Busy(String),
    /// No server could be reached at all (why).
    Down(String),
    /// A server took the connection and never answered (which).
    Silent(String),
}

/// What a plain TCP connection to one server showed.
enum Probe {
    /// Not even connected (why).
    Unreachable(String),
    /// Closed at once, before reading a word: ZooKeeper's answer to a
    /// connection over `maxClientCnxns`.
    Closed,
    /// A ZooKeeper answered `srvr`; false when it said it is not serving.
    Answered(bool),
    /// Connected, and no answer.
    Silent,
}

/// Asks every server in turn, on a plain TCP connection, what the
/// client's failed session could not say: whether it is reachable at all,
/// and whether it closes new connections or answers.
fn probe(hosts: &[(String, u16)]) -> Unserved {
    let mut unreachable = Vec::new();
    let mut silent = None;
    for (host, port) in hosts {
        let server = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        match probe_one(host, *port) {
            Probe::Closed => {
                return Unserved::Busy(format!(
                    "{server} closed the connection at once (over its maxClientCnxns from this host)"
                ))
            }
            Probe::Answered(false) => {
                return Unserved::Busy(format!(
                    "{server} is not serving requests yet (starting, or without a quorum)"
                ))
            }
            Probe::Answered(true) => return Unserved::Busy(format!("{server} answers but gave no session")),
            Probe::Silent => silent = Some(server),
            Probe::Unreachable(why) if hosts.len() == 1 => unreachable.push(why),
            Probe::Unreachable(why) => unreachable.push(format!("{server}: {why}")),
        }
    }
    match silent {
        Some(server) => Unserved::Silent(server),
        None => Unserved::Down(unreachable.join("; ")),
    }
}

fn probe_one(host: &str, port: u16) -> Probe {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let addresses = match (host, port).to_socket_addrs() {
        Ok(addresses) => addresses,
        Err(err) => return Probe::Unreachable(err.to_string()),
    };
    let mut why = format!("{host} has no address");
    for address in addresses {
        let mut stream = match TcpStream::connect_timeout(&address, PROBE_LIMIT) {
            Ok(stream) => stream,
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                why = "connection refused (nothing listens there)".to_string();
                continue;
            }
            Err(err) if err.kind() == ErrorKind::TimedOut => {
                why = format!("no TCP connection within {PROBE_LIMIT:?}");
                continue;
            }
            // Taken and closed again before the connect was seen through.
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Probe::Closed
            }
            Err(err) => {
                why = err.to_string();
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(PROBE_LIMIT));
        // A server over its limit closes before reading this; one that is
        // not serving closes after answering it.
        if stream.write_all(b"srvr").is_err() {
            return Probe::Closed;
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if answer.len() < 16 * 1024 => answer.extend_from_slice(&buf[..n]),
                Ok(_) => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if answer.is_empty() {
                        return Probe::Silent;
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        if answer.is_empty() {
            return Probe::Closed;
        }
        return Probe::Answered(!String::from_utf8_lossy(&answer).contains("not currently serving"));
    }
    Probe::Unreachable(why)
}

/// Runs `future` on `runtime` for at most `limit` (the timer must be made
/// inside the runtime).
fn within<F: std::future::Future>(runtime: &Runtime, limit: Duration, future: F) -> Option<F::Output> {
    runtime.block_on(async move { tokio::time::timeout(limit, future).await.ok() })
}

/// Confirms the session every `every`, one request at a time: a `sync`,
/// which the server the session is connected to passes to the leader, so
/// an answer shows the ensemble serving (a follower cut off from its leader
/// keeps answering reads for a while, and its sessions may expire at the
/// leader meanwhile). An answered request's sending time goes into
/// `confirmed`.
async fn heartbeat(client: Client, born: Instant, confirmed: Arc<AtomicU64>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let sent = born.elapsed();
        // Waited for as long as it takes (up to the session's end): a late
        // answer still confirms the moment it was sent.
        let answer = tokio::time::timeout(client.session_timeout(), client.sync("/")).await;
        // An error about the path is an answer too (no sync looks at it in
        // ZooKeeper 3.4 to 3.9, but a missing chroot must not stop a job).
        if let Ok(Ok(()) | Err(ZkError::NoNode | ZkError::NoAuth)) = answer {
            let sent = u64::try_from(sent.as_millis()).unwrap_or(u64::MAX);
            confirmed.fetch_max(sent, Ordering::Relaxed);
        }
    }
}

fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

fn persistent_sequential() -> CreateOptions<'static> {
    CreateMode::PersistentSequential.with_acls(Acls::anyone_all())
}

fn ephemeral_sequential() -> CreateOptions<'static> {
    CreateMode::EphemeralSequential.with_acls(Acls::anyone_all())
}

fn set_stat(result: &MultiWriteResult) -> Option<&Stat> {
    match result {
        MultiWriteResult::SetData { stat } => Some(stat),
        _ => None,
    }
}

/// Milliseconds of the server's clock to whole unix seconds.
fn seconds(millis: i64) -> i64 {
    millis.div_euclid(1000)
}

fn record(n: i64, kind: &str) -> String {
    format!("{n} {kind}")
}

/// `<N> run` or `<N> keep`.
fn parse_record(data: &[u8]) -> Result<(i64, &str)> {
    let text = std::str::from_utf8(data).map_err(|_| anyhow!("not UTF-8"))?;
    let (n, kind) = text.split_once(' ').ok_or_else(|| anyhow!("{text:?}"))?;
    let n = n.parse().map_err(|_| anyhow!("{text:?}"))?;
    match kind {
        "run" => Ok((n, "run")),
        "keep" => Ok((n, "keep")),
        _ => bail!("{text:?}"),
    }
}

/// The default style's node: the key as one node name, every byte outside
/// `[A-Za-z0-9._:-]` %-escaped (a `/` would make it a path, and ZooKeeper
/// refuses `.` and `..` as names).
fn node_path(key: &[u8]) -> String {
    let mut name = super::escape::escape(key, |_, b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
    });
    if name == "." || name == ".." || name.is_empty() {
        name = name.replace('.', "%2E");
        if name.is_empty() {
            name.push('%');
        }
    }
    format!("{ROOT}/{name}")
}

/// The fencing counter of the job key `name`: beside its lock's node, and
/// named as no lock's node can be.
fn fence_path(name: &[u8]) -> String {
    format!("{}{FENCE_MARK}", node_path(name))
}

/// The parent of the job key `name`'s run records: beside its lock's
/// node, and named as no lock's node can be.
fn runs_path(name: &[u8]) -> String {
    format!("{}{RUNS_MARK}", node_path(name))
}

/// The job key `name`'s last success, beside its lock's node.
fn succeeded_path(name: &[u8]) -> String {
    format!("{}{SUCCEEDED_MARK}", node_path(name))
}

/// Whether a child of [`ROOT`] is a job's fencing counter or history
/// rather than a lock: [`node_path`] escapes `#`, so no lock's name has one.
fn is_companion(name: &str) -> bool {
    name.contains('#')
}

/// The run records among the children of a `#runs` node, oldest first,
/// by the sequence number the server gave each; other names are left out
/// of every read and trim. (The number is the parent's child version,
/// which also moves on at each delete: it wraps to negative after 2^31
/// creates and deletes, some billion runs of one job.)
fn runs_oldest_first(children: Vec<String>) -> Vec<String> {
    let mut runs: Vec<(i64, String)> = children
        .into_iter()
        .filter_map(|child| {
            let digits = child.strip_prefix(RUN_PREFIX)?;
            let unsigned = digits.strip_prefix('-').unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, child))
        })
        .collect();
    runs.sort_unstable();
    runs.into_iter().map(|(_, child)| child).collect()
}

/// The key a default-style node name stands for (the reverse of [`node_path`]).
fn key_of_node(name: &str) -> Vec<u8> {
    if name == "%" {
        return Vec::new();
    }
    super::escape::unescape(name.as_bytes())
}

/// The number kazoo's Semaphore reads from a pool's data, Python 2's
/// `int(data.decode("utf-8"))` (spaces around and a sign allowed); `None`
/// where that fails, data kazoo ignores.
fn kazoo_leases(data: &[u8]) -> Option<i128> {
    let text = std::str::from_utf8(data).ok()?.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Python's int has no bound: a longer number is still one, and no count.
    Some(text.parse().unwrap_or(i128::MAX))
}

/// The host name, as Python's `socket.gethostname()` gives it to lockex.
fn hostname() -> String {
    crate::lock::owner::host_name_or("localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_one_node_name() {
        assert_eq!(node_path(b"cronlock.abc"), "/cronlock/cronlock.abc");
        assert_eq!(node_path(b"a/b c"), "/cronlock/a%2Fb%20c");
        assert_eq!(node_path(b".."), "/cronlock/%2E%2E");
        assert_eq!(node_path(b"\xff"), "/cronlock/%FF");
        for key in [&b"cronlock.abc"[..], b"a/b c%", b"..", b".", b"", b"\xff"] {
            let path = node_path(key);
            assert_eq!(key_of_node(&path[ROOT.len() + 1..]), key, "{path}");
        }
    }

    fn stat(ctime_secs: i64, ephemeral_owner: i64) -> Stat {
        Stat {
            czxid: 1,
            mzxid: 1,
            pzxid: 1,
            ctime: ctime_secs * 1000 + 999,
            mtime: ctime_secs * 1000,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner,
            data_length: 0,
            num_children: 0,
        }
    }

    fn found(data: &str, run: Option<(&str, i64)>) -> Found {
        Found {
            data: data.as_bytes().to_vec(),
            stat: stat(1000, 0),
            run: run.map(|(owner, session)| (owner.as_bytes().to_vec(), stat(1000, session))),
        }
    }

    #[test]
    fn a_record_shows_its_expiry_owner_and_whether_its_run_lives() {
        let live = seen_default(b"k".to_vec(), found("41 run", Some(("{}", 7))), 1010);
        assert_eq!(
            (live.expires_at, live.running, live.owner.as_deref()),
            (Some(1041), Some(true), Some("{}"))
        );
        let kept = seen_default(b"k".to_vec(), found("60 keep", Some(("{\"ended\":1}", 0))), 1010);
        assert_eq!((kept.expires_at, kept.running), (Some(1060), Some(false)));
        assert_eq!(kept.owner.as_deref(), Some("{\"ended\":1}"));
        // A run record whose session is gone is free at once, as a take finds it.
        let orphan = seen_default(b"k".to_vec(), found("41 run", None), 1010);
        assert_eq!(
            (orphan.expires_at, orphan.running, orphan.owner),
            (Some(1009), Some(false), None)
        );
        let foreign = seen_default(b"k".to_vec(), found("soon", None), 1010);
        assert_eq!((foreign.expires_at, foreign.running), (None, None));
    }

    #[test]
    fn a_pool_count_is_read_as_python_reads_it() {
        assert_eq!(kazoo_leases(b"3"), Some(3));
        assert_eq!(kazoo_leases(b" 03\n"), Some(3));
        assert_eq!(kazoo_leases(b"+2"), Some(2));
        assert_eq!(kazoo_leases(b"-2"), Some(-2));
        assert_eq!(
            kazoo_leases(b"99999999999999999999999999999999999999999"),
            Some(i128::MAX)
        );
        // What kazoo ignores: empty (a plain lock's directory), text, not UTF-8.
        for ignored in [&b""[..], b"3 leases", b"1_0", b"+", b"\xff3"] {
            assert_eq!(kazoo_leases(ignored), None, "{ignored:?}");
        }
    }

    #[test]
    fn a_fencing_counter_is_never_a_locks_node() {
        assert_eq!(fence_path(b"cronlock.abc"), "/cronlock/cronlock.abc#fence");
        for key in [&b"cronlock.abc"[..], b"a#fence", b"#fence", b"", b"a/b"] {
            let counter = fence_path(key);
            let name = &counter[ROOT.len() + 1..];
            assert!(name.ends_with(FENCE_MARK) && !name.contains('/'), "{counter}");
            for lock in [
                &b"cronlock.abc"[..],
                b"a#fence",
                b"#fence",
                b"",
                b"a/b",
                key_of_node(name).as_slice(),
            ] {
                assert_ne!(node_path(lock), counter, "{lock:?}");
                assert!(!node_path(lock).ends_with(FENCE_MARK), "{lock:?}");
            }
        }
    }

    #[test]
    fn a_jobs_history_lies_beside_its_lock_and_is_no_lock() {
        assert_eq!(runs_path(b"cronlock.abc"), "/cronlock/cronlock.abc#runs");
        assert_eq!(succeeded_path(b"a/b"), "/cronlock/a%2Fb#succeeded");
        let keys = [
            &b"cronlock.abc"[..],
            b"a#runs",
            b"#succeeded",
            b"a#fence",
            b"",
            b"a/b",
            b"..",
        ];
        for key in keys {
            for companion in [runs_path(key), succeeded_path(key), fence_path(key)] {
                let name = &companion[ROOT.len() + 1..];
                assert!(is_companion(name) && !name.contains('/'), "{companion}");
                for lock in keys.iter().copied().chain([key_of_node(name).as_slice()]) {
                    let node = node_path(lock);
                    assert_ne!(node, companion, "{lock:?}");
                    assert!(!is_companion(&node[ROOT.len() + 1..]), "{lock:?}");
                }
            }
        }
        // Every job's nodes are its own.
        let names: std::collections::HashSet<String> = keys
            .iter()
            .flat_map(|key| [runs_path(key), succeeded_path(key), fence_path(key)])
            .collect();
        assert_eq!(names.len(), keys.len() * 3);
    }

    #[test]
    fn run_records_are_ordered_by_their_sequence_numbers() {
        let children = [
            "run-0000000010",
            "run-0000000009",
            "stray",
            "run-",
            "run-12a",
            "run-2147483647",
            "run-0000000100",
        ];
        assert_eq!(
            runs_oldest_first(children.iter().map(|c| c.to_string()).collect()),
            ["run-0000000009", "run-0000000010", "run-0000000100", "run-2147483647"]
        );
        assert!(runs_oldest_first(Vec::new()).is_empty());
    }

    #[test]
    fn records_round_trip() {
        assert_eq!(parse_record(record(41, "run").as_bytes()).unwrap(), (41, "run"));
        assert_eq!(parse_record(b"-3 keep").unwrap(), (-3, "keep"));
        assert!(parse_record(b"41").is_err());
        assert!(parse_record(b"x run").is_err());
    }
}
