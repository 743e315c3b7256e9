//! `cronlockctl migrate coolock [FILE...]`: coolock 0.0.1's settings files,
//! read as coolock reads them (ConfigArgParse 1.5.3's default format), and
//! tooz 1.67.2's backend URL in them, printed as the cronlock.conf that
//! takes the same tooz lock (`CRONLOCK_KEY_STYLE=tooz`).
//!
//! What has no cronlock equivalent is named in a `# not carried over:`
//! comment and on stderr; a backend cronlock has no store for (Consul) is
//! an error.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// coolock's long options: the names its settings files may use, with or
/// without the leading `--` (ConfigArgParse takes both).
const OPTIONS: &[&str] = &[
    "config-file",
    "coordination-backend",
    "lock",
    "guard-time",
    "node",
    "wait-timeout",
    "log-file",
    "log-level",
    "log-max-size",
    "rotate-log-copies",
];

/// The options whose value coolock reads with Python's `int()`.
const WHOLE_NUMBERS: &[&str] = &["guard-time", "wait-timeout", "log-max-size", "rotate-log-copies"];

/// The log levels coolock knows; any other stops it with a traceback.
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "information",
    "warning",
    "warn",
    "error",
    "critical",
    "crit",
];

/// Where coolock looks when no file is named, in the order it reads them.
/// Its README says `~/coolock`; its source passes `~/.coolock`.
const DEFAULT_FILES: &[&str] = &["/etc/coolock", "~/.coolock"];

/// coolock's lock name when neither `--lock` nor `lock:` gives one.
const DEFAULT_LOCK: &str = "coolock";

/// coolock's guard time when none is given, in seconds.
const DEFAULT_GUARD_TIME: i64 = 30;

/// What a URL part may hold unescaped: cronlock decodes `%XX` in user
/// names, passwords, database names and paths, and tooz does not, so every
/// other byte is escaped to keep its literal meaning.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `cronlockctl migrate OPERANDS...`: `coolock`, then the files to read.
pub fn run(operands: &[OsString]) -> Result<u8> {
    match operands.first().and_then(|o| o.to_str()) {
        Some("coolock") => {}
        Some(other) => bail!("migrate: cannot convert from {other:?}; the one tool it knows is coolock"),
        None => bail!("migrate: name the tool to convert from: cronlockctl migrate coolock [FILE...]"),
    }
    let named: Vec<PathBuf> = operands[1..].iter().map(PathBuf::from).collect();
    let (files, read) = if named.is_empty() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let files: Vec<PathBuf> = DEFAULT_FILES
            .iter()
            .filter_map(|f| match f.strip_prefix("~/") {
                Some(rest) => home.as_ref().map(|home| home.join(rest)),
                None => Some(PathBuf::from(f)),
            })
            .collect();
        // coolock skips a default file that is not there.
        let present = files.into_iter().filter(|f| f.exists()).collect();
        (present, DEFAULT_FILES.join(", "))
    } else {
        let names: Vec<String> = named.iter().map(|f| f.display().to_string()).collect();
        (named, names.join(", "))
    };
    let mut settings = Settings::new();
    for file in &files {
        let text = std::fs::read(file).with_context(|| format!("migrate: {}", file.display()))?;
        let text = String::from_utf8(text).map_err(|_| anyhow!("migrate: {}: not valid UTF-8", file.display()))?;
        let origin = file.display().to_string();
        // A later file overrides an earlier one, as in coolock.
        settings.extend(parse(&text, &origin)?);
    }
    let conf = convert(&settings, &read)?;
    print!("{}", conf.text());
    for what in &conf.dropped {
        eprintln!("cronlockctl: not carried over: {what}");
    }
    Ok(0)
}

/// coolock's settings by option name (without `--`).
pub type Settings = BTreeMap<&'static str, String>;

/// Python's `str.strip()` and `re`'s `\s`, for the bytes coolock reads.
fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Reads one settings file as ConfigArgParse 1.5.3's default parser does:
/// `name: value`, `name = value` or `name value`, `#` or `;` comments (a
/// trailing one after white space), `[section]` and `---` lines skipped,
/// one pair of quotes around the value removed. `origin` names the file
/// in errors, which never quote a value (it may hold a password).
pub fn parse(text: &str, origin: &str) -> Result<Vec<(&'static str, String)>> {
    let mut settings = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let Some((key, value)) = parse_line(raw) else {
            continue;
        };
        let value = value.ok_or_else(|| anyhow!("{origin}:{line}: expected `name: value`"))?;
        let name = key.strip_prefix("--").unwrap_or(key);
        let Some(&name) = OPTIONS.iter().find(|o| **o == name) else {
            if matches!(name, "help" | "h") {
                bail!("{origin}:{line}: {key:?} makes coolock print its help instead of running; remove it");
            }
            bail!(
                "{origin}:{line}: unknown setting {key:?}, which coolock refuses; its settings are {}",
                OPTIONS.join(", ")
            );
        };
        if value.starts_with('[') && value.ends_with(']') {
            bail!("{origin}:{line}: {name}: a list, which coolock does not take");
        }
        settings.push((name, value));
    }
    Ok(settings)
}

