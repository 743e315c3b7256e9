//! The lock stores, one module each, and the one place where the configured
//! store (picked by `CRONLOCK_URL`'s scheme in `crate::config`) is opened.

pub mod dynamodb;
pub mod etcd;
pub mod file;
pub mod memcached;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod zookeeper;

use anyhow::Result;

use crate::config::{Config, Store};
use crate::lock::LockStore;
use crate::report::Report;

/// Opens the store `config.store` names. Nothing is sent to a server yet: each
/// store connects on its first request, so a bad setting found here costs
/// no connection.
pub fn open<'a>(config: &'a Config, report: &'a Report) -> Result<Box<dyn LockStore + 'a>> {
    Ok(match &config.store {
        Store::Redis(target) => Box::new(redis::RedisLock::new(target, report)?),
        Store::Directory(dir) => Box::new(file::DirectoryLock::new(dir)?),
        Store::Mysql(target) => Box::new(mysql::MysqlLock::new(target, report)?),
        Store::Memcached(target) => Box::new(memcached::MemcachedLock::new(target, report)),
        Store::Etcd(target) => Box::new(etcd::EtcdLock::new(target)?),
        Store::Postgres(target) => Box::new(postgres::PostgresLock::new(target, report)?),
        Store::ZooKeeper(target) => Box::new(zookeeper::ZooKeeperLock::new(config, target, report)?),
        Store::DynamoDb(target) => Box::new(dynamodb::DynamoLock::new(target, report)?),
    })
}

/// Where `store` keeps its locks, for people; never a password.
pub fn describe(store: &Store) -> String {
    match store {
        Store::Redis(target) => {
            let via = if target.sentinel.is_some() {
                " (master found through Sentinel)"
            } else {
                ""
            };
            let tls = if target.tls.is_some() { " over TLS" } else { "" };
            format!(
                "redis at {}:{} database {}{tls}{via}",
                target.host, target.port, target.db
            )
        }
        Store::Directory(dir) => format!("directory {}", dir.display()),
        Store::Memcached(target) => format!("memcached at {}:{}", target.host, target.port),
        Store::DynamoDb(target) => format!("dynamodb table {}", target.table),
        Store::ZooKeeper(target) => {
            let servers: Vec<String> = target.hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            format!(
                "zookeeper at {}{}",
                servers.join(","),
                target.chroot.as_deref().unwrap_or("")
            )
        }
        Store::Postgres(target) => format!(
            "postgres at {}:{} database {} as {} (sslmode {:?})",
            target.host, target.port, target.dbname, target.user, target.sslmode
        ),
        Store::Etcd(target) => {
            let members: Vec<String> = target.endpoints.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            let tls = if target.tls.is_some() { " over TLS" } else { "" };
            format!("etcd at {}{tls}", members.join(","))
        }
        Store::Mysql(target) => format!(
            "mysql at {}:{} database {} as {} (ssl-mode {:?})",
            target.host, target.port, target.db, target.user, target.ssl_mode
        ),
    }
}
