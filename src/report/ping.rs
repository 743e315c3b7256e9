//! `CRONLOCK_PING_URL`: HTTP(S) pings in the form healthchecks.io's
//! Pinging API takes and runitor sends: `POST URL/start` once the lock is
//! taken, and at the end `POST URL/<exit status>` (healthchecks counts 0 as
//! success and any other status as failure), or `POST URL/log` for a run
//! that found the lock held elsewhere, which records the skip without
//! changing the check's state.
//!
//! A ping is a side channel: each goes out on a thread of its own and is
//! waited for at most [`LIMIT`] in all (name lookup, connection, TLS,
//! request and answer), so a ping server that is slow, or takes the
//! connection and never answers, delays the end of the run by that much at
//! the most and never the command, its timeout or its signals. The start
//! ping runs while the command does and is waited for before the end ping,
//! so the two always arrive in order. A failure is a message for the
//! caller to print as a warning; the exit status never depends on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::config::{PingUrl, Tls};
use crate::net::tls::TlsSetup;
use crate::net::transport::{self, OpenError};

/// How long one ping may take, all told: runitor's own default.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// The lock was taken and the command starts: `URL/start`.
    Start,
    /// The run ended with this exit status: `URL/<status>`.
    Exit(u8),
    /// Another run holds the lock, nothing ran: `URL/log`.
    Skipped,
}

impl Ping {
    /// What goes after the URL's path.
    pub fn suffix(self) -> String {
        match self {
            Ping::Start => "start".to_string(),
            Ping::Exit(code) => code.to_string(),
            Ping::Skipped => "log".to_string(),
        }
    }
}

/// A ping on its way.
pub struct Pending {
    ping: Ping,
    deadline: Instant,
    answer: mpsc::Receiver<Result<()>>,
}

impl Pending {
    /// Waits for the answer until the ping's time is up; `Err` says why the
    /// ping failed, in a few words naming it by its suffix (`/start: ...`).
    pub fn wait(self) -> std::result::Result<(), String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let result = match self.answer.recv_timeout(left) {
            Ok(result) => result,
            // The thread is left behind; the process ends soon.
            Err(mpsc::RecvTimeoutError::Timeout) => Err(anyhow!("no answer within {}s", LIMIT.as_secs())),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(anyhow!("the ping's thread ended without an answer")),
        };
        result.map_err(|err| format!("/{}: {err:#}", self.ping.suffix()))
    }
}

/// Starts `ping` to `url` with `body` (one line of text for the check's
/// event log) on a thread of its own.
pub fn send(url: &PingUrl, ping: Ping, body: String) -> Pending {
    let deadline = Instant::now() + LIMIT;
    let (tell, answer) = mpsc::channel();
    let url = url.clone();
    let spawned = std::thread::Builder::new().name("cronlock-ping".into()).spawn(move || {
        let _ = tell.send(request(&url, ping, &body, deadline));
    });
    if let Err(err) = spawned {
        let (tell, failed) = mpsc::channel();
        let _ = tell.send(Err(anyhow!("cannot start a thread for it: {err}")));
        return Pending {
            ping,
            deadline,
            answer: failed,
        };
    }
    Pending { ping, deadline, answer }
}

/// One `POST` and its status line; the connection is closed after it.
fn request(url: &PingUrl, ping: Ping, body: &str, deadline: Instant) -> Result<()> {
    // Never zero: a zero socket timeout is refused.
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let tls = if url.tls {
        // The system's trust store (SSL_CERT_FILE and SSL_CERT_DIR may
        // name others), not CRONLOCK_TLS_*, which are the lock store's.
        Some(TlsSetup::new(&Tls::default()).map_err(|_| anyhow!("no trusted CA certificates found on this host"))?)
    } else {
        None
    };
    let mut stream = transport::open(&url.host, url.port, tls.as_ref(), Some(left())).map_err(|err| match err {
        OpenError::Tcp(err) => anyhow!(err),
        OpenError::Setup(err) => err,
        OpenError::Handshake(err) => match transport::rustls_error(&err) {
            Some(tls_error) => anyhow!("TLS handshake failed: {tls_error}"),
            None => anyhow!("TLS handshake failed ({err}); does the server speak TLS on this port?"),
        },
    })?;
    stream.set_timeout(Some(left()))?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cronlock/{}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.target(Some(&ping.suffix())),
        url.authority(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    if let Some(authorization) = &url.authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let explain = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            anyhow!("no answer within {}s", LIMIT.as_secs())
        }
        _ => anyhow!(err),
    };
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(explain)?;
    let mut status_line = Vec::new();
    BufReader::new(Read::by_ref(&mut stream).take(1024))
        .read_until(b'\n', &mut status_line)
        .map_err(explain)?;
    let status = status_code(&status_line).context("the server did not answer in HTTP")?;
    if !(200..300).contains(&status) {
        bail!("the server answered HTTP {status}");
    }
    Ok(())
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn suffixes_follow_the_pinging_api() {
        assert_eq!(Ping::Start.suffix(), "start");
        assert_eq!(Ping::Exit(0).suffix(), "0");
        assert_eq!(Ping::Exit(202).suffix(), "202");
        assert_eq!(Ping::Skipped.suffix(), "log");
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    /// A server that answers one request with `answer` and hands back what
    /// it was sent.
    fn serve_once(answer: &'static str) -> (PingUrl, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = std::thread::spawn(move || {
            let (peer, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(peer);
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("a header line");
                if let Some(value) = line.strip_prefix("Content-Length: ") {
                    length = value.trim().parse().expect("a length");
                }
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("the body");
            request.push_str(&String::from_utf8_lossy(&body));
            reader.get_mut().write_all(answer.as_bytes()).expect("answer");
            request
        });
        let url = PingUrl::parse(&format!("http://user:pw@127.0.0.1:{port}/ping/uuid/?create=1")).expect("a URL");
        (url, server)
    }

    #[test]
    fn a_ping_is_one_post_with_its_suffix_and_body() {
        let (url, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        assert_eq!(send(&url, Ping::Exit(3), "exit 3".into()).wait(), Ok(()));
        let request = server.join().expect("server thread");
        assert!(
            request.starts_with("POST /ping/uuid/3?create=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", url.port)),
            "{request}"
        );
        assert!(
            request.contains("\r\nAuthorization: Basic dXNlcjpwdw==\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\nexit 3"), "{request}");
    }

    #[test]
    fn an_error_status_is_a_failure_naming_the_ping() {
        let (url, server) = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let err = send(&url, Ping::Start, String::new()).wait().unwrap_err();
        assert_eq!(err, "/start: the server answered HTTP 404");
        server.join().expect("server thread");
    }
}
