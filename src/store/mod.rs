//! The lock stores, one module each, and the one place where the configured
//! store (picked by `CRONLOCK_URL`'s scheme in `crate::config`) is opened.

pub mod directory;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod escape;
pub mod etcd;
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub mod hold;
pub mod memcached;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod redis;
#[cfg(feature = "zookeeper")]
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
        Store::Directory(dir) => Box::new(directory::DirectoryLock::new(dir)?),
        Store::Memcached(target) => Box::new(memcached::MemcachedLock::new(target, report)),
        Store::Etcd(target) => Box::new(etcd::EtcdLock::new(target, report)?),
        #[cfg(feature = "mysql")]
        Store::Mysql(target) => Box::new(mysql::MysqlLock::new(target, report)?),
        #[cfg(feature = "postgres")]
        Store::Postgres(target) => Box::new(postgres::PostgresLock::new(target, report)?),
        #[cfg(feature = "zookeeper")]
        Store::ZooKeeper(target) => Box::new(zookeeper::ZooKeeperLock::new(config, target, report)?),
        #[cfg(feature = "dynamodb")]
        Store::DynamoDb(target) => Box::new(dynamodb::DynamoLock::new(target, report)?),
        #[allow(unreachable_patterns)]
        other => return Err(built_out(other)),
    })
}

/// The error for a store whose cargo feature this build left out.
fn built_out(store: &Store) -> anyhow::Error {
    // Each heavy store's cargo feature is named as its kind.
    let kind = kind_of(store);
    anyhow::anyhow!(
        "this cronlock was built without the {kind} store (cargo feature \"{kind}\"); build it with the default features"
    )
}

/// The stores `cronlock` itself carries: small clients of our own or on
/// crates it already has. The others are opened by `cronlock-stores`
/// (see `crate::app`).
pub fn carried_light(store: &Store) -> bool {
    matches!(
        store,
        Store::Redis(_) | Store::Directory(_) | Store::Memcached(_) | Store::Etcd(_)
    )
}

/// [`open`] for the stores [`carried_light`] names; any other is an error
/// (`crate::app` hands those to `cronlock-stores` before it gets here).
/// Not naming the other stores' clients here keeps them out of `cronlock`.
pub fn open_light<'a>(config: &'a Config, report: &'a Report) -> Result<Box<dyn LockStore + 'a>> {
    Ok(match &config.store {
        Store::Redis(target) => Box::new(redis::RedisLock::new(target, report)?),
        Store::Directory(dir) => Box::new(directory::DirectoryLock::new(dir)?),
        Store::Memcached(target) => Box::new(memcached::MemcachedLock::new(target, report)),
        Store::Etcd(target) => Box::new(etcd::EtcdLock::new(target, report)?),
        other => anyhow::bail!("the {} store is run by cronlock-stores", kind_of(other)),
    })
}

/// The store's kind, as its `LockStore::kind` says it, without opening it.
pub fn kind_of(store: &Store) -> &'static str {
    match store {
        Store::Redis(_) => "redis",
        Store::Directory(_) => "directory",
        Store::Memcached(_) => "memcached",
        Store::Etcd(_) => "etcd",
        Store::Mysql(_) => "mysql",
        Store::Postgres(_) => "postgres",
        Store::ZooKeeper(_) => "zookeeper",
        Store::DynamoDb(_) => "dynamodb",
    }
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
