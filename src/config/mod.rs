//! Configuration: every `CRONLOCK_*` variable, read once into typed values.
//!
//! Sources, as in the original: the environment, then a config file whose
//! values override it (`CRONLOCK_CONFIG`, else `cronlock.conf` beside the
//! executable, else `/etc/cronlock.conf`). An empty value means "unset",
//! because the original applies its defaults with `[ -z "$VAR" ]`.

pub mod file;
pub mod schedule;
pub mod slot;
pub mod url;
mod watch;

pub use watch::{LogFormat, PingUrl, Watch};

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::key::KeyStyle;
use crate::report::syslog::Facility;
pub use crate::store::Store;

/// The largest number of seconds any duration setting accepts (about 31
/// years). Lua numbers are doubles and timestamps are added to these values,
/// so an unbounded value could lose precision or overflow.
const MAX_SECONDS: i64 = 1_000_000_000;

/// Names a config file may set. Anything else starting with `CRONLOCK_` in a
/// file is a typo and an error; unknown names in the environment are left
/// alone because other tools (and our own test harness) use the prefix too.
pub const KNOWN: &[&str] = &[
    "HOST",
    "PORT",
    "AUTH",
    "USER",
    "DB",
    "REDIS_TIMEOUT",
    "GRACE",
    "RELEASE",
    "RECONNECT_ATTEMPTS",
    "RECONNECT_BACKOFF",
    "KEY",
    "PREFIX",
    "VERBOSE",
    "RESET",
    "NTPDATE",
    "TIMEOUT",
    "KILL_AFTER",
    "LEASE",
    "HOLD",
    "KEY_STYLE",
    "TOOZ_NAMESPACE",
    "NODE",
    "SYSLOG",
    "SYSLOG_FACILITY",
    "SYSLOG_SOCKET",
    "WAIT",
    "CONCURRENCY",
    "JITTER",
    "SHOW_KEY",
    "CONFIG",
    "USE_SENTINEL",
    "SENTINEL_MASTER",
    "SENTINEL_HOST",
    "SENTINEL_PORT",
    "SENTINEL_AUTH",
    "TLS",
    "TLS_SKIP_VERIFY",
    "TLS_CA_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "TLS_SERVER_NAME",
    "URL",
    "PING_URL",
    "METRICS_DIR",
    "LOG_FORMAT",
    "SLOT",
    "FENCING",
    "SCHEDULE",
    "HISTORY",
];

/// Settings that hold or may hold a password: their values never appear in a
/// message.
const SECRET: &[&str] = &["AUTH", "SENTINEL_AUTH", "URL", "PING_URL"];

/// The variables as strings, keyed as envy maps them (`CRONLOCK_REDIS_TIMEOUT`
/// → `redis_timeout`). Typed parsing happens afterwards so that every message
/// can name the variable and its value, which a derived struct's errors do
/// not; and each store takes its own variables from what is left.
#[derive(Debug, Default)]
struct Raw(HashMap<String, String>);

impl Raw {
    fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(Self::known(name), "{name} is not a setting");
        self.0.get(name).map(String::as_str)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        debug_assert!(Self::known(name), "{name} is not a setting");
        self.0.remove(name)
    }

    fn known(name: &str) -> bool {
        KNOWN.iter().any(|known| known.eq_ignore_ascii_case(name))
    }
}

/// The settings that every store with a server shares. Their names say
/// Redis for the original's sake (`CRONLOCK_REDIS_TIMEOUT`,
/// `CRONLOCK_RECONNECT_*`); each store applies them to its own client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// Connect and read timeout (`CRONLOCK_REDIS_TIMEOUT`); `None` waits forever.
    pub timeout: Option<Duration>,
    /// Reconnections after a failed connection (`CRONLOCK_RECONNECT_ATTEMPTS`).
    pub reconnect_attempts: u32,
    /// Seconds added to the wait before each further reconnection (`CRONLOCK_RECONNECT_BACKOFF`).
    pub reconnect_backoff: u64,
}

impl Connection {
    /// The timeout for one request that must end within `limit` (a lease
    /// renewal): the shorter of the two, and at least a millisecond, as a
    /// socket's zero timeout would mean none.
    pub fn timeout_within(&self, limit: Duration) -> Duration {
        self.timeout
            .map_or(limit, |t| t.min(limit))
            .max(Duration::from_millis(1))
    }
}

