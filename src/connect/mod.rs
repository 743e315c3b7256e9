//! Reaching Redis: connection with timeouts, reconnects with the original's
//! linear backoff, Sentinel lookup, and Cluster `MOVED`/`ASK` redirects.

mod sentinel;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, Value};

use crate::config::RedisTarget;
use crate::report::Report;
use crate::signals;

/// How many redirects one command may follow before we call it a loop.
const MAX_REDIRECTS: u32 = 16;

/// Whether a command may be sent again when its outcome is unknown (the
/// connection broke after it was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once.
    Idempotent,
    /// Only resend when it surely never reached the server.
    OnlyIfUnsent,
}

/// A connection to the node that currently serves our key.
pub struct Session<'a> {
    target: &'a RedisTarget,
    report: &'a Report,
    /// The node we talk to: the configured one, the master Sentinel named,
    /// or wherever the cluster redirected us.
    node: Option<(String, u16)>,
    connection: Option<redis::Connection>,
}

enum Failure {
    /// Could not connect; nothing was sent.
    Connect(redis::RedisError),
    /// The connection broke after the command may have been sent.
    InFlight(redis::RedisError),
    /// The server answered with an error.
    Server(redis::RedisError),
    /// The cluster sent us elsewhere.
    Redirect { host: String, port: u16, ask: bool },
    /// Not a connection problem: stop at once.
    Fatal(anyhow::Error),
}

impl<'a> Session<'a> {
    /// A session that connects on first use.
    pub fn new(target: &'a RedisTarget, report: &'a Report) -> Session<'a> {
        Session {
            target,
            report,
            node: None,
            connection: None,
        }
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
    pub fn query(&mut self, cmd: &Cmd, retry: Retry) -> Result<Value> {
        let mut attempt: u32 = 0;
        let mut redirects = 0;
        let mut asking = false;
        loop {
            let failure = match self.try_query(cmd, asking) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            asking = false;
            let err = match failure {
                Failure::Redirect { host, port, ask } => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        bail!(
                            "{}: more than {MAX_REDIRECTS} cluster redirects; is the cluster healthy?",
                            self.describe()
                        );
                    }
                    self.report.info(format_args!(
                        "{} redirect from {} to '{host}' port '{port}'",
                        if ask { "ASK" } else { "MOVED" },
                        self.describe()
                    ));
                    self.connection = None;
                    self.node = Some((host, port));
                    asking = ask;
                    continue;
                }
                Failure::Fatal(err) => return Err(err),
                Failure::Server(err) => return Err(self.server_error(&err)),
                Failure::InFlight(err) if retry == Retry::OnlyIfUnsent => {
                    bail!(
                        "{}: connection lost before the answer came ({}); the lock may stay taken until it expires",
                        self.describe(),
                        brief(&err)
                    );
                }
                Failure::InFlight(err) | Failure::Connect(err) => err,
            };
            self.connection = None;
            if attempt >= self.target.reconnect_attempts {
                let tries = attempt + 1;
                bail!(
                    "cannot reach {} ({}) after {tries} attempt{}",
                    self.describe(),
                    brief(&err),
                    if tries == 1 { "" } else { "s" }
                );
            }
            let wait = Duration::from_secs(u64::from(attempt) * self.target.reconnect_backoff);
            self.report.info(format_args!(
                "{}: {}; reconnecting in {}s ({} of {})",
                self.describe(),
                brief(&err),
                wait.as_secs(),
                attempt + 1,
                self.target.reconnect_attempts
            ));
            if let Some(signal) = signals::sleep_unless_told_to_stop(wait) {
                bail!("stopped by {signal} while waiting to reconnect to {}", self.describe());
            }
            attempt += 1;
            // A Sentinel may name a new master after a failover: ask again.
            if self.target.sentinel.is_some() {
                self.node = None;
            }
        }
    }

    fn try_query(&mut self, cmd: &Cmd, asking: bool) -> Result<Value, Failure> {
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let connection = self
            .connection
            .as_mut()
            .ok_or_else(|| Failure::Fatal(anyhow!("no connection")))?;
        let reply = if asking {
            let mut pipe = redis::pipe();
            pipe.cmd("ASKING").ignore().add_command(cmd.clone());
            pipe.query::<Vec<Value>>(connection)
                .map(|mut values| values.pop().unwrap_or(Value::Nil))
        } else {
            cmd.query::<Value>(connection)
        };
        reply.map_err(classify)
    }

    fn connect(&mut self) -> Result<redis::Connection, Failure> {
        if self.node.is_none() {
            self.node = Some(match &self.target.sentinel {
                Some(sentinel) => sentinel::master(sentinel, self.target, self.report)?,
                None => (self.target.host.clone(), self.target.port),
            });
        }
        let (host, port) = self.node.clone().unwrap_or_default();
        self.report
            .info(format_args!("connecting to redis at '{host}' port '{port}'"));
        let mut redis_info = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(password) = &self.target.password {
            redis_info = redis_info.set_password(password);
        }
        if let Some(user) = &self.target.user {
            redis_info = redis_info.set_username(user);
        }
        let info = connection_info(&host, port, self.target, redis_info).map_err(Failure::Fatal)?;
        open(info, self.target.timeout).map_err(|err| match err.kind() {
            redis::ErrorKind::AuthenticationFailed => Failure::Fatal(anyhow!(
                "invalid auth for {}: the server refused the password{}",
                self.describe(),
                if self.target.user.is_some() { " or user" } else { "" }
            )),
            _ if is_server_error(&err) => Failure::Fatal(self.server_error(&err)),
            _ => Failure::Connect(err),
        })
    }

    /// A one-line message for an error reply, in the original's spirit.
    fn server_error(&self, err: &redis::RedisError) -> anyhow::Error {
        let text = err.to_string();
        if text.contains("DB index is out of range") || text.contains("invalid DB index") {
            return anyhow!(
                "Redis db '{}' does not exist at {}; check the number of databases",
                self.target.db,
                self.describe()
            );
        }
        if text.contains("NOAUTH") || text.contains("WRONGPASS") || text.contains("without any password configured") {
            return anyhow!("invalid auth for {}: {}", self.describe(), brief(err));
        }
        if text.contains("SELECT is not allowed in cluster mode") {
            return anyhow!(
                "{} is a cluster node, where only db 0 exists; unset CRONLOCK_DB",
                self.describe()
            );
        }
        anyhow!("{} answered: {}", self.describe(), brief(err))
    }
}

