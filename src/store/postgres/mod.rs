//! The PostgreSQL store (`CRONLOCK_URL=postgres://...`): one row per lock in
//! table `cronlock_locks`, and a session advisory lock held while the
//! command runs.
//!
//! The row keeps the Redis store's meaning: `expires_at` is the unix time,
//! on the server's clock, at which the lock may be taken over (start +
//! RELEASE + 1 while the command runs, the grace or hold afterwards); now or
//! later means held. Each step is one statement, so a takeover has exactly
//! one winner (`INSERT ... ON CONFLICT DO UPDATE ... WHERE` re-checks the
//! latest row under its lock) and a release checks the row's `token`.
//!
//! While the command runs, the connection also holds
//! `pg_advisory_lock(hash)`, hash = the first 8 bytes of md5(key) read as a
//! big-endian signed 64-bit integer (in SQL:
//! `('x' || left(md5(name), 16))::bit(64)::bigint`). The server drops it when
//! the connection dies, so a row marked `running` whose advisory lock is free
//! belongs to a run that crashed, and is taken over without waiting for its
//! expiry: the contender takes the advisory lock, keeps it for
//! [`hold::TAKEOVER_AFTER`], and takes the row over only if it is still the same
//! run's and the server the same. That pause is what makes a dying server
//! safe: when the postmaster dies, its backends do not die with it (each
//! leads a process group of its own); an idle one, the holder's, notices at
//! once, exits cleanly and lets its advisory lock go, while another may
//! still be running a contender's statement on the same shared memory. A
//! contender's backend that outlives its postmaster cannot outlive the pause:
//! it exits as soon as it sits idle. `backend` and `server` guard the rule
//! too: a pooled connection that holds the lock itself (PgBouncer in
//! transaction mode) or a server restarted since the row was written (which
//! dropped every advisory lock while the holder may still run) leave the
//! row to its expiry, as Redis would.
//!
//! `CRONLOCK_FENCING`: a job key's fencing token is its row in
//! `cronlock_locks_fence`, made on the first fenced run and never deleted.
//! One statement ([`FENCE`]) locks our lock row while it still holds our
//! token and bumps the counter: a run that takes the lock after ours
//! rewrites that row, so it waits for our commit and bumps after us. The
//! advisory lock plays no part in that; the statement runs on its
//! connection only to need no other.
//!
//! `CRONLOCK_HISTORY`: a job's runs are rows of `cronlock_locks_runs`
//! (newest = highest `id`), its last success its row of
//! `cronlock_locks_succeeded`; both tables are made on the first recorded
//! run, and neither a reset nor `cronlockctl list` looks at them. One
//! statement ([`RECORD`]) adds the run, deletes the job's runs older than
//! the newest N and, on a success, writes the last success. Two runs that
//! end at once are not made to take turns: each trims what its snapshot
//! shows, so for a moment the job may keep a run or two more than N,
//! which the next run's trim removes.

pub mod settings;
pub mod tooz;

use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Runtime;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, NoTls};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::lock::{Acquire, Claim, Fencing, History, Keep, Lease, LockStore, Release, Renewal, Seen};
use crate::net::reconnect::Reconnects;
use crate::net::tls::{self, TlsSetup};
use crate::report::Report;
use crate::store::hold::{self, HoldCheck, Retake, HOLD_CHECK_EVERY};
use settings::{PgSslMode, PostgresTarget};

/// The table, in the role's `search_path` (usually `public`).
const TABLE: &str = "cronlock_locks";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks (
    name bytea PRIMARY KEY,
    expires_at bigint NOT NULL,
    token text NOT NULL,
    running boolean NOT NULL DEFAULT false,
    backend integer,
    server text,
    owner text
)";

/// The fencing counters' table (`CRONLOCK_FENCING`), beside [`TABLE`].
const FENCE_TABLE: &str = "cronlock_locks_fence";

/// Made on the first fenced run only: one row per job key.
const CREATE_FENCE: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks_fence (
    name bytea PRIMARY KEY,
    token bigint NOT NULL
)";

/// $1 our lock's key, $2 our token, $3 the job key. Bumps the job's counter
/// if our lock row still holds our token, locking that row until the
/// commit (under READ COMMITTED, `FOR UPDATE` reads the newest row again
/// after waiting for a writer). Returns the new token, NULL when the lock
/// is not ours. A server that runs with `synchronous_commit = off` could
/// lose the bump in a crash after the job got its token, and give it
/// again: this commit is flushed all the same (`local`, as that setting
/// chose not to wait for standbys).
const FENCE: &str = "WITH ours AS (
    SELECT 1 FROM cronlock_locks WHERE name = $1 AND token = $2 FOR UPDATE
),
bumped AS (
    INSERT INTO cronlock_locks_fence AS f (name, token)
    SELECT $3, 1 FROM ours
    ON CONFLICT (name) DO UPDATE SET token = f.token + 1
    RETURNING token
)
SELECT (SELECT token FROM bumped),
       CASE WHEN current_setting('synchronous_commit') = 'off'
            THEN set_config('synchronous_commit', 'local', true) END";

/// $1 the job key: its newest fencing token, no row if none was given.
const NEWEST_FENCE: &str = "SELECT token FROM cronlock_locks_fence WHERE name = $1";

/// `CRONLOCK_HISTORY`'s runs: one row per recorded run, the newest N of
/// each job key kept.
const RUNS_TABLE: &str = "cronlock_locks_runs";

