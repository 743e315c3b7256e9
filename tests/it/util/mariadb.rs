//! A private MariaDB server for tests: its own data directory made by
//! `mariadb-install-db`, on a free loopback port, killed when dropped;
//! plain, or also offering TLS with a certificate of the test CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::pki::Pki;
use super::{find_program, free_port, log_tail, url_encode, wait_until, TempDir};

/// A `mariadbd` of our own, never the system's (port 3306, its socket and
/// its config files are all left alone). Root has an empty password, over
/// the socket and over TCP from 127.0.0.1.
///
/// Commits are written to the OS at commit time
/// (`innodb_flush_log_at_trx_commit=2`), so they survive [`MariaDb::kill`];
/// nothing is fsynced, which only an OS crash would notice.
pub struct MariaDb {
    pub port: u16,
    /// Holds `data/`, the socket and `error.log`; kept across [`MariaDb::restart`].
    pub dir: TempDir,
    /// Started with `--ssl-*`: the files are in `tls/` under [`MariaDb::dir`].
    tls: bool,
    process: Option<Child>,
}

impl MariaDb {
    /// A fresh server on a free port, without TLS (it offers none).
    pub fn start() -> MariaDb {
        MariaDb::init(None)
    }

    /// A fresh server that offers TLS (and still takes plain logins from
    /// users not made to `REQUIRE SSL`): it shows `pki`'s `server.crt`
    /// (localhost, 127.0.0.1) and checks client certificates against
    /// `ca.crt`.
    pub fn start_tls(pki: &Pki) -> MariaDb {
        MariaDb::init(Some(pki))
    }

    fn init(pki: Option<&Pki>) -> MariaDb {
        let dir = TempDir::new("mariadb");
        if let Some(pki) = pki {
            std::fs::create_dir_all(dir.join("tls")).unwrap();
            std::fs::copy(pki.path("ca.crt"), dir.join("tls/ca.crt")).unwrap();
            copy_certificate(pki, "server", &dir);
        }
        // A temporary directory of its own: in a /tmp shared with other
        // servers starting at the same moment, install-db sometimes fails
        // ("Unknown table 'mysql.tmp_user_sys'").
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let mut install = Command::new(program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .args(server_settings())
            .current_dir(dir.path())
            .stdin(Stdio::null());
        let output = install
            .output()
            .unwrap_or_else(|e| panic!("mariadb-install-db: {e} (scripts/test.sh installs mariadb-server)"));
        assert!(
            output.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = MariaDb {
            port: free_port(),
            dir,
            tls: pki.is_some(),
            process: None,
        };
        server.launch();
        server
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same data (as after a crash when it was killed).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let log = self.dir.join("error.log");
        let socket = self.socket();
        let mut command = Command::new(program("mariadbd"));
        command.arg("--no-defaults");
        if self.tls {
            let tls = self.dir.join("tls");
            command
                .arg(format!("--ssl-ca={}", tls.join("ca.crt").display()))
                .arg(format!("--ssl-cert={}", tls.join("server.crt").display()))
                .arg(format!("--ssl-key={}", tls.join("server.key").display()));
        }
        let process = command
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", self.dir.join("mariadbd.pid").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args(server_settings())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("mariadbd: {e} (scripts/test.sh installs mariadb-server)"));
        // Kept in self at once, so a panic below still kills it on drop.
        let process = self.process.insert(process);
        wait_until(Duration::from_secs(30), "mariadbd to answer on its socket", || {
            if let Ok(Some(status)) = process.try_wait() {
                panic!("mariadbd exited ({status}):\n{}", log_tail(&log));
            }
            root_sql(&socket, "SELECT 1").is_ok()
        });
    }

    /// Makes a TLS server show `pki`'s certificate `name` ("server",
    /// "expired", "wrong-name") to the connections that follow (`FLUSH SSL`
    /// reads the files again; no restart).
    pub fn use_certificate(&self, pki: &Pki, name: &str) {
        assert!(self.tls, "use_certificate needs a server made by MariaDb::start_tls");
        copy_certificate(pki, name, &self.dir);
        self.sql("FLUSH SSL");
    }

    /// Stops the server at once with SIGKILL (for fault tests); the data
    /// stays for [`MariaDb::restart`].
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// The server's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mariadbd.sock")
    }

    /// Runs `sql` as root over the socket; the rows, tab-separated, trimmed.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("mariadb -e {sql:?} failed: {e}"))
    }

