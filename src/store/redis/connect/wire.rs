//! One connection to one Redis node, plain or TLS: commands go out already
//! packed by the `redis` crate, replies come back through [`reply::read`]. We
//! own the socket so that the handshake, timeouts and pipelining are ours:
//! AUTH travels in the same write as the first command, and no client
//! metadata round trips are added.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::time::Duration;

use super::reply::{self, ReadError, Reply};
use crate::net::tls::{self, TlsSetup};
use crate::net::transport::{self, OpenError};

/// Why a connection could not be used.
#[derive(Debug)]
pub enum WireError {
    /// Could not connect; nothing was sent.
    Connect(io::Error),
    /// A problem that another try will not fix (TLS setup or handshake).
    Fatal(String),
    /// The connection broke after the request may have been sent.
    Io(io::Error),
    /// The bytes that came back are not a Redis reply.
    Protocol(String),
    /// The server is at its `maxclients`: it answered the first request with
    /// this error, ran nothing, and closed.
    Full(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A timeout says so rather than "resource temporarily unavailable".
            WireError::Io(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                f.write_str("no answer within CRONLOCK_REDIS_TIMEOUT")
            }
            WireError::Connect(err) | WireError::Io(err) => write!(f, "{err}"),
            WireError::Fatal(message) => f.write_str(message),
            WireError::Protocol(message) => write!(f, "not a Redis reply: {message}"),
            WireError::Full(message) => f.write_str(message),
        }
    }
}

/// The socket, remembering why TLS last failed: the reply parser keeps
/// only an error's text, and a server that rejects our client certificate
/// (TLS 1.3 does so after the handshake) must be told apart from a
/// dropped connection.
struct Stream {
    transport: transport::Stream,
    tls_failure: Option<String>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.transport.read(buf);
        if let Err(err) = &result {
            if let Some(tls_error) = transport::rustls_error(err) {
                self.tls_failure = Some(tls::explain(tls_error));
            }
        }
        result
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.transport.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.transport.flush()
    }
}

/// An open connection.
pub struct Connection {
    stream: BufReader<Stream>,
    /// Packed commands (AUTH) to send in front of the first request.
    preamble: Vec<u8>,
    preamble_replies: usize,
    /// Nothing has been read yet: a reset now may mean a TLS-only port.
    fresh: bool,
    host: String,
    port: u16,
    timeout: Option<Duration>,
}

impl Connection {
    /// Connects to `host`:`port` within `timeout` (per address, as each
    /// read and write afterwards), and completes the TLS handshake if
    /// `tls` is given.
    pub fn open(host: &str, port: u16, tls: Option<&TlsSetup>, timeout: Option<Duration>) -> Result<Self, WireError> {
        let transport = transport::open(host, port, tls, timeout).map_err(|err| match err {
            OpenError::Tcp(err) => WireError::Connect(err),
            OpenError::Setup(err) => WireError::Fatal(format!("{err:#}")),
            OpenError::Handshake(err) => WireError::Fatal(handshake_failure(&err, timeout)),
        })?;
        let stream = Stream {
            transport,
            tls_failure: None,
        };
        Ok(Connection {
            stream: BufReader::with_capacity(4096, stream),
            preamble: Vec::new(),
            preamble_replies: 0,
            fresh: true,
            host: host.to_string(),
            port,
            timeout,
        })
    }

    /// Queues `AUTH [user] password` to travel with the first request.
    pub fn authenticate_with_first_request(&mut self, user: Option<&str>, password: &str) {
        let mut auth = ::redis::cmd("AUTH");
        if let Some(user) = user {
            auth.arg(user);
        }
        auth.arg(password);
        self.preamble.extend_from_slice(&auth.get_packed_command());
        self.preamble_replies += 1;
    }