/// Made on the first recorded run only. An identity column, unlike
/// `bigserial`, needs no grant on its sequence; the key's index serves the
/// trim and the read, newest first.
const CREATE_RUNS: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks_runs (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    name bytea NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (name, id)
)";

/// `CRONLOCK_HISTORY`'s last successes: one row per job key.
const SUCCEEDED_TABLE: &str = "cronlock_locks_succeeded";

/// Made beside [`RUNS_TABLE`].
const CREATE_SUCCEEDED: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks_succeeded (
    name bytea PRIMARY KEY,
    record text NOT NULL
)";

/// $1 the job key, $2 the run's record, $3 whether it succeeded, $4 how many
/// runs to keep. The insert skips a record already there, so a statement
/// sent again after a lost answer adds its run once. The trim's snapshot
/// does not show the run just added: it keeps one old run fewer for it.
const RECORD: &str = "WITH added AS (
    INSERT INTO cronlock_locks_runs (name, record)
    SELECT $1, $2
    WHERE NOT EXISTS (SELECT 1 FROM cronlock_locks_runs WHERE name = $1 AND record = $2)
    RETURNING id
),
trimmed AS (
    DELETE FROM cronlock_locks_runs
    WHERE name = $1 AND id <= (
        SELECT id FROM cronlock_locks_runs WHERE name = $1
        ORDER BY id DESC OFFSET $4 - (SELECT count(*) FROM added) LIMIT 1
    )
),
succeeded AS (
    INSERT INTO cronlock_locks_succeeded AS s (name, record)
    SELECT $1, $2 WHERE $3
    ON CONFLICT (name) DO UPDATE SET record = excluded.record
)
SELECT count(*) FROM added";

/// Which of the history's tables are missing, so that only those are made:
/// `CREATE TABLE IF NOT EXISTS` needs the right to create even for a table
/// that exists, which a role whose admin made one of them may lack.
const HISTORY_MISSING: &str =
    "SELECT to_regclass('cronlock_locks_runs') IS NULL, to_regclass('cronlock_locks_succeeded') IS NULL";

/// $1 the job key: its last success and its runs, newest first, in one
/// snapshot.
const HISTORY: &str = "SELECT (SELECT record FROM cronlock_locks_succeeded WHERE name = $1),
       ARRAY(SELECT record FROM cronlock_locks_runs WHERE name = $1 ORDER BY id DESC)";

/// The server's life: its start time and the time its shared statistics
/// were last reset, which crash recovery also resets, so a restart of
/// either kind (both drop every advisory lock) changes it.
macro_rules! server_life {
    () => {
        "format('%s/%s', extract(epoch FROM pg_postmaster_start_time()), \
         extract(epoch FROM pg_stat_get_bgwriter_stat_reset_time()))"
    };
}

/// $1 key, $2 advisory hash, $3 RELEASE, $4 our token, $5 owner.
/// Returns now, whether the advisory lock was free, whether we took the
/// lock, the expiry before (from the statement's snapshot), and, when the
/// row belongs to a run whose connection is gone (running, the advisory
/// lock free, another backend, the same server life), that run's token.
/// A retry after a lost answer finds its own token and takes the lock again.
/// An advisory lock taken for nothing (the lock held) is let go at once: a
/// holder taking its own back after losing its connection must not find
/// it held by a run that merely looked.
const ACQUIRE: &str = concat!(
    "WITH s AS (
    SELECT extract(epoch FROM now())::bigint AS now,
           pg_try_advisory_lock($2) AS free,
           pg_backend_pid() AS backend,
           ",
    server_life!(),
    " AS server
),
prev AS (SELECT expires_at, token, running, backend, server FROM cronlock_locks WHERE name = $1),
taken AS (
    INSERT INTO cronlock_locks AS l (name, expires_at, token, running, backend, server, owner)
    SELECT $1, now + $3 + 1, $4, free, backend, server, $5 FROM s
    ON CONFLICT (name) DO UPDATE
    SET expires_at = excluded.expires_at, token = excluded.token, running = excluded.running,
        backend = excluded.backend, server = excluded.server, owner = excluded.owner
    WHERE l.expires_at < excluded.expires_at - $3 - 1
       OR l.token = excluded.token
    RETURNING 1
)
SELECT r.now, r.free, r.taken, r.before, r.crashed, r.backend,
       CASE WHEN r.free AND NOT r.taken AND r.crashed IS NULL THEN pg_advisory_unlock($2) END
FROM (SELECT s.now, s.free, EXISTS (SELECT 1 FROM taken) AS taken,
             (SELECT expires_at FROM prev) AS before,
             (SELECT p.token FROM prev p
              WHERE s.free AND p.running AND p.backend <> s.backend AND p.server = s.server) AS crashed,
             s.backend
      FROM s OFFSET 0) r"
);