    /// Runs `sql` as root over the socket in a session that the server
    /// keeps until the statements end or the client is killed (a second
    /// session holding a `GET_LOCK`, say); its output is dropped.
    pub fn session(&self, sql: &str) -> Child {
        let mut command = client();
        command
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .arg("--execute")
            .arg(sql)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
            .spawn()
            .unwrap_or_else(|e| panic!("mariadb: {e} (scripts/test.sh installs mariadb-client)"))
    }

    /// Like [`MariaDb::sql`], with the client's stderr as the error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        root_sql(&self.socket(), sql)
    }

    /// Runs `sql` as `user` over TCP to 127.0.0.1, so the password is
    /// checked the way a client's is; the client's stderr as the error.
    pub fn query_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let mut command = client();
        command
            .args(["--protocol=TCP", "--host=127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            // In the environment, not on the command line where `ps` shows it.
            .env("MYSQL_PWD", password);
        run_client(command, sql)
    }

    /// Creates `name` (from any host) with `password` and runs
    /// `GRANT {grant} TO name` for each of `grants`, e.g. `"ALL ON cronlock.*"`.
    pub fn create_user(&self, name: &str, password: &str, grants: &[&str]) {
        let user = format!("'{}'@'%'", quote(name));
        let mut sql = format!("CREATE USER {user} IDENTIFIED BY '{}';", quote(password));
        for grant in grants {
            sql.push_str(&format!(" GRANT {grant} TO {user};"));
        }
        self.sql(&sql);
    }

    /// `mysql://user:password@127.0.0.1:PORT/db`, user and password
    /// percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{db}",
            url_encode(user),
            url_encode(password),
            self.port
        )
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `pki`'s `name.crt` and `name.key` as the server's `tls/server.crt` and `tls/server.key`.
fn copy_certificate(pki: &Pki, name: &str, dir: &TempDir) {
    for extension in ["crt", "key"] {
        let from = pki.path(&format!("{name}.{extension}"));
        std::fs::copy(&from, dir.join(&format!("tls/server.{extension}")))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// Settings shared by install and server: small and quick rather than safe
/// against an OS crash.
fn server_settings() -> Vec<String> {
    let mut settings: Vec<String> = [
        "--innodb-buffer-pool-size=16M",
        "--innodb-log-file-size=8M",
        "--innodb-flush-log-at-trx-commit=2",
        "--innodb-doublewrite=0",
        "--skip-log-bin",
    ]
    .map(String::from)
    .to_vec();
    // mariadbd refuses to run as root unless told to.
    if nix::unistd::geteuid().is_root() {
        settings.push("--user=root".into());
    }
    settings
}

/// Runs `sql` as root over `socket`.
fn root_sql(socket: &Path, sql: &str) -> Result<String, String> {
    let mut command = client();
    command.arg(format!("--socket={}", socket.display())).arg("--user=root");
    run_client(command, sql)
}

/// The `mariadb` client, reading no option files, in batch mode without
/// column names.
fn client() -> Command {
    let mut command = Command::new(program("mariadb"));
    command.args(["--no-defaults", "--batch", "--skip-column-names", "--connect-timeout=5"]);
    command
}

fn run_client(mut command: Command, sql: &str) -> Result<String, String> {
    let output = command
        .arg("--execute")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("mariadb: {e} (scripts/test.sh installs mariadb-client)"));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// `name` from PATH, or from /usr/sbin, which is where Debian puts
/// `mariadbd` and is not on a normal user's PATH.
fn program(name: &str) -> PathBuf {
    find_program(name, &[PathBuf::from("/usr/sbin")])
        .unwrap_or_else(|| panic!("{name} not found: scripts/test.sh installs mariadb-server and mariadb-client"))
}

/// A string for inside single quotes in SQL.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "''")
}