/// What each store's settings parser (`crate::store::STORES`) is given:
/// the general settings every store may use, read once, and the variables
/// no one has read yet, for the store's own.
pub struct Shared<'a> {
    raw: &'a mut Raw,
    /// Timeout and reconnects.
    pub connection: Connection,
    /// `CRONLOCK_TLS`.
    pub tls_on: bool,
    /// `CRONLOCK_TLS_SKIP_VERIFY`.
    pub skip_verify: bool,
    /// `CRONLOCK_USER`; a store that reads it takes it.
    pub user: Option<String>,
    /// `CRONLOCK_AUTH`; a store that reads it takes it.
    pub password: Option<String>,
    /// `CRONLOCK_HOST` (default `localhost`), the original's server.
    pub host: String,
    /// `CRONLOCK_PORT` (default 6379).
    pub port: u16,
    /// `CRONLOCK_DB` (default 0).
    pub db: i64,
    /// `CRONLOCK_USE_SENTINEL`.
    pub use_sentinel: bool,
    /// `CRONLOCK_SENTINEL_PORT` (default 26379), checked even when Sentinel
    /// is off, so a typo is not silently carried around.
    pub sentinel_port: u16,
    /// Whether a store has read the `CRONLOCK_TLS_*` files.
    tls_read: bool,
}

impl Shared<'_> {
    /// Takes a store's own variable (`name` as envy keys it: `sentinel_host`).
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.raw.take(name)
    }

    /// The `CRONLOCK_TLS_*` files and `CRONLOCK_TLS_SKIP_VERIFY`, for a
    /// store that speaks TLS; a certificate without its key is refused.
    pub fn tls_files(&mut self) -> Result<Tls> {
        self.tls_read = true;
        let tls = Tls {
            skip_verify: self.skip_verify,
            ca_file: self.raw.take("tls_ca_file").map(PathBuf::from),
            cert_file: self.raw.take("tls_cert_file").map(PathBuf::from),
            key_file: self.raw.take("tls_key_file").map(PathBuf::from),
            server_name: self.raw.take("tls_server_name"),
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            bail!("CRONLOCK_TLS_CERT_FILE and CRONLOCK_TLS_KEY_FILE go together: set both for mutual TLS, or neither");
        }
        Ok(tls)
    }
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Skip certificate verification (`CRONLOCK_TLS_SKIP_VERIFY`).
    pub skip_verify: bool,
    /// PEM bundle to trust instead of the system's roots (`CRONLOCK_TLS_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mutual TLS (`CRONLOCK_TLS_CERT_FILE`).
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (`CRONLOCK_TLS_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// Name to verify instead of the host (`CRONLOCK_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
}

/// Everything a run needs, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where locks live.
    pub store: Store,
    /// Seconds the lock is kept after the command, counted from the start (`CRONLOCK_GRACE`).
    pub grace: i64,
    /// Seconds after which a running holder's lock may be taken over (`CRONLOCK_RELEASE`).
    pub release: i64,
    /// Key to use instead of the md5 of the command line (`CRONLOCK_KEY`).
    pub key: Option<String>,
    /// Prefix of every key (`CRONLOCK_PREFIX`).
    pub prefix: String,
    /// Information lines on stderr (`CRONLOCK_VERBOSE`).
    pub verbose: bool,
    /// Delete the key and exit 200 (`CRONLOCK_RESET`).
    pub reset: bool,
    /// `CRONLOCK_NTPDATE=yes` was asked for; see the README for what we do instead.
    pub ntpdate: bool,
    /// Seconds before the command's process group is killed; 0 for never (`CRONLOCK_TIMEOUT`).
    pub timeout: u64,
    /// Seconds between passing on a terminating signal and SIGKILL (`CRONLOCK_KILL_AFTER`).
    pub kill_after: u64,
    /// Lease mode: the lock's life in seconds, renewed while the command runs (`CRONLOCK_LEASE`).
    pub lease: Option<i64>,
    /// Seconds the lock is kept after the command, counted from its end (`CRONLOCK_HOLD`); 0 for none.
    pub hold: i64,
    /// Seconds to wait for a held lock to come free; 0 for not at all (`CRONLOCK_WAIT`).
    pub wait: u64,
    /// How many copies may run at once across the fleet (`CRONLOCK_CONCURRENCY`).
    pub concurrency: u32,
    /// Sleep a random 0..N seconds before trying, in milliseconds (`CRONLOCK_JITTER`).
    pub jitter_ms: u64,
    /// One run per scheduled slot (`CRONLOCK_SLOT`, `CRONLOCK_SCHEDULE`).
    pub slot: Option<slot::Slot>,
    /// Log lock events to the local syslog with this facility (`CRONLOCK_SYSLOG`,
    /// `CRONLOCK_SYSLOG_FACILITY`), through this socket (`CRONLOCK_SYSLOG_SOCKET`).
    pub syslog: Option<(Facility, PathBuf)>,
    /// The name recorded as the lock's owner (`CRONLOCK_NODE`; default: the host name).
    pub node: String,
    /// How the lock's name is derived from the command (`CRONLOCK_KEY_STYLE`).
    pub key_style: KeyStyle,
    /// tooz's namespace, where its driver for the store has one
    /// (`CRONLOCK_TOOZ_NAMESPACE`, else the driver's default); `None` for
    /// the other key styles and stores.
    pub tooz_namespace: Option<String>,
    /// Print the key in use on stderr (`CRONLOCK_SHOW_KEY`, golock's variable).
    pub show_key: bool,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// `export`ed assignments of the file, passed on to the command's environment.
    pub exported: Vec<(String, String)>,
    /// Notes to show with verbose output (e.g. ignored lines of the file).
    pub notes: Vec<String>,
    /// Pings, metrics and JSON lines for the systems that watch cron.
    pub watch: Watch,
    /// A fencing token for the command (`CRONLOCK_FENCING`).
    pub fencing: FencingMode,
    /// How many of the job's runs the store keeps; 0 for none (`CRONLOCK_HISTORY`).
    pub history: u32,
}