/// One line: `None` for a blank or comment line; `Some((key, None))` for
/// one the parser refuses.
fn parse_line(raw: &str) -> Option<(&str, Option<String>)> {
    let line = raw.trim_matches(is_py_space);
    if line.is_empty() || line.starts_with(['#', ';', '[']) || line.starts_with("---") {
        return None;
    }
    let key_len = line
        .find(|c: char| matches!(c, ':' | '=' | ';' | '#') || is_py_space(c))
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(key_len);
    if key.is_empty() {
        return Some((line, None));
    }
    if rest.is_empty() {
        // A name alone: a flag set to true.
        return Some((key, Some("true".to_string())));
    }
    // The separator: `:` or `=` after any white space, else the last of
    // that white space (the regex's greedy `\s*` gives one back).
    let spaces = rest.len() - rest.trim_start_matches(is_py_space).len();
    let after = &rest[spaces..];
    let (separator, value_text) = if after.starts_with([':', '=']) {
        (&after[..1], &after[1..])
    } else if spaces > 0 {
        let last = rest[..spaces].chars().last().map_or(0, char::len_utf8);
        (&rest[spaces - last..spaces], after)
    } else {
        // `name#...` or `name;...`: no separator and not a comment.
        return Some((key, None));
    };
    let value = match value_of(value_text.trim_start_matches(is_py_space)) {
        Some(value) => value,
        None if separator != " " => String::new(),
        None => "true".to_string(),
    };
    Some((key, Some(value)))
}

/// Whether what follows a value ends the line: nothing, or white space and
/// a `#` or `;` comment.
fn ends_value(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(is_py_space);
    trimmed.is_empty() || (trimmed.len() < rest.len() && trimmed.starts_with(['#', ';']))
}

/// The value the regex's lazy `.+?` takes from `text`: the shortest that
/// `ends_value`, inside a pair of quotes when that fits, else as written.
fn value_of(text: &str) -> Option<String> {
    let ends: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .skip(1)
        .chain([text.len()])
        .collect();
    if let Some(quote) = text.chars().next().filter(|c| matches!(c, '\'' | '"')) {
        let inner = &text[1..];
        let quoted = inner
            .char_indices()
            .skip(1)
            .find(|&(i, c)| c == quote && ends_value(&inner[i + 1..]))
            .map(|(i, _)| inner[..i].to_string());
        if quoted.is_some() {
            return quoted;
        }
        if inner.starts_with(quote) && ends_value(&inner[1..]) {
            return None;
        }
    }
    ends.into_iter()
        .find(|&end| ends_value(&text[end..]))
        .map(|end| text[..end].to_string())
}

/// The cronlock.conf being written: its lines, and what it leaves out.
#[derive(Debug, Default)]
pub struct Conf {
    /// The file's lines, in order.
    pub lines: Vec<String>,
    /// Each setting or URL option without an equivalent, with why.
    pub dropped: Vec<String>,
}

impl Conf {
    fn set(&mut self, name: &str, value: &str) {
        self.lines.push(format!("CRONLOCK_{name}={}", quote(value)));
    }

    fn comment(&mut self, text: &str) {
        self.lines.push(format!("# {text}"));
    }

    fn drop(&mut self, what: impl Into<String>) {
        self.dropped.push(what.into());
    }

    /// The whole file.
    pub fn text(&self) -> String {
        let mut text: String = self.lines.iter().map(|line| format!("{line}\n")).collect();
        if !self.dropped.is_empty() {
            text.push_str(&format!("# not carried over: {}\n", self.dropped.join("; ")));
        }
        text
    }

    /// The value a line sets, for tests.
    #[cfg(test)]
    fn get(&self, name: &str) -> Option<String> {
        let (assignments, errors) = crate::config::file::parse(self.text().as_bytes());
        assert_eq!(errors, vec![], "{}", self.text());
        assignments.into_iter().rev().find(|a| a.name == name).map(|a| a.value)
    }
}

/// `value` as cronlock's config file reader needs it: bare when it is one
/// plain word, else in single quotes.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':' | '@' | '%' | '+' | ',' | '=' | '-')
        });
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Python's `int()` on one of coolock's whole-number options.
fn whole(settings: &Settings, name: &str) -> Result<Option<i64>> {
    settings
        .get(name)
        .map(|value| {
            value
                .trim_matches(is_py_space)
                .parse::<i64>()
                .map_err(|_| anyhow!("{name}: {value:?} is not a whole number, which coolock refuses"))
        })
        .transpose()
}

