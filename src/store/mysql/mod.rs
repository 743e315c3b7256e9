//! The MySQL / MariaDB store (`CRONLOCK_URL=mysql://user:password@host/db`):
//! one row per lock in the table `cronlock_locks`, plus a `GET_LOCK` that the
//! running holder keeps on its open connection.
//!
//! The row carries the lock's meaning, as the Redis value does: `expires_at`
//! (unix seconds on the server's clock, `UNIX_TIMESTAMP()`) is start +
//! RELEASE + 1 while the command runs and the grace or hold afterwards; held
//! while it is now or later. `state` says `running` or `done` (in its grace),
//! `token` names the run that wrote it (the release and renewals touch only
//! their own row), and `holder` is the `CONNECTION_ID()` that took the
//! `GET_LOCK` for it (NULL when the run could not take it).
//!
//! The `GET_LOCK` tells a live holder from a dead one, as the directory
//! store's `flock` does: the server frees it the moment the holder's
//! connection closes. A `running` row with a holder whose `GET_LOCK` we could
//! take ourselves belongs to a run whose connection is gone: the contender
//! keeps the name [`hold::TAKEOVER_AFTER`] and then takes the row over if it is
//! still that run's. A holder that still runs finds its connection gone
//! within that time (`check_hold`), and takes the name back or stops its
//! command. A `done` row is held until it expires, whatever the `GET_LOCK`
//! says. A `GET_LOCK` held by anyone but the row's holder (a sera host, a
//! contender in the middle of its own acquire) counts as held. Every
//! decision happens under `SELECT ... FOR UPDATE`, so exactly one contender
//! wins.
//!
//! The `GET_LOCK` name is the key itself when it is valid UTF-8 of at most 64
//! bytes (MySQL refuses longer names), else `cronlock~` and the key's md5 hex;
//! with `CRONLOCK_KEY_STYLE=sera` that is exactly sera's name, so sera hosts
//! and cronlock hosts exclude each other while a command runs.
//!
//! `CRONLOCK_FENCING`: a job key's fencing token is the row of
//! `cronlock_locks_fence` named after it, made on the first fenced run and
//! never deleted. One transaction locks our lock row (`FOR UPDATE`), finds
//! our token still in it, and bumps the counter: a run that takes the lock
//! after ours rewrites that row, so it waits for our commit and bumps after
//! us. The `GET_LOCK` plays no part in that; the step runs on its
//! connection only to need no other.
//!
//! `CRONLOCK_HISTORY`: a job's runs are rows of `cronlock_locks_runs`
//! (newest = highest `id`), its last success the row of
//! `cronlock_locks_succeeded` named after it; both tables are made on the
//! first recorded run, and neither a reset nor `cronlockctl list` looks at
//! them. One transaction writes the job's `cronlock_locks_succeeded` row
//! first (the run's record on a success, else left as it is, NULL until a
//! run succeeds): that row lock makes two runs of a job that end at once
//! record one after the other, where the runs' index ranges would have
//! deadlocked them. Then it adds the run and deletes the job's runs older
//! than the newest N. A try after a lost answer first looks for its
//! record, so a transaction that did commit adds its run once.

pub mod settings;
pub mod tooz;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Row, SslOpts};
use rustls::CertificateError;

use crate::key::KeyStyle;
use crate::lock::{Acquire, Claim, Fencing, History, Keep, Lease, LockStore, Release, Renewal};
use crate::net::reconnect::Reconnects;
use crate::net::tls;
use crate::report::Report;
use crate::store::hold::{self, HoldCheck, Retake, HOLD_CHECK_EVERY};
use settings::{MysqlTarget, SslMode};

/// The lock table's name.
pub const TABLE: &str = "cronlock_locks";

/// The table as cronlock creates it on first use (the README shows it for
/// users that may not create tables).
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks (\
     name VARBINARY(255) NOT NULL PRIMARY KEY, \
     expires_at BIGINT NOT NULL, \
     state ENUM('running','done') NOT NULL, \
     token VARCHAR(64) CHARACTER SET ascii NOT NULL, \
     holder BIGINT UNSIGNED NULL, \
     owner TEXT NULL\
     ) ENGINE=InnoDB";

/// The fencing counters' table (`CRONLOCK_FENCING`): one row per job key.
pub const FENCE_TABLE: &str = "cronlock_locks_fence";

/// The counters' table as cronlock creates it on the first fenced run. InnoDB
/// keeps a committed bump across a restart, so tokens never go back.
pub const CREATE_FENCE_TABLE: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks_fence (\
     name VARBINARY(255) NOT NULL PRIMARY KEY, \
     token BIGINT UNSIGNED NOT NULL\
     ) ENGINE=InnoDB";

/// `CRONLOCK_HISTORY`'s runs: one row per recorded run, the newest N of each
/// job key kept.
pub const RUNS_TABLE: &str = "cronlock_locks_runs";

/// The runs' table as cronlock creates it on the first recorded run. The
/// primary key keeps a job's runs together, so the trim's range locks stay
/// within its job (keyed by `id` alone, with an index on (name, id), the
/// server chose the `id` range for a small table and locked every job's
/// rows below the cut: jobs ending at once deadlocked). InnoDB wants the
/// AUTO_INCREMENT column first in some index: the `id` key.
pub const CREATE_RUNS_TABLE: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks_runs (\
     id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, \
     name VARBINARY(255) NOT NULL, \
     record TEXT CHARACTER SET utf8mb4 NOT NULL, \
     PRIMARY KEY (name, id), \
     KEY cronlock_locks_runs_id (id)\
     ) ENGINE=InnoDB";

/// `CRONLOCK_HISTORY`'s last successes: one row per job key that recorded
/// a run, its record NULL until one succeeds.
pub const SUCCEEDED_TABLE: &str = "cronlock_locks_succeeded";

/// The last successes' table as cronlock creates it beside [`RUNS_TABLE`].
pub const CREATE_SUCCEEDED_TABLE: &str = "CREATE TABLE IF NOT EXISTS cronlock_locks_succeeded (\
     name VARBINARY(255) NOT NULL PRIMARY KEY, \
     record TEXT CHARACTER SET utf8mb4 NULL\
     ) ENGINE=InnoDB";

/// How long a new connection waits for the server's greeting (and the
/// login) before it is dropped and made anew, when CRONLOCK_REDIS_TIMEOUT
/// is longer. A herd's connections can overflow the server's listen queue
/// (`back_log`): the kernel then drops the handshake's last packet, and the
/// server's side resends its part only after 1, 2, 4, 8 and 16 s, so a
/// connection can wait half a minute for a greeting that a new connection
/// gets at once. Measured with 1,000 runs at once against a stock MariaDB:
/// the last run decided after 34 s without this limit.
const GREETING_LIMIT: Duration = Duration::from_secs(3);
/// Logins tried again, at once, after the server refused one (1045).
///
/// MariaDB's ed25519 login signs a 32-byte random nonce that the server
/// sends in an auth switch. mysql_common 0.37, the version that the `mysql`
/// crate's latest release (28) pins, drops the nonce's last byte when it is
/// 0, as it rightly does for the NUL after a native password's scramble:
/// one login in 256 then signs the wrong bytes and is refused (measured: 5
/// of 1,500 `cronlock true` runs as an ed25519 user). mysql_common 0.38
/// fixes it. A new connection brings a new nonce, so two more tries leave
/// one run in 16.7 million refused; a wrong password is refused three times.
const REFUSED_LOGIN_RETRIES: u32 = 2;
/// The longest `GET_LOCK` name MySQL accepts.
const MAX_LOCK_NAME: usize = 64;
/// The longest key stored as it is in `name`.
const MAX_ROW_NAME: usize = 255;
/// The largest `wait_timeout` MySQL accepts (a year): the connection that
/// holds the `GET_LOCK` sits idle for as long as the command runs.
pub(super) const IDLE_SECONDS: u64 = 31_536_000;

