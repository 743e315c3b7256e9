//! The MySQL/MariaDB store's settings: `mysql://` (or `mariadb://`) URLs
//! with MySQL's `ssl-mode`, `CRONLOCK_USER`/`CRONLOCK_AUTH` for what the URL
//! leaves out, the `CRONLOCK_TLS_*` files, and the general timeout and
//! reconnects.

use std::fmt;

use anyhow::{anyhow, bail, Result};

use crate::config::url;
use crate::config::{Connection, Shared, Tls};

/// How to reach MySQL or MariaDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port, 3306 unless the URL says otherwise.
    pub port: u16,
    /// User name (from the URL, else `CRONLOCK_USER`).
    pub user: String,
    /// Password (from the URL, else `CRONLOCK_AUTH`); never printed.
    pub password: Option<String>,
    /// The database holding the lock table.
    pub db: String,
    /// The URL's `ssl-mode`.
    pub ssl_mode: SslMode,
    /// CA, client certificate and key files (`CRONLOCK_TLS_*`), when TLS is on.
    pub tls: Option<Tls>,
    /// Timeout and reconnects.
    pub connection: Connection,
}

impl fmt::Display for MysqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mysql at {}:{} database {} as {} (ssl-mode {:?})",
            self.host, self.port, self.db, self.user, self.ssl_mode
        )
    }
}

/// MySQL's `ssl-mode`, as its own client spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disabled,
    /// TLS without verification when the server offers it, else plain TCP.
    Preferred,
    /// TLS, without verifying the certificate.
    Required,
    /// TLS, the certificate checked against the CA but not the host name.
    VerifyCa,
    /// TLS, the certificate checked against the CA and the host name.
    VerifyIdentity,
}

impl SslMode {
    /// Reads `disabled`, `preferred`, `required`, `verify_ca` or `verify_identity` (any case, `-` for `_`).
    pub fn parse(text: &str) -> Option<SslMode> {
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" => Some(SslMode::Disabled),
            "preferred" => Some(SslMode::Preferred),
            "required" => Some(SslMode::Required),
            "verify_ca" => Some(SslMode::VerifyCa),
            "verify_identity" => Some(SslMode::VerifyIdentity),
            _ => None,
        }
    }

    /// Whether the certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyIdentity)
    }
}

/// What a `mysql://` URL says.
#[derive(Debug, PartialEq, Eq)]
struct MysqlUrl {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    db: String,
    ssl_mode: Option<SslMode>,
}

/// The MySQL target from a `mysql://` URL (`rest` follows `://`), with the
/// user and password it leaves out taken from `CRONLOCK_USER` and
/// `CRONLOCK_AUTH`.
pub fn parse(rest: &str, shared: &mut Shared) -> Result<MysqlTarget> {
    let parsed = parse_url(rest)?;
    // CRONLOCK_TLS=yes without an ssl-mode asks for a verified connection.
    let ssl_mode = match parsed.ssl_mode {
        Some(mode) => mode,
        None if shared.tls_on && shared.skip_verify => SslMode::Required,
        None if shared.tls_on => SslMode::VerifyIdentity,
        None => SslMode::Disabled,
    };
    // Both taken, whichever is used: a MySQL account may have no password.
    let (user, password) = (shared.user.take(), shared.password.take());
    let user = parsed
        .user
        .or(user)
        .ok_or_else(|| anyhow!("CRONLOCK_URL: no MySQL user given; write mysql://user:password@host/database"))?;
    let tls = if shared.tls_on || ssl_mode != SslMode::Disabled {
        Some(shared.tls_files()?)
    } else {
        None
    };
    Ok(MysqlTarget {
        host: parsed.host,
        port: parsed.port,
        user,
        password: parsed.password.or(password),
        db: parsed.db,
        ssl_mode,
        tls,
        connection: shared.connection,
    })
}

/// `user:password@host:port/database?ssl-mode=...`; a lone word before `@`
/// is the user, as MySQL's own URLs read it.
fn parse_url(rest: &str) -> Result<MysqlUrl> {
    let parsed = url::database_url(rest, 3306)?;
    let db = url::percent_decode(parsed.path, "database")?;
    if db.is_empty() || db.contains('/') {
        bail!("CRONLOCK_URL: name the database that holds the lock table, as in mysql://user:password@host/cronlock");
    }
    let mut ssl_mode = None;
    for (name, value) in parsed.query {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "ssl-mode" | "sslmode" => {
                ssl_mode = Some(SslMode::parse(value).ok_or_else(|| {
                    anyhow!("CRONLOCK_URL: ssl-mode={value:?}; expected disabled, preferred, required, verify_ca or verify_identity")
                })?)
            }
            _ => bail!("CRONLOCK_URL: unknown option {name:?} in a mysql:// URL; only ssl-mode is read"),
        }
    }
    Ok(MysqlUrl {
        host: parsed.host,
        port: parsed.port,
        user: parsed.user,
        password: parsed.password,
        db,
        ssl_mode,
    })
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn parses_mysql_urls() {
        assert_eq!(
            parse_url("app:p%40ss@db.example/locks?ssl-mode=VERIFY_IDENTITY").unwrap(),
            MysqlUrl {
                host: "db.example".into(),
                port: 3306,
                user: Some("app".into()),
                password: Some("p@ss".into()),
                db: "locks".into(),
                ssl_mode: Some(SslMode::VerifyIdentity),
            }
        );
        let MysqlUrl {
            user, password, port, ..
        } = parse_url("cron@[::1]:3307/x").unwrap();
        assert_eq!((user.as_deref(), password, port), (Some("cron"), None, 3307));
        for bad in [
            "u:p@h",
            "u:p@h/",
            "u:p@h/db?ssl-mode=maybe",
            "u:p@h/db?charset=x",
            "u:p@h:0/db",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("u:hunter2@h:99999/db").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