/// $1 key, $2 the crashed run's token, $3 RELEASE, $4 our token, $5 owner,
/// $6 the backend that ran [`ACQUIRE`]: takes the row over if it is still
/// that run's and the server's life the same, on that backend only (the one
/// that holds the advisory lock). Returns now when it did.
const TAKEOVER: &str = concat!(
    "UPDATE cronlock_locks AS l
SET expires_at = s.now + $3 + 1, token = $4, running = true, backend = s.backend, server = s.server, owner = $5
FROM (SELECT extract(epoch FROM now())::bigint AS now, pg_backend_pid() AS backend, ",
    server_life!(),
    " AS server) s
WHERE l.name = $1 AND l.token = $2 AND l.running AND l.server = s.server AND s.backend = $6
RETURNING s.now"
);

/// $1 advisory hash.
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

/// $1 key, $2 advisory hash, $3 our token, $4 and $5 the hash's high and
/// low 32 bits (as `pg_locks` shows them): after the connection that held
/// the advisory lock was closed by the server (or a proxy, or a restart),
/// takes the advisory lock again on a new one and moves our row onto it.
/// Returns whether the advisory lock was free, whether the row is ours,
/// this backend, and the backend that holds the advisory lock if not us.
const RETAKE: &str = concat!(
    "WITH s AS (SELECT pg_try_advisory_lock($2) AS got, pg_backend_pid() AS backend, ",
    server_life!(),
    " AS server),
moved AS (
    UPDATE cronlock_locks AS l SET running = true, backend = s.backend, server = s.server
    FROM s WHERE l.name = $1 AND l.token = $3 AND s.got
    RETURNING 1
)
SELECT s.got, EXISTS (SELECT 1 FROM moved), s.backend,
       (SELECT min(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND classid::bigint = $4 AND objid::bigint = $5 AND pid <> s.backend)
FROM s"
);

/// The expiry of a lock we found held but could not see in our snapshot.
const EXPIRY: &str =
    "SELECT extract(epoch FROM now())::bigint, (SELECT expires_at FROM cronlock_locks WHERE name = $1)";

/// $1 key, $2 token, $3 start, $4 GRACE, $5 HOLD, $6 advisory hash, $7 whether
/// we hold the advisory lock. Keeps the row until `Keep::until` (written back
/// if it was deleted, as the Redis store does), deletes it if that has
/// passed, and leaves another holder's row alone. The advisory lock is let
/// go in the outer query, after the row is changed: a contender that finds
/// it free then waits for this statement's row lock and sees the new row.
const RELEASE: &str = "WITH k AS (
    SELECT now, CASE WHEN $5 > 0 THEN greatest($3 + $4 + 1, now + $5 + 1) ELSE $3 + $4 + 1 END AS until
    FROM (SELECT extract(epoch FROM now())::bigint AS now) s
),
kept AS (
    INSERT INTO cronlock_locks AS l (name, expires_at, token, running)
    SELECT $1, until, $2, false FROM k WHERE until > now
    ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at, running = false, backend = NULL,
        owner = CASE WHEN right(l.owner, 1) = '}' AND strpos(l.owner, '\"ended\":') = 0
                     THEN left(l.owner, -1) || ',\"ended\":' || (SELECT now FROM k) || '}' ELSE l.owner END
    WHERE l.token = excluded.token
    RETURNING expires_at
),
dropped AS (
    DELETE FROM cronlock_locks WHERE name = $1 AND token = $2 AND (SELECT until <= now FROM k)
    RETURNING 1
),
other AS (SELECT 1 FROM cronlock_locks WHERE name = $1 AND token <> $2)
SELECT r.now, r.until, r.kept, r.dropped, r.other, CASE WHEN $7 THEN pg_advisory_unlock($6) END
FROM (SELECT (SELECT now FROM k) AS now, (SELECT until FROM k) AS until,
             (SELECT expires_at FROM kept) AS kept, EXISTS (SELECT 1 FROM dropped) AS dropped,
             EXISTS (SELECT 1 FROM other) AS other
      OFFSET 0) r";

/// $1 key, $2 token, $3 lease seconds, $4 whether this connection is the one
/// that took the lock (a new one does not hold the advisory lock, so the row
/// stops claiming it).
const RENEW: &str = "UPDATE cronlock_locks
SET expires_at = extract(epoch FROM now())::bigint + $3 + 1, running = running AND $4
WHERE name = $1 AND token = $2 RETURNING expires_at";

const RESET: &str = "DELETE FROM cronlock_locks WHERE name = $1 RETURNING 1";

/// cronlockctl: the locks whose names start with $1 (every lock for an
/// empty one), with the server's clock.
const SHOW: &str = "SELECT name, expires_at, running, owner, extract(epoch FROM now())::bigint
FROM cronlock_locks WHERE substring(name FROM 1 FOR length($1)) = $1 ORDER BY name";

/// The advisory lock's key for `key`: the first 8 bytes of its md5, big-endian.
pub fn advisory_hash(key: &[u8]) -> i64 {
    let digest = md5::compute(key).0;
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// How a try went wrong.
pub(super) enum Failure {
    /// The connection could not be made or broke; trying again may help.
    Retry(String),
    /// The server has too many clients (53300): alive, and free again in a
    /// moment; see `Reconnects::busy`.
    Busy(String),
    /// Trying again will not help (refused login, bad database, TLS, SQL error).
    Fatal(anyhow::Error),
    /// The table is missing.
    NoTable,
}

/// Locks in a PostgreSQL table.
pub struct PostgresLock<'a> {
    target: &'a PostgresTarget,
    report: &'a Report,
    tls: Option<RustlsWithName>,
    runtime: Runtime,
    /// The connection, opened by the first request.
    pub(super) client: Option<Client>,
    /// The current connection is the one that took the lock.
    first_connection: bool,
    /// The current connection holds the advisory lock.
    advisory: bool,
    /// Our row says `running`, which claims the advisory lock for us: the
    /// hold to check while the command runs.
    claims_advisory: bool,
    /// The backend that took the advisory lock for us.
    backend: i32,
    hold: HoldCheck,
    token: String,
}

impl<'a> PostgresLock<'a> {
    /// A store on `target`; nothing is sent until the first call. TLS files are read here.
    pub fn new(target: &'a PostgresTarget, report: &'a Report) -> Result<PostgresLock<'a>> {
        let tls = match target.sslmode {
            PgSslMode::Disable => None,
            mode => {
                let setup = match mode {
                    PgSslMode::VerifyCa => TlsSetup::without_name_check(&target.tls)?,
                    _ => TlsSetup::new(&target.tls)?,
                };
                if target.tls.skip_verify {
                    report.info(format_args!(
                        "sslmode {mode:?}: the server's TLS certificate is not verified (use sslmode=verify-full)"
                    ));
                }
                Some(RustlsWithName {
                    inner: MakeRustlsConnect::new((*setup.config()).clone()),
                    name: target.tls.server_name.clone(),
                })
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|err| anyhow!("starting the PostgreSQL client: {err}"))?;
        Ok(PostgresLock {
            target,
            report,
            tls,
            runtime,
            client: None,
            first_connection: true,
            advisory: false,
            claims_advisory: false,
            backend: 0,
            hold: HoldCheck::new(
                "the advisory lock",
                "the server closed the connection that held the advisory lock, and another session has taken it (a run taking the job over)",
            ),
            token: token(),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("PostgreSQL at '{}' port '{}'", self.target.host, self.target.port)
    }

    fn connect(&mut self, limit: Option<Duration>) -> Result<Client, Failure> {
        let target = self.target;
        self.report.info(format_args!(
            "connecting to postgresql at '{}' port '{}' as '{}', database '{}'",
            target.host, target.port, target.user, target.dbname
        ));
        // Resolved here, on this thread: given addresses, tokio-postgres
        // starts no resolver thread (cronlock forks later, and stays
        // single-threaded for that).
        let addresses: Vec<IpAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|err| Failure::Retry(format!("cannot resolve '{}': {err}", target.host)))?
            .map(|address| address.ip())
            .collect();
        let mut config = tokio_postgres::Config::new();
        for address in &addresses {
            config.host(&target.host).hostaddr(*address);
        }
        config
            .port(target.port)
            .user(&target.user)
            .dbname(&target.dbname)
            .application_name("cronlock")
            .ssl_mode(match target.sslmode {
                PgSslMode::Disable => tokio_postgres::config::SslMode::Disable,
                PgSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        if let Some(password) = &target.password {
            config.password(password);
        }
        if let Some(limit) = limit {
            config.connect_timeout(limit);
        }
        let result = match self.tls.clone() {
            Some(tls) => self.runtime.block_on(within(limit, connect_client(config, tls))),
            None => self.runtime.block_on(within(limit, connect_client(config, NoTls))),
        };
        result.map_err(|err| match err {
            Timed::Out => Failure::Retry(format!("no answer within {}s", limit.unwrap_or_default().as_secs())),
            Timed::Err(err) => classify(&err),
        })
    }

    /// Runs `sql` once on the current connection, connecting first if needed.
    pub(super) fn try_query(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        limit: Option<Duration>,
    ) -> Result<Vec<Row>, Failure> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            if self.client.take().is_some() {
                self.first_connection = false;
                self.advisory = false;
            }
            self.client = Some(self.connect(limit)?);
        }
        let Some(client) = self.client.as_ref() else {
            return Err(Failure::Retry("no connection".to_string()));
        };
        let result = self.runtime.block_on(within(limit, client.query_typed(sql, params)));
        match result {
            Ok(rows) => Ok(rows),
            Err(failure) => {
                let failure = match failure {
                    Timed::Out => Failure::Retry(format!("no answer within {}s", limit.unwrap_or_default().as_secs())),
                    Timed::Err(err) => classify(&err),
                };
                if matches!(failure, Failure::Retry(_) | Failure::Busy(_)) {
                    // Its state is unknown: never reused.
                    self.client = None;
                    self.first_connection = false;
                    self.advisory = false;
                }
                Err(failure)
            }
        }
    }

    /// Runs `sql`, reconnecting with the original's linear backoff. Every
    /// statement here may run twice: each checks our token.
    pub(super) fn query(&mut self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Vec<Row>, Failure> {
        let mut reconnects = Reconnects::of(self.report, &self.target.connection);
        loop {
            let err = match self.try_query(sql, params, self.target.connection.timeout) {
                Err(Failure::Retry(err)) => err,
                Err(Failure::Busy(err)) => {
                    reconnects
                        .busy(&self.describe(), &err, self.target.connection.timeout)
                        .map_err(Failure::Fatal)?;
                    continue;
                }
                other => return other,
            };
            reconnects.after(&self.describe(), &err).map_err(Failure::Fatal)?;
        }
    }

    /// `failure` as the run's error, naming the server.
    pub(super) fn fatal(&self, failure: Failure) -> anyhow::Error {
        match failure {
            Failure::Fatal(err) if err.downcast_ref::<DbFailure>().is_some() => err.context(self.describe()),
            Failure::Fatal(err) => err,
            Failure::Retry(err) | Failure::Busy(err) => anyhow!("{}: {err}", self.describe()),
            Failure::NoTable => anyhow!("{}: table {TABLE} does not exist", self.describe()),
        }
    }

    /// Creates the table on first use. Without the privilege to, says which
    /// table is missing and where the README gives the GRANTs.
    fn create_table(&mut self) -> Result<()> {
        self.create(TABLE, CREATE)
    }

    /// Runs `ddl`, which creates `table`; one line naming the table when
    /// the role may not.
    fn create(&mut self, table: &str, ddl: &str) -> Result<()> {
        self.report.info(format_args!("creating table {table}"));
        match self.query(ddl, &[]) {
            Ok(_) => Ok(()),
            Err(Failure::Fatal(err)) => {
                let denied = err
                    .downcast_ref::<DbFailure>()
                    .is_some_and(|db| db.code == SqlState::INSUFFICIENT_PRIVILEGE);
                if denied {
                    bail!(
                        "{}: table {table} does not exist and user '{}' may not create it ({err}); create it once as shown in the README (PostgreSQL store: table and GRANTs)",
                        self.describe(),
                        self.target.user
                    );
                }
                // Another run creating it at the same moment is no error:
                // CREATE TABLE IF NOT EXISTS can still fail on the table's
                // row type, as a unique violation or "type ... already exists".
                if err.downcast_ref::<DbFailure>().is_some_and(|db| {
                    [
                        SqlState::UNIQUE_VIOLATION,
                        SqlState::DUPLICATE_TABLE,
                        SqlState::DUPLICATE_OBJECT,
                    ]
                    .contains(&db.code)
                }) {
                    return Ok(());
                }
                Err(err)
            }
            Err(other) => Err(self.fatal(other)),
        }
    }

    /// `failure` of a history statement as the run's error; a role without
    /// rights on the history's tables is told which it needs.
    fn history_failure(&self, failure: Failure) -> anyhow::Error {
        match failure {
            Failure::Fatal(err) if db_code(&err) == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => anyhow!(
                "{}: {err} (CRONLOCK_HISTORY needs SELECT, INSERT and DELETE on {RUNS_TABLE} and SELECT, INSERT and UPDATE on {SUCCEEDED_TABLE}; grant them as shown in the README (PostgreSQL store: table and GRANTs))",
                self.describe()
            ),
            other => self.fatal(other),
        }
    }

    /// The row is run `crashed`'s, whose connection is gone, and the
    /// advisory lock ours: keeps it for [`hold::TAKEOVER_AFTER`], then takes the
    /// row over if nothing changed. The server's time when it did; None when
    /// the row changed or the connection did not last (on another one the
    /// advisory lock would not be ours).
    fn take_over(&mut self, claim: &Claim, crashed: &str, backend: i32) -> Result<Option<(i64, Instant)>> {
        hold::pause_before_takeover(self.report);
        // try_query would open a new connection for a closed one: not here.
        if self.client.as_ref().is_none_or(Client::is_closed) {
            return Ok(None);
        }
        let token = self.token.clone();
        let crashed = crashed.to_string();
        let key = claim.key;
        let params: [(&(dyn ToSql + Sync), Type); 6] = [
            (&key, Type::BYTEA),
            (&crashed, Type::TEXT),
            (&claim.release, Type::INT8),
            (&token, Type::TEXT),
            (&claim.owner, Type::TEXT),
            (&backend, Type::INT4),
        ];
        let asked_at = Instant::now();
        match self.try_query(TAKEOVER, &params, self.target.connection.timeout) {
            Ok(rows) => match rows.first() {
                Some(row) => Ok(Some((get(row, 0)?, asked_at))),
                None => {
                    // The row changed: the advisory lock is not ours to keep.
                    let hash = advisory_hash(key);
                    let _ = self.try_query(UNLOCK, &[(&hash, Type::INT8)], self.target.connection.timeout);
                    Ok(None)
                }
            },
            // A broken connection: held. (Had the takeover committed before
            // the break, the row is ours by token with no advisory lock
            // behind it: the next run sees a crashed run, which it is.)
            Err(Failure::Retry(_) | Failure::Busy(_)) => Ok(None),
            Err(failure) => Err(self.fatal(failure)),
        }
    }

    /// A counter's value as a token: never below 1, as it starts at 1.
    fn fencing_token(&self, value: i64) -> Result<u64> {
        u64::try_from(value)
            .map_err(|_| anyhow!("{}: {FENCE_TABLE} holds {value}, not a fencing token", self.describe()))
    }

    fn held_expiry(&mut self, key: &[u8]) -> Result<i64> {
        let rows = self
            .query(EXPIRY, &[(&key, Type::BYTEA)])
            .map_err(|failure| self.fatal(failure))?;
        let row = first(&rows)?;
        let now: i64 = get(row, 0)?;
        let expires_at: Option<i64> = get(row, 1)?;
        Ok(expires_at.map_or(0, |at| (at - now).max(0)))
    }
}

impl LockStore for PostgresLock<'_> {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let hash = advisory_hash(claim.key);
        let token = self.token.clone();
        let key = claim.key;
        let params: [(&(dyn ToSql + Sync), Type); 5] = [
            (&key, Type::BYTEA),
            (&hash, Type::INT8),
            (&claim.release, Type::INT8),
            (&token, Type::TEXT),
            (&claim.owner, Type::TEXT),
        ];
        let rows = match self.query(ACQUIRE, &params) {
            Err(Failure::NoTable) => {
                self.create_table()?;
                self.query(ACQUIRE, &params)
            }
            other => other,
        }
        .map_err(|failure| self.fatal(failure))?;
        let row = first(&rows)?;
        let mut now: i64 = get(row, 0)?;
        let free: bool = get(row, 1)?;
        let mut taken: bool = get(row, 2)?;
        let before: Option<i64> = get(row, 3)?;
        let crashed: Option<String> = get(row, 4)?;
        let backend: i32 = get(row, 5)?;
        let mut written_after = None;
        if let (false, Some(crashed)) = (taken, crashed) {
            match self.take_over(claim, &crashed, backend)? {
                Some((at, asked_at)) => {
                    now = at;
                    taken = true;
                    written_after = Some(asked_at);
                }
                None => {
                    return Ok(Acquire::Held {
                        expires_in: self.held_expiry(key)?,
                    })
                }
            }
        }
        if !taken {
            let expires_in = match before {
                Some(at) if at >= now => at - now,
                // The row changed after our snapshot: look again.
                _ => self.held_expiry(key)?,
            };
            return Ok(Acquire::Held { expires_in });
        }
        self.advisory = free;
        self.claims_advisory = free;
        self.backend = backend;
        if !free {
            self.report.info(format_args!(
                "advisory lock {hash} is held by another session: this run's lock is freed by its expiry only"
            ));
        }
        let mut lease = Lease::new(key, now, now + claim.release + 1);
        lease.token = Some(token);
        lease.asked_at = written_after;
        Ok(match before {
            None => Acquire::Taken(lease),
            Some(at) => Acquire::TakenOver {
                lease,
                expired_ago: (now - at).max(0),
            },
        })
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let hash = advisory_hash(&lease.key);
        let token = lease.token.clone().unwrap_or_default();
        let unlock = self.advisory;
        let key = lease.key.as_slice();
        let params: [(&(dyn ToSql + Sync), Type); 7] = [
            (&key, Type::BYTEA),
            (&token, Type::TEXT),
            (&lease.start, Type::INT8),
            (&keep.grace, Type::INT8),
            (&keep.hold, Type::INT8),
            (&hash, Type::INT8),
            (&unlock, Type::BOOL),
        ];
        let rows = self.query(RELEASE, &params).map_err(|failure| self.fatal(failure))?;
        self.advisory = false;
        let row = first(&rows)?;
        let now: i64 = get(row, 0)?;
        let until: i64 = get(row, 1)?;
        let kept: Option<i64> = get(row, 2)?;
        let dropped: bool = get(row, 3)?;
        let other: bool = get(row, 4)?;
        Ok(match kept {
            Some(until) => Release::Kept { until },
            None if dropped || (until <= now && !other) => Release::Dropped,
            None => Release::NotOurs,
        })
    }

    fn fencing(&self) -> Fencing {
        Fencing::Durable
    }

    /// [`FENCE`]; see the module's comment. A statement whose answer was
    /// lost is sent again: it may bump twice, which only skips a token.
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let token = lease.token.clone().unwrap_or_default();
        let key = lease.key.as_slice();
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&key, Type::BYTEA), (&token, Type::TEXT), (&name, Type::BYTEA)];
        let rows = match self.query(FENCE, &params) {
            // Made here and only here, so that runs without fencing never
            // touch it. Missing again: the lock table is what is missing.
            Err(Failure::NoTable) => {
                self.create(FENCE_TABLE, CREATE_FENCE)?;
                self.query(FENCE, &params)
            }
            other => other,
        }
        .map_err(|failure| self.fatal(failure))?;
        let bumped: Option<i64> = get(first(&rows)?, 0)?;
        bumped.map(|token| self.fencing_token(token)).transpose()
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let rows = match self.query(NEWEST_FENCE, &[(&name, Type::BYTEA)]) {
            Ok(rows) => rows,
            // No fenced run yet.
            Err(Failure::NoTable) => return Ok(None),
            Err(failure) => return Err(self.fatal(failure)),
        };
        rows.first().map(|row| self.fencing_token(get(row, 0)?)).transpose()
    }

    fn keeps_history(&self) -> bool {
        true
    }

    /// [`RECORD`]; see the module's comment.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let keep = i64::from(keep.max(1));
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&name, Type::BYTEA),
            (&record, Type::TEXT),
            (&succeeded, Type::BOOL),
            (&keep, Type::INT8),
        ];
        let mut created = false;
        let mut conflicts = Reconnects::of(self.report, &self.target.connection);
        loop {
            match self.query(RECORD, &params) {
                Ok(_) => return Ok(()),
                // Made here and only here, so that runs without a history
                // never touch them.
                Err(Failure::NoTable) if !created => {
                    let rows = self
                        .query(HISTORY_MISSING, &[])
                        .map_err(|failure| self.fatal(failure))?;
                    let row = first(&rows)?;
                    let (runs, succeeded): (bool, bool) = (get(row, 0)?, get(row, 1)?);
                    for (missing, table, ddl) in [
                        (runs, RUNS_TABLE, CREATE_RUNS),
                        (succeeded, SUCCEEDED_TABLE, CREATE_SUCCEEDED),
                    ] {
                        if missing {
                            self.create(table, ddl).with_context(|| {
                                format!("CRONLOCK_HISTORY needs the tables {RUNS_TABLE} and {SUCCEEDED_TABLE}")
                            })?;
                        }
                    }
                    created = true;
                }
                Err(Failure::NoTable) => bail!(
                    "{}: table {RUNS_TABLE} or {SUCCEEDED_TABLE} vanished while in use",
                    self.describe()
                ),
                // A server whose default isolation is SERIALIZABLE may turn
                // a run away that ended beside another: it is tried again.
                Err(Failure::Fatal(err)) if db_code(&err).is_some_and(retried) => {
                    conflicts.busy(&self.describe(), &format!("{err:#}"), self.target.connection.timeout)?;
                }
                Err(failure) => return Err(self.history_failure(failure)),
            }
        }
    }

    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let rows = match self.query(HISTORY, &[(&name, Type::BYTEA)]) {
            Ok(rows) => rows,
            // No run recorded yet, anywhere.
            Err(Failure::NoTable) => return Ok(History::default()),
            Err(failure) => return Err(self.history_failure(failure)),
        };
        let row = first(&rows)?;
        Ok(History {
            last_success: get(row, 0)?,
            runs: get(row, 1)?,
        })
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        Ok(self.show(key)?.into_iter().find(|seen| seen.key == key))
    }

    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        self.show(prefix)
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        match self.query(RESET, &[(&key, Type::BYTEA)]) {
            Ok(rows) => Ok(!rows.is_empty()),
            Err(Failure::NoTable) => Ok(false),
            Err(failure) => Err(self.fatal(failure)),
        }
    }

    fn hold_check_every(&self) -> Option<Duration> {
        self.claims_advisory.then_some(HOLD_CHECK_EVERY)
    }

    fn check_hold(&mut self, lease: &Lease) -> Result<(), String> {
        // Checked until the advisory lock is ours again on an open connection.
        if !self.claims_advisory || (self.advisory && !self.connection_closed()) {
            return Ok(());
        }
        // The server ended our connection while the command runs, and our
        // row still says `running`: a contender that finds the advisory
        // lock free takes the row over after TAKEOVER_AFTER. Take the lock
        // back first, or stop the command before that contender gets there.
        let hash = advisory_hash(&lease.key);
        let token = lease.token.clone().unwrap_or_default();
        let key = lease.key.as_slice();
        let (high, low) = ((hash as u64 >> 32) as i64, (hash as u64 & 0xffff_ffff) as i64);
        let params: [(&(dyn ToSql + Sync), Type); 5] = [
            (&key, Type::BYTEA),
            (&hash, Type::INT8),
            (&token, Type::TEXT),
            (&high, Type::INT8),
            (&low, Type::INT8),
        ];
        let limit = hold::retake_limit(&self.target.connection);
        let found = match self.try_query(RETAKE, &params, Some(limit)) {
            // Nobody can take it over through a server we cannot reach; a
            // restarted one has a new life, which the takeover rule checks.
            Err(Failure::Retry(why) | Failure::Busy(why)) => Retake::Unreachable(why),
            Err(Failure::NoTable) => Retake::TableGone,
            Err(Failure::Fatal(err)) => Retake::Failed(format!("{err:#}")),
            Ok(rows) => {
                let answer = rows.first().map(|row| {
                    Ok::<_, anyhow::Error>((
                        get::<bool>(row, 0)?,
                        get::<bool>(row, 1)?,
                        get::<i32>(row, 2)?,
                        get::<Option<i32>>(row, 3)?,
                    ))
                });
                let Some(Ok((got, ours, backend, holder))) = answer else {
                    return Err("unexpected answer while taking the advisory lock back".to_string());
                };
                self.advisory = got;
                match (got, ours) {
                    // Our old backend has told us it is ending but not yet let go.
                    (false, _) if holder == Some(self.backend) => Retake::Ending,
                    (false, _) => Retake::Other,
                    (true, false) => Retake::NotOurs,
                    (true, true) => {
                        // The row's `running` and the advisory lock are on this connection now.
                        self.first_connection = true;
                        self.backend = backend;
                        self.report
                            .info(format_args!("reconnected and took the advisory lock {hash} back"));
                        Retake::Back
                    }
                }
            }
        };
        self.hold.judge(found, self.report)
    }

    fn renew(&mut self, lease: &Lease, seconds: i64, _after_unknown: bool, limit: Duration) -> Renewal {
        let token = lease.token.clone().unwrap_or_default();
        let key = lease.key.as_slice();
        let limit = self.target.connection.timeout_within(limit);
        // A reconnection inside try_query clears first_connection before the statement is sent.
        let connected = self.client.as_ref().is_some_and(|client| !client.is_closed());
        let same = connected && self.first_connection;
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&key, Type::BYTEA),
            (&token, Type::TEXT),
            (&seconds, Type::INT8),
            (&same, Type::BOOL),
        ];
        match self.try_query(RENEW, &params, Some(limit)) {
            Ok(rows) => match rows.first().map(|row| get::<i64>(row, 0)) {
                Some(Ok(expires_at)) => Renewal::Renewed { expires_at },
                Some(Err(err)) => Renewal::Unconfirmed {
                    message: format!("{err:#}"),
                    maybe_sent: true,
                },
                None => Renewal::Lost,
            },
            Err(Failure::NoTable) => Renewal::Lost,
            Err(Failure::Retry(message) | Failure::Busy(message)) => Renewal::Unconfirmed {
                message: format!("{}: {message}", self.describe()),
                maybe_sent: true,
            },
            Err(Failure::Fatal(err)) => Renewal::Unconfirmed {
                message: format!("{err:#}"),
                maybe_sent: true,
            },
        }
    }
}