/// `CRONLOCK_FENCING`: whether the command gets a fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FencingMode {
    /// None (`off`, the default): the run costs what it always did.
    #[default]
    Off,
    /// A token from every store that can give one (`on`).
    On,
    /// Only from a store whose tokens survive a lost counter (`required`).
    Required,
}

impl FencingMode {
    fn parse(value: &str) -> Option<FencingMode> {
        match value.to_ascii_lowercase().as_str() {
            "off" | "no" | "0" | "false" | "f" => Some(FencingMode::Off),
            "on" | "yes" | "1" | "true" | "t" => Some(FencingMode::On),
            "required" => Some(FencingMode::Required),
            _ => None,
        }
    }
}

/// Where to look for a config file when `CRONLOCK_CONFIG` is not set.
#[derive(Debug, Clone)]
pub struct Search {
    /// Look for `cronlock.conf` beside the running executable. Where that
    /// is gets resolved only when the search comes to it (a readlink of
    /// /proc/self/exe that most runs, with CRONLOCK_CONFIG set, never need).
    pub beside_exe: bool,
    /// `/etc/cronlock.conf`.
    pub system: PathBuf,
}

impl Search {
    /// The standard places.
    pub fn standard() -> Search {
        Search {
            beside_exe: true,
            system: PathBuf::from("/etc/cronlock.conf"),
        }
    }
}

/// Reads the configuration from `env` (the process environment in production).
pub fn load(env: impl IntoIterator<Item = (OsString, OsString)>, search: &Search) -> Result<Config> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        let Some(name) = name.to_str().filter(|n| n.starts_with("CRONLOCK_")) else {
            continue;
        };
        let suffix = &name["CRONLOCK_".len()..];
        if !KNOWN.contains(&suffix) {
            continue;
        }
        let value = value.into_string().map_err(|v| {
            if SECRET.contains(&suffix) {
                anyhow!("{name}: not valid UTF-8 (value not shown)")
            } else {
                anyhow!("{name}={:?}: not valid UTF-8", v)
            }
        })?;
        vars.insert(name.to_string(), value);
    }

    let mut notes = Vec::new();
    let mut exported = Vec::new();
    let file = config_path(vars.get("CRONLOCK_CONFIG").map(String::as_str), search)?;
    if let Some(path) = &file {
        for assignment in read_file(path, &mut notes)? {
            if assignment.exported {
                exported.push((assignment.name.clone(), assignment.value.clone()));
            }
            vars.insert(assignment.name, assignment.value);
        }
    }

    // An empty value is the same as an unset one, as `[ -z "$VAR" ]` sees it.
    vars.retain(|_, value| !value.is_empty());
    let raw = Raw(envy::prefixed("CRONLOCK_")
        .from_iter(vars)
        .context("reading CRONLOCK_* variables")?);
    build(raw, file, exported, notes)
}