/// Locks in a MySQL or MariaDB table.
pub struct MysqlLock<'a> {
    target: &'a MysqlTarget,
    report: &'a Report,
    /// The connection that holds our `GET_LOCK` while the command runs.
    pub(super) conn: Option<Conn>,
    /// A separate connection for lease renewals, opened with their time limit.
    renewals: Option<Conn>,
    /// `ssl-mode=preferred` found a server without TLS: plain from then on.
    plain: bool,
    /// This run's proof of ownership, written into the row.
    token: String,
    /// The owner record we wrote, to say at the release when the command ended.
    owner: Option<String>,
    /// Our row names a connection of ours as its `holder`: the hold to
    /// check while the command runs.
    claims_get_lock: bool,
    /// The current connection holds our `GET_LOCK`.
    has_get_lock: bool,
    hold: HoldCheck,
    /// `CRONLOCK_KEY_STYLE=sera`: the lock is shared with sera hosts.
    sera: bool,
}

/// Why one try failed.
pub(super) enum Failure {
    /// The server could not be reached or the connection broke: try again.
    Retry(String),
    /// The server has too many connections (1040): alive, and free again in
    /// a moment; see `Reconnects::busy`.
    Busy(String),
    /// The transaction lost a deadlock or a row-lock wait, or its insert met
    /// a row that a concurrent run had just written (1213, 1205, 1062): the
    /// connection is fine. Rolled back (and an acquire's `GET_LOCK` let go
    /// of, on the same connection, see `try_acquire`), it is tried again
    /// after a short pause. Before, these dropped the connection: the
    /// retry's `GET_LOCK` then found the old connection's name not yet freed
    /// by the server and reported the lock held, though nobody held it.
    Conflict(String),
    /// The lock table does not exist yet.
    NoTable,
    /// Anything else: stop with this message.
    Fatal(anyhow::Error),
}

/// What one try of the fencing step found.
enum Bump {
    /// The counter's new value.
    Token(u64),
    /// Our lock row is gone or another run's.
    NotOurs,
    /// The counters' table does not exist yet.
    NoTable,
}

/// What one try of recording a run found.
enum Recorded {
    /// Added, trimmed and committed.
    Done,
    /// One of the history's tables does not exist yet.
    NoTable,
}

/// A lock's row, as the acquire reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    expires_at: i64,
    running: bool,
    token: String,
    holder: Option<u64>,
}

/// What the acquire found, all read inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// Our `GET_LOCK(name, 0)` succeeded.
    got: bool,
    /// The connection that holds the `GET_LOCK` name (`IS_USED_LOCK`).
    used_by: Option<u64>,
    /// The row, if there is one.
    record: Option<Record>,
    /// The server's clock.
    now: i64,
}

/// What the acquire decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Write our row; `expired_ago` when there was a row to replace.
    Take { expired_ago: Option<i64> },
    /// The row is a run's whose connection is gone (its `GET_LOCK` is
    /// ours now): take it over after [`hold::TAKEOVER_AFTER`] if it stays so.
    Crashed { expired_ago: i64 },
    /// Leave it: someone holds it.
    Held { expires_in: i64 },
}

/// What a crashed run's row was after the takeover's pause.
enum Confirmed {
    /// Unchanged: ours to take over, at the server's time `now`, read by
    /// a request sent after `asked_at`.
    Still { now: i64, asked_at: Instant },
    /// Changed (released, taken, reset) or our `GET_LOCK` gone: held.
    Changed { expires_in: i64 },
}

/// The acquire's rules (see the module's comment).
fn decide(seen: &Seen, token: &str) -> Decision {
    let now = seen.now;
    let Some(record) = &seen.record else {
        // No row: a free name is ours; a taken one belongs to a sera host or
        // to a contender that is writing its row right now.
        return if seen.got {
            Decision::Take { expired_ago: None }
        } else {
            Decision::Held { expires_in: 0 }
        };
    };
    let expired_ago = Some(now - record.expires_at);
    if record.token == token {
        // Our own row, from a try whose answer was lost.
        return Decision::Take { expired_ago: None };
    }
    if record.running && record.holder.is_some() && seen.got {
        // Its holder's connection is gone: the run is gone too, or about
        // to find out and stop (see `check_hold`).
        return Decision::Crashed {
            expired_ago: now - record.expires_at,
        };
    }
    if record.expires_at >= now {
        return Decision::Held {
            expires_in: record.expires_at - now,
        };
    }
    // Expired. A live holder past its RELEASE is replaced (as in Redis); a
    // name held by someone else (sera, a contender) still counts as held.
    let holder_alive = record.running && record.holder.is_some() && seen.used_by == record.holder;
    if seen.got || holder_alive {
        Decision::Take { expired_ago }
    } else {
        Decision::Held { expires_in: 0 }
    }
}