impl PostgresLock<'_> {
    /// Lets the runtime read what the server sent, so that a connection the
    /// server closed shows as closed.
    pub(super) fn connection_closed(&mut self) -> bool {
        let Some(client) = self.client.as_ref() else {
            return true;
        };
        if !client.is_closed() {
            // Made inside the runtime: a timer needs its context.
            self.runtime
                .block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        }
        client.is_closed()
    }

    /// The rows under `prefix` as cronlockctl sees them. A row that says
    /// it is not running has ended (its grace or hold keeps it); one that
    /// says it runs may belong to a run that died, which only its advisory
    /// lock tells, so that is left unknown.
    fn show(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let rows = match self.query(SHOW, &[(&prefix, Type::BYTEA)]) {
            Ok(rows) => rows,
            Err(Failure::NoTable) => return Ok(Vec::new()),
            Err(failure) => return Err(self.fatal(failure)),
        };
        rows.iter()
            .map(|row| {
                let running: bool = get(row, 2)?;
                Ok(Seen {
                    key: get(row, 0)?,
                    expires_at: Some(get(row, 1)?),
                    owner: get(row, 3)?,
                    now: get(row, 4)?,
                    running: (!running).then_some(false),
                })
            })
            .collect()
    }
}

/// Our proof of ownership: host, pid and the time, unique enough that no
/// two runs share one.
fn token() -> String {
    let host = crate::lock::owner::host_name_or("");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{host}:{}:{nanos}", std::process::id())
}

