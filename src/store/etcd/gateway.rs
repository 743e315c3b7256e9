//! etcd's JSON gateway (`POST /v3/...` on the client port) over one kept-alive
//! HTTP/1.1 connection, plain or TLS: requests in, JSON values out, etcd's
//! own error text as the error; with several members, a request that one
//! member cannot serve goes to the next.
//!
//! Failover, when the URL lists several members. A member can fail a
//! request in three ways: its port refuses the connection (it is dead:
//! costs nothing); it takes the request and does not answer (stopped,
//! partitioned, or a follower that passed a write on to a leader that has
//! just died, which etcd answers only after its own request timeout, 7 s
//! with the default election timeout); or it answers that it cannot serve
//! now (gRPC code 14, Unavailable: "no leader", "leader changed", "request
//! timed out"). In each case the request goes to the next member in turn,
//! each try bounded by [`MEMBER_LIMIT`] (doubled after every round of the
//! members), with a short pause after a round in which none answered, until
//! `CRONLOCK_REDIS_TIMEOUT` has passed since the request began. The member
//! that answered is asked first next time, so a run pays for a stopped
//! member once, not per request. With one member, one try bounded by
//! `CRONLOCK_REDIS_TIMEOUT` alone, asked again only when the member answers
//! that it cannot serve now.
//!
//! A request sent again may have been applied already (its answer lost, or
//! etcd timed out waiting for a proposal that still commits). Every request
//! of the lock recipe (`super`) is safe to apply twice; each one says why.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use super::settings::EtcdTarget;
use crate::net::reconnect::Reconnects;
use crate::net::tls::{self, TlsSetup};
use crate::net::transport::{self, OpenError, Stream};
use crate::process::signals;
use crate::report::Report;

/// A connection idle longer than this is not trusted to still be open (the
/// command may have run for hours, or the member restarted): the next
/// request opens a new one rather than risk resending a write.
const IDLE_LIMIT: Duration = Duration::from_secs(1);

/// The largest answer read; the lock's answers are a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

/// With several members, how long the first round of tries gives each
/// member to connect and to answer. A healthy member answers the lock's
/// requests in milliseconds; a follower that passed a write on to a leader
/// that has just died keeps it for etcd's request timeout (5 s plus two
/// election timeouts) before it says so, while the election itself takes
/// one or two election timeouts (1 s by default): cutting the wait short
/// and asking the next member gets the answer from the new leader sooner.
/// Each further round doubles it, so that a cluster that is merely slow is
/// still waited for.
const MEMBER_LIMIT: Duration = Duration::from_secs(2);

/// The pause after a round of the members in which none answered (an
/// election under way), doubled after each such round up to
/// [`ROUND_PAUSE_MAX`].
const ROUND_PAUSE_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two rounds.
const ROUND_PAUSE_MAX: Duration = Duration::from_secs(1);

/// At most this many rounds of the members for one request, however much
/// time is left: the rounds are for an election, which is over in a few
/// seconds (their pauses alone add up to 6.5 s), and members that close
/// every connection without an answer (they want TLS, say) should fail
/// the run in seconds, not after the whole `CRONLOCK_REDIS_TIMEOUT`.
const MAX_ROUNDS: u32 = 10;

/// How long the members are tried in turn when `CRONLOCK_REDIS_TIMEOUT` is 0
/// (no limit): failover needs an end, and this is that setting's default.
const FAILOVER_WITHOUT_TIMEOUT: Duration = Duration::from_secs(30);

struct Connection {
    reader: BufReader<Stream>,
    /// `host:port`, for the Host header and messages.
    authority: String,
    /// The member's place in the URL's list.
    member: usize,
    last_used: Instant,
}

/// A client of one etcd cluster's gateway.
pub struct Gateway<'a> {
    target: &'a EtcdTarget,
    report: &'a Report,
    tls: Option<TlsSetup>,
    connection: Option<Connection>,
    /// The member asked first: the one that answered last.
    preferred: usize,
    /// The auth token (`/v3/auth/authenticate`), when the URL names a user.
    token: Option<String>,
}

/// How one try at one member failed.
enum Failure {
    /// No connection: the port refused it, or the TLS handshake failed.
    /// Nothing was sent.
    Connect(anyhow::Error),
    /// Sent (maybe), and no usable answer: none in time, the connection
    /// closed, or etcd said that this member cannot serve now. Another
    /// member may do better.
    Member(anyhow::Error),
    /// An answer any member would give: etcd's own refusal (auth, a lease
    /// not found) or something that is not etcd.
    Final(anyhow::Error),
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Connect(err) | Failure::Member(err) | Failure::Final(err) => err,
        }
    }
}

