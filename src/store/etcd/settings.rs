//! The etcd store's settings: `etcd://` and `etcds://` URLs listing the
//! members, with etcd's own user and password, and the general timeout.

use std::fmt;

use anyhow::{bail, Result};

use crate::config::{url, Connection, Shared, Tls};

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// Members to try in turn, `host` and client port.
    pub endpoints: Vec<(String, u16)>,
    /// etcd user, when the cluster has auth enabled.
    pub user: Option<String>,
    /// That user's password; never printed.
    pub password: Option<String>,
    /// Connect and request timeout (reconnects are the gateway's own failover).
    pub connection: Connection,
    /// TLS settings, when the URL says `etcds://` (or `CRONLOCK_TLS=yes`).
    pub tls: Option<Tls>,
}

impl fmt::Display for EtcdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<String> = self.endpoints.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        let tls = if self.tls.is_some() { " over TLS" } else { "" };
        write!(f, "etcd at {}{tls}", members.join(","))
    }
}

/// `etcd[s]://[user:password@]host[:port][,host[:port]...][/]`.
pub fn parse(scheme: &str, rest: &str, shared: &mut Shared) -> Result<EtcdTarget> {
    let (endpoints, user, password) = parse_url(rest)?;
    let tls = if shared.tls_on || scheme == "etcds" {
        Some(shared.tls_files()?)
    } else {
        None
    };
    Ok(EtcdTarget {
        endpoints,
        user,
        password,
        connection: shared.connection,
        tls,
    })
}

/// The members, user and password of an etcd URL.
type EtcdUrl = (Vec<(String, u16)>, Option<String>, Option<String>);

fn parse_url(rest: &str) -> Result<EtcdUrl> {
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
                Some(url::percent_decode(user, "user")?).filter(|u| !u.is_empty()),
                Some(url::percent_decode(pass, "password")?),
            ),
            None => (members, Some(url::percent_decode(info, "user")?), None),
        },
    };
    if password.is_some() != user.is_some() {
        bail!("CRONLOCK_URL: etcd authentication needs both a user and a password (etcd://user:password@host)");
    }
    let endpoints = members
        .split(',')
        .map(|member| url::host_port(member, 2379))
        .collect::<Result<Vec<_>>>()?;
    Ok((endpoints, user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_credentials() {
        assert_eq!(
            parse_url("app:p%40ss@a.example,b.example:2390,[::1]/").unwrap(),
            (
                vec![
                    ("a.example".into(), 2379),
                    ("b.example".into(), 2390),
                    ("::1".into(), 2379)
                ],
                Some("app".into()),
                Some("p@ss".into()),
            )
        );
        for bad in ["", "a,,b", "h/prefix", "h:70000", "onlyuser@h"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("u:hunter2@h:0").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
