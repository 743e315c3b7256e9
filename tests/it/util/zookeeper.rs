//! Private ZooKeeper servers for tests: the Debian package's jars run by
//! `java` on free loopback ports, each with its own data directory, killed
//! when dropped. [`ZooKeeper`] is one standalone server, [`Ensemble`] three
//! servers of one ensemble.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

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
        let process = java(&self.dir, "org.apache.zookeeper.server.ZooKeeperServerMain", &cfg);
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
            mode(port).as_deref() == Some("standalone")
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

    /// Freezes the server (SIGSTOP): its connections stay open and nothing
    /// is answered, as when the network between it and its clients fails.
    pub fn pause(&self) {
        signal(self.process.as_ref(), Signal::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.process.as_ref(), Signal::SIGCONT);
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

/// `srvr`'s `Mode:` (standalone, leader, follower), once the server serves.
pub fn mode(port: u16) -> Option<String> {
    let answer = four_letters(port, "srvr")?;
    let line = answer.lines().find_map(|line| line.strip_prefix("Mode: "))?;
    Some(line.trim().to_string())
}

/// Starts `main` on `cfg` under `java`, its output in `dir`'s `server.log`.
fn java(dir: &TempDir, main: &str, cfg: &Path) -> Child {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    Command::new("java")
        .args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
        ])
        .arg("-Dzookeeper.log.dir=".to_string() + &dir.path().display().to_string())
        .arg("-Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties")
        .args(["-cp", &format!("{JARS}/*:/etc/zookeeper/conf")])
        .arg(main)
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("java: {e} (scripts/test.sh installs zookeeper)"))
}

fn signal(process: Option<&Child>, signal: Signal) {
    if let Some(process) = process {
        kill(Pid::from_raw(process.id() as i32), signal).unwrap();
    }
}

/// One server of an [`Ensemble`].
pub struct Member {
    /// The port clients use.
    pub port: u16,
    /// Holds `zoo.cfg`, `data/` (with `myid`) and `server.log`.
    dir: TempDir,
    process: Option<Child>,
}

/// Three `QuorumPeerMain`s of one ensemble on loopback, each with its own
/// client, quorum and election ports and data directory, killed when
/// dropped. `tickTime=500` as for [`ZooKeeper`], so sessions are granted
/// the 3 s cronlock asks for and a lost leader is noticed within a second
/// or two (`syncLimit=4`: 2 s).
pub struct Ensemble {
    pub members: Vec<Member>,
}

impl Ensemble {
    /// Starts the three servers at once (the JVMs are slow to start) and
    /// waits until one leads and two follow.
    pub fn start() -> Ensemble {
        assert!(
            Path::new(JARS).join("zookeeper.jar").is_file(),
            "{JARS}/zookeeper.jar not found (scripts/test.sh installs zookeeper)"
        );
        let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, election))| format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1))
            .collect();
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, _, _))| {
                let dir = TempDir::new(&format!("zookeeper-{}", i + 1));
                let data = dir.join("data");
                std::fs::create_dir_all(&data).unwrap();
                std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
                let config = format!(
                    "tickTime=500\ninitLimit=10\nsyncLimit=4\nminSessionTimeout=1000\n\
                     dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                     admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,cons\n\
                     maxClientCnxns=0\nforceSync=no\n{servers}",
                    data.display()
                );
                std::fs::write(dir.join("zoo.cfg"), config).unwrap();
                Member {
                    port: *port,
                    dir,
                    process: None,
                }
            })
            .collect();
        for member in &mut members {
            member.launch();
        }
        let mut ensemble = Ensemble { members };
        ensemble.wait_serving(&[0, 1, 2]);
        ensemble
    }

    /// Waits until every one of `members` serves (leads or follows), and
    /// one member leads.
    fn wait_serving(&mut self, members: &[usize]) {
        wait_until(Duration::from_secs(90), "the ensemble to serve", || {
            for &i in members {
                let member = &mut self.members[i];
                if let Some(child) = member.process.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "zookeeper {} exited ({status}):\n{}",
                            i + 1,
                            log_tail(&member.dir.join("server.log"))
                        );
                    }
                }
            }
            let modes: Vec<Option<String>> = members.iter().map(|&i| mode(self.members[i].port)).collect();
            modes
                .iter()
                .all(|m| matches!(m.as_deref(), Some("leader" | "follower")))
                && self.leader().is_some()
        });
    }

    /// `zookeeper://` with all three servers.
    pub fn url(&self) -> String {
        self.url_of(&[0, 1, 2])
    }

    /// `zookeeper://` with only `members`' servers.
    pub fn url_of(&self, members: &[usize]) -> String {
        let hosts: Vec<String> = members
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.members[i].port))
            .collect();
        format!("zookeeper://{}", hosts.join(","))
    }

    /// Variables that point cronlock at all three servers.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("CRONLOCK_URL".to_string(), self.url())]
    }

    /// The member that leads now, if one does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| mode(self.members[i].port).as_deref() == Some("leader"))
    }

    /// The members that follow now.
    pub fn followers(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| mode(self.members[i].port).as_deref() == Some("follower"))
            .collect()
    }

    /// The members that hold at least one client session now (`cons`
    /// lists each session's connection with its `sid`).
    pub fn serving_sessions(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| four_letters(self.members[i].port, "cons").is_some_and(|cons| cons.contains("sid=0x")))
            .collect()
    }

    /// Kills member `i` now.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts member `i` again on its ports with its data, and waits until
    /// it serves within the ensemble again.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.members[i].launch();
        self.wait_serving(&[i]);
    }

    /// Freezes member `i` (SIGSTOP).
    pub fn pause(&self, i: usize) {
        signal(self.members[i].process.as_ref(), Signal::SIGSTOP);
    }

    /// Lets member `i` go on (SIGCONT).
    pub fn resume(&self, i: usize) {
        signal(self.members[i].process.as_ref(), Signal::SIGCONT);
    }
}