/// Builds the address for one node, plain or TLS.
pub(crate) fn connection_info(
    host: &str,
    port: u16,
    target: &RedisTarget,
    redis: RedisConnectionInfo,
) -> Result<ConnectionInfo> {
    let addr = match &target.tls {
        None => ConnectionAddr::Tcp(host.to_string(), port),
        Some(_) => bail!("TLS support is not available in this build"),
    };
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

/// Connects with `timeout` for the connect and handshake, then keeps it as
/// the read and write timeout, as the original's `read -t` does.
pub(crate) fn open(info: ConnectionInfo, timeout: Option<Duration>) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(info)?;
    let connection = match timeout {
        Some(timeout) => client.get_connection_with_timeout(timeout)?,
        None => client.get_connection()?,
    };
    connection.set_read_timeout(timeout)?;
    connection.set_write_timeout(timeout)?;
    Ok(connection)
}

fn classify(err: redis::RedisError) -> Failure {
    if let Some((host, port)) = err.redirect_node() {
        let ask = err.code() == Some("ASK");
        return Failure::Redirect {
            host: host.to_string(),
            port,
            ask,
        };
    }
    if is_server_error(&err) {
        Failure::Server(err)
    } else {
        Failure::InFlight(err)
    }
}

fn is_server_error(err: &redis::RedisError) -> bool {
    matches!(err.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension)
        || (!err.is_io_error() && err.code().is_some())
}

/// The error without redis-rs's wrapping, on one line.
pub(crate) fn brief(err: &redis::RedisError) -> String {
    err.to_string().replace('\n', " ")
}