fn config_path(configured: Option<&str>, search: &Search) -> Result<Option<PathBuf>> {
    if let Some(path) = configured.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        // The usual way to say "no file at all" (and the system's search is skipped).
        if path == Path::new("/dev/null") {
            return Ok(None);
        }
        if path.is_dir() {
            bail!("CRONLOCK_CONFIG={:?}: is a directory", path.display().to_string());
        }
        if !path.is_file() {
            bail!("CRONLOCK_CONFIG={:?}: no such file", path.display().to_string());
        }
        return Ok(Some(path));
    }
    let beside_exe = || {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("cronlock.conf")))
    };
    Ok([
        search.beside_exe.then(beside_exe).flatten(),
        Some(search.system.clone()),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file()))
}

fn read_file(path: &Path, notes: &mut Vec<String>) -> Result<Vec<file::Assignment>> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("config file {shown}"))?;
    check_permissions(path, &meta)?;
    let content = std::fs::read(path).with_context(|| format!("config file {shown}"))?;
    let (assignments, errors) = file::parse(&content);
    if let Some(first) = errors.first() {
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more bad lines)", n - 1),
        };
        bail!("{shown}:{}: {}{more}", first.line, first.message);
    }
    let mut kept = Vec::new();
    for assignment in assignments {
        match assignment.name.strip_prefix("CRONLOCK_") {
            Some(suffix) if KNOWN.contains(&suffix) => kept.push(assignment),
            Some(_) => bail!("{shown}:{}: unknown setting {}", assignment.line, assignment.name),
            None => notes.push(format!(
                "{shown}:{}: {} is not a cronlock setting; ignored",
                assignment.line, assignment.name
            )),
        }
    }
    Ok(kept)
}

/// A config file names the Redis server and its password: one that others
/// could rewrite would let them redirect every job. It is never executed,
/// but it is still refused when writable by anyone but its owner and root.
fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let mode = meta.mode();
    let shown = path.display();
    if mode & 0o002 != 0 {
        bail!(
            "config file {shown} is writable by everyone (mode {:o}); run chmod o-w on it",
            mode & 0o7777
        );
    }
    if mode & 0o020 != 0 && meta.gid() != 0 {
        // A group of one's own (the usual user private group) is fine.
        let owner_group = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
            .ok()
            .flatten()
            .map(|user| user.gid.as_raw());
        if owner_group != Some(meta.gid()) {
            bail!(
                "config file {shown} is writable by its group (mode {:o}); run chmod g-w on it",
                mode & 0o7777
            );
        }
    }
    Ok(())
}

