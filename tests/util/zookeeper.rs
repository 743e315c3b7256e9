//! A private ZooKeeper server for tests: the Debian package's jars run by
//! `java`, standalone, on a free loopback port, with its own data directory,
//! killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, log_tail, wait_until, TempDir};

/// Where the Debian package `zookeeper` puts its jars.
const JARS: &str = "/usr/share/java";

/// A `ZooKeeperServerMain` of our own. `tickTime=500`, so sessions may be
/// as short as 1 s and cronlock's 3 s session is granted as asked.
/// `forceSync=no`: the log is written to the OS, not fsynced, at each
/// commit, which survives [`ZooKeeper::kill`] (only an OS crash would lose it)
/// and keeps a session's set-up from waiting on the disk.
pub struct ZooKeeper {
    pub port: u16,
    /// The server's `maxClientCnxns`: 0 (no limit) unless
    /// [`ZooKeeper::start_with_client_limit`] says otherwise.
    max_client_cnxns: u32,
    /// Holds `zoo.cfg`, `data/` and `server.log`; kept across [`ZooKeeper::restart`].
    pub dir: TempDir,
    process: Option<Child>,
}

impl ZooKeeper {
    /// A fresh server on a free port, with no limit on connections per host.
    pub fn start() -> ZooKeeper {
        ZooKeeper::start_with_client_limit(0)
    }

    /// A fresh server that accepts at most `limit` connections from one
    /// address (`maxClientCnxns`; stock ZooKeeper's is 60) and closes the
    /// ones over it, as a herd of hosts meets it.
    pub fn start_with_client_limit(limit: u32) -> ZooKeeper {
        assert!(
            Path::new(JARS).join("zookeeper.jar").is_file(),
            "{JARS}/zookeeper.jar not found (scripts/test.sh installs zookeeper)"
        );
        let dir = TempDir::new("zookeeper");
        let mut server = ZooKeeper {
            port: free_port(),
            max_client_cnxns: limit,
            dir,
            process: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = format!(
            "tickTime=500\nminSessionTimeout=1000\ndataDir={}\nclientPort={}\n\
             clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             4lw.commands.whitelist=ruok,srvr\nmaxClientCnxns={}\nforceSync=no\n",
            data.display(),
            self.port,
            self.max_client_cnxns
        );
        let cfg = self.dir.join("zoo.cfg");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let process = Command::new("java")
            .args([
                "-Xmx128m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Xshare:auto",
            ])
            .arg("-Dzookeeper.log.dir=".to_string() + &self.dir.path().display().to_string())
            .arg("-Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties")
            .args(["-cp", &format!("{JARS}/*:/etc/zookeeper/conf")])
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("java: {e} (scripts/test.sh installs zookeeper)"));
        self.process = Some(process);
        let port = self.port;
        let log = self.dir.join("server.log");
        // `ruok` answers before sessions are served; `srvr` names the mode only then.
        wait_until(Duration::from_secs(60), "zookeeper to serve", || {
            if let Some(child) = self.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("zookeeper exited ({status}):\n{}", log_tail(&log));
                }
            }
            four_letters(port, "srvr").is_some_and(|answer| answer.contains("Mode: standalone"))
        });
    }

    /// Variables that point cronlock here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("CRONLOCK_URL".to_string(), self.url())]
    }

    /// `zookeeper://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("zookeeper://127.0.0.1:{}", self.port)
    }

    /// Stops the server now (for fault tests).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A four-letter-word command's answer, if the server gives one.
pub fn four_letters(port: u16, word: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(word.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
