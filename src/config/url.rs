//! `CRONLOCK_URL`: `redis://`, `rediss://`, `file://` and `dynamodb://` forms.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

/// What a URL names.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A lock directory on this host.
    Directory(PathBuf),
    /// A DynamoDB table (`dynamodb://TABLE`); the account, region and
    /// endpoint come from the AWS configuration, as the AWS CLI finds them.
    DynamoDb(String),
    /// A Redis server; parts the URL leaves out fall back to the separate variables.
    Redis {
        /// `rediss://`.
        tls: bool,
        /// Host name or address, without IPv6 brackets.
        host: String,
        /// Port, 6379 when not given.
        port: u16,
        /// ACL user, percent-decoded.
        user: Option<String>,
        /// Password, percent-decoded.
        password: Option<String>,
        /// Database from the path.
        db: Option<i64>,
    },
}

/// Parses a `CRONLOCK_URL` value. Errors never repeat the password.
pub fn parse(url: &str) -> Result<Parsed> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("CRONLOCK_URL: expected redis://, rediss://, file:// or dynamodb:// at the start"))?;
    match scheme {
        "file" => {
            if !rest.starts_with('/') {
                bail!("CRONLOCK_URL={url:?}: a file URL needs an absolute path, as in file:///var/lock/cronlock");
            }
            Ok(Parsed::Directory(PathBuf::from(percent_decode(rest, "path")?)))
        }
        "redis" | "rediss" => parse_redis(scheme == "rediss", rest),
        "dynamodb" => parse_dynamodb(rest),
        other => bail!("CRONLOCK_URL: unknown scheme {other:?}; expected redis, rediss, file or dynamodb"),
    }
}

/// `dynamodb://TABLE`: a table name as DynamoDB accepts it (3-255 of
/// `A-Z a-z 0-9 _ - .`), nothing else; the region and endpoint are AWS
/// settings (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`), not part of the URL.
fn parse_dynamodb(table: &str) -> Result<Parsed> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        bail!(
            "CRONLOCK_URL: {table:?} is not a DynamoDB table name (3-255 of A-Z, a-z, 0-9, '_', '-', '.'); \
             expected dynamodb://TABLE, with the region and endpoint in AWS_REGION and AWS_ENDPOINT_URL"
        );
    }
    Ok(Parsed::DynamoDb(table.to_string()))
}

fn parse_redis(tls: bool, rest: &str) -> Result<Parsed> {
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
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
    let port = match port {
        None => 6379,
        Some(p) => {
            super::parse_port(p).ok_or_else(|| anyhow!("CRONLOCK_URL: port {p:?} is not a port number (1-65535)"))?
        }
    };
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
    Ok(Parsed::Redis {
        tls,
        host,
        port,
        user,
        password,
        db,
    })
}

fn percent_decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("CRONLOCK_URL: bad %-escape in the {what}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("CRONLOCK_URL: the {what} is not valid UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(tls: bool, host: &str, port: u16, user: Option<&str>, password: Option<&str>, db: Option<i64>) -> Parsed {
        Parsed::Redis {
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
            parse("redis://localhost").unwrap(),
            redis(false, "localhost", 6379, None, None, None)
        );
        assert_eq!(
            parse("rediss://app:p%40ss@cache.example:6380/2").unwrap(),
            redis(true, "cache.example", 6380, Some("app"), Some("p@ss"), Some(2))
        );
        assert_eq!(
            parse("redis://:secret@[::1]:7000").unwrap(),
            redis(false, "::1", 7000, None, Some("secret"), None)
        );
        assert_eq!(
            parse("dynamodb://cron-locks.prod").unwrap(),
            Parsed::DynamoDb("cron-locks.prod".into())
        );
        assert_eq!(
            parse("file:///var/lock/cronlock").unwrap(),
            Parsed::Directory("/var/lock/cronlock".into())
        );
    }

    #[test]
    fn rejects_what_it_cannot_use_without_echoing_the_password() {
        for bad in [
            "localhost:6379",
            "http://x",
            "redis://",
            "redis://h:0",
            "redis://h/x",
            "file://relative",
            "redis://h?x=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("redis://u:hunter2@h:99999").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
