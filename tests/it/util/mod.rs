//! Test fixtures: private `redis-server` processes on free loopback ports
//! (MariaDB, PostgreSQL and etcd servers in their own modules), and a helper that
//! runs the built `cronlock` with a clean environment.
#![allow(dead_code)]

pub mod coolock;
pub mod dynamodb;
pub mod etcd;
pub mod etcd_cluster;
pub mod mariadb;
pub mod memcached;
pub mod pki;
pub mod postgres;
pub mod zookeeper;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A `redis-server` of our own, killed when dropped. Never port 6379.
pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    pub dir: TempDir,
    /// `redis-cli` options for a TLS server: `--tls`, the CA, a client certificate.
    tls_cli: Vec<String>,
    process: Child,
}

/// How a TLS test server is set up.
pub struct TlsServer<'a> {
    pub pki: &'a pki::Pki,
    /// Which leaf certificate it shows: "server", "expired", "wrong-name".
    pub cert: &'a str,
    /// `tls-auth-clients yes`: a client certificate is required.
    pub require_client_cert: bool,
}

impl RedisServer {
    /// A plain server without a password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[], None)
    }

    /// A server that requires `password` for the default user.
    pub fn with_password(password: &str) -> RedisServer {
        RedisServer::start_with(&["--requirepass", password], Some(password))
    }

    /// A server with extra command-line settings.
    pub fn start_with(extra: &[&str], password: Option<&str>) -> RedisServer {
        RedisServer::spawn(free_port(), extra, password, None)
    }

    /// A plain server on `port` (to bring one back where a killed one was).
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        RedisServer::spawn(port, extra, None, None)
    }

    /// A server that speaks only TLS.
    pub fn start_tls(tls: TlsServer) -> RedisServer {
        RedisServer::spawn(free_port(), &[], None, Some(tls))
    }

    /// Settings that make a Sentinel (or replica) of ours speak TLS to this
    /// server's CA, for its config file.
    pub fn tls_conf(pki: &pki::Pki) -> Vec<String> {
        vec![
            format!("tls-cert-file {}", pki.file("server.crt")),
            format!("tls-key-file {}", pki.file("server.key")),
            format!("tls-ca-cert-file {}", pki.file("ca.crt")),
            "tls-auth-clients no".to_string(),
            "tls-replication yes".to_string(),
        ]
    }

    fn spawn(port: u16, extra: &[&str], password: Option<&str>, tls: Option<TlsServer>) -> RedisServer {
        let dir = TempDir::new("redis");
        let mut listen = vec!["--port".to_string(), port.to_string()];
        let mut tls_cli = Vec::new();
        if let Some(tls) = &tls {
            let pki = tls.pki;
            listen = vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                pki.file(&format!("{}.crt", tls.cert)),
                "--tls-key-file".into(),
                pki.file(&format!("{}.key", tls.cert)),
                "--tls-ca-cert-file".into(),
                pki.file("ca.crt"),
                "--tls-auth-clients".into(),
                if tls.require_client_cert { "yes" } else { "no" }.into(),
            ];
            // redis-cli checks nothing here: it only has to reach the server.
            tls_cli = vec!["--tls".into(), "--insecure".into()];
            tls_cli.extend([
                "--cert".into(),
                pki.file("client.crt"),
                "--key".into(),
                pki.file("client.key"),
            ]);
        }
        let process = Command::new("redis-server")
            .args(&listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let server = RedisServer {
            port,
            password: password.map(String::from),
            dir,
            tls_cli,
            process,
        };
        wait_until(Duration::from_secs(10), "redis-server to answer PING", || {
            server.cli(&["PING"]).map(|o| o.trim() == "PONG").unwrap_or(false)
        });
        server
    }

    /// Runs `redis-cli` against this server; stdout on success.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, &self.tls_cli, self.password.as_deref(), args)
    }

    /// Like [`cli`] but panics on failure and trims the answer.
    pub fn query(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
            .trim()
            .to_string()
    }

    /// The server's clock, unix seconds.
    pub fn now(&self) -> i64 {
        self.query(&["TIME"]).lines().next().unwrap().parse().unwrap()
    }

    /// Environment that points cronlock at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CRONLOCK_HOST".to_string(), "127.0.0.1".to_string()),
            ("CRONLOCK_PORT".to_string(), self.port.to_string()),
        ];
        if let Some(password) = &self.password {
            env.push(("CRONLOCK_AUTH".to_string(), password.clone()));
        }
        env
    }

    /// Stops the server now (for fault tests).
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli` against a local port, with TLS options and a password; its
/// stdout when it succeeds.
fn redis_cli(port: u16, tls_cli: &[String], password: Option<&str>, args: &[&str]) -> Option<String> {
    let mut command = Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    command.args(tls_cli);
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    let output = command.args(args).stderr(Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).to_string())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        if port != 6379 {
            return port;
        }
    }
}

/// Whether process `pid` is running. A zombie still answers kill(0), so its
/// state is read from /proc instead.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Python 2.7 (as pyenv's 2.7.18), which lockex and coolock run on; or why not.
pub fn python2_installed() -> Result<(), String> {
    let python = Command::new("python2")
        .env("PYENV_VERSION", "2.7.18")
        .args(["-c", "import sys"])
        .status();
    if python.is_ok_and(|s| s.success()) {
        Ok(())
    } else {
        Err("python2 is not installed".into())
    }
}

/// Polls `check` until it holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first `name` found on PATH or in `extra` directories.
pub fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The last lines of a server's log file, for a failure message.
pub fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `text` with everything but RFC 3986's unreserved characters
/// percent-encoded, for the user and password of a URL.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("cronlock-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary under test: `CRONLOCK_BIN` when set (scripts/test.sh points it
/// at the release builds), else the one cargo built for these tests.
pub fn bin() -> PathBuf {
    std::env::var_os("CRONLOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cronlock")))
}

/// `cronlockctl`: `CRONLOCKCTL_BIN` when set (scripts/test.sh points it at
/// the release build), else the one cargo built for these tests.
pub fn ctl_bin() -> PathBuf {
    std::env::var_os("CRONLOCKCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cronlockctl")))
}

/// Runs `cronlockctl ARGS` with the same clean environment as [`cronlock`].
pub fn ctl(env: &[(String, String)], args: &[&str]) -> Run {
    let mut command = Command::new(ctl_bin());
    clean_env(&mut command, env);
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cronlockctl");
    Run { output }
}

/// `cronlock` with every `CRONLOCK_*` and `AWS_*` variable of the caller
/// removed (no test may reach a real AWS account), the config file lookup
/// pointed at an empty file, and fast reconnects.
pub fn cronlock(env: &[(String, String)]) -> Command {
    let mut command = Command::new(bin());
    clean_env(&mut command, env);
    command
}

/// Gives `command` (cronlock, or a program that runs it) the clean
/// environment of [`cronlock`] plus `env`.
pub fn clean_env(command: &mut Command, env: &[(String, String)]) {
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CRONLOCK_") || name_text.starts_with("AWS_") {
            command.env_remove(&name);
        }
    }
    command.env("CRONLOCK_CONFIG", empty_config());
    command.env("CRONLOCK_RECONNECT_BACKOFF", "0");
    for (name, value) in env {
        command.env(name, value);
    }
}

fn empty_config() -> PathBuf {
    let path = std::env::temp_dir().join(format!("cronlock-test-empty-{}.conf", std::process::id()));
    if !path.exists() {
        std::fs::write(&path, b"").unwrap();
    }
    path
}

/// A finished run, with what it printed shown when an assertion fails.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    /// stdout as one JSON value per line (cronlockctl's `--json list`).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).to_string()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).to_string()
    }
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs `cronlock ARGS` with `env` and waits for it.
pub fn run(env: &[(String, String)], args: &[impl AsRef<OsStr>]) -> Run {
    let output = cronlock(env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cronlock");
    Run { output }
}

/// Runs under `env` a command that must not run: cronlock must exit 201
/// with one line on stderr that contains `expected`, and show none of
/// `secrets` on stdout or stderr. Returns that line.
#[track_caller]
pub fn expect_refusal(env: &[(String, String)], expected: &str, secrets: &[&str]) -> String {
    let dir = TempDir::new("refused");
    let marker = dir.join("ran");
    let result = run(env, &["sh", "-c", &format!("touch {}", marker.display())]);
    let (stdout, stderr) = (result.stdout(), result.stderr());
    eprint!("[{expected}] {stderr}");
    assert_eq!(result.code(), 201, "exit code\nstdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    for secret in secrets {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{secret:?} shown: {stdout}{stderr}"
        );
    }
    assert!(!marker.exists(), "the command must not run: {stderr}");
    stderr.trim_end().to_string()
}

/// `env` plus more pairs.
pub fn with(env: &[(String, String)], more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = env.to_vec();
    all.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

/// The key cronlock derives for a plain command line (md5 of `echo "$@"`).
pub fn key_for(prefix: &str, args: &[&str]) -> String {
    let output = Command::new("bash")
        .args(["-c", "echo \"$@\" | md5sum", "_"])
        .args(args)
        .output()
        .unwrap();
    let digest = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    format!("{prefix}{digest}")
}

/// A shell command that marks that it started, then waits until the test
/// opens its gate: lets a test look at the lock while the command runs.
/// A Python program that touches 512 MiB, creates `ready`, and sleeps: once
/// SIGKILLed it takes a while to die, as the kernel frees its memory before
/// it closes its files. For `sh -c`; no output.
pub fn slow_to_die(ready: &Path) -> String {
    format!(
        "python3 -c \"
import time
b = bytearray(1 << 29)
for i in range(0, len(b), 4096): b[i] = 1
open('{}', 'w').close()
time.sleep(60)\" >/dev/null 2>&1",
        ready.display()
    )
}

/// cronlock at the database `url` with `?{param}={mode}` added (nothing
/// when `mode` is empty), a fresh key per call, a 5 s timeout, and `more`
/// settings: for the TLS tests of the SQL stores.
pub fn sql_tls_env(url: String, param: &str, mode: &str, more: &[(&str, &str)]) -> Vec<(String, String)> {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let key = format!("tls-{}", CALLS.fetch_add(1, Ordering::SeqCst));
    let url = if mode.is_empty() {
        url
    } else {
        format!("{url}?{param}={mode}")
    };
    let env = vec![
        ("CRONLOCK_URL".to_string(), url),
        ("CRONLOCK_KEY".to_string(), key),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
    ];
    with(&env, more)
}

/// A SQL store's TLS modes, as its URL names them.
pub struct SqlTlsModes<'a> {
    /// The mode that verifies the certificate and the host name.
    pub verified: &'a str,
    /// The other modes that use TLS.
    pub others: &'a [&'a str],
    /// The mode without TLS.
    pub disabled: &'a str,
}

/// The steps the SQL stores' TLS tests share, as a user the server lets in
/// over TLS only: `env(mode, more)` gives a run's settings with that mode
/// in the URL (none for an empty one) and a fresh key. A verified run takes
/// the lock and runs its command, the next finds it held, and
/// `in_grace(key)` must find that key's lock in its grace (the release went
/// over TLS too); every other mode takes the lock, so does the verified mode
/// by the name `localhost` and `CRONLOCK_TLS=yes` without a mode; and the
/// mode without TLS is turned away with a line containing `refused`.
pub fn sql_tls_modes_take_the_lock(
    env: impl Fn(&str, &[(&str, &str)]) -> Vec<(String, String)>,
    modes: SqlTlsModes,
    ca: &str,
    refused: &str,
    password: &str,
    in_grace: impl Fn(&str) -> bool,
) {
    let with_ca = [("CRONLOCK_TLS_CA_FILE", ca)];
    let dir = TempDir::new("sql-tls");
    let verified = env(modes.verified, &with_ca);
    run(&verified, &marker(&dir)).expect(0);
    assert_eq!(runs(&dir), 1, "the command must run");
    run(&verified, &["true"]).expect(200);
    let key = verified.iter().find(|(name, _)| name == "CRONLOCK_KEY").unwrap();
    assert!(in_grace(&key.1), "the release did not leave the lock in its grace");
    for mode in modes.others {
        run(&env(mode, &with_ca), &["true"]).expect(0);
    }
    // By name: localhost is in the certificate too.
    let by_name: Vec<(String, String)> = env(modes.verified, &with_ca)
        .into_iter()
        .map(|(name, value)| (name, value.replace("@127.0.0.1:", "@localhost:")))
        .collect();
    run(&by_name, &["true"]).expect(0);
    // CRONLOCK_TLS=yes without a mode verifies the name as well.
    run(&env("", &[with_ca[0], ("CRONLOCK_TLS", "yes")]), &["true"]).expect(0);
    // The server turns the user away without TLS: the runs above used it.
    expect_refusal(&env(modes.disabled, &[]), refused, &[password]);
}

/// This machine's clock, in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until the local clock has passed `at` (the stores here all run on
/// this machine, so their clocks are this one).
pub fn wait_past(at: i64) {
    wait_until(Duration::from_secs(10), "the clock to pass a lock's expiry", || {
        unix_now() > at
    });
}

/// cronlock under `env` running `gated`'s job (with `tail` after it), its
/// output piped.
pub fn spawn_gated(env: &[(String, String)], gated: &Gated, tail: &str) -> Child {
    cronlock(env)
        .args(["sh", "-c", &format!("{}{tail}", gated.script)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A command that notes each of its runs in `dir` (counted by [`runs`]).
pub fn marker(dir: &TempDir) -> Vec<String> {
    let path = dir.join("ran");
    vec!["sh".into(), "-c".into(), format!("echo x >> {}", path.display())]
}

/// How many times [`marker`]'s command has run in `dir`.
pub fn runs(dir: &TempDir) -> usize {
    std::fs::read_to_string(dir.join("ran"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

pub struct Gated {
    /// The `sh -c` script to run.
    pub script: String,
    started: PathBuf,
    gate: PathBuf,
}

impl Gated {
    pub fn new(dir: &TempDir, name: &str) -> Gated {
        let started = dir.join(&format!("{name}.started"));
        let gate = dir.join(&format!("{name}.gate"));
        // It also ends when the test's directory is gone: a test that
        // fails before opening the gate leaves no holder running.
        let script = format!(
            "touch {0}; while [ ! -e {1} ] && [ -e {0} ]; do sleep 0.05; done",
            started.display(),
            gate.display()
        );
        Gated { script, started, gate }
    }

    /// Waits (with a deadline) until the command has started.
    pub fn wait_started(&self) {
        wait_until(Duration::from_secs(10), "the gated command to start", || {
            self.started.exists()
        });
    }

    /// Whether the command has started (for counting several at once).
    pub fn has_started(&self) -> bool {
        self.started.exists()
    }

    /// Lets the command finish.
    pub fn open(&self) {
        std::fs::write(&self.gate, b"").unwrap();
    }
}

/// A holder whose command (a gated job with a `sleep 300` grandchild) is
/// running, its stderr kept in a file: for tests in which it must lose its
/// hold and kill that command.
pub struct DoomedHolder {
    child: Child,
    pidfile: PathBuf,
    log: PathBuf,
}

impl DoomedHolder {
    /// Starts cronlock under `env` and waits until its command runs.
    pub fn start(env: &[(String, String)], dir: &TempDir) -> DoomedHolder {
        let pidfile = dir.join("doomed.pid");
        let log = dir.join("doomed.stderr");
        let gated = Gated::new(dir, "doomed");
        let child = cronlock(env)
            .args([
                "sh",
                "-c",
                &format!("sleep 300 & echo $! > {}; {}", pidfile.display(), gated.script),
            ])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        gated.wait_started();
        DoomedHolder { child, pidfile, log }
    }

    /// Within 15 s cronlock must exit 201 with one line on stderr that says
    /// `key`'s hold is lost and contains `why`, its command's group dead.
    pub fn expect_hold_lost(mut self, key: &str, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&self.log).unwrap();
        let status = status.unwrap_or_else(|| panic!("the holder ran on without its hold: {stderr}"));
        assert_eq!(status.code(), Some(201), "{stderr}");
        assert!(stderr.contains(&format!("hold of {key} lost")), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        let grandchild: i32 = std::fs::read_to_string(&self.pidfile).unwrap().trim().parse().unwrap();
        wait_until(Duration::from_secs(5), "the command's group to die", || {
            !alive(grandchild)
        });
    }
}

/// A `redis-sentinel` of our own watching one master, killed when dropped.
pub struct SentinelServer {
    pub port: u16,
    pub dir: TempDir,
    password: Option<String>,
    tls_cli: Vec<String>,
    process: Child,
}

impl SentinelServer {
    /// Watches `master` (named `name`) with a quorum of one and short
    /// timeouts; `extra` lines are added to its config file, and
    /// `password` makes it require one.
    pub fn start(name: &str, master: &RedisServer, extra: &[String], password: Option<&str>) -> SentinelServer {
        let dir = TempDir::new("sentinel");
        let port = free_port();
        let tls = !master.tls_cli.is_empty();
        let mut conf = if tls {
            format!("port 0\ntls-port {port}\n")
        } else {
            format!("port {port}\n")
        };
        conf.push_str(&format!(
            "bind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\n",
            dir.path().display(),
            master.port
        ));
        if let Some(password) = password {
            conf.push_str(&format!("requirepass \"{password}\"\n"));
        }
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.join("sentinel.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let process = Command::new("redis-server")
            .arg(&conf_path)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let sentinel = SentinelServer {
            port,
            dir,
            password: password.map(String::from),
            tls_cli: master.tls_cli.clone(),
            process,
        };
        wait_until(Duration::from_secs(10), "sentinel to know the master", || {
            sentinel.master_port(name).is_some()
        });
        sentinel
    }

    /// Runs `redis-cli` against the sentinel.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, &self.tls_cli, self.password.as_deref(), args)
    }

    /// The port Sentinel names for `name`'s master right now.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        let answer = self.cli(&["SENTINEL", "get-master-addr-by-name", name])?;
        answer.lines().nth(1)?.trim().parse().ok()
    }
}

/// A master, a replica in sync with it, and a Sentinel watching them as
/// `name` that has seen both.
pub fn sentinel_with_replica(name: &str) -> (RedisServer, RedisServer, SentinelServer) {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()], None);
    wait_until(Duration::from_secs(10), "the replica to sync", || {
        replica
            .cli(&["INFO", "replication"])
            .is_some_and(|info| info.contains("master_link_status:up"))
    });
    let sentinel = SentinelServer::start(name, &master, &[], None);
    // The replica is listed as soon as the master mentions it, but Sentinel
    // only promotes one it has itself asked for INFO: wait for the link
    // status, which comes from that answer.
    wait_until(Duration::from_secs(20), "sentinel to have asked the replica", || {
        sentinel
            .cli(&["SENTINEL", "replicas", name])
            .is_some_and(|out| out.contains(&replica.port.to_string()) && out.contains("master-link-status\nok"))
    });
    (master, replica, sentinel)
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Three masters made into one cluster by `redis-cli --cluster create`.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"], None))
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes };
        wait_until(Duration::from_secs(20), "the cluster to be ok on every node", || {
            cluster.nodes.iter().all(|node| {
                node.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            })
        });
        cluster
    }

    /// The slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0].query(&["CLUSTER", "KEYSLOT", key]).parse().unwrap()
    }

    /// Index of the node that serves `slot`, each node asked about itself.
    pub fn owner(&self, slot: u16) -> usize {
        self.nodes
            .iter()
            .position(|node| serves(node, slot))
            .expect("some node serves the slot")
    }

    /// A key name (after `prefix`) whose slot is not served by node `not_on`.
    pub fn key_elsewhere(&self, prefix: &str, not_on: usize) -> String {
        (0..)
            .map(|n| format!("job{n}"))
            .find(|name| self.owner(self.slot(&format!("{prefix}{name}"))) != not_on)
            .unwrap()
    }

    /// The node's id.
    pub fn id(&self, index: usize) -> String {
        self.nodes[index].query(&["CLUSTER", "MYID"])
    }
}

/// Whether `node` says it serves `slot` (its own line of CLUSTER NODES:
/// "<id> <addr> <flags> <master> <ping> <pong> <epoch> <state> <ranges>...").
fn serves(node: &RedisServer, slot: u16) -> bool {
    node.query(&["CLUSTER", "NODES"]).lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2).is_some_and(|flags| flags.contains("myself"))
            && fields.iter().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                    _ => false,
                }
            })
    })
}

/// `count` runs of one job, with CRONLOCK_HISTORY=`keep`, that all end at
/// the same moment: their commands wait for one gate.
pub fn runs_ending_at_once(env: &[(String, String)], count: usize, keep: usize) {
    let dir = TempDir::new("ending-at-once");
    let gate = dir.join("gate");
    let script = format!(
        "touch {dir}/started.$$; while [ ! -e {gate} ]; do sleep 0.02; done",
        dir = dir.path().display(),
        gate = gate.display()
    );
    let env = with(
        env,
        &[
            ("CRONLOCK_CONCURRENCY", &count.to_string()),
            ("CRONLOCK_HISTORY", &keep.to_string()),
        ],
    );
    let children: Vec<_> = (0..count)
        .map(|_| {
            cronlock(&env)
                .args(["sh", "-c", &script])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_until(Duration::from_secs(20), "every run to start", || {
        std::fs::read_dir(dir.path()).unwrap().count() == count
    });
    std::fs::write(&gate, b"").unwrap();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.is_empty(), "{stderr}");
    }
}
