//! The Redis store's settings: the original's variables (`CRONLOCK_HOST`,
//! `CRONLOCK_PORT`, `CRONLOCK_DB`, `CRONLOCK_USER`, `CRONLOCK_AUTH`, Sentinel
//! and TLS), and `redis://` / `rediss://` URLs, whose parts override them.

use std::fmt;

use anyhow::{anyhow, bail, Result};

use crate::config::url::{self, Authority};
use crate::config::{Connection, Shared, Tls};

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or address (`CRONLOCK_HOST`).
    pub host: String,
    /// TCP port (`CRONLOCK_PORT`).
    pub port: u16,
    /// ACL user name (`CRONLOCK_USER`), sent with the password.
    pub user: Option<String>,
    /// Password (`CRONLOCK_AUTH`); never printed.
    pub password: Option<String>,
    /// Database number (`CRONLOCK_DB`).
    pub db: i64,
    /// Timeout and reconnects.
    pub connection: Connection,
    /// Where to ask for the master, when `CRONLOCK_USE_SENTINEL=yes`.
    pub sentinel: Option<Sentinel>,
    /// TLS settings, when `CRONLOCK_TLS=yes` or the URL says `rediss://`.
    pub tls: Option<Tls>,
}

/// Sentinel lookup settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinel {
    /// The monitored master's name (`CRONLOCK_SENTINEL_MASTER`).
    pub master: String,
    /// Sentinels to ask in turn (`CRONLOCK_SENTINEL_HOST` may list several `host:port`).
    pub nodes: Vec<(String, u16)>,
    /// Password for the sentinels themselves (`CRONLOCK_SENTINEL_AUTH`).
    pub password: Option<String>,
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = if self.tls.is_some() { " over TLS" } else { "" };
        let via = if self.sentinel.is_some() {
            " (master found through Sentinel)"
        } else {
            ""
        };
        write!(f, "redis at {}:{} database {}{tls}{via}", self.host, self.port, self.db)
    }
}

/// What a `redis://` URL says; the parts it leaves out fall back to the
/// separate variables.
#[derive(Debug, PartialEq, Eq)]
struct RedisUrl {
    /// `rediss://`.
    tls: bool,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    db: Option<i64>,
}

/// The Redis target from the original's variables and, when given, a
/// `redis://` or `rediss://` URL (`url` is the scheme and what follows `://`).
pub fn parse(url: Option<(&str, &str)>, shared: &mut Shared) -> Result<RedisTarget> {
    let mut target = RedisTarget {
        host: shared.host.clone(),
        port: shared.port,
        user: shared.user.take(),
        password: shared.password.take(),
        db: shared.db,
        connection: shared.connection,
        sentinel: None,
        tls: None,
    };
    let mut url_tls = false;
    if let Some((scheme, rest)) = url {
        let parsed = parse_url(scheme == "rediss", rest)?;
        target.host = parsed.host;
        target.port = parsed.port;
        target.user = parsed.user.or(target.user);
        target.password = parsed.password.or(target.password);
        target.db = parsed.db.unwrap_or(target.db);
        url_tls = parsed.tls;
    }
    if shared.tls_on || url_tls {
        target.tls = Some(shared.tls_files()?);
    }
    if shared.use_sentinel {
        let hosts = shared.take("sentinel_host").unwrap_or_else(|| "localhost".to_string());
        let nodes = hosts
            .split(',')
            .map(|node| sentinel_node(node.trim(), shared.sentinel_port))
            .collect::<Result<Vec<_>>>()?;
        target.sentinel = Some(Sentinel {
            master: shared.take("sentinel_master").unwrap_or_else(|| "mymaster".to_string()),
            nodes,
            password: shared.take("sentinel_auth"),
        });
    }
    if target.user.is_some() && target.password.is_none() {
        bail!("CRONLOCK_USER is set without CRONLOCK_AUTH: an ACL user needs its password");
    }
    Ok(target)
}

fn parse_url(tls: bool, rest: &str) -> Result<RedisUrl> {
    let Authority {
        user,
        password,
        host,
        port,
        path,
        ..
    } = url::authority(rest)?;
    let port = url::port_or(port, 6379)?;
    if path.contains(['?', '#']) {
        bail!("CRONLOCK_URL: query strings and fragments are not supported; use the CRONLOCK_* variables");
    }
    let db = match path.trim_start_matches('/') {
        "" => None,
        db => Some(
            db.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| anyhow!("CRONLOCK_URL: database {db:?} is not a number"))?,
        ),
    };
    Ok(RedisUrl {
        tls,
        host,
        port,
        user,
        password,
        db,
    })
}

/// One entry of `CRONLOCK_SENTINEL_HOST`: `host`, `host:port`, `[v6]` or `[v6]:port`.
fn sentinel_node(node: &str, default_port: u16) -> Result<(String, u16)> {
    if node.is_empty() {
        bail!("CRONLOCK_SENTINEL_HOST: empty entry in the list; write host or host:port, separated by commas");
    }
    let port = |p: &str| crate::config::port("SENTINEL_HOST", Some(p), default_port);
    // A bare IPv6 address has colons of its own; it needs brackets to carry a port.
    if let Some(rest) = node.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("CRONLOCK_SENTINEL_HOST={node:?}: missing ']'"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), port(p)?)),
            None if after.is_empty() => Ok((host.to_string(), default_port)),
            None => bail!("CRONLOCK_SENTINEL_HOST={node:?}: expected [address]:port"),
        };
    }
    match node.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') => Ok((host.to_string(), port(p)?)),
        _ => Ok((node.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(
        tls: bool,
        host: &str,
        port: u16,
        user: Option<&str>,
        password: Option<&str>,
        db: Option<i64>,
    ) -> RedisUrl {
        RedisUrl {
            tls,
            host: host.into(),
            port,
            user: user.map(Into::into),
            password: password.map(Into::into),
            db,
        }
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(
            parse_url(false, "localhost").unwrap(),
            redis(false, "localhost", 6379, None, None, None)
        );
        assert_eq!(
            parse_url(true, "app:p%40ss@cache.example:6380/2").unwrap(),
            redis(true, "cache.example", 6380, Some("app"), Some("p@ss"), Some(2))
        );
        assert_eq!(
            parse_url(false, ":secret@[::1]:7000").unwrap(),
            redis(false, "::1", 7000, None, Some("secret"), None)
        );
    }

    #[test]
    fn rejects_what_it_cannot_use_without_echoing_the_password() {
        for bad in ["", "h:0", "h/x", "h?x=1"] {
            assert!(parse_url(false, bad).is_err(), "{bad}");
        }
        let err = parse_url(false, "u:hunter2@h:99999").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