/// The first row of a lock statement's answer.
pub(super) fn first(rows: &[Row]) -> Result<&Row> {
    rows.first()
        .ok_or_else(|| anyhow!("PostgreSQL returned no row to a lock statement"))
}

/// Column `index` of `row`.
pub(super) fn get<'r, T: tokio_postgres::types::FromSql<'r>>(row: &'r Row, index: usize) -> Result<T> {
    row.try_get(index)
        .map_err(|err| anyhow!("unexpected answer to a lock statement: {err}"))
}

/// The server's error code behind `err`, if the server refused.
fn db_code(err: &anyhow::Error) -> Option<&SqlState> {
    err.downcast_ref::<DbFailure>().map(|db| &db.code)
}

/// A transaction that lost to a concurrent one and may be tried again.
fn retried(code: &SqlState) -> bool {
    [SqlState::T_R_SERIALIZATION_FAILURE, SqlState::T_R_DEADLOCK_DETECTED].contains(code)
}

/// A server's error, kept with its code so callers can tell them apart.
#[derive(Debug)]
struct DbFailure {
    code: SqlState,
    message: String,
}

impl std::fmt::Display for DbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbFailure {}

/// Sorts a client error into retry or stop, in one line without the password
/// (tokio-postgres never puts it in an error, and neither does the server).
fn classify(err: &tokio_postgres::Error) -> Failure {
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::UNDEFINED_TABLE {
            return Failure::NoTable;
        }
        let message = match db.code() {
            code if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::ADMIN_SHUTDOWN => {
                return Failure::Retry(db.message().to_string())
            }
            // "sorry, too many clients already", or only reserved slots left.
            code if *code == SqlState::TOO_MANY_CONNECTIONS => return Failure::Busy(db.message().to_string()),
            code if *code == SqlState::INVALID_CATALOG_NAME => {
                format!("{} (check the database name in CRONLOCK_URL)", db.message())
            }
            _ => db.message().to_string(),
        };
        return Failure::Fatal(anyhow::Error::new(DbFailure {
            code: db.code().clone(),
            message,
        }));
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    let mut io_error = false;
    while let Some(cause) = source {
        if let Some(rustls) = cause
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Failure::Fatal(anyhow!("TLS: {}", tls::explain(rustls)));
        }
        io_error |= cause.is::<io::Error>();
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    // tokio-postgres says this in words only (its error kinds are private):
    // the server turned down the TLS request, as a PostgreSQL server with
    // ssl = off does, and the sslmode may not go on without TLS. Without
    // this the message asked whether it was a PostgreSQL server at all.
    if text.ends_with("server does not support TLS") {
        return Failure::Fatal(anyhow::Error::new(DbFailure {
            code: SqlState::PROTOCOL_VIOLATION,
            message: "the server offers no TLS, but CRONLOCK_URL's sslmode asks for it (turn ssl on in the server, or use sslmode=prefer or disable)".to_string(),
        }));
    }
    if io_error || err.is_closed() {
        Failure::Retry(text)
    } else {
        // Not the server's error but the client's reading of its answer.
        Failure::Fatal(anyhow::Error::new(DbFailure {
            code: SqlState::PROTOCOL_VIOLATION,
            message: format!("{text}; is this a PostgreSQL server?"),
        }))
    }
}

