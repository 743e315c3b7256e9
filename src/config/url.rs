//! `CRONLOCK_URL`: `redis://`, `rediss://`, `mysql://` (or `mariadb://`),
//! `postgres://` (or `postgresql://`), `memcached://`, `etcd://`, `etcds://`,
//! `zookeeper://`, `dynamodb://` and `file://` forms.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use super::SslMode;

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
    /// A MySQL or MariaDB server.
    Mysql {
        /// Host name or address, without IPv6 brackets.
        host: String,
        /// Port, 3306 when not given.
        port: u16,
        /// User, percent-decoded.
        user: Option<String>,
        /// Password, percent-decoded.
        password: Option<String>,
        /// The database that holds the lock table.
        db: String,
        /// `?ssl-mode=...`, when given.
        ssl_mode: Option<SslMode>,
    },
    /// A PostgreSQL server, in libpq's URL form.
    Postgres {
        /// Host name or address, without IPv6 brackets.
        host: String,
        /// Port, 5432 when not given.
        port: u16,
        /// Role name, percent-decoded.
        user: Option<String>,
        /// Password, percent-decoded.
        password: Option<String>,
        /// Database name from the path, percent-decoded.
        dbname: Option<String>,
        /// `?sslmode=`, when given.
        sslmode: Option<super::PgSslMode>,
    },
    /// A ZooKeeper ensemble.
    ZooKeeper {
        /// The servers to try, each `(host, port)`; the port is 2181 when not given.
        hosts: Vec<(String, u16)>,
        /// The chroot path every lock lives under (`/` stripped at the end), if any.
        chroot: Option<String>,
    },
    /// An etcd cluster.
    Etcd {
        /// `etcds://`.
        tls: bool,
        /// The members listed, each `host` (without IPv6 brackets) and port (2379 when not given).
        endpoints: Vec<(String, u16)>,
        /// etcd user, percent-decoded.
        user: Option<String>,
        /// Password, percent-decoded.
        password: Option<String>,
    },
    /// A memcached server.
    Memcached {
        /// Host name or address, without IPv6 brackets.
        host: String,
        /// Port, 11211 when not given.
        port: u16,
    },
}

/// Parses a `CRONLOCK_URL` value. Errors never repeat the password.
pub fn parse(url: &str) -> Result<Parsed> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow!("CRONLOCK_URL: expected redis://, rediss://, mysql://, postgres://, memcached://, etcd://, etcds://, zookeeper://, dynamodb:// or file:// at the start")
    })?;
    match scheme {
        "file" => {
            if !rest.starts_with('/') {
                bail!("CRONLOCK_URL={url:?}: a file URL needs an absolute path, as in file:///var/lock/cronlock");
            }
            Ok(Parsed::Directory(PathBuf::from(percent_decode(rest, "path")?)))
        }
        "redis" | "rediss" => parse_redis(scheme == "rediss", rest),
        "mysql" | "mariadb" => parse_mysql(rest),
        "postgres" | "postgresql" => parse_postgres(rest),
        "memcached" => parse_memcached(rest),
        "etcd" | "etcds" => parse_etcd(scheme == "etcds", rest),
        "zookeeper" => parse_zookeeper(rest),
        "dynamodb" => parse_dynamodb(rest),
        other => bail!(
            "CRONLOCK_URL: unknown scheme {other:?}; expected redis, rediss, mysql, mariadb, postgres, postgresql, \
             memcached, etcd, etcds, zookeeper, dynamodb or file"
        ),
    }
}

/// The parts of `[user[:password]@]host[:port][/path...]`.
struct Authority<'a> {
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<&'a str>,
    /// Everything from the first `/`, `?` or `#` on.
    path: &'a str,
    /// `scheme://word@host`: read as the password above, as redis-cli does.
    lone_word: bool,
}

fn authority(rest: &str) -> Result<Authority<'_>> {
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

fn port_or(port: Option<&str>, default: u16) -> Result<u16> {
    match port {
        None => Ok(default),
        Some(p) => {
            super::parse_port(p).ok_or_else(|| anyhow!("CRONLOCK_URL: port {p:?} is not a port number (1-65535)"))
        }
    }
}