impl Member {
    fn launch(&mut self) {
        let cfg = self.dir.join("zoo.cfg");
        self.process = Some(java(
            &self.dir,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            &cfg,
        ));
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut process) = member.process.take() {
                // A paused JVM dies of SIGKILL all the same.
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }
}

/// A plain ZooKeeper client of the test's own (the store's client crate),
/// to read and write nodes as another program would. Its runtime is driven
/// by a thread of its own, so that its session (and its ephemeral nodes)
/// stays alive between requests; the thread stops when it is dropped.
#[cfg(feature = "zookeeper")]
pub struct Client {
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
    client: Option<zookeeper_client::Client>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "zookeeper")]
impl ZooKeeper {
    /// A plain client with a session on this server.
    pub fn client(&self) -> Client {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let runtime = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (driver, stopped) = (Arc::clone(&runtime), Arc::clone(&stop));
        std::thread::spawn(move || {
            driver.block_on(async move {
                while !stopped.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        });
        let cluster = format!("127.0.0.1:{}", self.port);
        let client = runtime
            .block_on(zookeeper_client::Client::connect(&cluster))
            .unwrap_or_else(|e| panic!("a session on {cluster}: {e}"));
        Client {
            runtime,
            client: Some(client),
            stop,
        }
    }
}

#[cfg(feature = "zookeeper")]
impl Client {
    fn run<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), request)
                .await
                .expect("zookeeper answers within 10 s")
        })
    }

    fn zk(&self) -> &zookeeper_client::Client {
        self.client.as_ref().expect("the client lives until dropped")
    }

    /// The children of `path`, sorted; none when it does not exist.
    pub fn children(&self, path: &str) -> Vec<String> {
        match self.run(self.zk().list_children(path)) {
            Ok(mut children) => {
                children.sort();
                children
            }
            Err(zookeeper_client::Error::NoNode) => Vec::new(),
            Err(e) => panic!("listing {path}: {e}"),
        }
    }

    /// The data of `path`, or `None` when it does not exist.
    pub fn data(&self, path: &str) -> Option<Vec<u8>> {
        match self.run(self.zk().get_data(path)) {
            Ok((data, _)) => Some(data),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(e) => panic!("reading {path}: {e}"),
        }
    }

    /// Creates `path` and its parents as empty persistent nodes where missing.
    pub fn ensure(&self, path: &str) {
        let options = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
        let ends = path.match_indices('/').map(|(i, _)| i).filter(|&i| i > 0);
        for prefix in ends.map(|i| &path[..i]).chain([path]) {
            match self.run(self.zk().create(prefix, b"", &options)) {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                Err(e) => panic!("creating {prefix}: {e}"),
            }
        }
    }

    /// Creates an ephemeral sequential node `<prefix><10 digits>` of this
    /// session with `data`, and returns its path.
    pub fn create_ephemeral_sequential(&self, prefix: &str, data: &[u8]) -> String {
        let options = zookeeper_client::CreateMode::EphemeralSequential.with_acls(zookeeper_client::Acls::anyone_all());
        let (_, sequence) = self
            .run(self.zk().create(prefix, data, &options))
            .unwrap_or_else(|e| panic!("creating {prefix}: {e}"));
        format!("{prefix}{sequence}")
    }

    /// Deletes `path`.
    pub fn delete(&self, path: &str) {
        self.run(self.zk().delete(path, None))
            .unwrap_or_else(|e| panic!("deleting {path}: {e}"));
    }
}

#[cfg(feature = "zookeeper")]
impl Drop for Client {
    fn drop(&mut self) {
        // The session closes once the client's last handle is gone, in a
        // round trip the driving thread serves; the server then drops its
        // ephemeral nodes at once rather than a session timeout later.
        if let Some(client) = self.client.take() {
            let mut watcher = client.state_watcher();
            drop(client);
            self.runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(2), watcher.changed()).await;
            });
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