fn build(mut raw: Raw, file: Option<PathBuf>, exported: Vec<(String, String)>, notes: Vec<String>) -> Result<Config> {
    let verbose = boolean("VERBOSE", raw.get("verbose"), false)?;
    let reset = boolean("RESET", raw.get("reset"), false)?;
    let ntpdate = boolean("NTPDATE", raw.get("ntpdate"), false)?;
    let grace = seconds("GRACE", raw.get("grace"), 40, -MAX_SECONDS)?;
    let release = seconds("RELEASE", raw.get("release"), 86400, 0)?;
    let timeout = seconds("TIMEOUT", raw.get("timeout"), 0, 0)? as u64;
    let kill_after = seconds("KILL_AFTER", raw.get("kill_after"), 10, 0)? as u64;
    // Renewed every third of the lease, so at least 3 s: one renewal a second.
    let lease = match seconds("LEASE", raw.get("lease"), 0, 0)? {
        0 => None,
        n if n < 3 => bail!("CRONLOCK_LEASE={n:?}: at least 3 seconds (it is renewed every third of it), or 0 for off"),
        n => Some(n),
    };
    let hold = seconds("HOLD", raw.get("hold"), 0, 0)?;
    let wait = seconds("WAIT", raw.get("wait"), 0, 0)? as u64;
    let concurrency = integer("CONCURRENCY", raw.get("concurrency"), 1, 1, 1000)? as u32;
    let jitter_ms = seconds("JITTER", raw.get("jitter"), 0, 0)? as u64 * 1000;
    let slot = slot::read(raw.get("slot"), raw.get("schedule"))?;
    let facility = match raw.get("syslog_facility") {
        None => Facility::User,
        Some(name) => Facility::parse(name).ok_or_else(|| {
            anyhow!(
                "CRONLOCK_SYSLOG_FACILITY={name:?}: not a syslog facility (user, daemon, cron, local0..local7, ...)"
            )
        })?,
    };
    let syslog_socket = raw.take("syslog_socket").map(PathBuf::from);
    let syslog = if boolean("SYSLOG", raw.get("syslog"), false)? {
        Some((
            facility,
            syslog_socket.unwrap_or_else(|| PathBuf::from(crate::report::syslog::DEFAULT_PATH)),
        ))
    } else if raw.get("syslog_facility").is_some() || syslog_socket.is_some() {
        bail!("CRONLOCK_SYSLOG_FACILITY or CRONLOCK_SYSLOG_SOCKET is set but syslog is off; set CRONLOCK_SYSLOG=yes");
    } else {
        None
    };
    let show_key = boolean("SHOW_KEY", raw.get("show_key"), false)?;
    let key_style = match raw.get("key_style") {
        None => KeyStyle::Cronlock,
        Some(value) => KeyStyle::parse(value).ok_or_else(|| {
            let names: Vec<&str> = KeyStyle::ALL.iter().map(|style| style.name()).collect();
            anyhow!("CRONLOCK_KEY_STYLE={value:?}: expected one of {}", names.join(", "))
        })?,
    };
    let key = raw.take("key");
    let prefix = raw.take("prefix").unwrap_or_else(|| "cronlock.".to_string());
    let node = raw.take("node").unwrap_or_else(crate::lock::owner::host_name);
    let watch = watch::read(&mut raw)?;
    let fencing = match raw.get("fencing") {
        None => FencingMode::Off,
        Some(value) => FencingMode::parse(value)
            .ok_or_else(|| anyhow!("CRONLOCK_FENCING={value:?}: expected off, on or required"))?,
    };
    let history = integer("HISTORY", raw.get("history"), 0, 0, 1000)? as u32;
    let url = raw.take("url");
    let store = store_settings(&mut raw, url.as_deref())?;
    // tooz's lock expires where it has an expiry and is kept by heartbeats:
    // renewed as lease mode does, so that tooz's peers stay out while the
    // command runs (see docs/stores/tooz.md).
    if slot.is_some() && !matches!(key_style, KeyStyle::Cronlock | KeyStyle::Golock) {
        bail!(
            "CRONLOCK_SLOT puts the fire time in the lock's name, which {} hosts would not share; \
             use it with CRONLOCK_KEY_STYLE=cronlock or golock",
            key_style.name()
        );
    }
    let tooz_namespace = tooz_namespace(raw.take("tooz_namespace"), key_style, &store)?;
    let lease = match (key_style, store.row().tooz) {
        (KeyStyle::Tooz, crate::store::Tooz::Expires(seconds)) => lease.or(Some(seconds)),
        _ => lease,
    };
    Ok(Config {
        store,
        grace,
        release,
        key,
        prefix,
        verbose,
        reset,
        ntpdate,
        timeout,
        kill_after,
        lease,
        hold,
        wait,
        concurrency,
        jitter_ms,
        slot,
        syslog,
        node,
        key_style,
        tooz_namespace,
        show_key,
        file,
        exported,
        notes,
        watch,
        fencing,
        history,
    })
}

/// `CRONLOCK_TOOZ_NAMESPACE` (`given`): tooz's `?namespace=`, which only
/// its Redis and ZooKeeper drivers read; each store's row has their default.
/// Refused with another key style, or on a store whose tooz driver has no
/// namespace: the lock would be the same without it.
fn tooz_namespace(given: Option<String>, key_style: KeyStyle, store: &Store) -> Result<Option<String>> {
    let row = store.row();
    match (given, key_style, row.tooz_namespace) {
        (None, KeyStyle::Tooz, default) => Ok(default.map(str::to_string)),
        (None, _, _) => Ok(None),
        (Some(_), style, _) if style != KeyStyle::Tooz => bail!(
            "CRONLOCK_TOOZ_NAMESPACE is tooz's namespace, for CRONLOCK_KEY_STYLE=tooz (the key style is {})",
            style.name()
        ),
        (Some(_), _, None) => bail!(
            "CRONLOCK_TOOZ_NAMESPACE: tooz's {} driver has no namespace (its Redis and ZooKeeper drivers have one)",
            row.kind
        ),
        (Some(namespace), _, Some(_)) => Ok(Some(namespace)),
    }
}

