//! A private etcd member for tests: its own data directory, free loopback
//! client and peer ports, killed when dropped; plain or TLS-only with
//! certificates of the test CA; and `etcdctl` against it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::pki::Pki;
use super::{find_program, free_port, log_tail, wait_until, TempDir};

/// One etcd member's command line, shared by the one-member fixture and
/// the three-member cluster (`super::etcd_cluster`).
pub struct MemberCommand<'a> {
    /// `--name`.
    pub name: &'a str,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The client URL it listens on and advertises.
    pub client: String,
    /// The peer URL it listens on and advertises.
    pub peer: String,
    /// `--initial-cluster`: `name=peer-url,...`.
    pub initial_cluster: String,
    /// `--heartbeat-interval` and `--election-timeout`, in milliseconds.
    pub timing_ms: (u32, u32),
    /// Where its output goes (appended).
    pub log: PathBuf,
}

impl MemberCommand<'_> {
    /// The `etcd` command for this member, without fsync, quiet but for its log.
    pub fn command(&self) -> Command {
        let program = find_program("etcd", &[]).expect("etcd not found: scripts/test.sh installs etcd-server");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let mut command = Command::new(program);
        command
            .args(["--name", self.name, "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &self.client,
                "--advertise-client-urls",
                &self.client,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer,
                "--initial-advertise-peer-urls",
                &self.peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .arg("--heartbeat-interval")
            .arg(self.timing_ms.0.to_string())
            .arg("--election-timeout")
            .arg(self.timing_ms.1.to_string())
            .arg("--unsafe-no-fsync")
            .env_remove("ETCDCTL_API")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        command
    }
}

/// Starts a member's command.
pub fn spawn(mut command: Command) -> Child {
    command
        .spawn()
        .unwrap_or_else(|e| panic!("etcd: {e} (scripts/test.sh installs etcd-server)"))
}

/// An `etcd` of our own (never port 2379), a one-member cluster.
pub struct Etcd {
    pub port: u16,
    peer_port: u16,
    pub dir: TempDir,
    /// `root`'s password once [`Etcd::enable_auth`] has run.
    root_password: Option<String>,
    /// How clients reach a TLS member: the files in `tls/` under
    /// [`Etcd::dir`], and whether it requires a client certificate.
    tls: Option<ClientCertificates>,
    process: Option<Child>,
}

/// Whether a TLS member requires a client certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    Optional,
    Required,
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::init(None)
    }

    /// A member whose client port speaks only TLS (https), showing `pki`'s
    /// `server.crt` (localhost, 127.0.0.1); with
    /// [`ClientCertificates::Required`] it takes only clients that show a
    /// certificate of `pki`'s CA. Its own `etcdctl` uses `client.crt`.
    pub fn start_tls(pki: &Pki, clients: ClientCertificates) -> Etcd {
        Etcd::init(Some((pki, clients)))
    }

    fn init(tls: Option<(&Pki, ClientCertificates)>) -> Etcd {
        let mut etcd = Etcd {
            port: free_port(),
            peer_port: free_port(),
            dir: TempDir::new("etcd"),
            root_password: None,
            tls: tls.map(|(_, clients)| clients),
            process: None,
        };
        if let Some((pki, _)) = tls {
            std::fs::create_dir_all(etcd.dir.join("tls")).unwrap();
            for file in ["ca.crt", "client.crt", "client.key"] {
                std::fs::copy(pki.path(file), etcd.dir.join(&format!("tls/{file}"))).unwrap();
            }
            etcd.copy_certificate(pki, "server");
        }
        etcd.launch();
        etcd
    }

    /// Makes a TLS member show `pki`'s certificate `name` ("server",
    /// "expired", "wrong-name"): etcd reads its files again at every
    /// handshake, so the next connection gets it.
    pub fn use_certificate(&self, pki: &Pki, name: &str) {
        assert!(
            self.tls.is_some(),
            "use_certificate needs a member made by Etcd::start_tls"
        );
        self.copy_certificate(pki, name);
    }

    fn copy_certificate(&self, pki: &Pki, name: &str) {
        for extension in ["crt", "key"] {
            let from = pki.path(&format!("{name}.{extension}"));
            std::fs::copy(&from, self.dir.join(&format!("tls/server.{extension}")))
                .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
    }

    fn launch(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut member = MemberCommand {
            name: "test",
            data_dir: self.dir.join("data"),
            client: format!("{scheme}://127.0.0.1:{}", self.port),
            peer: peer.clone(),
            initial_cluster: format!("test={peer}"),
            // A short election timeout makes etcd's smallest lease 1 s (it
            // is 2 s with the defaults), so RELEASE=0 means what it says.
            timing_ms: (10, 100),
            log: self.dir.join("etcd.log"),
        }
        .command();
        if let Some(clients) = self.tls {
            let tls = self.dir.join("tls");
            member
                .arg("--cert-file")
                .arg(tls.join("server.crt"))
                .arg("--key-file")
                .arg(tls.join("server.key"));
            if clients == ClientCertificates::Required {
                member
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(tls.join("ca.crt"));
            }
        }
        let process = spawn(member);
        let log_path = self.dir.join("etcd.log");
        let process = self.process.insert(process);
        let (port, tls) = (self.port, self.tls.map(|_| self.dir.join("tls")));
        wait_until(Duration::from_secs(20), "etcd to answer", || {
            if let Ok(Some(status)) = process.try_wait() {
                panic!("etcd exited ({status}):\n{}", log_tail(&log_path));
            }
            etcdctl_at(port, tls.as_deref(), None, &["endpoint", "health"])
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    }

    /// Kills the member (its data stays for [`Etcd::restart`]).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// `CRONLOCK_URL` pointing at this member: `etcds://` for a TLS one.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Environment that points cronlock at this member.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("CRONLOCK_URL".to_string(), self.url())]
    }

    /// An `etcdctl` command (API v3) against this member, as root once auth is on.
    pub fn etcdctl(&self) -> Command {
        etcdctl_command(self.port, self.tls_dir().as_deref(), self.root_password.as_deref())
    }

    /// Where a TLS member's files are.
    fn tls_dir(&self) -> Option<PathBuf> {
        self.tls.map(|_| self.dir.join("tls"))
    }

    /// Runs `etcdctl ARGS`; its stdout, panicking on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = etcdctl_at(
            self.port,
            self.tls_dir().as_deref(),
            self.root_password.as_deref(),
            args,
        )
        .unwrap_or_else(|e| panic!("etcdctl: {e} (scripts/test.sh installs etcd-client)"));
        assert!(
            output.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Every key in the store, one per line.
    pub fn keys(&self) -> Vec<String> {
        self.ctl(&["get", "--prefix", "", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Turns on authentication with a `root` user (password `root_password`).
    pub fn enable_auth(&mut self, root_password: &str) {
        self.ctl(&["user", "add", &format!("root:{root_password}")]);
        self.ctl(&["auth", "enable"]);
        self.root_password = Some(root_password.to_string());
    }

    /// Adds user `name` with `password`, allowed to read and write the keys
    /// under `cronlock.` (through a role `cronlock`) and nothing else.
    pub fn add_cronlock_user(&self, name: &str, password: &str) {
        self.ctl(&["user", "add", &format!("{name}:{password}")]);
        self.ctl(&["role", "add", "cronlock"]);
        self.ctl(&[
            "role",
            "grant-permission",
            "cronlock",
            "--prefix=true",
            "readwrite",
            "cronlock.",
        ]);
        self.ctl(&["user", "grant-role", name, "cronlock"]);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `etcdctl` against the member on `port`; for a TLS one, `tls` holds the
/// CA and the client certificate to use.
fn etcdctl_command(port: u16, tls: Option<&Path>, root_password: Option<&str>) -> Command {
    let mut command = plain_etcdctl();
    match tls {
        Some(tls) => {
            command
                .arg(format!("--endpoints=https://127.0.0.1:{port}"))
                .arg(format!("--cacert={}", tls.join("ca.crt").display()))
                .arg(format!("--cert={}", tls.join("client.crt").display()))
                .arg(format!("--key={}", tls.join("client.key").display()));
        }
        None => {
            command.arg(format!("--endpoints=127.0.0.1:{port}"));
        }
    }
    if let Some(password) = root_password {
        command.arg(format!("--user=root:{password}"));
    }
    command
}

/// `etcdctl` (API v3) with none of the caller's `ETCDCTL_*` settings, a
/// short dial timeout, and no endpoints yet.
pub(super) fn plain_etcdctl() -> Command {
    let program = find_program("etcdctl", &[]).unwrap_or_else(|| PathBuf::from("etcdctl"));
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCDCTL_") {
            command.env_remove(&name);
        }
    }
    command.env("ETCDCTL_API", "3").arg("--dial-timeout=2s");
    command
}

fn etcdctl_at(port: u16, tls: Option<&Path>, root_password: Option<&str>, args: &[&str]) -> std::io::Result<Output> {
    etcdctl_command(port, tls, root_password)
        .args(args)
        .stdin(Stdio::null())
        .output()
}