impl<'a> MysqlLock<'a> {
    /// A store on `target`; nothing is sent until the first call.
    pub fn new(target: &'a MysqlTarget, report: &'a Report) -> Result<MysqlLock<'a>> {
        if let Some(tls) = &target.tls {
            if tls.server_name.is_some() {
                anyhow::bail!(
                    "CRONLOCK_TLS_SERVER_NAME is not supported by the mysql store: its client verifies the URL's host name (use ssl-mode=verify_ca to skip the name)"
                );
            }
            for (variable, file) in [
                ("CRONLOCK_TLS_CA_FILE", &tls.ca_file),
                ("CRONLOCK_TLS_CERT_FILE", &tls.cert_file),
                ("CRONLOCK_TLS_KEY_FILE", &tls.key_file),
            ] {
                if let Some(path) = file {
                    std::fs::File::open(path).map_err(|err| anyhow!("{variable} '{}': {err}", path.display()))?;
                }
            }
            if tls.skip_verify {
                report.info(format_args!(
                    "TLS certificate verification is OFF (CRONLOCK_TLS_SKIP_VERIFY): the server is not authenticated"
                ));
            }
        }
        Ok(MysqlLock {
            target,
            report,
            conn: None,
            renewals: None,
            plain: false,
            token: crate::net::random::token(),
            owner: None,
            claims_get_lock: false,
            has_get_lock: false,
            hold: HoldCheck::new(
                "the GET_LOCK",
                "the server closed the connection that held the GET_LOCK, and another session has taken the name (a run taking the job over, or a sera host)",
            ),
            sera: false,
        })
    }

    /// The store for `style`: under `sera` it gives no fencing tokens.
    pub fn with_key_style(mut self, style: KeyStyle) -> MysqlLock<'a> {
        self.sera = style == KeyStyle::Sera;
        self
    }

    pub(super) fn describe(&self) -> String {
        format!("MySQL at '{}' port '{}'", self.target.host, self.target.port)
    }

    /// The client's TLS options for the URL's `ssl-mode`. The `mysql` crate
    /// builds its own rustls configuration from these (it cannot take ours):
    /// it always trusts the Mozilla roots it carries (webpki-roots), not the
    /// system's store, and adds `CRONLOCK_TLS_CA_FILE`'s CAs to them.
    fn ssl_opts(&self) -> Option<SslOpts> {
        let mode = match self.target.ssl_mode {
            SslMode::Disabled => return None,
            SslMode::Preferred if self.plain => return None,
            mode => mode,
        };
        let tls = self.target.tls.clone().unwrap_or_default();
        let verify = mode.verifies() && !tls.skip_verify;
        let mut opts = SslOpts::default()
            .with_danger_accept_invalid_certs(!verify)
            .with_danger_skip_domain_validation(mode != SslMode::VerifyIdentity || !verify)
            .with_root_cert_path(tls.ca_file);
        if let (Some(cert), Some(key)) = (tls.cert_file, tls.key_file) {
            opts = opts.with_client_identity(Some(mysql::ClientIdentity::new(cert, key)));
        }
        Some(opts)
    }

    /// A new connection, within `timeout`: TLS as `ssl-mode` says, the
    /// greeting's own limit, the read timeout set.
    pub(super) fn open(&mut self, timeout: Option<Duration>) -> Result<Conn, Failure> {
        let target = self.target;
        self.report.info(format_args!(
            "connecting to mysql at '{}' port '{}'{}",
            target.host,
            target.port,
            if self.ssl_opts().is_some() { " over TLS" } else { "" }
        ));
        let mut refused = 0;
        loop {
            let opts = OptsBuilder::new()
                .ip_or_hostname(Some(target.host.clone()))
                .tcp_port(target.port)
                .user(Some(target.user.clone()))
                .pass(target.password.clone())
                .db_name(Some(target.db.clone()))
                // Its default asks the server for its socket and reconnects
                // through it: a second connection on every run.
                .prefer_socket(false)
                // Else it asks the server for the value: one more round trip.
                .max_allowed_packet(Some(1 << 20))
                .tcp_connect_timeout(timeout)
                .read_timeout(Some(timeout.map_or(GREETING_LIMIT, |t| t.min(GREETING_LIMIT))))
                .write_timeout(timeout)
                .ssl_opts(self.ssl_opts());
            match Conn::new(opts) {
                Ok(conn) => {
                    read_timeout(&conn, timeout)
                        .map_err(|err| Failure::Retry(format!("setting the read timeout: {err}")))?;
                    return Ok(conn);
                }
                Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported))
                    if target.ssl_mode == SslMode::Preferred && !self.plain =>
                {
                    self.report.info(format_args!(
                        "{} offers no TLS; ssl-mode=preferred goes on without it",
                        self.describe()
                    ));
                    self.plain = true;
                }
                Err(mysql::Error::MySqlError(err)) if err.code == 1045 && refused < REFUSED_LOGIN_RETRIES => {
                    refused += 1;
                    self.report.info(format_args!(
                        "{} refused the login ({}); trying again on a new connection",
                        self.describe(),
                        err.message
                    ));
                }
                Err(err) => return Err(self.classify(err, true)),
            }
        }
    }

    /// The main connection, opened if needed.
    pub(super) fn conn(&mut self) -> Result<&mut Conn, Failure> {
        if self.conn.is_none() {
            self.conn = Some(self.open(self.target.connection.timeout)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Failure::Fatal(anyhow!("no connection")))
    }

    /// Runs `sql` (several statements) on the main connection.
    fn batch(&mut self, sql: &str) -> Result<Vec<Vec<Row>>, Failure> {
        let result = batch(self.conn()?, sql);
        result.map_err(|err| self.classify(err, false))
    }

    /// Runs `step` until it succeeds, reconnecting after connection failures
    /// with the original's linear backoff, within CRONLOCK_RECONNECT_ATTEMPTS.
    pub(super) fn with_retries<T>(&mut self, mut step: impl FnMut(&mut Self) -> Result<T, Failure>) -> Result<T> {
        let mut reconnects = Reconnects::of(self.report, &self.target.connection);
        let mut created = false;
        loop {
            let err = match step(self) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::NoTable) if !created => {
                    self.create_table()?;
                    created = true;
                    // A new connection starts clean (an acquire has let go
                    // of its GET_LOCK already, see `try_acquire`).
                    self.conn = None;
                    continue;
                }
                Err(Failure::NoTable) => {
                    return Err(anyhow!("{}: table {TABLE} vanished while in use", self.describe()));
                }
                Err(Failure::Busy(err)) => {
                    self.conn = None;
                    reconnects.busy(&self.describe(), &err, self.target.connection.timeout)?;
                    continue;
                }
                Err(Failure::Conflict(err)) => {
                    // A deadlock rolled the whole transaction back, a lock
                    // wait only the statement: end it, on the same connection.
                    if self.batch("ROLLBACK").is_err() {
                        self.conn = None;
                    }
                    reconnects.busy(&self.describe(), &err, self.target.connection.timeout)?;
                    continue;
                }
                Err(Failure::Retry(err)) => err,
            };
            self.conn = None;
            reconnects.after(&self.describe(), &err)?;
        }
    }

    fn create_table(&mut self) -> Result<()> {
        self.create(TABLE, CREATE_TABLE)
    }

    /// Runs `ddl`, which creates `table`, on the main connection; one line
    /// naming the table when the user may not.
    fn create(&mut self, table: &str, ddl: &str) -> Result<()> {
        self.report
            .info(format_args!("creating table {table} in database '{}'", self.target.db));
        let created = match self.conn() {
            Ok(conn) => conn.query_drop(ddl),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Retry(err) | Failure::Busy(err) | Failure::Conflict(err)) => {
                return Err(anyhow!("cannot reach {} ({err})", self.describe()))
            }
            Err(Failure::NoTable) => return Err(anyhow!("{}: no table {table}", self.describe())),
        };
        match created {
            Ok(()) => Ok(()),
            Err(mysql::Error::MySqlError(err)) if matches!(err.code, 1142 | 1044 | 1227) => Err(anyhow!(
                "table {table} does not exist in database '{}' and user '{}' may not create it ({}); create it and grant access as the README's MySQL section shows",
                self.target.db,
                self.target.user,
                err.message
            )),
            Err(err) => match self.classify(err, false) {
                Failure::Fatal(err) => Err(err),
                Failure::Retry(err) | Failure::Busy(err) | Failure::Conflict(err) => {
                    Err(anyhow!("{}: creating table {table}: {err}", self.describe()))
                }
                Failure::NoTable => Err(anyhow!("{}: creating table {table} failed", self.describe())),
            },
        }
    }

    /// Sorts a client error into retry or stop, in words a cron log reader can act on.
    pub(super) fn classify(&self, err: mysql::Error, connecting: bool) -> Failure {
        use mysql::DriverError as D;
        let at = self.describe();
        // A refused certificate comes back as an I/O error of the first read
        // after the handshake; without this it read "did not answer as a
        // MySQL server does", or was retried as a network failure.
        if let Some(tls_error) = tls_failure(&err) {
            let why = match tls_error {
                // tls::explain's advice, CRONLOCK_TLS_SERVER_NAME, is refused by this store.
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => "the server's certificate does not match the host name (put the name it was issued for in CRONLOCK_URL, or use ssl-mode=verify_ca)".to_string(),
                other => tls::explain(other),
            };
            return Failure::Fatal(anyhow!("{at}: TLS: {why}"));
        }
        // The greeting did not come within the timeout: a server that a herd
        // keeps busy, as often as one that is no MySQL server.
        if let Some(why) = timed_out(&err).filter(|_| connecting) {
            return Failure::Busy(format!("no greeting in time ({why}); is it a MySQL server?"));
        }
        match err {
            mysql::Error::MySqlError(err) => match err.code {
                1146 => Failure::NoTable,
                1040 => Failure::Busy(err.message),
                // Deadlock, lock wait timeout, duplicate key.
                1213 | 1205 | 1062 => Failure::Conflict(err.message),
                // Shutdown in progress, connection killed, idle disconnect.
                1053 | 1927 | 4031 => Failure::Retry(err.message),
                1045 => Failure::Fatal(anyhow!(
                    "{at} refused the login: {} (check the user and password in CRONLOCK_URL)",
                    err.message
                )),
                1049 => Failure::Fatal(anyhow!(
                    "{at}: database '{}' does not exist ({}); create it or fix CRONLOCK_URL",
                    self.target.db,
                    err.message
                )),
                // MySQL says "access denied" for a database that does not exist.
                1044 if connecting => Failure::Fatal(anyhow!(
                    "{at}: database '{}' does not exist or user '{}' has no rights on it ({}); see the README's MySQL section",
                    self.target.db,
                    self.target.user,
                    err.message
                )),
                1044 | 1142 | 1227 => Failure::Fatal(anyhow!(
                    "{at} refused: {} (the user needs SELECT, INSERT, UPDATE and DELETE on {}.{TABLE}; see the README's MySQL section)",
                    err.message,
                    self.target.db
                )),
                _ => Failure::Fatal(anyhow!("{at} answered: {} (error {})", err.message, err.code)),
            },
            mysql::Error::IoError(err) => Failure::Retry(err.to_string()),
            mysql::Error::DriverError(D::ConnectTimeout) => Failure::Retry("connection timed out".to_string()),
            mysql::Error::DriverError(D::CouldNotConnect(Some((_, why, _)))) => Failure::Retry(why),
            mysql::Error::DriverError(D::CouldNotConnect(None)) => Failure::Retry("could not connect".to_string()),
            mysql::Error::DriverError(D::TlsNotSupported) => Failure::Fatal(anyhow!(
                "{at} offers no TLS, but CRONLOCK_URL's ssl-mode asks for it (use ssl-mode=preferred or disabled)"
            )),
            mysql::Error::TlsError(err) => Failure::Fatal(anyhow!("{at}: TLS: {err}")),
            mysql::Error::CodecError(err) if connecting => Failure::Fatal(anyhow!(
                "{at} did not answer as a MySQL server does ({err}); check the host and port"
            )),
            mysql::Error::DriverError(err) if connecting => Failure::Fatal(anyhow!(
                "{at} did not answer as a MySQL server does ({err}); check the host and port"
            )),
            other => Failure::Fatal(anyhow!("{at}: {other}")),
        }
    }

    fn try_acquire(&mut self, claim: &Claim, name: &str, lock: &str) -> Result<Acquire, Failure> {
        let result = self.acquire_once(claim, name, lock);
        if matches!(result, Err(Failure::NoTable | Failure::Conflict(_))) {
            // The GET_LOCK taken on the way may be ours: let go of it here,
            // on this connection. A closed connection's lock is freed only
            // when the server gets round to it, and the retry (once the
            // table exists, or after the conflict) could still find it
            // taken and report the lock held.
            if self.batch(&format!("ROLLBACK; DO RELEASE_LOCK({lock})")).is_err() {
                self.conn = None;
            }
        }
        result
    }

    fn acquire_once(&mut self, claim: &Claim, name: &str, lock: &str) -> Result<Acquire, Failure> {
        let sets = self.batch(&format!(
            "SET SESSION wait_timeout = {IDLE_SECONDS}; \
             SELECT GET_LOCK({lock}, 0), IS_USED_LOCK({lock}), CONNECTION_ID(); \
             START TRANSACTION; \
             SELECT expires_at, state, token, holder FROM {TABLE} WHERE name = {name} FOR UPDATE; \
             SELECT UNIX_TIMESTAMP()"
        ))?;
        let [locks, rows, clock] = sets.as_slice() else {
            return Err(Failure::Fatal(anyhow!(
                "{}: unexpected answer to the lock query",
                self.describe()
            )));
        };
        let got = int(locks, 0)? == Some(1);
        let used_by = int(locks, 1)?.map(|id| id as u64);
        let connection = int(locks, 2)?.unwrap_or(0) as u64;
        let record = rows.first().map(|row| Record {
            expires_at: row.get_opt::<i64, _>(0).and_then(Result::ok).unwrap_or(0),
            running: row.get_opt::<String, _>(1).and_then(Result::ok).as_deref() == Some("running"),
            token: row.get_opt::<String, _>(2).and_then(Result::ok).unwrap_or_default(),
            holder: row.get_opt::<Option<u64>, _>(3).and_then(Result::ok).flatten(),
        });
        let now = int(clock, 0)?.ok_or_else(|| Failure::Fatal(anyhow!("no server time")))?;
        let seen = Seen {
            got,
            used_by,
            record,
            now,
        };
        let mut now = now;
        let mut written_after = None;
        let expired_ago = match decide(&seen, &self.token) {
            Decision::Held { expires_in } => {
                // Closing the connection rolls back and frees a GET_LOCK we took.
                self.conn = None;
                return Ok(Acquire::Held { expires_in });
            }
            Decision::Take { expired_ago } => expired_ago,
            Decision::Crashed { expired_ago } => {
                let crashed = seen.record.as_ref().map(|r| r.token.clone()).unwrap_or_default();
                match self.confirm_crashed(name, lock, &crashed)? {
                    Confirmed::Still { now: later, asked_at } => {
                        now = later;
                        written_after = Some(asked_at);
                        Some(expired_ago.max(0))
                    }
                    Confirmed::Changed { expires_in } => {
                        self.conn = None;
                        return Ok(Acquire::Held { expires_in });
                    }
                }
            }
        };
        let expires_at = now + claim.release + 1;
        let holder = if got {
            connection.to_string()
        } else {
            "NULL".to_string()
        };
        self.owner = claim.owner.map(String::from);
        let owner = claim.owner.map_or_else(|| "NULL".to_string(), |o| text(o.as_bytes()));
        let token = self.token.clone();
        let write = if seen.record.is_some() {
            format!(
                "UPDATE {TABLE} SET expires_at = {expires_at}, state = 'running', token = '{token}', \
                 holder = {holder}, owner = {owner} WHERE name = {name}; COMMIT"
            )
        } else {
            format!(
                "INSERT INTO {TABLE} (name, expires_at, state, token, holder, owner) \
                 VALUES ({name}, {expires_at}, 'running', '{token}', {holder}, {owner}); COMMIT"
            )
        };
        self.batch(&write)?;
        self.claims_get_lock = got;
        self.has_get_lock = got;
        let mut lease = Lease::new(claim.key, now, expires_at);
        lease.token = Some(token);
        lease.asked_at = written_after;
        Ok(match expired_ago {
            Some(expired_ago) => Acquire::TakenOver { lease, expired_ago },
            None => Acquire::Taken(lease),
        })
    }

    /// The row is run `crashed`'s, whose connection is gone, and its
    /// `GET_LOCK` ours: lets go of the row lock but keeps the `GET_LOCK` for
    /// [`hold::TAKEOVER_AFTER`], then locks the row again. On `Still` the
    /// transaction is open with the row locked, for the caller's write.
    fn confirm_crashed(&mut self, name: &str, lock: &str, crashed: &str) -> Result<Confirmed, Failure> {
        self.batch("ROLLBACK")?;
        hold::pause_before_takeover(self.report);
        let asked_at = Instant::now();
        let sets = self.batch(&format!(
            "START TRANSACTION; \
             SELECT expires_at, state, token FROM {TABLE} WHERE name = {name} FOR UPDATE; \
             SELECT UNIX_TIMESTAMP(), IS_USED_LOCK({lock}) = CONNECTION_ID()"
        ))?;
        let [rows, clock] = sets.as_slice() else {
            return Err(Failure::Fatal(anyhow!(
                "{}: unexpected answer to the takeover query",
                self.describe()
            )));
        };
        let now = int(clock, 0)?.ok_or_else(|| Failure::Fatal(anyhow!("no server time")))?;
        let still_ours = int(clock, 1)? == Some(1);
        let row = rows.first().map(|row| {
            (
                row.get_opt::<i64, _>(0).and_then(Result::ok).unwrap_or(0),
                row.get_opt::<String, _>(1).and_then(Result::ok).as_deref() == Some("running"),
                row.get_opt::<String, _>(2).and_then(Result::ok).unwrap_or_default(),
            )
        });
        match row {
            Some((_, true, token)) if still_ours && token == crashed => Ok(Confirmed::Still { now, asked_at }),
            other => Ok(Confirmed::Changed {
                expires_in: other.map_or(0, |(expires_at, _, _)| (expires_at - now).max(0)),
            }),
        }
    }

    fn try_release(&mut self, lease: &Lease, keep: Keep, name: &str, lock: &str) -> Result<Release, Failure> {
        let sets = self.batch(&format!(
            "START TRANSACTION; \
             SELECT token FROM {TABLE} WHERE name = {name} FOR UPDATE; \
             SELECT UNIX_TIMESTAMP()"
        ))?;
        let [rows, clock] = sets.as_slice() else {
            return Err(Failure::Fatal(anyhow!(
                "{}: unexpected answer to the release query",
                self.describe()
            )));
        };
        let now = int(clock, 0)?.ok_or_else(|| Failure::Fatal(anyhow!("no server time")))?;
        let token = rows
            .first()
            .map(|row| row.get_opt::<String, _>(0).and_then(Result::ok).unwrap_or_default());
        let ours = lease.token.as_deref().unwrap_or(&self.token);
        let until = keep.until(lease.start, now);
        let ended = self.owner.as_deref().map_or_else(
            || "NULL".to_string(),
            |o| text(crate::lock::owner::with_ended(o, now).as_bytes()),
        );
        let (write, outcome) = match &token {
            Some(token) if token != ours => ("ROLLBACK".to_string(), Release::NotOurs),
            Some(_) if until <= now => (
                format!("DELETE FROM {TABLE} WHERE name = {name}; COMMIT"),
                Release::Dropped,
            ),
            None if until <= now => ("ROLLBACK".to_string(), Release::Dropped),
            Some(_) => (
                format!(
                    "UPDATE {TABLE} SET expires_at = {until}, state = 'done', holder = NULL, owner = {ended} \
                     WHERE name = {name}; COMMIT"
                ),
                Release::Kept { until },
            ),
            // Reset while we ran: claim the grace again, as the original does.
            None => (
                format!(
                    "INSERT INTO {TABLE} (name, expires_at, state, token, holder, owner) \
                     VALUES ({name}, {until}, 'done', '{ours}', NULL, {ended}); COMMIT"
                ),
                Release::Kept { until },
            ),
        };
        self.batch(&format!("{write}; DO RELEASE_LOCK({lock})"))?;
        Ok(outcome)
    }

    /// One try of `CRONLOCK_FENCING`'s step: in one transaction, our lock
    /// row `name` locked and found ours, the job's counter `counter` bumped.
    fn try_fence(&mut self, name: &str, counter: &str, ours: &str) -> Result<Bump, Failure> {
        if self.conn.is_none() {
            // A retry's new connection: the old one took our GET_LOCK with
            // it, and the hold check must take it back.
            self.has_get_lock = false;
        }
        let sets = self.batch(&format!(
            "START TRANSACTION; SELECT token FROM {TABLE} WHERE name = {name} FOR UPDATE"
        ))?;
        let token = sets
            .first()
            .and_then(|rows| rows.first())
            .and_then(|row| row.get_opt::<String, _>(0))
            .and_then(Result::ok);
        if token.as_deref() != Some(ours) {
            self.batch("ROLLBACK")?;
            return Ok(Bump::NotOurs);
        }
        // Our own uncommitted bump is what the SELECT reads: no other
        // transaction can change the row before our COMMIT.
        let bumped = batch(
            self.conn()?,
            &format!(
                "INSERT INTO {FENCE_TABLE} (name, token) VALUES ({counter}, 1) \
                 ON DUPLICATE KEY UPDATE token = token + 1; \
                 SELECT token FROM {FENCE_TABLE} WHERE name = {counter}; \
                 COMMIT"
            ),
        );
        let sets = match bumped {
            Ok(sets) => sets,
            // A failed statement ends the batch: the transaction is open.
            Err(mysql::Error::MySqlError(err)) if err.code == 1146 => {
                self.batch("ROLLBACK")?;
                return Ok(Bump::NoTable);
            }
            // The server says so whether the table exists or not, to a user
            // with no right on it.
            Err(mysql::Error::MySqlError(err)) if matches!(err.code, 1142 | 1044) => {
                return Err(Failure::Fatal(anyhow!(
                    "{} refused: {} (CRONLOCK_FENCING needs the table {}.{FENCE_TABLE} and SELECT, INSERT and UPDATE on it: create it and grant them as the README's MySQL section shows)",
                    self.describe(),
                    err.message,
                    self.target.db
                )))
            }
            Err(err) => return Err(self.classify(err, false)),
        };
        let token = sets
            .first()
            .and_then(|rows| rows.first())
            .and_then(|row| row.get_opt::<u64, _>(0))
            .and_then(Result::ok)
            .ok_or_else(|| Failure::Fatal(anyhow!("{}: unexpected answer to the fencing step", self.describe())))?;
        Ok(Bump::Token(token))
    }

    /// One try of `CRONLOCK_HISTORY`'s transaction (see the module's
    /// comment): `name` the job key's row name, `record` the run's record
    /// as an SQL literal.
    fn try_record(&mut self, name: &str, record: &str, succeeded: bool, keep: u32) -> Result<Recorded, Failure> {
        // On a failure the row is made, or locked as it is: the lock is
        // what counts. The run's INSERT is a plain one: an INSERT ... SELECT
        // holds the table's AUTO-INC lock to its end (MariaDB's default
        // innodb_autoinc_lock_mode=1), and runs that ended at once then
        // failed with error 1467.
        let (first, then) = if succeeded {
            (record, record)
        } else {
            ("NULL", "record")
        };
        let written = batch(
            self.conn()?,
            &format!(
                "START TRANSACTION; \
                 INSERT INTO {SUCCEEDED_TABLE} (name, record) VALUES ({name}, {first}) \
                 ON DUPLICATE KEY UPDATE record = {then}; \
                 INSERT INTO {RUNS_TABLE} (name, record) VALUES ({name}, {record}); \
                 SET @cronlock_cut = (SELECT id FROM {RUNS_TABLE} WHERE name = {name} \
                 ORDER BY id DESC LIMIT 1 OFFSET {keep}); \
                 DELETE FROM {RUNS_TABLE} WHERE name = {name} AND id <= @cronlock_cut; \
                 COMMIT"
            ),
        );
        match written {
            Ok(_) => Ok(Recorded::Done),
            // A failed statement ends the batch: the transaction is open.
            Err(mysql::Error::MySqlError(err)) if err.code == 1146 => {
                self.batch("ROLLBACK")?;
                Ok(Recorded::NoTable)
            }
            Err(mysql::Error::MySqlError(err)) if matches!(err.code, 1142 | 1044) => {
                // Closing the connection rolls the transaction back.
                self.conn = None;
                Err(Failure::Fatal(self.history_refused(&err.message)))
            }
            Err(err) => Err(self.classify(err, false)),
        }
    }

    /// Whether the run `record` is among the job's runs already: a try
    /// whose answer was lost may have committed.
    fn recorded(&mut self, name: &str, record: &str) -> Result<bool, Failure> {
        let sql =
            format!("SELECT COUNT(*) FROM {RUNS_TABLE} WHERE name = {name} AND record = {record} COLLATE utf8mb4_bin");
        match self.conn()?.query_first::<u64, _>(sql) {
            Ok(found) => Ok(found.unwrap_or(0) > 0),
            Err(mysql::Error::MySqlError(err)) if err.code == 1146 => Ok(false),
            Err(mysql::Error::MySqlError(err)) if matches!(err.code, 1142 | 1044) => {
                Err(Failure::Fatal(self.history_refused(&err.message)))
            }
            Err(err) => Err(self.classify(err, false)),
        }
    }

    /// The server refused the history's tables to this user, which it says
    /// whether they exist or not.
    fn history_refused(&self, message: &str) -> anyhow::Error {
        let db = &self.target.db;
        anyhow!(
            "{} refused: {message} (CRONLOCK_HISTORY needs the tables {db}.{RUNS_TABLE} and {db}.{SUCCEEDED_TABLE}, with SELECT, INSERT and DELETE on the first and SELECT, INSERT and UPDATE on the second: create them and grant them as the README's MySQL section shows)",
            self.describe()
        )
    }
}

