//! A private PostgreSQL server for tests: its own cluster made by `initdb`,
//! on a free loopback port, stopped and removed when dropped; plain, or also
//! offering TLS with a certificate of the test CA.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

use super::pki::Pki;
use super::{find_program, free_port, log_tail, url_encode, wait_until, TempDir};

/// pg_hba.conf lines put before initdb's own (which take any user's
/// password over TCP, with or without TLS): members of `tls_only` log in
/// over TLS only, members of `tls_client_cert` over TLS only and with a
/// client certificate of the test CA whose CN is their role's name.
const TLS_HBA: &str = "\
hostssl all +tls_only        127.0.0.1/32 scram-sha-256
host    all +tls_only        127.0.0.1/32 reject
hostssl all +tls_client_cert 127.0.0.1/32 scram-sha-256 clientcert=verify-full
host    all +tls_client_cert 127.0.0.1/32 reject
";

/// A `postgres` of our own, never the system's (port 5432 and its socket
/// are left alone). Its superuser is `postgres`, trusted over the unix
/// socket; over TCP every user needs its password (scram-sha-256).
///
/// PostgreSQL refuses to run as root: when the tests do, `initdb` and the
/// server run as the `postgres` account, which owns the directory.
pub struct Postgres {
    pub port: u16,
    /// Holds `data/`, the socket and `postgres.log`; kept across
    /// [`Postgres::restart`].
    pub dir: TempDir,
    /// Whether commits are flushed before they are acknowledged.
    durable: bool,
    /// `ssl=on`, with the files in `tls/` under [`Postgres::dir`].
    tls: bool,
    /// The account to run as when we are root.
    account: Option<(Uid, Gid)>,
    process: Option<Child>,
}

impl Postgres {
    /// A fast server: no fsync and asynchronous commit, so the last
    /// commits before a [`Postgres::kill`] may be lost.
    pub fn start() -> Postgres {
        Postgres::init(false, None)
    }

    /// A server with PostgreSQL's default durability: every acknowledged
    /// commit survives [`Postgres::kill`] and [`Postgres::restart`].
    pub fn start_durable() -> Postgres {
        Postgres::init(true, None)
    }

    /// A fast server ([`Postgres::start`]) that also offers TLS: it shows
    /// `pki`'s `server.crt` (localhost, 127.0.0.1) and checks client
    /// certificates against `ca.crt`. Logins over TCP are as in
    /// [`Postgres::start`], except for members of the roles `tls_only` and
    /// `tls_client_cert` (made here; grant one to a user with
    /// [`Postgres::create_user`]), which must come over TLS, and for the
    /// second with a client certificate whose CN is the user's name.
    pub fn start_tls(pki: &Pki) -> Postgres {
        let server = Postgres::init(false, Some(pki));
        server.sql("CREATE ROLE tls_only NOLOGIN; CREATE ROLE tls_client_cert NOLOGIN;");
        server
    }

