//! The ZooKeeper store's settings: `zookeeper://host[:port][,...][/chroot]`,
//! as ZooKeeper's own connect strings, and the general timeout and
//! reconnects.

use std::fmt;

use anyhow::{bail, Result};

use crate::config::{url, Connection, Shared};

/// How to reach ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZooKeeperTarget {
    /// The servers, tried in turn: `(host, port)`.
    pub hosts: Vec<(String, u16)>,
    /// The path every lock lives under, if the URL names one.
    pub chroot: Option<String>,
    /// How long a server that closes every new connection (over its
    /// `maxClientCnxns`) is tried again (the timeout), and the reconnects
    /// after no server could be reached.
    pub connection: Connection,
}

impl fmt::Display for ZooKeeperTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        write!(
            f,
            "zookeeper at {}{}",
            servers.join(","),
            self.chroot.as_deref().unwrap_or("")
        )
    }
}

/// `zookeeper://host[:port][,host[:port]...][/chroot]` (`rest` follows `://`).
pub fn parse(rest: &str, shared: &mut Shared) -> Result<ZooKeeperTarget> {
    if rest.contains(['?', '#', '@']) {
        bail!("CRONLOCK_URL: a zookeeper URL has no user, query or fragment; use zookeeper://host:port[,host:port...][/chroot]");
    }
    let (servers, chroot) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let hosts = servers
        .split(',')
        .map(|server| url::host_port(server, 2181))
        .collect::<Result<Vec<_>>>()?;
    let chroot = match chroot.map(|c| c.trim_end_matches('/')) {
        None | Some("") => None,
        Some(path) => {
            if !is_node_path(path) {
                bail!("CRONLOCK_URL: chroot {path:?} is not a ZooKeeper path (no empty, . or .. parts)");
            }
            Some(path.to_string())
        }
    };
    Ok(ZooKeeperTarget {
        hosts,
        chroot,
        connection: shared.connection,
    })
}

/// Whether ZooKeeper takes `path` as a node's path: absolute, with no
/// empty, `.` or `..` parts and no trailing `/`.
pub(super) fn is_node_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::load_env;
    use crate::store::Store;

    #[test]
    fn a_zookeeper_url_takes_the_general_timeout_and_reconnects() {
        let config = load_env(&[
            ("CRONLOCK_URL", "zookeeper://zk1,zk2:2182/apps"),
            ("CRONLOCK_REDIS_TIMEOUT", "3"),
            ("CRONLOCK_RECONNECT_ATTEMPTS", "2"),
            ("CRONLOCK_RECONNECT_BACKOFF", "1"),
        ])
        .unwrap();
        let Store::ZooKeeper(target) = &config.store else {
            panic!("{:?}", config.store)
        };
        assert_eq!(target.hosts, [("zk1".to_string(), 2181), ("zk2".to_string(), 2182)]);
        assert_eq!(target.chroot.as_deref(), Some("/apps"));
        assert_eq!(target.connection.timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            (
                target.connection.reconnect_attempts,
                target.connection.reconnect_backoff
            ),
            (2, 1)
        );
        let unlimited = load_env(&[("CRONLOCK_URL", "zookeeper://zk1"), ("CRONLOCK_REDIS_TIMEOUT", "0")]).unwrap();
        let Store::ZooKeeper(target) = &unlimited.store else {
            panic!("{:?}", unlimited.store)
        };
        assert_eq!(target.connection.timeout, None);
    }

    /// The hosts and chroot of a URL.
    type Ensemble = (Vec<(String, u16)>, Option<String>);

    fn parsed(url: &str) -> anyhow::Result<Ensemble> {
        match load_env(&[("CRONLOCK_URL", url)])?.store {
            Store::ZooKeeper(target) => Ok((target.hosts, target.chroot)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_zookeeper_ensembles_and_chroots() {
        assert_eq!(parsed("zookeeper://zk1").unwrap(), (vec![("zk1".into(), 2181)], None));
        assert_eq!(
            parsed("zookeeper://zk1:2182,zk2,[::1]:2183/apps/cron/").unwrap(),
            (
                vec![("zk1".into(), 2182), ("zk2".into(), 2181), ("::1".into(), 2183)],
                Some("/apps/cron".into())
            )
        );
        for bad in [
            "zookeeper://",
            "zookeeper://h:0",
            "zookeeper://h,,g",
            "zookeeper://h/a//b",
            "zookeeper://h/..",
            "zookeeper://u@h",
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
    }
}