/// The store `url` names (Redis without one), read by that store's own
/// settings parser from the general settings and the variables left.
fn store_settings(raw: &mut Raw, url: Option<&str>) -> Result<Store> {
    let redis_timeout = seconds("REDIS_TIMEOUT", raw.get("redis_timeout"), 30, 0)? as u64;
    let reconnect_attempts = seconds("RECONNECT_ATTEMPTS", raw.get("reconnect_attempts"), 5, 0)?;
    let reconnect_backoff = seconds("RECONNECT_BACKOFF", raw.get("reconnect_backoff"), 5, 0)? as u64;
    if reconnect_attempts > 1000 {
        bail!("CRONLOCK_RECONNECT_ATTEMPTS={reconnect_attempts:?}: at most 1000");
    }
    let mut shared = Shared {
        connection: Connection {
            timeout: (redis_timeout > 0).then(|| Duration::from_secs(redis_timeout)),
            reconnect_attempts: reconnect_attempts as u32,
            reconnect_backoff,
        },
        host: raw.take("host").unwrap_or_else(|| "localhost".to_string()),
        port: port("PORT", raw.get("port"), 6379)?,
        user: raw.take("user"),
        password: raw.take("auth"),
        db: integer("DB", raw.get("db"), 0, 0, i64::from(i32::MAX))?,
        tls_on: boolean("TLS", raw.get("tls"), false)?,
        skip_verify: boolean("TLS_SKIP_VERIFY", raw.get("tls_skip_verify"), false)?,
        use_sentinel: boolean("USE_SENTINEL", raw.get("use_sentinel"), false)?,
        sentinel_port: port("SENTINEL_PORT", raw.get("sentinel_port"), 26379)?,
        tls_read: false,
        raw,
    };
    let store = crate::store::settings(url, &mut shared)?;
    if shared.tls_on && !shared.tls_read {
        // Read for the pairing check, though this store has no TLS to use them.
        shared.tls_files()?;
    }
    let tls_settings_set = ["tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name"]
        .iter()
        .any(|name| shared.raw.get(name).is_some());
    if !shared.tls_read && (tls_settings_set || shared.skip_verify) {
        bail!(
            "CRONLOCK_TLS_* settings are given but TLS is off; set CRONLOCK_TLS=yes (or use a rediss:// CRONLOCK_URL)"
        );
    }
    if shared.user.is_some() && shared.password.is_none() {
        bail!("CRONLOCK_USER is set without CRONLOCK_AUTH: an ACL user needs its password");
    }
    Ok(store)
}

/// yes/no/true/false/1/0/on/off in any case, and the single letters t and f
/// that golock accepts (Go's `strconv.ParseBool`), so a golock environment
/// works unchanged.
pub fn boolean(name: &str, value: Option<&str>, default: bool) -> Result<bool> {
    let Some(value) = value else { return Ok(default) };
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" | "t" => Ok(true),
        "no" | "false" | "0" | "off" | "f" => Ok(false),
        _ => bail!("CRONLOCK_{name}={value:?}: expected yes or no (also true/false, 1/0)"),
    }
}

/// `CRONLOCK_{name}` as a TCP port, `default` when unset.
pub fn port(name: &str, value: Option<&str>, default: u16) -> Result<u16> {
    let Some(value) = value else { return Ok(default) };
    parse_port(value).ok_or_else(|| anyhow!("CRONLOCK_{name}={value:?}: not a port number (1-65535)"))
}

/// A TCP port: 1 to 65535.
pub fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|&port| port > 0)
}

fn seconds(name: &str, value: Option<&str>, default: i64, min: i64) -> Result<i64> {
    integer(name, value, default, min, MAX_SECONDS)
}