/// A result that may also have run out of time.
enum Timed<E> {
    Out,
    Err(E),
}

async fn within<T, E>(
    limit: Option<Duration>,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Timed<E>> {
    match limit {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => result.map_err(Timed::Err),
            Err(_) => Err(Timed::Out),
        },
        None => work.await.map_err(Timed::Err),
    }
}

/// Connects and leaves the connection's task on the runtime, which drives
/// it whenever a request is waited for.
async fn connect_client<T>(config: tokio_postgres::Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        // Its errors reach us through the client's next request.
        let _ = connection.await;
    });
    Ok(client)
}

/// tokio-postgres-rustls, with `CRONLOCK_TLS_SERVER_NAME` in place of the
/// host when set.
#[derive(Clone)]
struct RustlsWithName {
    inner: MakeRustlsConnect,
    name: Option<String>,
}

impl<S> MakeTlsConnect<S> for RustlsWithName
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = self.name.clone().unwrap_or_else(|| host.to_string());
        MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, &name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advisory_hash_is_the_md5_prefix_as_postgres_reads_it() {
        // SELECT ('x' || left(md5('cronlock.job'::bytea), 16))::bit(64)::bigint
        let digest = format!("{:x}", md5::compute(b"cronlock.job"));
        let expected = u64::from_str_radix(&digest[..16], 16).unwrap() as i64;
        assert_eq!(advisory_hash(b"cronlock.job"), expected);
    }
}