impl MysqlLock<'_> {
    /// Rows of (name, expires_at, state, owner, GET_LOCK in use, now) as
    /// cronlockctl sees them; a missing table has no locks.
    fn rows(&mut self, sql: &str) -> Result<Vec<crate::lock::Seen>> {
        type Columns = (Vec<u8>, i64, String, Option<String>, Option<i64>, i64);
        self.with_retries(|store| {
            let conn = store.conn()?;
            match conn.query::<Columns, _>(sql) {
                Ok(rows) => Ok(rows
                    .into_iter()
                    .map(|(key, expires_at, state, owner, in_use, now)| crate::lock::Seen {
                        key,
                        expires_at: Some(expires_at),
                        now,
                        owner,
                        running: match (state.as_str(), in_use) {
                            ("done", _) => Some(false),
                            (_, Some(1)) => Some(true),
                            // A running row whose GET_LOCK is free: its run died.
                            (_, Some(_)) => Some(false),
                            _ => None,
                        },
                    })
                    .collect()),
                Err(mysql::Error::MySqlError(err)) if err.code == 1146 => Ok(Vec::new()),
                Err(err) => Err(store.classify(err, false)),
            }
        })
    }
}

impl LockStore for MysqlLock<'_> {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let (name, lock) = (row_name(claim.key), lock_name(claim.key));
        self.with_retries(|store| store.try_acquire(claim, &name, &lock))
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let (name, lock) = (row_name(&lease.key), lock_name(&lease.key));
        let released = self.with_retries(|store| store.try_release(lease, keep, &name, &lock));
        // Closing the connection frees the GET_LOCK in any case.
        self.conn = None;
        self.renewals = None;
        released
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<crate::lock::Seen>> {
        let (name, lock) = (row_name(key), lock_name(key));
        let sql = format!(
            "SELECT name, expires_at, state, owner, IS_USED_LOCK({lock}) IS NOT NULL, UNIX_TIMESTAMP() \
             FROM {TABLE} WHERE name = {name}"
        );
        let mut rows = self.rows(&sql)?;
        Ok(rows.pop().map(|mut seen| {
            seen.key = key.to_vec();
            seen
        }))
    }

    fn list(&mut self, prefix: &[u8]) -> Result<Vec<crate::lock::Seen>> {
        // The holder's GET_LOCK is not looked up per row here: `running`
        // comes from the row's state alone.
        let sql = format!(
            "SELECT name, expires_at, state, owner, NULL, UNIX_TIMESTAMP() FROM {TABLE} \
             WHERE LEFT(name, {len}) = {prefix} ORDER BY name",
            len = prefix.len(),
            prefix = hex(prefix)
        );
        self.rows(&sql)
    }

    fn fencing(&self) -> Fencing {
        if self.sera {
            return Fencing::Unsupported(
                "with CRONLOCK_KEY_STYLE=sera the lock is shared with sera hosts, which hold its GET_LOCK alone and take no fencing token",
            );
        }
        Fencing::Durable
    }

    /// See the module's comment. A try whose answer was lost is tried
    /// again: it may bump twice, which only skips a token.
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let (row, counter) = (row_name(&lease.key), row_name(name));
        let ours = lease.token.clone().unwrap_or_else(|| self.token.clone());
        let mut created = false;
        loop {
            match self.with_retries(|store| store.try_fence(&row, &counter, &ours))? {
                Bump::Token(token) => return Ok(Some(token)),
                Bump::NotOurs => return Ok(None),
                // Made here and only here, so that runs without fencing
                // never touch it.
                Bump::NoTable if !created => {
                    self.create(FENCE_TABLE, CREATE_FENCE_TABLE)?;
                    created = true;
                }
                Bump::NoTable => {
                    anyhow::bail!("{}: table {FENCE_TABLE} vanished while in use", self.describe())
                }
            }
        }
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let counter = row_name(name);
        self.with_retries(|store| {
            let conn = store.conn()?;
            match conn.query_first::<u64, _>(format!("SELECT token FROM {FENCE_TABLE} WHERE name = {counter}")) {
                Ok(token) => Ok(token),
                // No fenced run yet.
                Err(mysql::Error::MySqlError(err)) if err.code == 1146 => Ok(None),
                Err(err) => Err(store.classify(err, false)),
            }
        })
    }

    fn keeps_history(&self) -> bool {
        // sera hosts keep none: the job's history would be cronlock's half.
        !self.sera
    }

    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let (row, record) = (row_name(name), text(record.as_bytes()));
        let keep = keep.max(1);
        let mut created = false;
        loop {
            let mut sent = false;
            let recorded = self.with_retries(|store| {
                if std::mem::replace(&mut sent, true) && store.recorded(&row, &record)? {
                    return Ok(Recorded::Done);
                }
                store.try_record(&row, &record, succeeded, keep)
            })?;
            match recorded {
                Recorded::Done => return Ok(()),
                // Made here and only here, so that runs without a history
                // never touch them.
                Recorded::NoTable if !created => {
                    self.create(RUNS_TABLE, CREATE_RUNS_TABLE)
                        .and_then(|()| self.create(SUCCEEDED_TABLE, CREATE_SUCCEEDED_TABLE))
                        .with_context(|| {
                            format!("CRONLOCK_HISTORY needs the tables {RUNS_TABLE} and {SUCCEEDED_TABLE}")
                        })?;
                    created = true;
                }
                Recorded::NoTable => anyhow::bail!(
                    "{}: table {RUNS_TABLE} or {SUCCEEDED_TABLE} vanished while in use",
                    self.describe()
                ),
            }
        }
    }

    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let row = row_name(name);
        let sql = format!(
            "SELECT record FROM {RUNS_TABLE} WHERE name = {row} ORDER BY id DESC; \
             SELECT record FROM {SUCCEEDED_TABLE} WHERE name = {row}"
        );
        self.with_retries(|store| {
            let sets = match batch(store.conn()?, &sql) {
                Ok(sets) => sets,
                // No run recorded yet, anywhere.
                Err(mysql::Error::MySqlError(err)) if err.code == 1146 => return Ok(History::default()),
                Err(mysql::Error::MySqlError(err)) if matches!(err.code, 1142 | 1044) => {
                    return Err(Failure::Fatal(store.history_refused(&err.message)))
                }
                Err(err) => return Err(store.classify(err, false)),
            };
            let [runs, succeeded] = sets.as_slice() else {
                return Err(Failure::Fatal(anyhow!(
                    "{}: unexpected answer to the history query",
                    store.describe()
                )));
            };
            let record = |row: &Row| {
                row.get_opt::<Option<Vec<u8>>, _>(0)
                    .and_then(Result::ok)
                    .flatten()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            };
            Ok(History {
                runs: runs.iter().filter_map(record).collect(),
                last_success: succeeded.first().and_then(record),
            })
        })
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let name = row_name(key);
        self.with_retries(|store| {
            let conn = store.conn()?;
            match conn.query_drop(format!("DELETE FROM {TABLE} WHERE name = {name}")) {
                Ok(()) => Ok(conn.affected_rows() > 0),
                Err(mysql::Error::MySqlError(err)) if err.code == 1146 => Ok(false),
                Err(err) => Err(store.classify(err, false)),
            }
        })
    }

    fn hold_check_every(&self) -> Option<Duration> {
        self.claims_get_lock.then_some(HOLD_CHECK_EVERY)
    }

    fn check_hold(&mut self, lease: &Lease) -> Result<(), String> {
        if !self.claims_get_lock {
            return Ok(());
        }
        if self.has_get_lock {
            if self.conn.as_ref().is_some_and(|conn| !ended(conn)) {
                return Ok(());
            }
            // The server ended it (an operator's KILL, a restart, a proxy):
            // our row still names it, and a contender that gets the name
            // takes the row over after TAKEOVER_AFTER. Take the name back
            // first, or stop the command before that.
            self.conn = None;
            self.has_get_lock = false;
        }
        let (name, lock) = (row_name(&lease.key), lock_name(&lease.key));
        let ours = lease.token.as_deref().unwrap_or(&self.token).to_string();
        let limit = hold::retake_limit(&self.target.connection);
        let retaken = match self.conn.take() {
            Some(conn) => Ok(conn),
            None => self.open(Some(limit)),
        }
        .and_then(|mut conn| {
            let got = batch(
                &mut conn,
                &format!("SET SESSION wait_timeout = {IDLE_SECONDS}; SELECT GET_LOCK({lock}, 0)"),
            )
            .map_err(|err| self.classify(err, false))
            .and_then(|sets| int(sets.first().map_or(&[][..], Vec::as_slice), 0))?
                == Some(1);
            let moved = got
                && batch(
                    &mut conn,
                    &format!(
                        "UPDATE {TABLE} SET holder = CONNECTION_ID() \
                         WHERE name = {name} AND token = '{ours}' AND state = 'running'"
                    ),
                )
                .map_err(|err| self.classify(err, false))
                .map(|_| conn.affected_rows() == 1)?;
            self.conn = Some(conn);
            Ok((got, moved))
        });
        let found = match retaken {
            // Nobody can take it over through a server we cannot reach.
            Err(Failure::Retry(why) | Failure::Busy(why) | Failure::Conflict(why)) => Retake::Unreachable(why),
            Err(Failure::NoTable) => Retake::TableGone,
            Err(Failure::Fatal(err)) => Retake::Failed(format!("{err:#}")),
            Ok((got, moved)) => {
                self.has_get_lock = got;
                match (got, moved) {
                    // Another session, or our old connection not yet closed
                    // by the server: MySQL cannot tell them apart.
                    (false, _) => Retake::Other,
                    (true, false) => Retake::NotOurs,
                    (true, true) => {
                        self.report.info(format_args!("reconnected and took the GET_LOCK back"));
                        Retake::Back
                    }
                }
            }
        };
        self.hold.judge(found, self.report)
    }

    fn renew(&mut self, lease: &Lease, seconds: i64, _after_unknown: bool, limit: Duration) -> Renewal {
        // The token decides, so a renewal whose answer was lost needs no
        // special case: the next one finds the row still ours, or not.
        let name = row_name(&lease.key);
        let ours = lease.token.as_deref().unwrap_or(&self.token).to_string();
        let sql = format!(
            "SET @cronlock_until = UNIX_TIMESTAMP() + {seconds} + 1; \
             UPDATE {TABLE} SET expires_at = @cronlock_until \
             WHERE name = {name} AND token = '{ours}' AND state = 'running'; \
             SELECT expires_at FROM {TABLE} WHERE name = {name} AND token = '{ours}'"
        );
        let limit = self.target.connection.timeout_within(limit);
        let mut maybe_sent = false;
        let result = match self.renewals.take() {
            Some(conn) => Ok(conn),
            None => self.open(Some(limit)),
        }
        .and_then(|mut conn| {
            maybe_sent = true;
            let sets = batch(&mut conn, &sql).map_err(|err| self.classify(err, false))?;
            self.renewals = Some(conn);
            Ok(sets)
        });
        match result {
            Ok(sets) => match sets.first().and_then(|rows| rows.first()) {
                Some(row) => match row.get_opt::<i64, _>(0).and_then(Result::ok) {
                    Some(expires_at) => Renewal::Renewed { expires_at },
                    None => Renewal::Unconfirmed {
                        message: format!("{}: unexpected answer to the renewal", self.describe()),
                        maybe_sent: true,
                    },
                },
                None => Renewal::Lost,
            },
            Err(Failure::Retry(message) | Failure::Busy(message) | Failure::Conflict(message)) => {
                Renewal::Unconfirmed {
                    message: format!("{}: {message}", self.describe()),
                    maybe_sent,
                }
            }
            Err(Failure::NoTable) => Renewal::Lost,
            Err(Failure::Fatal(err)) => Renewal::Unconfirmed {
                message: format!("{err:#}"),
                maybe_sent,
            },
        }
    }
}

