//! Reaching Redis: connections (plain or TLS) with timeouts, reconnects
//! with the original's linear backoff, Sentinel lookup, and Cluster
//! `MOVED`/`ASK` redirects.

mod reply;
mod sentinel;
mod wire;

use std::fmt;
use std::time::{Duration, Instant};

use ::redis::Cmd;
use anyhow::{bail, Result};

use crate::net::reconnect::Reconnects;
use crate::net::tls::TlsSetup;
use crate::report::Report;
use crate::store::redis::settings::RedisTarget;
pub use reply::{Reply, ServerError};
use wire::{Connection, WireError};

/// How many redirects one command may follow before we call it a loop.
const MAX_REDIRECTS: u32 = 16;
/// Through Sentinel, a connection quiet for this long is not trusted to
/// reach the master: the next request asks Sentinel again. A command runs
/// for seconds or days between the acquire and the release; had Sentinel
/// failed the master over meanwhile, the release (or a renewal) would be
/// written to the old master, whose data the new one never gets, and the
/// new master would keep the lock until its RELEASE ran out.
const SENTINEL_QUIET: Duration = Duration::from_secs(1);

/// Whether a command may be sent again when its outcome is unknown (the
/// connection broke after it was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once.
    Idempotent,
    /// Only resend when it surely never reached the server.
    OnlyIfUnsent,
}

/// The server refused our AUTH, which travelled in the same write as the
/// command; `reply` is what the command did anyway (a server without a
/// password runs it), so the caller can undo it.
#[derive(Debug)]
pub struct AuthRejected {
    /// The message for the user.
    pub message: String,
    /// The command's own reply.
    pub reply: Reply,
}

impl fmt::Display for AuthRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuthRejected {}

/// A single try that did not get an answer.
#[derive(Debug)]
pub struct Unconfirmed {
    /// What went wrong, for the log.
    pub message: String,
    /// The command may have reached the server and run.
    pub maybe_sent: bool,
}

/// A connection to the node that currently serves our key.
pub struct Session<'a> {
    target: &'a RedisTarget,
    report: &'a Report,
    tls: Option<TlsSetup>,
    /// The node we talk to: the configured one, the master Sentinel named,
    /// or wherever the cluster redirected us.
    node: Option<(String, u16)>,
    connection: Option<Connection>,
    /// When the connection last answered.
    answered: Option<Instant>,
}

enum Failure {
    /// Could not connect; nothing was sent.
    Connect(String),
    /// The connection broke after the command may have been sent.
    InFlight(String),
    /// The server answered with an error.
    Server(ServerError),
    /// Through Sentinel, a write reached a replica (`READONLY`): the master
    /// we were given is being failed over, and the write did not run.
    Demoted(String),
    /// The server is at its `maxclients`: it refused the connection, and
    /// ran nothing of what we sent.
    Busy(String),
    /// The cluster sent us elsewhere.
    Redirect { host: String, port: u16, ask: bool },
    /// Not a connection problem: stop at once.
    Fatal(anyhow::Error),
}

impl From<WireError> for Failure {
    fn from(err: WireError) -> Failure {
        let message = err.to_string();
        match err {
            WireError::Connect(_) => Failure::Connect(message),
            WireError::Io(_) => Failure::InFlight(message),
            WireError::Fatal(_) | WireError::Protocol(_) => Failure::Fatal(anyhow::anyhow!(message)),
            WireError::Full(_) => Failure::Busy(message),
        }
    }
}