    fn init(durable: bool, pki: Option<&Pki>) -> Postgres {
        let dir = TempDir::new("postgres");
        let account = account();
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir.path(), Some(uid.as_raw()), Some(gid.as_raw()))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.path().display()));
        }
        let mut initdb = Command::new(program("initdb"));
        initdb
            .arg("--pgdata")
            .arg(dir.join("data"))
            .args([
                "--username=postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-locale",
                // Skips only the final fsync of the new files: a killed
                // server still finds them in the page cache.
                "--no-sync",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null());
        run_as(&mut initdb, account);
        let output = initdb
            .output()
            .unwrap_or_else(|e| panic!("initdb: {e} (scripts/test.sh installs postgresql)"));
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Postgres {
            port: free_port(),
            dir,
            durable,
            tls: pki.is_some(),
            account,
            process: None,
        };
        if let Some(pki) = pki {
            let hba = server.dir.join("data/pg_hba.conf");
            let initdb_lines = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(&hba, format!("{TLS_HBA}{initdb_lines}")).unwrap();
            let tls = server.dir.join("tls");
            // In postgresql.conf, not on the command line, so that a test
            // can turn TLS off with ALTER SYSTEM and a reload.
            let mut conf = File::options()
                .append(true)
                .open(server.dir.join("data/postgresql.conf"))
                .unwrap();
            writeln!(
                conf,
                "ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\nssl_ca_file = '{ca}'",
                cert = tls.join("server.crt").display(),
                key = tls.join("server.key").display(),
                ca = tls.join("ca.crt").display()
            )
            .unwrap();
            std::fs::create_dir_all(&tls).unwrap();
            server.give(&tls);
            std::fs::copy(pki.path("ca.crt"), tls.join("ca.crt")).unwrap();
            server.give(&tls.join("ca.crt"));
            server.copy_certificate(pki, "server");
        }
        server.launch();
        server
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same data (crash recovery when it was killed).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let log_path = self.dir.join("postgres.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", self.dir.path().display()),
            "shared_buffers=16MB".to_string(),
            // Files in the data directory, removed with it, rather than
            // segments in /dev/shm that a killed server would leave.
            "dynamic_shared_memory_type=mmap".to_string(),
        ];
        if !self.durable {
            settings.extend(["fsync=off", "synchronous_commit=off", "full_page_writes=off"].map(String::from));
        }
        let mut command = Command::new(program("postgres"));
        command.arg("-D").arg(self.dir.join("data"));
        for setting in &settings {
            command.arg("-c").arg(setting);
        }
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own group, so kill() reaches the postmaster and whatever
            // has not yet left the group (each backend leads a group of its own).
            .process_group(0);
        run_as(&mut command, self.account);
        let process = command
            .spawn()
            .unwrap_or_else(|e| panic!("postgres: {e} (scripts/test.sh installs postgresql)"));
        // Kept in self at once, so a panic below still stops it on drop.
        let process = self.process.insert(process);
        let (socket_dir, port) = (self.dir.path().to_path_buf(), self.port);
        wait_until(Duration::from_secs(30), "postgres to answer on its socket", || {
            if let Ok(Some(status)) = process.try_wait() {
                panic!("postgres exited ({status}):\n{}", log_tail(&log_path));
            }
            superuser_sql(&socket_dir, port, "SELECT 1").is_ok()
        });
    }

    /// Makes a TLS server show `pki`'s certificate `name` ("server",
    /// "expired", "wrong-name") to the connections that follow: the files
    /// are replaced and the configuration reloaded, without a restart.
    pub fn use_certificate(&self, pki: &Pki, name: &str) {
        assert!(self.tls, "use_certificate needs a server made by Postgres::start_tls");
        self.copy_certificate(pki, name);
        self.reload();
    }

    /// Reloads the configuration files (and with them the TLS files), and
    /// waits until new connections get what they say.
    pub fn reload(&self) {
        // A new backend is forked with the postmaster's load time, set as it
        // reloads (pg_hba.conf and the TLS context with it): once a new
        // session sees a new time, every later connection gets the new files.
        let loaded = "SELECT pg_conf_load_time()";
        let before = self.sql(loaded);
        self.sql("SELECT pg_reload_conf()");
        wait_until(Duration::from_secs(10), "postgres to reload its configuration", || {
            self.sql(loaded) != before
        });
    }

    /// `pki`'s `name.crt` and `name.key` as `tls/server.crt` and
    /// `tls/server.key`, the key owned by the server's account and private to
    /// it, as PostgreSQL insists.
    fn copy_certificate(&self, pki: &Pki, name: &str) {
        for (extension, mode) in [("crt", 0o644), ("key", 0o600)] {
            let from = pki.path(&format!("{name}.{extension}"));
            let to = self.dir.join(&format!("tls/server.{extension}"));
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            std::fs::set_permissions(&to, Permissions::from_mode(mode)).unwrap();
            self.give(&to);
        }
    }

    /// Hands `path` to the account the server runs as, when that is not us.
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.account {
            std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
        }
    }

    /// Kills the postmaster with SIGKILL, a crash (for fault tests); its
    /// backends, each in a process group of its own, notice and exit a
    /// moment later, as after a real crash. The data stays for
    /// [`Postgres::restart`].
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            // The group may be gone already: nothing to do then.
            let _ = killpg(Pid::from_raw(process.id() as i32), Signal::SIGKILL);
            let _ = process.wait();
        }
    }

    /// Runs `sql` (one or more statements, each in its own transaction) as
    /// the superuser over the socket; the rows, tab-separated, trimmed.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("psql {sql:?} failed: {e}"))
    }

    /// Like [`Postgres::sql`], with psql's stderr as the error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        superuser_sql(self.dir.path(), self.port, sql)
    }

    /// Runs `sql` in database `postgres` as `user` over TCP to 127.0.0.1,
    /// so the password is checked the way a client's is; psql's stderr as
    /// the error.
    pub fn query_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let mut command = psql();
        command
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname=postgres sslmode=disable connect_timeout=5",
                self.port
            ))
            .env("PGPASSWORD", password);
        run_psql(command, sql)
    }

    /// Creates login role `name` with `password` and runs
    /// `GRANT {grant} TO name` for each of `grants`, e.g.
    /// `"CREATE ON DATABASE postgres"`.
    pub fn create_user(&self, name: &str, password: &str, grants: &[&str]) {
        let role = format!("\"{}\"", name.replace('"', "\"\""));
        let mut sql = format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{}';\n",
            password.replace('\'', "''")
        );
        for grant in grants {
            sql.push_str(&format!("GRANT {grant} TO {role};\n"));
        }
        self.sql(&sql);
    }

    /// `postgres://user:password@127.0.0.1:PORT/db`, user and password
    /// percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            url_encode(user),
            url_encode(password),
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(process) = &mut self.process {
            // An immediate shutdown: quick, and unlike SIGKILL it removes
            // the server's System V shared memory segment.
            let _ = kill(Pid::from_raw(process.id() as i32), Signal::SIGQUIT);
            for _ in 0..500 {
                if !matches!(process.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Whatever is left of it, if the shutdown took too long.
        self.kill();
        remove_leftover_segment(&self.dir.join("data"));
    }
}

/// After a crash, postmaster.pid still names the System V segment the
/// killed server held; a restart would have reused it, but this server
/// will not be restarted, so the segment is removed.
fn remove_leftover_segment(data: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    // Line 7: the segment's key and id.
    let Some(id) = pid_file.lines().nth(6).and_then(|line| line.split_whitespace().nth(1)) else {
        return;
    };
    let _ = Command::new("ipcrm")
        .args(["-m", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The `postgres` account when we are root (PostgreSQL will not run as
/// root), else `None`: we run it ourselves.
fn account() -> Option<(Uid, Gid)> {
    if !Uid::effective().is_root() {
        return None;
    }
    let user = User::from_name("postgres")
        .ok()
        .flatten()
        .expect("PostgreSQL does not run as root and there is no postgres account (scripts/test.sh installs postgresql, which creates it)");
    Some((user.uid, user.gid))
}

/// Makes `command` run as `account`, if any.
fn run_as(command: &mut Command, account: Option<(Uid, Gid)>) {
    if let Some((uid, gid)) = account {
        // std drops root's supplementary groups when it sets the uid.
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
}

/// Runs `sql` as the superuser over the socket in `socket_dir`.
fn superuser_sql(socket_dir: &Path, port: u16, sql: &str) -> Result<String, String> {
    let mut command = psql();
    command
        .arg(format!("--host={}", socket_dir.display()))
        .arg(format!("--port={port}"))
        .args(["--username=postgres", "--dbname=postgres"]);
    run_psql(command, sql)
}

/// `psql` without any `PG*` variable of ours or a ~/.psqlrc, printing bare
/// tab-separated rows, stopping at the first error.
fn psql() -> Command {
    let mut command = Command::new(program("psql"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(&name);
        }
    }
    command.args([
        "--no-psqlrc",
        "--no-align",
        "--tuples-only",
        "--quiet",
        "--field-separator=\t",
        "--set=ON_ERROR_STOP=1",
    ]);
    command
}

/// Feeds `sql` to `psql` on its standard input.
fn run_psql(mut command: Command, sql: &str) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("psql: {e} (scripts/test.sh installs postgresql-client)"));
    if let Some(mut stdin) = child.stdin.take() {
        // psql may have exited already (a refused login): its stderr says why.
        let _ = stdin.write_all(sql.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// `name` from the newest /usr/lib/postgresql/N/bin (where Debian keeps the
/// server programs, off PATH), else from PATH.
fn program(name: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path())))
        .max()
        .map(|(_, path)| path.join("bin"));
    let versioned: Vec<PathBuf> = newest.into_iter().collect();
    versioned
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .or_else(|| find_program(name, &[]))
        .unwrap_or_else(|| panic!("{name} not found: scripts/test.sh installs postgresql and postgresql-client"))
}