/// A read that timed out, in the words of the error that says so: an I/O
/// error of its own, or one inside the client's packet codec.
fn timed_out(err: &mysql::Error) -> Option<String> {
    let (io, shown) = match err {
        mysql::Error::IoError(io) => (Some(io), io.to_string()),
        mysql::Error::CodecError(codec) => (
            std::error::Error::source(codec).and_then(|cause| cause.downcast_ref::<std::io::Error>()),
            codec.to_string(),
        ),
        _ => (None, String::new()),
    };
    io.is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
        .then_some(shown)
}

/// Sets the read timeout of `conn`'s socket, which [`GREETING_LIMIT`] kept
/// short while it connected; `None` waits forever.
fn read_timeout(conn: &Conn, timeout: Option<Duration>) -> nix::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
    use nix::sys::time::{TimeVal, TimeValLike};
    use std::os::fd::{AsRawFd, BorrowedFd};
    // Zero is "no timeout" to the kernel.
    let value = TimeVal::microseconds(timeout.map_or(0, |t| i64::try_from(t.as_micros()).unwrap_or(i64::MAX)));
    // SAFETY: the descriptor is `conn`'s socket, open for as long as `conn`
    // is borrowed here.
    let fd = unsafe { BorrowedFd::borrow_raw(conn.as_raw_fd()) };
    setsockopt(&fd, ReceiveTimeout, &value)
}