/// `mysql://user:password@host:port/database?ssl-mode=...`
fn parse_mysql(rest: &str) -> Result<Parsed> {
    let Authority {
        mut user,
        mut password,
        host,
        port,
        path,
        lone_word,
    } = authority(rest)?;
    // `mysql://name@host/db`: a lone word is the user, as MySQL's own URLs read it.
    if lone_word {
        user = password.take();
    }
    let port = port_or(port, 3306)?;
    if path.contains('#') {
        bail!("CRONLOCK_URL: fragments are not supported in a mysql:// URL");
    }
    let (db, query) = path.split_once('?').unwrap_or((path, ""));
    let db = percent_decode(db.strip_prefix('/').unwrap_or(db), "database")?;
    if db.is_empty() || db.contains('/') {
        bail!("CRONLOCK_URL: name the database that holds the lock table, as in mysql://user:password@host/cronlock");
    }
    let mut ssl_mode = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "ssl-mode" | "sslmode" => {
                ssl_mode = Some(SslMode::parse(value).ok_or_else(|| {
                    anyhow!("CRONLOCK_URL: ssl-mode={value:?}; expected disabled, preferred, required, verify_ca or verify_identity")
                })?)
            }
            _ => bail!("CRONLOCK_URL: unknown option {name:?} in a mysql:// URL; only ssl-mode is read"),
        }
    }
    Ok(Parsed::Mysql {
        host,
        port,
        user,
        password,
        db,
        ssl_mode,
    })
}

/// libpq's URL: `postgres://[user[:password]@]host[:port][/dbname][?sslmode=...]`.
/// A lone word before `@` is the user, as libpq reads it.
fn parse_postgres(rest: &str) -> Result<Parsed> {
    let Authority {
        mut user,
        mut password,
        host,
        port,
        path,
        lone_word,
    } = authority(rest)?;
    if lone_word {
        user = password.take().filter(|u| !u.is_empty());
    }
    let port = port_or(port, 5432)?;
    if path.contains('#') {
        bail!("CRONLOCK_URL: fragments are not supported");
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let dbname = match path.strip_prefix('/').unwrap_or(path) {
        "" => None,
        db => Some(percent_decode(db, "database name")?),
    };
    let mut sslmode = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => {
                sslmode = Some(super::PgSslMode::parse(value).ok_or_else(|| {
                    anyhow!(
                        "CRONLOCK_URL: sslmode={value:?}; expected disable, prefer, require, verify-ca or verify-full"
                    )
                })?)
            }
            other => {
                bail!("CRONLOCK_URL: parameter {other:?} is not supported (only sslmode); use the CRONLOCK_* variables")
            }
        }
    }
    Ok(Parsed::Postgres {
        host,
        port,
        user,
        password,
        dbname,
        sslmode,
    })
}

