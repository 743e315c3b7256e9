//! A private `memcached` on a free loopback port, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until};

/// A `memcached` of our own (TCP only, no UDP), never on 11211.
pub struct MemcachedServer {
    pub port: u16,
    process: Child,
}

impl MemcachedServer {
    /// A server with memcached's defaults (64 MB, evicting when full).
    pub fn start() -> MemcachedServer {
        MemcachedServer::start_with(&[])
    }

    /// A server with extra command-line options.
    pub fn start_with(extra: &[&str]) -> MemcachedServer {
        let port = loop {
            let port = free_port();
            if port != 11211 {
                break port;
            }
        };
        let mut command = Command::new("memcached");
        command.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
        // memcached refuses to run as root unless told which user to be.
        if nix::unistd::geteuid().is_root() {
            command.args(["-u", "root"]);
        }
        let process = command
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached must be installed (scripts/test.sh installs memcached)");
        let server = MemcachedServer { port, process };
        wait_until(Duration::from_secs(10), "memcached to answer version", || {
            server
                .request("version\r\n")
                .is_some_and(|reply| reply.starts_with("VERSION "))
        });
        server
    }

    /// Sends one request and returns what came back within a moment.
    pub fn request(&self, request: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = vec![0; 4096];
        let n = stream.read(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply[..n]).to_string())
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        let reply = self.request(&format!("get {key}\r\n"))?;
        let mut lines = reply.split("\r\n");
        lines.next().filter(|header| header.starts_with("VALUE "))?;
        lines.next().map(str::to_string)
    }

    /// Environment that points cronlock at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "CRONLOCK_URL".to_string(),
            format!("memcached://127.0.0.1:{}", self.port),
        )]
    }

    /// Stops the server now (for fault tests).
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        self.kill();
    }
}
