//! The settings for what a run reports to the systems that watch cron:
//! `CRONLOCK_PING_URL`, `CRONLOCK_METRICS_DIR` and `CRONLOCK_LOG_FORMAT`
//! (docs/watching.md). All three are off unless set.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::url::{self, Authority};
use super::Raw;

/// How cronlock writes its own lines on stderr, and syslog's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// As always: `cronlock: ...` lines, and syslog's `key=... status=...` line.
    #[default]
    Text,
    /// One JSON object per event (`report::events`).
    Json,
}

impl LogFormat {
    /// `text` or `json`, in any case.
    pub fn parse(text: &str) -> Option<LogFormat> {
        if text.eq_ignore_ascii_case("text") {
            Some(LogFormat::Text)
        } else if text.eq_ignore_ascii_case("json") {
            Some(LogFormat::Json)
        } else {
            None
        }
    }
}

/// What a run reports beyond its exit status.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Where the run's pings go (`CRONLOCK_PING_URL`).
    pub ping: Option<PingUrl>,
    /// Where the per-key metrics files are written (`CRONLOCK_METRICS_DIR`).
    pub metrics_dir: Option<PathBuf>,
    /// Text or JSON lines (`CRONLOCK_LOG_FORMAT`).
    pub log_format: LogFormat,
}

impl Watch {
    /// Whether the run reports anything beyond what it always did.
    pub fn is_on(&self) -> bool {
        self.ping.is_some() || self.metrics_dir.is_some() || self.log_format == LogFormat::Json
    }
}

/// Reads the three settings out of `raw`.
pub(super) fn read(raw: &mut Raw) -> Result<Watch> {
    let log_format = match raw.get("log_format") {
        None => LogFormat::Text,
        Some(value) => {
            LogFormat::parse(value).ok_or_else(|| anyhow!("CRONLOCK_LOG_FORMAT={value:?}: expected text or json"))?
        }
    };
    Ok(Watch {
        ping: raw.get("ping_url").map(PingUrl::parse).transpose()?,
        metrics_dir: raw.take("metrics_dir").map(PathBuf::from),
        log_format,
    })
}

/// A ping URL in healthchecks.io's form, checked once: scheme, host and
/// port, and the path and query the pings' suffixes go between. Its path
/// usually holds the check's secret (a UUID or a ping key), and the URL may
/// hold a password: only [`PingUrl::shown`] is ever printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PingUrl {
    /// `https://`.
    pub tls: bool,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// Port: the URL's, else 80 or 443.
    pub port: u16,
    /// The path without its trailing `/` (empty for the root).
    path: String,
    /// `?...` when the URL has a query, else empty.
    query: String,
    /// `Basic ...`, from the URL's user and password.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for PingUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PingUrl({} ...)", self.shown())
    }
}

impl PingUrl {
    /// Reads `http[s]://[user:password@]host[:port][/path][?query]`. Errors
    /// never repeat the URL, which holds the check's secret.
    pub fn parse(text: &str) -> Result<PingUrl> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| anyhow!("CRONLOCK_PING_URL: expected an http:// or https:// URL (value not shown)"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => bail!("CRONLOCK_PING_URL: the scheme must be http or https (value not shown)"),
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        if rest.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            bail!("CRONLOCK_PING_URL: holds a space or a control character; percent-encode it (value not shown)");
        }
        // The errors of the shared reader name CRONLOCK_URL, and never the value.
        let Authority {
            user,
            mut password,
            host,
            port,
            path: target,
            lone_word,
        } = url::authority(rest)
            .map_err(|_| anyhow!("CRONLOCK_PING_URL: no host, or a bad [address] or %-escape (value not shown)"))?;
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(port) => super::parse_port(port)
                .ok_or_else(|| anyhow!("CRONLOCK_PING_URL: the port is not a port number (1-65535)"))?,
        };
        // `https://word@host`: the word is the user, as curl reads it.
        let user = if lone_word { password.take() } else { user };
        let authorization = (user.is_some() || password.is_some()).then(|| {
            let credentials = format!("{}:{}", user.unwrap_or_default(), password.unwrap_or_default());
            format!("Basic {}", BASE64.encode(credentials))
        });
        let (path, query) = target.split_at(target.find('?').unwrap_or(target.len()));
        Ok(PingUrl {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
            query: query.to_string(),
            authorization,
        })
    }

    /// Scheme, host and port (the port only when it is not the scheme's
    /// own): all of the URL that messages may show.
    pub fn shown(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.authority())
    }

    /// `host[:port]`, as the `Host` header carries it: the port only when
    /// it is not the scheme's own, an IPv6 address in brackets.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The request target: the path with `/suffix` appended when given,
    /// then the query.
    pub fn target(&self, suffix: Option<&str>) -> String {
        match suffix {
            Some(suffix) => format!("{}/{suffix}{}", self.path, self.query),
            None if self.path.is_empty() => format!("/{}", self.query),
            None => format!("{}{}", self.path, self.query),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_urls_split_into_what_the_request_needs() {
        let url = PingUrl::parse("https://hc-ping.com/0b5e-uuid/").unwrap();
        assert!(url.tls);
        assert_eq!((url.host.as_str(), url.port), ("hc-ping.com", 443));
        assert_eq!(url.target(Some("start")), "/0b5e-uuid/start");
        assert_eq!(url.target(None), "/0b5e-uuid");
        assert_eq!(url.shown(), "https://hc-ping.com");
        assert_eq!(url.authorization, None);

        let slug = PingUrl::parse("http://u:p%40ss@[::1]:8000/ping/key/backup?create=1#x").unwrap();
        assert_eq!((slug.host.as_str(), slug.port), ("::1", 8000));
        assert_eq!(slug.target(Some("0")), "/ping/key/backup/0?create=1");
        assert_eq!(slug.shown(), "http://[::1]:8000");
        assert_eq!(slug.authorization.as_deref(), Some("Basic dTpwQHNz"));

        let root = PingUrl::parse("HTTP://example.test").unwrap();
        assert_eq!(
            (root.target(None), root.target(Some("fail"))),
            ("/".into(), "/fail".into())
        );
    }

    #[test]
    fn bad_ping_urls_are_refused_without_showing_them() {
        for url in [
            "hc-ping.com/secret",
            "ftp://host/secret",
            "https:///secret",
            "https://host:0/secret",
            "https://host:99999/secret",
            "https://host/sec ret",
            "https://[::1/secret",
            "https://u:%zz@host/secret",
        ] {
            let err = format!("{:#}", PingUrl::parse(url).unwrap_err());
            assert!(err.starts_with("CRONLOCK_PING_URL: "), "{url}: {err}");
            assert!(!err.contains("secret") && !err.contains("zz"), "{url}: {err}");
        }
    }

    #[test]
    fn log_formats_are_text_or_json() {
        assert_eq!(LogFormat::parse("JSON"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml"), None);
    }
}