/// The cronlock.conf for `settings`, read from `read` (named in its header).
pub fn convert(settings: &Settings, read: &str) -> Result<Conf> {
    for name in WHOLE_NUMBERS {
        whole(settings, name)?;
    }
    if let Some(level) = settings.get("log-level") {
        if !LOG_LEVELS.contains(&level.as_str()) {
            bail!(
                "log-level: {level:?} is not a level coolock knows ({})",
                LOG_LEVELS.join(", ")
            );
        }
    }
    let backend = settings.get("coordination-backend").ok_or_else(|| {
        anyhow!("no coordination-backend in {read}: coolock was given it with -b; add `coordination-backend: URL` and run this again")
    })?;
    let mut conf = Conf::default();
    conf.comment(&format!(
        "cronlock.conf from coolock's settings ({read}): cronlock takes tooz's lock, as coolock does"
    ));
    let url = backend_url(backend)?;
    conf.set("URL", &url.url);
    for (name, value) in &url.settings {
        conf.set(name, value);
    }
    conf.set("KEY_STYLE", "tooz");
    conf.set("KEY", settings.get("lock").map_or(DEFAULT_LOCK, String::as_str));
    if let Some(node) = settings.get("node") {
        conf.set("NODE", node);
    }
    let guard = whole(settings, "guard-time")?.unwrap_or(DEFAULT_GUARD_TIME);
    if guard > 0 {
        conf.comment(&format!(
            "guard-time {guard}: coolock holds the lock until {guard} s after the command started; \
             cronlock keeps it until start + GRACE + 1 s (whole seconds on the store's clock), at most a second longer"
        ));
        conf.set("GRACE", &guard.to_string());
    } else {
        conf.comment(&format!(
            "guard-time {guard}: coolock lets the lock go as soon as the command ends; so does GRACE=-1"
        ));
        conf.set("GRACE", "-1");
    }
    if url.file {
        conf.comment("on a file:// store the lock ends with cronlock's process, so no grace applies there");
    }
    if let Some(wait) = whole(settings, "wait-timeout")? {
        if wait < 0 {
            bail!("wait-timeout: {wait} is negative; coolock's is 0 (try once) or more seconds");
        }
        conf.set("WAIT", &wait.to_string());
    }
    conf.dropped.extend(url.dropped);
    for name in ["log-file", "log-level", "log-max-size", "rotate-log-copies"] {
        if settings.contains_key(name) {
            conf.drop(format!(
                "{name} (cronlock keeps no log file; CRONLOCK_SYSLOG=yes or CRONLOCK_LOG_FORMAT=json record each run)"
            ));
        }
    }
    if settings.contains_key("config-file") {
        conf.drop("config-file (coolock reads no file named inside another)");
    }
    Ok(conf)
}

/// tooz's URL as `urlsplit` (Python 2.7, through oslo.utils) cuts it up.
/// Nothing in it is percent-decoded but the query, as in tooz.
#[derive(Debug, PartialEq, Eq)]
struct ToozUrl {
    /// The scheme, lowercased: tooz's driver name.
    scheme: String,
    /// Everything between `//` and the path.
    netloc: String,
    /// The user name before `:` in the netloc.
    user: Option<String>,
    /// The password after it.
    password: Option<String>,
    /// The host, lowercased, without IPv6 brackets.
    host: Option<String>,
    /// The port as written, when one is given.
    port: Option<String>,
    /// The path, without query or fragment.
    path: String,
    /// The query's pairs, decoded, in order (`parse_qs`).
    query: Vec<(String, String)>,
}

impl ToozUrl {
    /// The port, when one is given and is not 0. Python reads a port it
    /// cannot use as none, so tooz would go to the default port; a typo
    /// there is refused here instead. (The ZooKeeper driver never asks:
    /// its netloc is a list of hosts.)
    fn port(&self) -> Result<Option<u16>> {
        match &self.port {
            None => Ok(None),
            Some(p) => Ok(Some(
                p.parse::<u16>()
                    .map_err(|_| anyhow!("coordination-backend: the port is not a port number (1-65535)"))?,
            )
            .filter(|p| *p != 0)),
        }
    }

    /// The last value of a query option (tooz's `collapse`).
    fn option(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list option.
    fn options(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// An option tooz reads with `int()`.
    fn int(&self, name: &str) -> Result<Option<i64>> {
        self.option(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    anyhow!("coordination-backend: ?{name}={v:?} is not a whole number, which tooz refuses")
                })
            })
            .transpose()
    }

    /// The names of the query's options, each once, in order.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.query {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }
}

/// Splits a tooz URL. Errors never quote it: it may hold a password.
fn split(url: &str) -> Result<ToozUrl> {
    let (scheme, rest) = url
        .split_once(':')
        .filter(|(s, _)| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .ok_or_else(|| anyhow!("coordination-backend is not a URL: expected scheme://..."))?;
    let (netloc, rest) = match rest.strip_prefix("//") {
        Some(after) => after.split_at(after.find(['/', '?', '#']).unwrap_or(after.len())),
        None => ("", rest),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostinfo) = match netloc.rsplit_once('@') {
        Some((userinfo, hostinfo)) => (Some(userinfo), hostinfo),
        None => (None, netloc),
    };
    let (user, password) = match userinfo.map(|info| info.split_once(':')) {
        None => (None, None),
        Some(Some((user, password))) => (Some(user.to_string()), Some(password.to_string())),
        Some(None) => (userinfo.map(str::to_string), None),
    };
    let (host, port) = match hostinfo.strip_prefix('[') {
        Some(inner) => {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| anyhow!("coordination-backend: missing ']' after the IPv6 address"))?;
            (host, after.strip_prefix(':'))
        }
        None => match hostinfo.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostinfo, None),
        },
    };
    Ok(ToozUrl {
        scheme: scheme.to_ascii_lowercase(),
        netloc: netloc.to_string(),
        user,
        password,
        host: Some(host.to_ascii_lowercase()).filter(|h| !h.is_empty()),
        port: port.filter(|p| !p.is_empty()).map(str::to_string),
        path: path.to_string(),
        query: parse_qs(query),
    })
}