/// Whether the server has ended the idle connection `conn`, without a
/// round trip: on an idle connection a server sends nothing but its goodbye
/// (an error packet, a TLS alert, the end of the stream), so anything to
/// read, or a hang-up, means it is gone.
pub(super) fn ended(conn: &Conn) -> bool {
    use std::os::fd::AsRawFd;
    let mut watched = [nix::libc::pollfd {
        fd: conn.as_raw_fd(),
        events: nix::libc::POLLIN | nix::libc::POLLRDHUP,
        revents: 0,
    }];
    // SAFETY: one pollfd of our own on a descriptor the connection owns;
    // a zero timeout, so it only looks.
    let ready = unsafe { nix::libc::poll(watched.as_mut_ptr(), 1, 0) };
    ready > 0
}

/// The rustls error behind a failed TLS handshake, wherever the client put
/// it (`mysql::Error` has no `source()`, so each variant is opened here).
fn tls_failure(err: &mysql::Error) -> Option<&rustls::Error> {
    let io = match err {
        mysql::Error::IoError(io) => io,
        mysql::Error::CodecError(codec) => std::error::Error::source(codec)?.downcast_ref::<std::io::Error>()?,
        mysql::Error::TlsError(tls) => return std::error::Error::source(tls)?.downcast_ref(),
        _ => return None,
    };
    io.get_ref()?.downcast_ref()
}