/// An error etcd itself answered with (as opposed to a network failure).
#[derive(Debug)]
pub struct EtcdError(pub String);

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EtcdError {}

impl<'a> Gateway<'a> {
    /// A client for `target`; reads the TLS files now, connects on the first request.
    pub fn new(target: &'a EtcdTarget, report: &'a Report) -> Result<Gateway<'a>> {
        let tls = target.tls.as_ref().map(TlsSetup::new).transpose()?;
        Ok(Gateway {
            target,
            report,
            tls,
            connection: None,
            preferred: 0,
            token: None,
        })
    }

    /// Calls `path` (e.g. `/v3/kv/txn`) with `body`, authenticating first
    /// when a user is configured, and once more if the token has expired.
    pub fn call(&mut self, path: &str, body: &Value, limit: Option<Duration>) -> Result<Value> {
        if self.target.user.is_some() && self.token.is_none() {
            self.authenticate(limit)?;
        }
        match self.post(path, body, limit) {
            Err(err)
                if self.token.is_some()
                    && err
                        .downcast_ref::<EtcdError>()
                        .is_some_and(|e| e.0.contains("invalid auth token")) =>
            {
                // Simple tokens expire after five idle minutes: a long command outlives one.
                self.authenticate(limit)?;
                self.post(path, body, limit)
            }
            other => other,
        }
    }

    fn authenticate(&mut self, limit: Option<Duration>) -> Result<()> {
        self.token = None;
        let (Some(user), Some(password)) = (&self.target.user, &self.target.password) else {
            return Ok(());
        };
        let body = json!({ "name": user, "password": password });
        let answer = self
            .post("/v3/auth/authenticate", &body, limit)
            .with_context(|| format!("etcd authentication as {user:?}"))?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("etcd authentication as {user:?}: no token in the answer"))?;
        self.token = Some(token.to_string());
        Ok(())
    }

    fn post(&mut self, path: &str, body: &Value, limit: Option<Duration>) -> Result<Value> {
        let timeout = match (limit, self.target.connection.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let members = self.target.endpoints.len();
        if members == 1 {
            return self.ask_the_only_member(path, body, timeout);
        }
        let window = timeout.unwrap_or(FAILOVER_WITHOUT_TIMEOUT);
        let deadline = Instant::now() + window;
        // A short CRONLOCK_REDIS_TIMEOUT is shared out, so that one member
        // that does not answer leaves time to ask the others.
        let mut member_limit = MEMBER_LIMIT.min(window / members as u32);
        let mut pause = ROUND_PAUSE_FIRST;
        let mut failures: Vec<Option<String>> = vec![None; members];
        let started = Instant::now();
        let mut round = 0;
        loop {
            round += 1;
            let first = self.preferred;
            let mut refused = 0;
            for step in 0..members {
                let member = (first + step) % members;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.try_member(member, path, body, Some(member_limit.min(left))) {
                    Ok(answer) => {
                        self.preferred = member;
                        return Ok(answer);
                    }
                    Err(Failure::Final(err)) => return Err(err),
                    Err(Failure::Connect(err)) => {
                        refused += 1;
                        failures[member] = Some(format!("{err:#}"));
                    }
                    Err(Failure::Member(err)) => failures[member] = Some(format!("{err:#}")),
                }
            }
            let summary = || failures.iter().flatten().cloned().collect::<Vec<_>>().join("; ");
            if refused == members {
                // Nobody there at all, as with a single member that is
                // down: no election will bring one back.
                bail!("cannot reach etcd: {}", summary());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || round == MAX_ROUNDS {
                bail!(
                    "no etcd member answered {path} ({round} round{} in {}): {}",
                    if round == 1 { "" } else { "s" },
                    seconds(started.elapsed()),
                    summary()
                );
            }
            if let Some(signal) = signals::sleep_unless_told_to_stop(pause.min(left)) {
                bail!(
                    "stopped by {signal} while waiting for an etcd member to answer: {}",
                    summary()
                );
            }
            pause = (pause * 2).min(ROUND_PAUSE_MAX);
            member_limit = member_limit.saturating_mul(2);
        }
    }

    /// `path` at the one member there is: nobody else to ask. An answer
    /// that it cannot serve now (Unavailable: "request timed out" when a
    /// fleet's herd keeps it busy, "no leader" as it restarts) is asked again
    /// after a short jittered pause, for up to `timeout`
    /// ([`Reconnects::busy`]); anything else is final, as a request that got
    /// no answer within `timeout` is.
    fn ask_the_only_member(&mut self, path: &str, body: &Value, timeout: Option<Duration>) -> Result<Value> {
        // The pauses of every store's "too many clients", which this is.
        let mut reconnects = Reconnects::new(self.report, 0, 0);
        let (host, port) = &self.target.endpoints[0];
        let server = format!("etcd at {host}:{port}");
        loop {
            match self.try_member(0, path, body, timeout) {
                Err(Failure::Member(err)) if err.downcast_ref::<EtcdError>().is_some() => {
                    let why = err
                        .downcast_ref::<EtcdError>()
                        .map_or_else(String::new, |e| e.0.clone());
                    reconnects.busy(&server, &why, timeout)?;
                }
                other => return other.map_err(Failure::into_error),
            }
        }
    }

    /// One try of `path` at `member`, on the kept connection if it is to
    /// that member and fresh, else on a new one; `timeout` bounds the
    /// connection and each wait for the answer.
    fn try_member(
        &mut self,
        member: usize,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> std::result::Result<Value, Failure> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.member != member || c.last_used.elapsed() > IDLE_LIMIT)
        {
            self.connection = None;
        }
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect(member, timeout).map_err(Failure::Connect)?,
        };
        let authority = connection.authority.clone();
        let require_leader = self.target.endpoints.len() > 1;
        let (mut connection, status, text) =
            exchange(connection, path, body, self.token.as_deref(), require_leader, timeout)
                .with_context(|| format!("etcd {authority}"))
                .map_err(Failure::Member)?;
        connection.last_used = Instant::now();
        self.connection = Some(connection);
        let value: Value = serde_json::from_slice(&text).map_err(|_| {
            Failure::Final(anyhow!(
                "etcd {authority}: {path} answered HTTP {status} without JSON; is this etcd's client port (v3.4 or newer)?"
            ))
        })?;
        if status != 200 {
            let message = value
                .get("message")
                .or_else(|| value.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{path} answered HTTP {status}"));
            let unavailable = unavailable(&value, &message);
            let err = anyhow::Error::new(EtcdError(message)).context(format!("etcd {authority}"));
            return Err(if unavailable {
                Failure::Member(err)
            } else {
                Failure::Final(err)
            });
        }
        Ok(value)
    }

    /// Connects to `member`.
    fn connect(&self, member: usize, timeout: Option<Duration>) -> Result<Connection> {
        let (host, port) = &self.target.endpoints[member];
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        match self.connect_one(host, *port, timeout) {
            Ok(transport) => Ok(Connection {
                reader: BufReader::new(transport),
                authority,
                member,
                last_used: Instant::now(),
            }),
            Err(err) if self.target.endpoints.len() == 1 => bail!("cannot reach etcd: {authority}: {err:#}"),
            Err(err) => bail!("{authority}: {err:#}"),
        }
    }

    fn connect_one(&self, host: &str, port: u16, timeout: Option<Duration>) -> Result<Stream> {
        transport::open(host, port, self.tls.as_ref(), timeout).map_err(|err| match err {
            OpenError::Tcp(err) => err.into(),
            OpenError::Setup(err) => err,
            OpenError::Handshake(io) => match transport::rustls_error(&io) {
                Some(tls_error) => anyhow!(tls::explain(tls_error)),
                None => anyhow!("TLS handshake failed ({io}); does the member speak TLS on this port?"),
            },
        })
    }
}