/// Python 2.7's `parse_qs`: pairs split at `&` and `;`, `+` for a space,
/// `%XX` decoded; pairs without `=` and empty values left out.
fn parse_qs(query: &str) -> Vec<(String, String)> {
    let unquote = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split(['&', ';'])
        .filter_map(|pair| pair.split_once('='))
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (unquote(name), unquote(value)))
        .collect()
}

/// What the backend URL becomes.
#[derive(Debug, Default)]
struct Backend {
    /// CRONLOCK_URL.
    url: String,
    /// Other settings it implies, without `CRONLOCK_`.
    settings: Vec<(&'static str, String)>,
    /// What it leaves out, with why.
    dropped: Vec<String>,
    /// The file store, whose lock has no grace.
    file: bool,
}

impl Backend {
    /// tooz's `?namespace=` (Redis and ZooKeeper), as CRONLOCK_TOOZ_NAMESPACE.
    /// Never empty: `parse_qs` leaves out blank values, so tooz then uses
    /// its default namespace, as cronlock does.
    fn namespace(&mut self, url: &ToozUrl) {
        if let Some(namespace) = url.option("namespace") {
            self.settings.push(("TOOZ_NAMESPACE", namespace.to_string()));
        }
    }

    /// Names every option of `url` not in `used` as dropped: those in
    /// `unmatched` with their reason, the rest as ones tooz ignores too.
    fn drop_options(&mut self, url: &ToozUrl, used: &[&str], unmatched: &[(&str, &str)]) {
        for name in url.names() {
            if used.contains(&name) {
                continue;
            }
            let why = unmatched
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("tooz's driver ignores it too", |(_, why)| why);
            self.dropped.push(format!("?{name} ({why})"));
        }
    }

    /// The credentials tooz's driver does not send.
    fn drop_userinfo(&mut self, url: &ToozUrl) {
        if url.user.as_deref().is_some_and(|u| !u.is_empty()) || url.password.is_some() {
            self.dropped
                .push("the URL's user and password (tooz's driver for it sends none)".to_string());
        }
    }

    /// A path that tooz's driver does not read.
    fn drop_path(&mut self, url: &ToozUrl, why: &str) {
        if !url.path.is_empty() && url.path != "/" {
            self.dropped.push(format!("the URL's path ({why})"));
        }
    }

