//! What every store's `CRONLOCK_URL` has in common: the scheme (which picks
//! the store, through `crate::store::STORES`), `[user[:password]@]host[:port]`,
//! host lists and percent-decoding. Each store reads the rest of its URL in
//! its own `settings.rs`.

use anyhow::{anyhow, bail, Result};

/// `scheme://rest` split at `://`; the scheme is looked up by the caller.
pub fn split(url: &str) -> Result<(&str, &str)> {
    url.split_once("://").ok_or_else(|| {
        let schemes: Vec<String> = crate::store::STORES
            .iter()
            .map(|row| format!("{}://", row.schemes[0]))
            .collect();
        anyhow!("CRONLOCK_URL: expected {} at the start", schemes.join(", "))
    })
}

/// The parts of `[user[:password]@]host[:port][/path...]`.
pub struct Authority<'a> {
    /// The user, percent-decoded; `None` when empty.
    pub user: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// The port as written, if any.
    pub port: Option<&'a str>,
    /// Everything from the first `/`, `?` or `#` on.
    pub path: &'a str,
    /// `scheme://word@host`: read as the password above, as redis-cli does.
    pub lone_word: bool,
}

/// Reads `[user[:password]@]host[:port]` and what follows.
pub fn authority(rest: &str) -> Result<Authority<'_>> {
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let lone_word = userinfo.is_some_and(|info| !info.contains(':'));
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => (
                Some(percent_decode(user, "user")?).filter(|u| !u.is_empty()),
                Some(percent_decode(pass, "password")?),
            ),
            // `redis://secret@host`: a lone word is the password, as redis-cli reads it.
            None => (None, Some(percent_decode(info, "password")?)),
        },
    };
    let (host, port) = host_and_port(hostport)?;
    Ok(Authority {
        user,
        password,
        host,
        port,
        path,
        lone_word,
    })
}

/// A database server's URL, as MySQL's and libpq's read it: the
/// authority, with a lone word before `@` read as the user (not the
/// password, as Redis reads it); the port, `default` when not given; the
/// path without its leading `/`; and the query's `name=value` pairs. A
/// fragment is refused.
pub fn database_url(rest: &str, default: u16) -> Result<DatabaseUrl<'_>> {
    let Authority {
        mut user,
        mut password,
        host,
        port,
        path,
        lone_word,
    } = authority(rest)?;
    if lone_word {
        user = password.take();
    }
    let port = port_or(port, default)?;
    if path.contains('#') {
        bail!("CRONLOCK_URL: fragments are not supported");
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    Ok(DatabaseUrl {
        user,
        password,
        host,
        port,
        path: path.strip_prefix('/').unwrap_or(path),
        query,
    })
}

/// What [`database_url`] reads.
pub struct DatabaseUrl<'a> {
    /// The user, percent-decoded.
    pub user: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path after its leading `/`, not yet decoded.
    pub path: &'a str,
    /// The query's `name=value` pairs, as written.
    pub query: Vec<(&'a str, &'a str)>,
}

/// `port` as a TCP port, or `default` when the URL gives none.
pub fn port_or(port: Option<&str>, default: u16) -> Result<u16> {
    match port {
        None => Ok(default),
        Some(p) => crate::config::parse_port(p)
            .ok_or_else(|| anyhow!("CRONLOCK_URL: port {p:?} is not a port number (1-65535)")),
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with `default_port`.
pub fn host_port(hostport: &str, default_port: u16) -> Result<(String, u16)> {
    let (host, port) = host_and_port(hostport)?;
    Ok((host, port_or(port, default_port)?))
}

/// The host (without IPv6 brackets) and the port as written, if any.
fn host_and_port(hostport: &str) -> Result<(String, Option<&str>)> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| anyhow!("CRONLOCK_URL: missing ']' after the IPv6 address"))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        bail!("CRONLOCK_URL: no host given");
    }
    Ok((host, port))
}

/// `text` with its `%XX` escapes decoded; `what` names the part in errors,
/// which never repeat the text (it may be a password).
pub fn percent_decode(text: &str, what: &str) -> Result<String> {
    // The crate passes a malformed escape through as it stands; a URL with
    // one is refused instead, as a typo in a password should be.
    let malformed = text.match_indices('%').any(|(i, _)| {
        !text
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if malformed {
        bail!("CRONLOCK_URL: bad %-escape in the {what}");
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| anyhow!("CRONLOCK_URL: the {what} is not valid UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_refused() {
        assert_eq!(percent_decode("p%40ss%2F", "password").unwrap(), "p@ss/");
        for bad in ["%", "%4", "%zz", "a%4g"] {
            assert!(percent_decode(bad, "password").is_err(), "{bad}");
        }
        assert!(percent_decode("%ff", "password").is_err(), "not UTF-8");
    }

    #[test]
    fn hosts_ports_and_ipv6_brackets() {
        assert_eq!(host_port("[::1]:7000", 1).unwrap(), ("::1".into(), 7000));
        assert_eq!(host_port("h", 11211).unwrap(), ("h".into(), 11211));
        for bad in ["", "h:0", "h:abc", "[::1", ":5"] {
            assert!(host_port(bad, 1).is_err(), "{bad}");
        }
    }
}