/// Whether etcd's error answer means "not now, maybe elsewhere": gRPC code
/// 14 (Unavailable: no leader, leader changed, request timed out, member
/// stopping) or 8 with "too many requests" (a member whose applies lag).
fn unavailable(answer: &Value, message: &str) -> bool {
    match answer.get("code").and_then(Value::as_i64) {
        Some(14) => true,
        Some(8) => message.contains("too many requests"),
        _ => false,
    }
}

/// Sends one request and reads its answer: (the connection back, status,
/// body). With `require_leader`, a member that knows of no leader answers
/// "no leader" at once (the gateway passes `Grpc-Metadata-*` headers on as
/// gRPC metadata, and `hasleader: true` is what `clientv3.WithRequireLeader`
/// sends) instead of holding the request until its own request timeout:
/// another member, or the same one after the election, can then be asked.
/// Not with a single member, which has nobody else to ask, and which stays
/// as it was.
fn exchange(
    mut connection: Connection,
    path: &str,
    body: &Value,
    token: Option<&str>,
    require_leader: bool,
    timeout: Option<Duration>,
) -> Result<(Connection, u16, Vec<u8>)> {
    let payload = body.to_string();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        connection.authority,
        payload.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: {token}\r\n"));
    }
    if require_leader {
        request.push_str("Grpc-Metadata-Hasleader: true\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    let explain = |err: io::Error| match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            anyhow!("no answer within {}", seconds(timeout.unwrap_or_default()))
        }
        _ => match transport::rustls_error(&err) {
            Some(tls_error) => anyhow!(tls::explain(tls_error)),
            None => anyhow!(err),
        },
    };
    let transport = connection.reader.get_mut();
    // This request's limit, which may be shorter than the one the
    // connection was opened with (a renewal's, a member's try).
    // (A zero timeout would be refused: what is left of a renewal's time
    // may round down to nothing.)
    let socket_timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
    transport.set_timeout(socket_timeout)?;
    transport
        .write_all(request.as_bytes())
        .and_then(|()| transport.flush())
        .map_err(explain)?;

    let plain = connection.reader.get_ref().is_plain();
    let reader = &mut connection.reader;
    let mut line = String::new();
    read_line(reader, &mut line).map_err(|err| match err.kind() {
        // A member that speaks TLS closes a plain connection without a word.
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset if plain => anyhow!(
            "the connection closed without an HTTP answer; is this etcd's client port, and does it want TLS (etcds://)?"
        ),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            anyhow!("the connection closed without an HTTP answer; is this etcd's client port?")
        }
        _ => explain(err),
    })?;
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("no HTTP answer; is this etcd's client port?"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        read_line(reader, &mut line).map_err(explain)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            bail!("malformed HTTP header in the answer");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| anyhow!("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let mut text = Vec::new();
    if chunked {
        loop {
            line.clear();
            read_line(reader, &mut line).map_err(explain)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| anyhow!("bad chunk size in the answer"))?;
            if text.len() + size > MAX_BODY {
                bail!("answer too long");
            }
            let start = text.len();
            text.resize(start + size, 0);
            reader.read_exact(&mut text[start..]).map_err(explain)?;
            line.clear();
            read_line(reader, &mut line).map_err(explain)?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length.filter(|&n| n <= MAX_BODY) {
        text.resize(length, 0);
        reader.read_exact(&mut text).map_err(explain)?;
    } else {
        bail!("answer without a usable length");
    }
    if close {
        // Not reusable: the next request connects anew.
        connection.last_used = Instant::now() - IDLE_LIMIT * 2;
    }
    Ok((connection, status, text))
}

/// A duration for messages: whole seconds as "2s", else "0.5s".
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One line, failing on a closed connection instead of returning nothing.
fn read_line(reader: &mut BufReader<Stream>, line: &mut String) -> io::Result<()> {
    let mut bytes = Vec::new();
    let n = reader.by_ref().take(8192).read_until(b'\n', &mut bytes)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    line.push_str(&String::from_utf8_lossy(&bytes));
    Ok(())
}

/// A key or value as the gateway carries bytes.
pub fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// The bytes of a base64 field (absent: empty).
pub fn unb64(value: Option<&Value>) -> Vec<u8> {
    value
        .and_then(Value::as_str)
        .and_then(|text| BASE64.decode(text).ok())
        .unwrap_or_default()
}

/// An int64 field: the gateway writes them as strings, and leaves out zeros.
pub fn int(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::String(text)) => text.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_fields_are_read_as_the_gateway_writes_them() {
        let v = json!({"a": "42", "b": 7, "c": "x"});
        assert_eq!(int(v.get("a")), 42);
        assert_eq!(int(v.get("b")), 7);
        assert_eq!(int(v.get("c")), 0);
        assert_eq!(int(v.get("missing")), 0);
        assert_eq!(unb64(Some(&json!(b64(b"cronlock.k/1f")))), b"cronlock.k/1f");
    }
}
