//! etcd's JSON gateway (`POST /v3/...` on the client port) over one kept-alive
//! HTTP/1.1 connection, plain or TLS: requests in, JSON values out, etcd's
//! own error text as the error.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rustls::{ClientConnection, StreamOwned};
use serde_json::{json, Value};

use crate::config::EtcdTarget;
use crate::tls::{self, TlsSetup};

/// A connection idle longer than this is not trusted to still be open (the
/// command may have run for hours, or the member restarted): the next
/// request opens a new one rather than risk resending a write.
const IDLE_LIMIT: Duration = Duration::from_secs(1);

/// The largest answer read; the lock's answers are a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

struct Connection {
    reader: BufReader<Transport>,
    /// `host:port`, for the Host header and messages.
    authority: String,
    last_used: Instant,
}

/// A client of one etcd cluster's gateway.
pub struct Gateway<'a> {
    target: &'a EtcdTarget,
    tls: Option<TlsSetup>,
    connection: Option<Connection>,
    /// The auth token (`/v3/auth/authenticate`), when the URL names a user.
    token: Option<String>,
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
    pub fn new(target: &'a EtcdTarget) -> Result<Gateway<'a>> {
        let tls = target.tls.as_ref().map(TlsSetup::new).transpose()?;
        Ok(Gateway {
            target,
            tls,
            connection: None,
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
        let timeout = match (limit, self.target.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.last_used.elapsed() > IDLE_LIMIT)
        {
            self.connection = None;
        }
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect(timeout)?,
        };
        let authority = connection.authority.clone();
        let (mut connection, status, text) = exchange(connection, path, body, self.token.as_deref(), timeout)
            .with_context(|| format!("etcd {authority}"))?;
        connection.last_used = Instant::now();
        self.connection = Some(connection);
        let value: Value = serde_json::from_slice(&text).map_err(|_| {
            anyhow!(
                "etcd {authority}: {path} answered HTTP {status} without JSON; is this etcd's client port (v3.4 or newer)?"
            )
        })?;
        if status != 200 {
            let message = value
                .get("message")
                .or_else(|| value.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{path} answered HTTP {status}"));
            return Err(anyhow::Error::new(EtcdError(message))).with_context(|| format!("etcd {authority}"));
        }
        Ok(value)
    }

    /// Connects to the first member that answers, in the URL's order.
    fn connect(&self, timeout: Option<Duration>) -> Result<Connection> {
        let mut failures = Vec::new();
        for (host, port) in &self.target.endpoints {
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            match self.connect_one(host, *port, timeout) {
                Ok(transport) => {
                    return Ok(Connection {
                        reader: BufReader::new(transport),
                        authority,
                        last_used: Instant::now(),
                    })
                }
                Err(err) => failures.push(format!("{authority}: {err:#}")),
            }
        }
        bail!("cannot reach etcd: {}", failures.join("; "))
    }

    fn connect_one(&self, host: &str, port: u16, timeout: Option<Duration>) -> Result<Transport> {
        let addresses = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host:?}"))?;
        let mut last = None;
        let mut tcp = None;
        for address in addresses {
            let attempt = match timeout {
                Some(t) => TcpStream::connect_timeout(&address, t),
                None => TcpStream::connect(address),
            };
            match attempt {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(err) => last = Some(err),
            }
        }
        let tcp = match (tcp, last) {
            (Some(tcp), _) => tcp,
            (None, Some(err)) => return Err(err.into()),
            (None, None) => bail!("{host:?} resolves to no address"),
        };
        // Requests are small and each waits for its answer: no Nagle delay.
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(timeout)?;
        tcp.set_write_timeout(timeout)?;
        let Some(setup) = &self.tls else {
            return Ok(Transport::Plain(tcp));
        };
        let mut tcp = tcp;
        let mut session = setup.client(host)?;
        while session.is_handshaking() {
            if let Err(err) = session.complete_io(&mut tcp) {
                let why = match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    Some(tls_error) => tls::explain(tls_error),
                    None => format!("TLS handshake failed ({err}); does the member speak TLS on this port?"),
                };
                bail!(why);
            }
        }
        Ok(Transport::Tls(Box::new(StreamOwned::new(session, tcp))))
    }
}

/// Sends one request and reads its answer: (the connection back, status, body).
fn exchange(
    mut connection: Connection,
    path: &str,
    body: &Value,
    token: Option<&str>,
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
    request.push_str("\r\n");
    request.push_str(&payload);
    let explain = |err: io::Error| match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            anyhow!("no answer within {}s", timeout.map_or(0, |t| t.as_secs()))
        }
        _ => match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls_error) => anyhow!(tls::explain(tls_error)),
            None => anyhow!(err),
        },
    };
    let transport = connection.reader.get_mut();
    transport
        .write_all(request.as_bytes())
        .and_then(|()| transport.flush())
        .map_err(explain)?;

    let plain = matches!(connection.reader.get_ref(), Transport::Plain(_));
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

/// One line, failing on a closed connection instead of returning nothing.
fn read_line(reader: &mut BufReader<Transport>, line: &mut String) -> io::Result<()> {
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
