//! A TCP connection, plain or TLS through rustls, opened within a time
//! limit: the one copy that Redis's wire, etcd's gateway and the run's
//! pings (`report::ping`) share. Each caller words the failures itself,
//! since what to check differs (a Redis port, an etcd member, a ping URL).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use crate::net::tls::TlsSetup;

/// An open connection, plain or TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, the handshake done.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    /// The socket beneath, for its timeouts.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Whether this is a plain connection.
    pub fn is_plain(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    /// Sets the read and write timeout of the socket; `None` waits forever.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)?;
        self.tcp().set_write_timeout(timeout)
    }
}

/// Why [`open`] failed.
#[derive(Debug)]
pub enum OpenError {
    /// No TCP connection: the name did not resolve, or no address took the
    /// connection in time. Nothing was sent.
    Tcp(io::Error),
    /// The TLS session could not be set up (the server name is not one a
    /// certificate can carry).
    Setup(anyhow::Error),
    /// The TLS handshake failed: see [`OpenError::tls`] for rustls's verdict.
    Handshake(io::Error),
}

impl OpenError {
    /// rustls's own error, when the handshake failed on one (a certificate
    /// rejected, an alert received), as `net::tls::explain` words it.
    pub fn tls(&self) -> Option<&rustls::Error> {
        match self {
            OpenError::Handshake(err) => rustls_error(err),
            _ => None,
        }
    }
}

/// The rustls error inside an I/O error of a TLS stream, if that is what it is.
pub fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Connects to `host`:`port` (each address it resolves to in turn, each
/// within `timeout`) and, given `tls`, completes the handshake, so that its
/// failures show as what they are rather than as a broken first request.
/// `timeout` also bounds every read and write afterwards.
pub fn open(host: &str, port: u16, tls: Option<&TlsSetup>, timeout: Option<Duration>) -> Result<Stream, OpenError> {
    let mut tcp = connect_tcp(host, port, timeout).map_err(OpenError::Tcp)?;
    let Some(setup) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut session = setup.client(host).map_err(OpenError::Setup)?;
    while session.is_handshaking() {
        session.complete_io(&mut tcp).map_err(OpenError::Handshake)?;
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(session, tcp))))
}

/// TCP connect, trying each address `host` resolves to, each within
/// `timeout`; no Nagle delay (every request waits for its answer), and
/// `timeout` on every read and write.
pub fn connect_tcp(host: &str, port: u16, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let mut last = None;
    for address in (host, port).to_socket_addrs()? {
        let attempt = match timeout {
            Some(timeout) => TcpStream::connect_timeout(&address, timeout),
            None => TcpStream::connect(address),
        };
        match attempt {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                tcp.set_read_timeout(timeout)?;
                tcp.set_write_timeout(timeout)?;
                return Ok(tcp);
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("'{host}' resolves to no address"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_plain_connection_carries_bytes_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().expect("accept");
            let mut asked = [0u8; 4];
            peer.read_exact(&mut asked).expect("read");
            peer.write_all(b"pong").expect("write");
            asked
        });
        let mut stream = open("127.0.0.1", port, None, Some(Duration::from_secs(5))).expect("connect");
        assert!(stream.is_plain());
        stream.write_all(b"ping").expect("send");
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).expect("answer");
        assert_eq!(&answer, b"pong");
        assert_eq!(&server.join().expect("server thread"), b"ping");
    }

    #[test]
    fn a_refused_port_is_a_tcp_error() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let err = open("127.0.0.1", port, None, Some(Duration::from_secs(5))).err();
        assert!(matches!(err, Some(OpenError::Tcp(_))), "{err:?}");
    }
}