fn integer(name: &str, value: Option<&str>, default: i64, min: i64, max: i64) -> Result<i64> {
    let Some(value) = value else { return Ok(default) };
    let parsed = value
        .parse::<i64>()
        .map_err(|_| anyhow!("CRONLOCK_{name}={value:?}: not a whole number"))?;
    if parsed < min || parsed > max {
        bail!("CRONLOCK_{name}={value:?}: out of range ({min} to {max})");
    }
    Ok(parsed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::redis::settings::RedisTarget;

    fn no_files() -> Search {
        Search {
            beside_exe: false,
            system: PathBuf::from("/nonexistent/cronlock.conf"),
        }
    }

    /// `load` with only these variables and no config file.
    pub(crate) fn load_env(pairs: &[(&str, &str)]) -> Result<Config> {
        load(
            pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))),
            &no_files(),
        )
    }

    fn redis(config: &Config) -> &RedisTarget {
        match &config.store {
            Store::Redis(target) => target,
            other => panic!("expected redis, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_original() {
        let config = load_env(&[]).unwrap();
        let target = redis(&config);
        assert_eq!((target.host.as_str(), target.port, target.db), ("localhost", 6379, 0));
        assert_eq!(target.connection.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            (
                target.connection.reconnect_attempts,
                target.connection.reconnect_backoff
            ),
            (5, 5)
        );
        assert_eq!((config.grace, config.release, config.timeout), (40, 86400, 0));
        assert_eq!(config.prefix, "cronlock.");
        assert!(!config.verbose && !config.reset && !config.ntpdate);
        assert!(target.sentinel.is_none() && target.tls.is_none());
    }

    #[test]
    fn the_tooz_namespace_is_the_drivers_default_unless_set() {
        let tooz = |more: &[(&str, &str)]| {
            let mut env = vec![("CRONLOCK_KEY_STYLE", "tooz")];
            env.extend_from_slice(more);
            load_env(&env).map(|config| config.tooz_namespace)
        };
        assert_eq!(tooz(&[]).unwrap().as_deref(), Some("_tooz"));
        assert_eq!(
            tooz(&[("CRONLOCK_TOOZ_NAMESPACE", "ns")]).unwrap().as_deref(),
            Some("ns")
        );
        assert_eq!(tooz(&[("CRONLOCK_URL", "etcd3://h")]).unwrap(), None);
        assert_eq!(load_env(&[]).unwrap().tooz_namespace, None);
        let err = tooz(&[("CRONLOCK_URL", "memcached://h"), ("CRONLOCK_TOOZ_NAMESPACE", "ns")]).unwrap_err();
        assert!(
            err.to_string().contains("tooz's memcached driver has no namespace"),
            "{err}"
        );
        let err = load_env(&[("CRONLOCK_TOOZ_NAMESPACE", "ns")]).unwrap_err();
        assert!(err.to_string().contains("for CRONLOCK_KEY_STYLE=tooz"), "{err}");
    }

    #[test]
    fn empty_values_mean_the_default() {
        let config = load_env(&[("CRONLOCK_PORT", ""), ("CRONLOCK_PREFIX", "")]).unwrap();
        assert_eq!(redis(&config).port, 6379);
        assert_eq!(config.prefix, "cronlock.");
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        for (name, value, expected) in [
            ("CRONLOCK_PORT", "abc", "CRONLOCK_PORT=\"abc\": not a port number"),
            ("CRONLOCK_PORT", "0", "not a port number"),
            ("CRONLOCK_PORT", "65536", "not a port number"),
            ("CRONLOCK_DB", "x", "CRONLOCK_DB=\"x\": not a whole number"),
            (
                "CRONLOCK_TIMEOUT",
                "1.5",
                "CRONLOCK_TIMEOUT=\"1.5\": not a whole number",
            ),
            ("CRONLOCK_TIMEOUT", "-1", "out of range"),
            ("CRONLOCK_RELEASE", "99999999999999999999", "not a whole number"),
            ("CRONLOCK_GRACE", "2000000000", "out of range"),
            (
                "CRONLOCK_VERBOSE",
                "maybe",
                "CRONLOCK_VERBOSE=\"maybe\": expected yes or no",
            ),
            ("CRONLOCK_TLS_SKIP_VERIFY", "yes", "TLS is off"),
        ] {
            let err = format!("{:#}", load_env(&[(name, value)]).unwrap_err());
            assert!(err.contains(expected), "{name}={value}: {err}");
        }
    }

    #[test]
    fn booleans_take_several_spellings() {
        // Go's strconv.ParseBool spellings too, as golock reads CRONLOCK_TLS.
        for yes in ["yes", "YES", "True", "1", "t", "T", "TRUE", "true"] {
            assert!(load_env(&[("CRONLOCK_VERBOSE", yes)]).unwrap().verbose);
        }
        for no in ["no", "FALSE", "0", "f", "F", "False", "false"] {
            assert!(!load_env(&[("CRONLOCK_VERBOSE", no)]).unwrap().verbose);
        }
    }

    #[test]
    fn negative_grace_is_allowed() {
        assert_eq!(load_env(&[("CRONLOCK_GRACE", "-1")]).unwrap().grace, -1);
    }

    #[test]
    fn non_utf8_values_are_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let env = vec![(OsString::from("CRONLOCK_KEY"), OsString::from_vec(vec![0xff, 0xfe]))];
        let err = format!("{:#}", load(env, &no_files()).unwrap_err());
        assert!(err.contains("CRONLOCK_KEY"), "{err}");
    }

    #[test]
    fn sentinel_hosts_may_be_a_list() {
        let config = load_env(&[
            ("CRONLOCK_USE_SENTINEL", "yes"),
            ("CRONLOCK_SENTINEL_HOST", "a, b:26380,[::1]:26381"),
        ])
        .unwrap();
        let sentinel = redis(&config).sentinel.clone().unwrap();
        assert_eq!(sentinel.master, "mymaster");
        assert_eq!(
            sentinel.nodes,
            vec![("a".into(), 26379), ("b".into(), 26380), ("::1".into(), 26381)]
        );
    }

    #[test]
    fn url_overrides_the_separate_variables() {
        let config = load_env(&[
            ("CRONLOCK_HOST", "ignored"),
            ("CRONLOCK_AUTH", "kept"),
            ("CRONLOCK_URL", "redis://10.0.0.5:6380/3"),
        ])
        .unwrap();
        let target = redis(&config);
        assert_eq!((target.host.as_str(), target.port, target.db), ("10.0.0.5", 6380, 3));
        assert_eq!(target.password.as_deref(), Some("kept"));
        let dir = load_env(&[("CRONLOCK_URL", "file:///var/lock/cronlock")]).unwrap();
        let Store::Directory(dir) = dir.store else {
            panic!("{:?}", dir.store)
        };
        assert_eq!(dir.path, PathBuf::from("/var/lock/cronlock"));
    }

    #[test]
    fn a_memcached_url_takes_the_general_timeouts_and_refuses_redis_settings() {
        let config = load_env(&[
            ("CRONLOCK_URL", "memcached://10.0.0.7"),
            ("CRONLOCK_REDIS_TIMEOUT", "3"),
            ("CRONLOCK_RECONNECT_ATTEMPTS", "2"),
        ])
        .unwrap();
        let Store::Memcached(target) = &config.store else {
            panic!("{:?}", config.store)
        };
        assert_eq!((target.host.as_str(), target.port), ("10.0.0.7", 11211));
        assert_eq!(target.connection.timeout, Some(Duration::from_secs(3)));
        assert_eq!(target.connection.reconnect_attempts, 2);
        for (name, value) in [
            ("CRONLOCK_AUTH", "secret"),
            ("CRONLOCK_TLS", "yes"),
            ("CRONLOCK_USE_SENTINEL", "yes"),
            ("CRONLOCK_DB", "2"),
        ] {
            let err = format!(
                "{:#}",
                load_env(&[("CRONLOCK_URL", "memcached://h"), (name, value)]).unwrap_err()
            );
            assert!(err.contains("not supported with a memcached://"), "{name}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn config_file_overrides_the_environment() {
        let dir = std::env::temp_dir().join(format!("cronlock-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cronlock.conf");
        std::fs::write(&path, b"CRONLOCK_PORT=6388\nexport CRONLOCK_PREFIX='p.'\nOTHER=1\n").unwrap();
        let env = [("CRONLOCK_PORT", "7000"), ("CRONLOCK_CONFIG", path.to_str().unwrap())];
        let config = load_env(&env).unwrap();
        assert_eq!(redis(&config).port, 6388);
        assert_eq!(config.prefix, "p.");
        assert_eq!(config.exported, vec![("CRONLOCK_PREFIX".to_string(), "p.".to_string())]);
        assert_eq!(config.notes.len(), 1);

        std::fs::write(&path, b"CRONLOCK_PROT=6388\n").unwrap();
        let err = format!("{:#}", load_env(&env).unwrap_err());
        assert!(err.ends_with("cronlock.conf:1: unknown setting CRONLOCK_PROT"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_named_config_file_is_an_error() {
        let err = format!(
            "{:#}",
            load_env(&[("CRONLOCK_CONFIG", "/nonexistent/x.conf")]).unwrap_err()
        );
        assert!(err.contains("no such file"), "{err}");
    }
}