    /// Changes the read and write timeout of the socket.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Usually unchanged (only lease renewals shorten it): no syscalls then.
        if self.timeout == timeout {
            return Ok(());
        }
        self.stream.get_ref().transport.set_timeout(timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Whether an AUTH still waits to go out with the next request.
    pub fn has_preamble(&self) -> bool {
        self.preamble_replies > 0
    }

    /// Sends `request` (one or more packed commands) in one write and reads
    /// `replies` replies. Replies to the queued preamble come first.
    pub fn exchange(&mut self, request: &[u8], replies: usize) -> Result<Vec<Reply>, WireError> {
        let preamble = std::mem::take(&mut self.preamble);
        let total = replies + std::mem::take(&mut self.preamble_replies);
        let sent = if preamble.is_empty() {
            self.send(request)
        } else {
            let mut both = preamble;
            both.extend_from_slice(request);
            self.send(&both)
        };
        sent.map_err(|err| self.broken(err))?;
        let mut values = Vec::with_capacity(total);
        for _ in 0..total {
            match reply::read(&mut self.stream) {
                // Over `maxclients` the server answers the first request
                // with this and closes: no further reply will come.
                Ok(Reply::Error(err)) if err.to_string().contains("max number of clients reached") => {
                    return Err(WireError::Full(err.to_string()))
                }
                Ok(value) => values.push(value),
                Err(ReadError::Io(err)) => return Err(self.broken(err)),
                Err(ReadError::Protocol(why)) => return Err(WireError::Protocol(why)),
            }
            self.fresh = false;
        }
        Ok(values)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// A failed read or write. On a plain connection that never answered,
    /// a server that speaks only TLS looks like a reset: check for that so
    /// the message says what to change instead of retrying for minutes.
    fn broken(&self, err: io::Error) -> WireError {
        if let Some(why) = &self.stream.get_ref().tls_failure {
            return WireError::Fatal(why.clone());
        }
        if self.fresh && self.stream.get_ref().transport.is_plain() && speaks_tls(&self.host, self.port, self.timeout) {
            return WireError::Fatal(
                "the server speaks TLS on this port and closed our plain connection; set CRONLOCK_TLS=yes (or use a rediss:// CRONLOCK_URL)"
                    .to_string(),
            );
        }
        WireError::Io(err)
    }
}

/// The handshake's failure in words: rustls's verdict, or what the socket
/// saw (no answer, a closed connection).
fn handshake_failure(err: &io::Error, timeout: Option<Duration>) -> String {
    match (transport::rustls_error(err), err.kind()) {
        (Some(tls_error), _) => tls::explain(tls_error),
        (None, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => format!(
            "no TLS handshake answer within {}s; does the server speak TLS on this port?",
            timeout.map_or(0, |t| t.as_secs())
        ),
        (None, io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
            "the server closed the connection during the TLS handshake; does it speak TLS on this port, and does it want a client certificate?".to_string()
        }
        (None, _) => format!("TLS handshake failed: {err}"),
    }
}

/// How long [`speaks_tls`] waits for an answer.
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// Whether `host`:`port` answers a TLS ClientHello with a TLS record: asked
/// only after a plain connection was closed before any answer.
fn speaks_tls(host: &str, port: u16, timeout: Option<Duration>) -> bool {
    let probe = || -> anyhow::Result<bool> {
        let any_certificate = TlsSetup::new(&crate::config::Tls {
            skip_verify: true,
            ..crate::config::Tls::default()
        })?;
        // Any name will do: the answer is never verified.
        let mut session = any_certificate
            .client(host)
            .or_else(|_| any_certificate.client("localhost"))?;
        // A TLS server answers a ClientHello at once; a plain one waits for a
        // line that never comes, so the question gets at most a second.
        let limit = timeout.unwrap_or(PROBE_LIMIT).min(PROBE_LIMIT);
        let mut tcp = transport::connect_tcp(host, port, Some(limit))?;
        while session.wants_write() {
            session.write_tls(&mut tcp)?;
        }
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head)?;
        // A handshake (22) or alert (21) record of TLS major version 3.
        Ok(matches!(head, [21 | 22, 3]))
    };
    probe().unwrap_or(false)
}