/// Runs `sql`, several statements in one round trip; the rows of each
/// statement that returns columns, in order.
fn batch(conn: &mut Conn, sql: &str) -> Result<Vec<Vec<Row>>, mysql::Error> {
    let mut result = conn.query_iter(sql)?;
    let mut sets = Vec::new();
    while let Some(set) = result.iter() {
        let has_columns = !set.columns().as_ref().is_empty();
        let rows = set.collect::<Result<Vec<Row>, _>>()?;
        if has_columns {
            sets.push(rows);
        }
    }
    Ok(sets)
}

/// Column `index` of the first row as a number (NULL as None).
fn int(rows: &[Row], index: usize) -> Result<Option<i64>, Failure> {
    let row = rows
        .first()
        .ok_or_else(|| Failure::Fatal(anyhow!("the server returned no row")))?;
    match row.get_opt::<Option<i64>, _>(index) {
        Some(Ok(value)) => Ok(value),
        _ => Err(Failure::Fatal(anyhow!("unexpected value from the server"))),
    }
}

/// A byte string as an SQL literal: hex, so no byte needs escaping.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
    out
}

/// A UTF-8 string as an SQL literal of the connection's text type.
fn text(bytes: &[u8]) -> String {
    format!("CONVERT({} USING utf8mb4)", hex(bytes))
}

