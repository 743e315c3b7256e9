//! The PostgreSQL store's settings: libpq's URL form (`postgres://` or
//! `postgresql://`) with its `sslmode`, `CRONLOCK_USER`/`CRONLOCK_AUTH` and
//! the `CRONLOCK_TLS_*` files for what the URL leaves out, then libpq's
//! defaults; and the general timeout and reconnects.

use std::fmt;

use anyhow::{anyhow, bail, Result};

use crate::config::url;
use crate::config::{Connection, Shared, Tls};

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port (5432 unless the URL says otherwise).
    pub port: u16,
    /// Role: the URL's, else `CRONLOCK_USER`, else the OS user (as libpq).
    pub user: String,
    /// The URL's password, else `CRONLOCK_AUTH`; never printed.
    pub password: Option<String>,
    /// Database: the URL's path, else the role's name (as libpq).
    pub dbname: String,
    /// libpq's `sslmode`.
    pub sslmode: PgSslMode,
    /// CA bundle, client certificate and server name (`CRONLOCK_TLS_*`);
    /// `skip_verify` is set for the modes that do not verify.
    pub tls: Tls,
    /// Timeout and reconnects.
    pub connection: Connection,
}

impl fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres at {}:{} database {} as {} (sslmode {:?})",
            self.host, self.port, self.dbname, self.user, self.sslmode
        )
    }
}

/// libpq's `sslmode`, mapped onto rustls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, without verifying it (libpq's default).
    Prefer,
    /// TLS, without verifying the server (as libpq without a root certificate).
    Require,
    /// TLS, the certificate's chain verified, not its name.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl PgSslMode {
    /// libpq's spelling.
    pub fn parse(text: &str) -> Option<PgSslMode> {
        Some(match text {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// What a `postgres://` URL says.
#[derive(Debug, PartialEq, Eq)]
struct PostgresUrl {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<PgSslMode>,
}

/// The PostgreSQL target from a `postgres://` URL (`rest` follows `://`).
pub fn parse(rest: &str, shared: &mut Shared) -> Result<PostgresTarget> {
    let parsed = parse_url(rest)?;
    if shared.use_sentinel {
        bail!("CRONLOCK_USE_SENTINEL is for Redis; CRONLOCK_URL names a PostgreSQL server");
    }
    let user = match parsed.user.or_else(|| shared.user.clone()) {
        Some(user) => user,
        None => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|user| user.name)
            .ok_or_else(|| {
                anyhow!("CRONLOCK_URL: no user given, and this process's user has no name; add one to the URL")
            })?,
    };
    // CRONLOCK_TLS=yes without an sslmode asks for a verified connection.
    let mut sslmode = parsed.sslmode.unwrap_or(if shared.tls_on {
        PgSslMode::VerifyFull
    } else {
        PgSslMode::Prefer
    });
    if shared.skip_verify && matches!(sslmode, PgSslMode::VerifyCa | PgSslMode::VerifyFull) {
        sslmode = PgSslMode::Require;
    }
    let tls = Tls {
        skip_verify: matches!(sslmode, PgSslMode::Prefer | PgSslMode::Require),
        ..shared.tls_files()?
    };
    let tls_settings_set = tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.server_name.is_some()
        || shared.skip_verify
        || shared.tls_on;
    if sslmode == PgSslMode::Disable && tls_settings_set {
        bail!("CRONLOCK_TLS* settings are given but CRONLOCK_URL says sslmode=disable");
    }
    Ok(PostgresTarget {
        host: parsed.host,
        port: parsed.port,
        dbname: parsed.dbname.unwrap_or_else(|| user.clone()),
        user,
        password: parsed.password.or_else(|| shared.password.clone()),
        sslmode,
        tls,
        connection: shared.connection,
    })
}

/// libpq's URL: `[user[:password]@]host[:port][/dbname][?sslmode=...]`.
/// A lone word before `@` is the user, as libpq reads it.
fn parse_url(rest: &str) -> Result<PostgresUrl> {
    let parsed = url::database_url(rest, 5432)?;
    let dbname = match parsed.path {
        "" => None,
        db => Some(url::percent_decode(db, "database name")?),
    };
    let mut sslmode = None;
    for (name, value) in parsed.query {
        match name {
            "sslmode" => {
                sslmode = Some(PgSslMode::parse(value).ok_or_else(|| {
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
    Ok(PostgresUrl {
        host: parsed.host,
        port: parsed.port,
        user: parsed.user.filter(|u| !u.is_empty()),
        password: parsed.password,
        dbname,
        sslmode,
    })
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn parses_libpq_urls() {
        assert_eq!(
            parse_url("app:p%40ss@db.example/locks?sslmode=verify-full").unwrap(),
            PostgresUrl {
                host: "db.example".into(),
                port: 5432,
                user: Some("app".into()),
                password: Some("p@ss".into()),
                dbname: Some("locks".into()),
                sslmode: Some(PgSslMode::VerifyFull),
            }
        );
        assert_eq!(
            parse_url("cron@[::1]:6543").unwrap(),
            PostgresUrl {
                host: "::1".into(),
                port: 6543,
                user: Some("cron".into()),
                password: None,
                dbname: None,
                sslmode: None,
            }
        );
        for bad in ["", "h:0/db", "h/db?sslmode=maybe", "h/db?connect_timeout=3", "h/db#x"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        for secret in ["u:hunter2@h:99999/db", "u:hunter2@h/db?sslmode=x"] {
            let err = parse_url(secret).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load_env;
    use crate::store::Store;

    #[test]
    fn the_url_takes_the_separate_variables_where_it_is_silent() {
        let pg = load_env(&[
            ("CRONLOCK_URL", "postgres://cron@db/locks"),
            ("CRONLOCK_AUTH", "pw"),
            ("CRONLOCK_PORT", "9"),
        ])
        .unwrap();
        let Store::Postgres(target) = &pg.store else {
            panic!("{:?}", pg.store)
        };
        assert_eq!(
            (
                target.host.as_str(),
                target.port,
                target.user.as_str(),
                target.dbname.as_str()
            ),
            ("db", 5432, "cron", "locks")
        );
        assert_eq!(
            (target.password.as_deref(), target.sslmode),
            (Some("pw"), PgSslMode::Prefer)
        );
        let verified = load_env(&[("CRONLOCK_URL", "postgres://u@db"), ("CRONLOCK_TLS", "yes")]).unwrap();
        let Store::Postgres(target) = &verified.store else {
            panic!()
        };
        assert_eq!((target.sslmode, target.dbname.as_str()), (PgSslMode::VerifyFull, "u"));
    }
}