    /// `timeout` and `lock_timeout` of the drivers whose lock expires:
    /// the connection timeout, and the lease cronlock renews.
    fn expiry(&mut self, url: &ToozUrl, timeout_name: &str) -> Result<()> {
        let timeout = url.int("timeout")?;
        if let Some(seconds) = url.int(timeout_name)?.or(timeout) {
            self.settings.push(("REDIS_TIMEOUT", seconds.max(0).to_string()));
        }
        if let Some(seconds) = url.int("lock_timeout")?.or(timeout) {
            if seconds >= 3 {
                self.settings.push(("LEASE", seconds.to_string()));
            } else {
                self.dropped.push(format!(
                    "a lock timeout of {seconds} s (cronlock's lease is 3 s at least; it renews it while the command runs)"
                ));
            }
        }
        Ok(())
    }
}

/// `host[:port]` for a cronlock URL, with IPv6 brackets.
fn host_port(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// `user[:password]@`, escaped for a cronlock URL; empty without a user.
fn userinfo(user: Option<&str>, password: Option<&str>) -> String {
    let escape = |text: &str| utf8_percent_encode(text, URL_PART).to_string();
    match (user.filter(|u| !u.is_empty()), password) {
        (None, None) => String::new(),
        (user, None) => format!("{}@", escape(user.unwrap_or_default())),
        (user, Some(password)) => format!("{}:{}@", escape(user.unwrap_or_default()), escape(password)),
    }
}

/// CRONLOCK_URL and the settings a tooz URL implies.
fn backend_url(text: &str) -> Result<Backend> {
    let url = split(text)?;
    let mut out = Backend::default();
    match url.scheme.as_str() {
        "redis" => {
            let Some(host) = &url.host else {
                bail!("coordination-backend: a Redis Unix socket, which cronlock's Redis store does not reach; give host:port");
            };
            let tls = url.option("ssl").is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "t" | "true" | "on" | "y" | "yes")
            });
            let db = match url.int("db")? {
                Some(db) if db < 0 => bail!("coordination-backend: ?db={db} is not a database number"),
                Some(db) => format!("/{db}"),
                None => String::new(),
            };
            out.url = format!(
                "{}://{}{}{db}",
                if tls { "rediss" } else { "redis" },
                userinfo(None, url.password.as_deref()),
                host_port(host, url.port()?)
            );
            if url.user.as_deref().is_some_and(|u| !u.is_empty()) {
                out.dropped
                    .push("the URL's user name (tooz's Redis driver sends only the password)".to_string());
            }
            out.drop_path(&url, "tooz's Redis driver reads the database from ?db=, so its lock is in database 0 unless that is given");
            out.expiry(&url, "socket_timeout")?;
            out.namespace(&url);
            let mut used = vec!["db", "ssl", "timeout", "socket_timeout", "lock_timeout", "namespace"];
            if tls {
                used.extend(["ssl_certfile", "ssl_keyfile"]);
                if let Some(cert) = url.option("ssl_certfile") {
                    out.settings.push(("TLS_CERT_FILE", cert.to_string()));
                }
                if let Some(key) = url.option("ssl_keyfile") {
                    out.settings.push(("TLS_KEY_FILE", key.to_string()));
                }
            }
            if let Some(master) = url.option("sentinel") {
                used.extend(["sentinel", "sentinel_fallback"]);
                let mut hosts = vec![host_port(host, url.port()?)];
                hosts.extend(url.options("sentinel_fallback").iter().map(|h| h.to_string()));
                out.settings.push(("USE_SENTINEL", "yes".to_string()));
                out.settings.push(("SENTINEL_MASTER", master.to_string()));
                out.settings.push(("SENTINEL_HOST", hosts.join(",")));
            }
            out.drop_options(
                &url,
                &used,
                &[
                    ("encoding", "cronlock writes the lock's name as UTF-8, tooz's default"),
                    ("ssl_certfile", "tooz uses it only with ?ssl=true"),
                    ("ssl_keyfile", "tooz uses it only with ?ssl=true"),
                    ("sentinel_fallback", "tooz uses it only with ?sentinel="),
                    ("membership_timeout", "cronlock joins no tooz group"),
                    ("retry_on_timeout", "cronlock retries as CRONLOCK_RECONNECT_* say"),
                    ("socket_keepalive", "no cronlock setting"),
                ],
            );
        }
        // The drivers whose lock is a server entry with an expiry, on
        // localhost unless the URL names a host.
        scheme @ ("memcached" | "etcd3" | "etcd3+http") => {
            let host = url.host.as_deref().unwrap_or("localhost");
            out.url = format!("{scheme}://{}", host_port(host, url.port()?));
            out.drop_userinfo(&url);
            out.drop_path(&url, "tooz's driver does not read it");
            out.expiry(&url, "timeout")?;
            out.drop_options(
                &url,
                &["timeout", "lock_timeout"],
                &[
                    ("membership_timeout", "cronlock joins no tooz group"),
                    ("leader_timeout", "cronlock joins no tooz group"),
                    ("max_pool_size", "cronlock opens one connection"),
                    ("protocol", "tooz's etcd drivers do not read it"),
                ],
            );
        }
        "mysql" => {
            let user = url.user.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| {
                anyhow!("coordination-backend names no MySQL user (tooz then logs in as the user coolock runs as); write mysql://USER@host/database")
            })?;
            let db = url.path.strip_prefix('/').unwrap_or(&url.path);
            if db.is_empty() {
                bail!("coordination-backend names no database; cronlock's MySQL store needs one (GET_LOCK is server-wide, so any will do for coolock): write mysql://user@host/DATABASE");
            }
            let host = url.host.as_deref().unwrap_or("localhost");
            out.url = format!(
                "mysql://{}{}/{}",
                userinfo(Some(user), url.password.as_deref()),
                host_port(host, url.port()?),
                utf8_percent_encode(db, URL_PART)
            );
            out.drop_options(
                &url,
                &[],
                &[("unix_socket", "cronlock connects over TCP to the URL's host")],
            );
        }
        "postgresql" => {
            let host = url.option("host").map(str::to_string).or(url.host.clone());
            let host = match host {
                Some(host) if !host.starts_with('/') => host,
                _ => {
                    out.dropped.push(
                        "the local Unix socket tooz connects through (cronlock connects over TCP to localhost)"
                            .to_string(),
                    );
                    "localhost".to_string()
                }
            };
            let port = match url.option("port") {
                Some(port) => Some(port.trim().parse::<u16>().map_err(|_| {
                    anyhow!("coordination-backend: ?port={port:?} is not a port number (1-65535)")
                })?),
                None => url.port()?,
            };
            let db = url
                .option("dbname")
                .map(str::to_string)
                .unwrap_or_else(|| url.path.strip_prefix('/').unwrap_or(&url.path).to_string());
            let db = if db.is_empty() {
                String::new()
            } else {
                format!("/{}", utf8_percent_encode(&db, URL_PART))
            };
            out.url = format!(
                "postgresql://{}{}{db}",
                userinfo(url.user.as_deref(), url.password.as_deref()),
                host_port(&host, port)
            );
            out.drop_options(&url, &["host", "port", "dbname"], &[]);
        }
        "zookeeper" | "kazoo" => {
            let netloc_hosts = url.netloc.rsplit_once('@').map_or(url.netloc.as_str(), |(_, hosts)| hosts);
            let mut hosts: Vec<String> = Vec::new();
            for list in std::iter::once(netloc_hosts).chain(url.options("hosts")) {
                hosts.extend(list.split(',').filter(|h| !h.is_empty()).map(str::to_string));
            }
            if hosts.is_empty() {
                hosts.push("localhost:2181".to_string());
            }
            out.url = format!("zookeeper://{}", hosts.join(","));
            if url.user.is_some() || url.password.is_some() {
                out.dropped.push(
                    "the URL's digest user and password (cronlock's ZooKeeper store has no authentication)".to_string(),
                );
            }
            out.drop_path(&url, "tooz's ZooKeeper driver does not read it");
            out.namespace(&url);
            out.drop_options(
                &url,
                &["hosts", "namespace"],
                &[
                    ("timeout", "cronlock asks for a session timeout of its own"),
                    ("connection_retry", "cronlock retries as CRONLOCK_RECONNECT_* say"),
                    ("command_retry", "cronlock retries as CRONLOCK_RECONNECT_* say"),
                    ("randomize_hosts", "no cronlock setting"),
                    ("handler", "no cronlock setting"),
                ],
            );
        }
        "file" => {
            if url.path.is_empty() {
                bail!("coordination-backend: a file:// URL needs the directory's path, as in file:///var/lock/coolock");
            }
            // tooz's file driver reads the path alone: file://host/dir is /dir.
            if !url.netloc.is_empty() {
                out.dropped.push("the URL's host (tooz's file driver ignores it)".to_string());
            }
            out.url = format!("file://{}", url.path.replace('%', "%25"));
            out.file = true;
            out.drop_options(
                &url,
                &[],
                &[("timeout", "cronlock joins no tooz group")],
            );
        }
        "consul" => bail!(
            "coordination-backend: consul:// has no cronlock store; keep coolock on these hosts or move the fleet to another of tooz's stores"
        ),
        other => bail!(
            "coordination-backend: tooz's {other:?} driver has no cronlock equivalent; cronlock takes tooz's lock on redis, memcached, mysql, postgresql, zookeeper (kazoo), etcd3, etcd3+http and file"
        ),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Vec<(&'static str, String)> {
        parse(text, "test").unwrap()
    }

    fn pair(name: &'static str, value: &str) -> (&'static str, String) {
        (name, value.to_string())
    }

    #[test]
    fn reads_colons_equals_and_spaces_with_comments() {
        let text = "# a comment\n; another\n[section]\n---\n\ncoordination-backend: redis://h:6379\nlock = nightly\nnode web-7\n  guard-time:60   # seconds\nlog-max-size: 20971520 ; 20 MB\n--wait-timeout=5\r\n";
        assert_eq!(
            settings(text),
            vec![
                pair("coordination-backend", "redis://h:6379"),
                pair("lock", "nightly"),
                pair("node", "web-7"),
                pair("guard-time", "60"),
                pair("log-max-size", "20971520"),
                pair("wait-timeout", "5"),
            ]
        );
    }

    #[test]
    fn values_keep_what_the_regex_keeps() {
        // A `#` with no space before it is part of the value; quotes come
        // off in pairs only; an empty value after `:` is empty, a name
        // alone is `true`.
        assert_eq!(
            settings("lock: a#b\nnode: \"x y\" # c\nlog-file: 'half\nlog-level:\nrotate-log-copies\n"),
            vec![
                pair("lock", "a#b"),
                pair("node", "x y"),
                pair("log-file", "'half"),
                pair("log-level", ""),
                pair("rotate-log-copies", "true"),
            ]
        );
        assert_eq!(
            settings("lock # not a comment\n"),
            vec![pair("lock", "# not a comment")]
        );
        assert_eq!(settings("lock: \"\"\n"), vec![pair("lock", "")]);
        // The closing quote is the first one that ends the line.
        assert_eq!(settings("lock \"a\" \"b\"\n"), vec![pair("lock", "a\" \"b")]);
        assert_eq!(settings("lock: \"a\" b\"\n"), vec![pair("lock", "a\" b")]);
        assert_eq!(
            settings("lock\tx\nnode:\t\n"),
            vec![pair("lock", "x"), pair("node", "")]
        );
    }

    #[test]
    fn refuses_what_coolock_refuses_without_quoting_values() {
        for (text, expected) in [
            ("colour: blue\n", "unknown setting \"colour\""),
            ("lock#x\n", "test:1: expected"),
            (":redis://x\n", "expected"),
            ("lock: [a, b]\n", "a list"),
            ("help\n", "its help"),
        ] {
            let err = parse(text, "test").unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = parse("redis://:hunter2@h\n", "f").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    fn convert_text(text: &str) -> Result<Conf> {
        let settings: Settings = parse(text, "test")?.into_iter().collect();
        convert(&settings, "test")
    }

    fn conf(text: &str) -> Conf {
        convert_text(text).unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    /// Checks that `c` sets each `CRONLOCK_<name>` to its value.
    #[track_caller]
    fn expect(c: &Conf, settings: &[(&str, &str)]) {
        for (name, value) in settings {
            assert_eq!(
                c.get(&format!("CRONLOCK_{name}")).as_deref(),
                Some(*value),
                "{}",
                c.text()
            );
        }
    }

    /// The conf for `backend`, whose CRONLOCK_URL must be `expected`.
    #[track_caller]
    fn expect_url(backend: &str, expected: &str) -> Conf {
        let c = url_of(backend);
        assert_eq!(c.get("CRONLOCK_URL").as_deref(), Some(expected), "{backend}");
        c
    }

    fn url_of(backend: &str) -> Conf {
        conf(&format!("coordination-backend: {backend}\n"))
    }

    #[test]
    fn defaults_give_the_coolock_lock_and_its_guard_time() {
        let c = expect_url("redis://cache.example:6379", "redis://cache.example:6379");
        assert_eq!(c.get("CRONLOCK_KEY_STYLE").as_deref(), Some("tooz"));
        assert_eq!(c.get("CRONLOCK_KEY").as_deref(), Some("coolock"));
        assert_eq!(c.get("CRONLOCK_GRACE").as_deref(), Some("30"));
        assert_eq!(c.get("CRONLOCK_WAIT"), None);
        assert_eq!(c.get("CRONLOCK_LEASE"), None);
        assert!(c.dropped.is_empty(), "{:?}", c.dropped);
        let c =
            conf("coordination-backend: file:///l\nlock: it's mine\nnode: web-7\nguard-time: 0\nwait-timeout: 12\n");
        expect(
            &c,
            &[("KEY", "it's mine"), ("NODE", "web-7"), ("GRACE", "-1"), ("WAIT", "12")],
        );
    }

    #[test]
    fn log_settings_and_bad_numbers() {
        let c = conf("coordination-backend: redis://h\nlog-file: /var/log/x\nlog-level: debug\nlog-max-size: 10\nrotate-log-copies: 2\n");
        assert_eq!(c.dropped.len(), 4, "{:?}", c.dropped);
        assert!(c.text().contains("# not carried over: log-file ("), "{}", c.text());
        assert_eq!(c.get("CRONLOCK_VERBOSE"), None);
        for bad in [
            "coordination-backend: redis://h\nguard-time: 1.5\n",
            "coordination-backend: redis://h\nwait-timeout: -1\n",
            "coordination-backend: redis://h\nlog-level: loud\n",
            "lock: x\n",
        ] {
            assert!(convert_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_urls_take_the_database_timeouts_and_sentinel_from_the_query() {
        // tooz sends the password as written and reads no database from the path.
        let c = expect_url(
            "redis://:p%40ss@Cache.Example:6380/2?db=3&timeout=5;lock_timeout=600",
            "redis://:p%2540ss@cache.example:6380/3",
        );
        assert_eq!(c.get("CRONLOCK_REDIS_TIMEOUT").as_deref(), Some("5"));
        assert_eq!(c.get("CRONLOCK_LEASE").as_deref(), Some("600"));
        assert!(c.dropped[0].starts_with("the URL's path"), "{:?}", c.dropped);
        let c =
            url_of("redis://h?timeout=60&socket_timeout=2&namespace=ns&ssl=yes&ssl_certfile=/c.pem&ssl_keyfile=/k.pem");
        expect(
            &c,
            &[
                ("URL", "rediss://h"),
                ("REDIS_TIMEOUT", "2"),
                ("LEASE", "60"),
                ("TLS_CERT_FILE", "/c.pem"),
                ("TLS_KEY_FILE", "/k.pem"),
                ("TOOZ_NAMESPACE", "ns"),
            ],
        );
        assert!(!c.dropped.iter().any(|d| d.contains("namespace")), "{:?}", c.dropped);
        // tooz's parse_qs leaves a blank value out: the default namespace.
        let c = url_of("redis://h?namespace=");
        assert_eq!(c.get("CRONLOCK_TOOZ_NAMESPACE"), None);
        assert!(c.dropped.is_empty(), "{:?}", c.dropped);
        let c = url_of(
            "redis://s1:26379?sentinel=main&sentinel_fallback=s2:26379&sentinel_fallback=s3:26379&lock_timeout=2",
        );
        assert_eq!(c.get("CRONLOCK_USE_SENTINEL").as_deref(), Some("yes"));
        assert_eq!(c.get("CRONLOCK_SENTINEL_MASTER").as_deref(), Some("main"));
        assert_eq!(
            c.get("CRONLOCK_SENTINEL_HOST").as_deref(),
            Some("s1:26379,s2:26379,s3:26379")
        );
        assert_eq!(c.get("CRONLOCK_LEASE"), None);
        assert!(c.dropped[0].contains("3 s at least"), "{:?}", c.dropped);
        assert!(url_of_err("redis:///var/run/redis.sock").contains("Unix socket"));
    }

    fn url_of_err(backend: &str) -> String {
        convert_text(&format!("coordination-backend: {backend}\n"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn memcached_and_etcd_urls_default_their_host() {
        let c = expect_url("memcached://?timeout=10&max_pool_size=4", "memcached://localhost");
        assert_eq!(c.get("CRONLOCK_REDIS_TIMEOUT").as_deref(), Some("10"));
        assert_eq!(c.get("CRONLOCK_LEASE").as_deref(), Some("10"));
        assert!(c.dropped[0].starts_with("?max_pool_size"), "{:?}", c.dropped);
        let c = expect_url("etcd3://etcd1:2379?lock_timeout=120", "etcd3://etcd1:2379");
        assert_eq!(c.get("CRONLOCK_LEASE").as_deref(), Some("120"));
        assert_eq!(c.get("CRONLOCK_REDIS_TIMEOUT"), None);
        expect_url("etcd3+http://[::1]:2390", "etcd3+http://[::1]:2390");
    }

    #[test]
    fn database_urls_keep_user_password_and_database() {
        let c = expect_url(
            "mysql://cron:pa%20ss@db.example/locks?unix_socket=/run/mysqld.sock",
            "mysql://cron:pa%2520ss@db.example/locks",
        );
        assert!(c.dropped[0].starts_with("?unix_socket"), "{:?}", c.dropped);
        assert!(url_of_err("mysql://db.example/locks").contains("no MySQL user"));
        assert!(url_of_err("mysql://u:hunter2@db.example").contains("no database"));
        assert!(!url_of_err("mysql://u:hunter2@db.example").contains("hunter2"));
        expect_url("postgresql://cron@pg1:5433/jobs", "postgresql://cron@pg1:5433/jobs");
        let c = expect_url(
            "postgresql://cron@pg1/ignored?host=pg2&port=5434&dbname=jobs&sslmode=require",
            "postgresql://cron@pg2:5434/jobs",
        );
        assert!(c.dropped[0].starts_with("?sslmode"), "{:?}", c.dropped);
        let c = expect_url("postgresql:///jobs", "postgresql://localhost/jobs");
        assert!(c.dropped[0].contains("Unix socket"), "{:?}", c.dropped);
    }

    #[test]
    fn zookeeper_urls_list_every_host() {
        let c = expect_url(
            "kazoo://zk1:2181,zk2:2182/ignored?hosts=zk3&namespace=ns&timeout=5",
            "zookeeper://zk1:2181,zk2:2182,zk3",
        );
        assert_eq!(c.get("CRONLOCK_REDIS_TIMEOUT"), None);
        assert_eq!(c.get("CRONLOCK_TOOZ_NAMESPACE").as_deref(), Some("ns"));
        assert_eq!(c.dropped.len(), 2, "{:?}", c.dropped);
        expect_url("zookeeper://", "zookeeper://localhost:2181");
    }

    #[test]
    fn file_urls_take_the_path_as_tooz_does() {
        let c = expect_url("file:///var/lock/co%20lock", "file:///var/lock/co%2520lock");
        assert!(c.text().contains("no grace applies"), "{}", c.text());
        let c = expect_url("file://host/var/lock", "file:///var/lock");
        assert_eq!(c.dropped.len(), 1);
    }

    #[test]
    fn consul_and_other_drivers_are_refused() {
        assert!(url_of_err("consul://c1:8500").contains("no cronlock store"));
        for other in ["etcd://h", "zake://", "ipc://", "bogus://h", "no url"] {
            assert!(
                convert_text(&format!("coordination-backend: {other}\n")).is_err(),
                "{other}"
            );
        }
        assert!(!url_of_err("consul://u:hunter2@c1").contains("hunter2"));
        assert!(!url_of_err("redis://:hunter2@h:99999").contains("hunter2"));
    }

    #[test]
    fn every_converted_url_is_one_cronlock_reads() {
        for backend in [
            "redis://:p%40ss@h:6380?db=3&lock_timeout=90",
            "redis://s1:26379?sentinel=main&sentinel_fallback=s2:26379",
            "memcached://",
            "mysql://cron:x@db/locks",
            "postgresql://cron@pg/jobs",
            "kazoo://zk1,zk2:2182",
            "etcd3://e1",
            "etcd3+http://e1:2390",
            "file:///tmp/locks",
        ] {
            let c = url_of(backend);
            let (assignments, _) = crate::config::file::parse(c.text().as_bytes());
            let env: Vec<(&str, &str)> = assignments
                .iter()
                .map(|a| (a.name.as_str(), a.value.as_str()))
                .collect();
            let url = c.get("CRONLOCK_URL").expect("a URL");
            let (scheme, _) = crate::config::url::split(&url).unwrap();
            let row = crate::store::Row::of_scheme(scheme).expect("a store's scheme");
            match crate::config::tests::load_env(&env) {
                Ok(_) => assert!(row.built(), "{backend}: a store built out was read"),
                // A build without the store's feature refuses it by name.
                Err(e) if !row.built() => {
                    assert!(
                        format!("{e:#}").contains(&format!("cargo feature \"{}\"", row.kind)),
                        "{e:#}"
                    )
                }
                Err(e) => panic!("{backend}:\n{}{e:#}", c.text()),
            }
        }
    }

    #[test]
    fn quoted_values_read_back_unchanged() {
        for value in ["plain", "", "two words", "it's", "a#b", "$HOME", "'\\\"", "ünï"] {
            let text = format!("CRONLOCK_KEY={}\n", quote(value));
            let (assignments, errors) = crate::config::file::parse(text.as_bytes());
            assert_eq!(errors, vec![], "{text}");
            assert_eq!(assignments[0].value, value, "{text}");
        }
    }
}