fn parse_redis(tls: bool, rest: &str) -> Result<Parsed> {
    let Authority {
        user,
        password,
        host,
        port,
        path,
        ..
    } = authority(rest)?;
    let port = port_or(port, 6379)?;
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

/// `etcd://[user:password@]host[:port][,host[:port]...][/]`.
fn parse_etcd(tls: bool, rest: &str) -> Result<Parsed> {
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        bail!("CRONLOCK_URL: an etcd URL takes no path, query or fragment; the lock's name is CRONLOCK_PREFIX + key");
    }
    let (members, user, password) = match authority.rsplit_once('@') {
        None => (authority, None, None),
        Some((info, members)) => match info.split_once(':') {
            Some((user, pass)) => (
                members,
                Some(percent_decode(user, "user")?).filter(|u| !u.is_empty()),
                Some(percent_decode(pass, "password")?),
            ),
            None => (members, Some(percent_decode(info, "user")?), None),
        },
    };
    if password.is_some() != user.is_some() {
        bail!("CRONLOCK_URL: etcd authentication needs both a user and a password (etcd://user:password@host)");
    }
    let endpoints = members
        .split(',')
        .map(|member| host_port(member, 2379))
        .collect::<Result<Vec<_>>>()?;
    Ok(Parsed::Etcd {
        tls,
        endpoints,
        user,
        password,
    })
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

/// `host[:port][,host[:port]...][/chroot]`, as ZooKeeper's own connect strings.
fn parse_zookeeper(rest: &str) -> Result<Parsed> {
    if rest.contains(['?', '#', '@']) {
        bail!("CRONLOCK_URL: a zookeeper URL has no user, query or fragment; use zookeeper://host:port[,host:port...][/chroot]");
    }
    let (servers, chroot) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let hosts = servers
        .split(',')
        .map(|server| host_port(server, 2181))
        .collect::<Result<Vec<_>>>()?;
    let chroot = match chroot.map(|c| c.trim_end_matches('/')) {
        None | Some("") => None,
        Some(path) => {
            if path
                .split('/')
                .skip(1)
                .any(|part| part.is_empty() || part == "." || part == "..")
            {
                bail!("CRONLOCK_URL: chroot {path:?} is not a ZooKeeper path (no empty, . or .. parts)");
            }
            Some(path.to_string())
        }
    };
    Ok(Parsed::ZooKeeper { hosts, chroot })
}

/// `memcached://host[:port][/]`: memcached's text protocol has no
/// passwords (SASL needs the binary one) and no databases, so a URL that
/// names either is refused rather than half used.
fn parse_memcached(rest: &str) -> Result<Parsed> {
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.contains('@') {
        bail!("CRONLOCK_URL: memcached:// takes no user or password (memcached's text protocol has none)");
    }
    if hostport.contains(['/', '?', '#']) {
        bail!("CRONLOCK_URL: memcached:// takes only a host and a port, as in memcached://cache.example:11211");
    }
    let (host, port) = host_port(hostport, 11211)?;
    Ok(Parsed::Memcached { host, port })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with `default_port`.
fn host_port(hostport: &str, default_port: u16) -> Result<(String, u16)> {
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
            parse("memcached://cache.example").unwrap(),
            Parsed::Memcached {
                host: "cache.example".into(),
                port: 11211
            }
        );
        assert_eq!(
            parse("memcached://[::1]:11311/").unwrap(),
            Parsed::Memcached {
                host: "::1".into(),
                port: 11311
            }
        );
        assert_eq!(
            parse("etcds://app:p%40ss@a.example,b.example:2390,[::1]/").unwrap(),
            Parsed::Etcd {
                tls: true,
                endpoints: vec![
                    ("a.example".into(), 2379),
                    ("b.example".into(), 2390),
                    ("::1".into(), 2379)
                ],
                user: Some("app".into()),
                password: Some("p@ss".into()),
            }
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
    fn parses_mysql_urls() {
        assert_eq!(
            parse("mysql://app:p%40ss@db.example/locks?ssl-mode=VERIFY_IDENTITY").unwrap(),
            Parsed::Mysql {
                host: "db.example".into(),
                port: 3306,
                user: Some("app".into()),
                password: Some("p@ss".into()),
                db: "locks".into(),
                ssl_mode: Some(SslMode::VerifyIdentity),
            }
        );
        let Parsed::Mysql {
            user, password, port, ..
        } = parse("mariadb://cron@[::1]:3307/x").unwrap()
        else {
            panic!("not mysql")
        };
        assert_eq!((user.as_deref(), password, port), (Some("cron"), None, 3307));
        for bad in [
            "mysql://u:p@h",
            "mysql://u:p@h/",
            "mysql://u:p@h/db?ssl-mode=maybe",
            "mysql://u:p@h/db?charset=x",
            "mysql://u:p@h:0/db",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("mysql://u:hunter2@h:99999/db").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
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
            "memcached://",
            "memcached://h:0",
            "memcached://h:abc",
            "memcached://u:p@h",
            "memcached://h/0",
            "memcached://h?x=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("redis://u:hunter2@h:99999").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        for bad in [
            "etcd://",
            "etcd://a,,b",
            "etcd://h/prefix",
            "etcd://h:70000",
            "etcd://onlyuser@h",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("etcd://u:hunter2@h:0").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn parses_zookeeper_ensembles_and_chroots() {
        assert_eq!(
            parse("zookeeper://zk1").unwrap(),
            Parsed::ZooKeeper {
                hosts: vec![("zk1".into(), 2181)],
                chroot: None
            }
        );
        assert_eq!(
            parse("zookeeper://zk1:2182,zk2,[::1]:2183/apps/cron/").unwrap(),
            Parsed::ZooKeeper {
                hosts: vec![("zk1".into(), 2182), ("zk2".into(), 2181), ("::1".into(), 2183)],
                chroot: Some("/apps/cron".into())
            }
        );
        for bad in [
            "zookeeper://",
            "zookeeper://h:0",
            "zookeeper://h,,g",
            "zookeeper://h/a//b",
            "zookeeper://h/..",
            "zookeeper://u@h",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_libpq_urls() {
        use crate::config::PgSslMode;
        assert_eq!(
            parse("postgresql://app:p%40ss@db.example/locks?sslmode=verify-full").unwrap(),
            Parsed::Postgres {
                host: "db.example".into(),
                port: 5432,
                user: Some("app".into()),
                password: Some("p@ss".into()),
                dbname: Some("locks".into()),
                sslmode: Some(PgSslMode::VerifyFull),
            }
        );
        assert_eq!(
            parse("postgres://cron@[::1]:6543").unwrap(),
            Parsed::Postgres {
                host: "::1".into(),
                port: 6543,
                user: Some("cron".into()),
                password: None,
                dbname: None,
                sslmode: None,
            }
        );
        for bad in [
            "postgres://",
            "postgres://h:0/db",
            "postgres://h/db?sslmode=maybe",
            "postgres://h/db?connect_timeout=3",
            "postgres://h/db#x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for secret in ["postgres://u:hunter2@h:99999/db", "postgres://u:hunter2@h/db?sslmode=x"] {
            let err = parse(secret).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