impl<'a> Session<'a> {
    /// A session that connects on first use. TLS files are read here, so a
    /// missing CA bundle is reported before anything is tried.
    pub fn new(target: &'a RedisTarget, report: &'a Report) -> Result<Session<'a>> {
        let tls = match &target.tls {
            Some(settings) => {
                if settings.skip_verify {
                    report.info(format_args!(
                        "TLS certificate verification is OFF (CRONLOCK_TLS_SKIP_VERIFY): the server is not authenticated"
                    ));
                }
                Some(TlsSetup::new(settings)?)
            }
            None => None,
        };
        Ok(Session {
            target,
            report,
            tls,
            node: None,
            connection: None,
            answered: None,
        })
    }

    /// Where verbose lines go.
    pub fn report(&self) -> &'a Report {
        self.report
    }

    /// Where the session is talking to, for messages.
    pub fn describe(&self) -> String {
        let (host, port) = self
            .node
            .clone()
            .unwrap_or_else(|| (self.target.host.clone(), self.target.port));
        format!("Redis at '{host}' port '{port}'")
    }

    /// Sends `cmd` and returns the reply, reconnecting and following cluster
    /// redirects as needed.
    pub fn query(&mut self, cmd: &Cmd, retry: Retry) -> Result<Reply> {
        let packed = cmd.get_packed_command();
        let mut reconnects = Reconnects::of(self.report, &self.target.connection);
        loop {
            let err = match self.send_following_redirects(&packed, self.target.connection.timeout) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(err)) => return Err(err.context(self.describe())),
                Err(Failure::Server(err)) => return Err(self.server_error(&err)),
                Err(Failure::Busy(err)) => {
                    self.connection = None;
                    reconnects.busy(&self.describe(), &err, self.target.connection.timeout)?;
                    continue;
                }
                Err(Failure::Demoted(err)) => {
                    // Sentinel names the new master within moments: ask
                    // again soon, not after the backoff meant for a dead server.
                    self.connection = None;
                    self.node = None;
                    reconnects.busy(&self.describe(), &err, self.target.connection.timeout)?;
                    continue;
                }
                Err(Failure::InFlight(err)) if retry == Retry::OnlyIfUnsent => {
                    bail!(
                        "{}: connection lost before the answer came ({err}); the lock may stay taken until it expires",
                        self.describe(),
                    );
                }
                Err(Failure::InFlight(err) | Failure::Connect(err)) => err,
                Err(Failure::Redirect { .. }) => bail!("{}: redirect not followed", self.describe()),
            };
            self.connection = None;
            reconnects.after(&self.describe(), &err)?;
            // A Sentinel may name a new master after a failover: ask again.
            if self.target.sentinel.is_some() {
                self.node = None;
            }
        }
    }

    /// One try at `cmd` within `limit` (redirects followed, no reconnect
    /// loop): for lease renewals, which must give up before the lease ends.
    pub fn query_once(&mut self, cmd: &Cmd, limit: Duration) -> Result<Reply, Unconfirmed> {
        let timeout = Some(self.target.connection.timeout_within(limit));
        let result = self.send_following_redirects(&cmd.get_packed_command(), timeout);
        let (message, maybe_sent) = match result {
            Ok(value) => return Ok(value),
            Err(Failure::Connect(err)) => (err, false),
            Err(Failure::InFlight(err)) => (err, true),
            Err(Failure::Fatal(err)) => (format!("{err:#}"), true),
            Err(Failure::Server(err)) => (format!("{:#}", self.server_error(&err)), true),
            Err(Failure::Demoted(err) | Failure::Busy(err)) => (err, false),
            Err(Failure::Redirect { .. }) => ("redirect not followed".to_string(), true),
        };
        self.connection = None;
        if self.target.sentinel.is_some() {
            self.node = None;
        }
        Err(Unconfirmed {
            message: format!("{}: {message}", self.describe()),
            maybe_sent,
        })
    }

    /// Sends `packed` and follows MOVED/ASK; every other failure is returned.
    fn send_following_redirects(&mut self, packed: &[u8], timeout: Option<Duration>) -> Result<Reply, Failure> {
        let mut redirects = 0;
        let mut asking = false;
        loop {
            match self.try_query(packed, asking, timeout) {
                Err(Failure::Redirect { mut host, port, ask }) => {
                    // A node that knows no better name for its peer sends
                    // an empty host: it means the host we asked.
                    if host.is_empty() {
                        host = self.node.clone().map_or_else(|| self.target.host.clone(), |(h, _)| h);
                    }
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Failure::Fatal(anyhow::anyhow!(
                            "more than {MAX_REDIRECTS} cluster redirects; is the cluster healthy?"
                        )));
                    }
                    self.report.info(format_args!(
                        "{} redirect from {} to '{host}' port '{port}'",
                        if ask { "ASK" } else { "MOVED" },
                        self.describe()
                    ));
                    self.connection = None;
                    self.node = Some((host, port));
                    asking = ask;
                }
                other => return other,
            }
        }
    }

    fn try_query(&mut self, packed: &[u8], asking: bool, timeout: Option<Duration>) -> Result<Reply, Failure> {
        if self.target.sentinel.is_some() && self.answered.is_some_and(|at| at.elapsed() >= SENTINEL_QUIET) {
            self.report.info(format_args!(
                "{} has been quiet: asking Sentinel again",
                self.describe()
            ));
            self.connection = None;
            self.node = None;
        }
        match self.connection.as_mut() {
            Some(connection) => connection
                .set_timeout(timeout)
                .map_err(|err| Failure::Connect(err.to_string()))?,
            None => self.connection = Some(self.connect(timeout)?),
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(Failure::Fatal(anyhow::anyhow!("no connection")));
        };
        let had_auth = connection.has_preamble();
        let mut replies = if asking {
            let mut request = ::redis::cmd("ASKING").get_packed_command();
            request.extend_from_slice(packed);
            connection.exchange(&request, 2)?
        } else {
            connection.exchange(packed, 1)?
        };
        let reply = replies.pop().unwrap_or(Reply::Nil);
        if had_auth {
            if let Some(Reply::Error(err)) = replies.first() {
                let why = err.to_string();
                let message = if why.contains("without any password configured") {
                    format!(
                        "invalid auth for {}: it has no password set, but CRONLOCK_AUTH is given",
                        self.describe()
                    )
                } else {
                    format!(
                        "invalid auth for {}: the server refused the password{} ({why})",
                        self.describe(),
                        if self.target.user.is_some() { " or user" } else { "" }
                    )
                };
                return Err(Failure::Fatal(anyhow::Error::new(AuthRejected { message, reply })));
            }
        }
        self.answered = Some(Instant::now());
        match reply {
            Reply::Error(err) if err.code() == "READONLY" && self.target.sentinel.is_some() => {
                Err(Failure::Demoted(err.to_string()))
            }
            Reply::Error(err) => Err(classify(err)),
            value => Ok(value),
        }
    }

    fn connect(&mut self, timeout: Option<Duration>) -> Result<Connection, Failure> {
        if self.node.is_none() {
            self.node = Some(match &self.target.sentinel {
                Some(sentinel) => sentinel::master(sentinel, self.tls.as_ref(), timeout, self.report)?,
                None => (self.target.host.clone(), self.target.port),
            });
        }
        let (host, port) = self.node.clone().unwrap_or_default();
        self.report.info(format_args!(
            "connecting to redis at '{host}' port '{port}'{}",
            if self.tls.is_some() { " over TLS" } else { "" }
        ));
        let mut connection = Connection::open(&host, port, self.tls.as_ref(), timeout)?;
        if let Some(password) = &self.target.password {
            connection.authenticate_with_first_request(self.target.user.as_deref(), password);
        }
        Ok(connection)
    }

    /// A one-line message for an error reply, in the original's spirit.
    fn server_error(&self, err: &ServerError) -> anyhow::Error {
        let text = err.to_string();
        if text.contains("DB index is out of range") || text.contains("invalid DB index") {
            return anyhow::anyhow!(
                "Redis db '{}' does not exist at {}; check the number of databases",
                self.target.db,
                self.describe()
            );
        }
        if text.starts_with("NOAUTH") || text.starts_with("WRONGPASS") {
            return anyhow::anyhow!(
                "invalid auth for {}: {text} (set CRONLOCK_AUTH{})",
                self.describe(),
                if self.target.user.is_none() {
                    ", and CRONLOCK_USER for an ACL user"
                } else {
                    ""
                }
            );
        }
        if text.starts_with("NOPERM") {
            return anyhow::anyhow!(
                "{} refused: {text} (the ACL user needs EVAL and the lock keys)",
                self.describe()
            );
        }
        if text.contains("SELECT is not allowed in cluster mode") {
            return anyhow::anyhow!(
                "{} is a cluster node, where only db 0 exists; unset CRONLOCK_DB",
                self.describe()
            );
        }
        anyhow::anyhow!("{} answered: {text}", self.describe())
    }
}

/// `MOVED <slot> <host>:<port>` and `ASK ...` are redirects; the rest are errors.
fn classify(err: ServerError) -> Failure {
    let ask = err.code() == "ASK";
    if ask || err.code() == "MOVED" {
        let target = err.detail().and_then(|d| d.split_whitespace().nth(1));
        if let Some((host, port)) = target.and_then(|t| t.rsplit_once(':')) {
            if let Ok(port) = port.parse::<u16>() {
                return Failure::Redirect {
                    host: host.to_string(),
                    port,
                    ask,
                };
            }
        }
    }
    Failure::Server(err)
}
