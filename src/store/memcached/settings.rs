//! The memcached store's settings: `memcached://host[:port]`, and the
//! general timeout and reconnects. memcached's text protocol has no
//! passwords (SASL needs the binary one), no databases and no TLS, so the
//! Redis settings that would name them are refused rather than ignored.

use std::fmt;

use anyhow::{bail, Result};

use crate::config::{url, Connection, Shared};

/// How to reach memcached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Timeout and reconnects.
    pub connection: Connection,
}

impl fmt::Display for MemcachedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memcached at {}:{}", self.host, self.port)
    }
}

/// `memcached://host[:port][/]` (`rest` is what follows `://`).
pub fn parse(rest: &str, shared: &mut Shared) -> Result<MemcachedTarget> {
    let (host, port) = parse_url(rest)?;
    let unsupported = if shared.password.is_some() || shared.user.is_some() {
        Some("CRONLOCK_AUTH and CRONLOCK_USER (memcached's text protocol has no passwords)")
    } else if shared.tls_on {
        Some("CRONLOCK_TLS")
    } else if shared.use_sentinel {
        Some("CRONLOCK_USE_SENTINEL")
    } else if shared.db != 0 {
        Some("CRONLOCK_DB (memcached has no databases; use CRONLOCK_PREFIX)")
    } else {
        None
    };
    if let Some(what) = unsupported {
        bail!("{what}: not supported with a memcached:// CRONLOCK_URL; unset it");
    }
    Ok(MemcachedTarget {
        host,
        port,
        connection: shared.connection,
    })
}

fn parse_url(rest: &str) -> Result<(String, u16)> {
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.contains('@') {
        bail!("CRONLOCK_URL: memcached:// takes no user or password (memcached's text protocol has none)");
    }
    if hostport.contains(['/', '?', '#']) {
        bail!("CRONLOCK_URL: memcached:// takes only a host and a port, as in memcached://cache.example:11211");
    }
    url::host_port(hostport, 11211)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_and_a_port_only() {
        assert_eq!(parse_url("cache.example").unwrap(), ("cache.example".into(), 11211));
        assert_eq!(parse_url("[::1]:11311/").unwrap(), ("::1".into(), 11311));
        for bad in ["", "h:0", "h:abc", "u:p@h", "h/0", "h?x=1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