/// The row's `name`: the key, or for keys longer than the column its first
/// bytes, `~` and its md5 hex.
fn row_name(key: &[u8]) -> String {
    if key.len() <= MAX_ROW_NAME {
        return hex(key);
    }
    let digest = format!("~{:x}", md5::compute(key));
    let mut name = key[..MAX_ROW_NAME - digest.len()].to_vec();
    name.extend_from_slice(digest.as_bytes());
    hex(&name)
}

/// The `GET_LOCK` name: the key when MySQL can take it as it is, else a hash.
fn lock_name(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(name) if !name.is_empty() && name.len() <= MAX_LOCK_NAME => text(key),
        _ => text(format!("cronlock~{:x}", md5::compute(key)).as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_at: i64, running: bool, holder: Option<u64>) -> Option<Record> {
        Some(Record {
            expires_at,
            running,
            token: "theirs".into(),
            holder,
        })
    }

    fn seen(got: bool, used_by: Option<u64>, record: Option<Record>) -> Seen {
        Seen {
            got,
            used_by,
            record,
            now: 100,
        }
    }

    #[test]
    fn a_free_name_without_a_row_is_taken_a_held_one_is_not() {
        assert_eq!(
            decide(&seen(true, Some(1), None), "ours"),
            Decision::Take { expired_ago: None }
        );
        // A sera host holds the name.
        assert_eq!(
            decide(&seen(false, Some(7), None), "ours"),
            Decision::Held { expires_in: 0 }
        );
    }

    #[test]
    fn a_running_row_whose_holder_is_gone_is_a_crashed_run() {
        let dead = record(200, true, Some(5));
        assert_eq!(
            decide(&seen(true, Some(9), dead.clone()), "ours"),
            Decision::Crashed { expired_ago: -100 }
        );
        assert_eq!(
            decide(&seen(false, Some(5), dead), "ours"),
            Decision::Held { expires_in: 100 }
        );
    }

    #[test]
    fn a_row_in_its_grace_is_held_whatever_the_get_lock_says() {
        assert_eq!(
            decide(&seen(true, Some(9), record(100, false, None)), "ours"),
            Decision::Held { expires_in: 0 }
        );
        assert_eq!(
            decide(&seen(true, Some(9), record(99, false, None)), "ours"),
            Decision::Take { expired_ago: Some(1) }
        );
    }

    #[test]
    fn an_expired_live_holder_is_replaced_but_not_a_stranger_holding_the_name() {
        assert_eq!(
            decide(&seen(false, Some(5), record(90, true, Some(5))), "ours"),
            Decision::Take { expired_ago: Some(10) }
        );
        assert_eq!(
            decide(&seen(false, Some(6), record(90, true, Some(5))), "ours"),
            Decision::Held { expires_in: 0 }
        );
    }

    #[test]
    fn our_own_row_from_a_lost_answer_is_ours() {
        let mut mine = record(200, true, Some(5));
        if let Some(r) = mine.as_mut() {
            r.token = "ours".into();
        }
        assert_eq!(
            decide(&seen(false, Some(5), mine), "ours"),
            Decision::Take { expired_ago: None }
        );
    }

    #[test]
    fn names_fit_the_server_limits() {
        assert_eq!(lock_name(b"ab"), "CONVERT(X'6162' USING utf8mb4)");
        let long = lock_name(&[b'a'; 65]);
        assert!(long.contains(&hex(b"cronlock~")[2..20]), "{long}");
        assert_eq!(row_name(&[b'a'; 300]).len(), 2 * MAX_ROW_NAME + 3);
        assert_ne!(crate::net::random::token(), crate::net::random::token());
    }
}
