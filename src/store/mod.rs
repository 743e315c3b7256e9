//! The lock stores, one folder each, and the one table of them: a URL's
//! scheme picks a row, the row's settings parser reads that store's
//! settings (`settings.rs` in its folder), and the row's opener opens it.
//! Adding a store is a folder and a row.
//!
//! The heavy stores (their clients bring an async runtime or the AWS SDK)
//! are carried by `cronlock-stores` only, and each sits behind a cargo
//! feature of its name; `cronlock` hands a run that names one to
//! `cronlock-stores` (see `crate::app`).

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

use std::fmt;

use anyhow::{anyhow, bail, Result};

use crate::config::{url, Config, Shared};
use crate::key::KeyStyle;
use crate::lock::LockStore;
use crate::report::Report;

/// Which binary carries a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `cronlock` itself: small clients of our own or on crates it already has.
    Cronlock,
    /// `cronlock-stores`, which `cronlock` starts for it.
    Stores,
}

/// How tooz's driver for a store keeps its lock (`CRONLOCK_KEY_STYLE=tooz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tooz {
    /// tooz has no driver for this store.
    NoDriver,
    /// For as long as a connection or session lives (nothing to renew).
    Session,
    /// With an expiry of this many seconds, which tooz's heartbeat renews
    /// (coolock never calls it): cronlock renews it while the command runs,
    /// as lease mode does, unless `CRONLOCK_LEASE` sets another time.
    Expires(i64),
}

/// Opens a store from its settings (`T`, its target).
type Opener<T> = for<'a> fn(&'a Config, &'a T, &'a Report) -> Result<Box<dyn LockStore + 'a>>;

/// Reads a store's settings: the URL's scheme and what follows `://`.
type Settings = fn(&str, &str, &mut Shared) -> Result<Store>;

/// One row of [`STORES`].
pub struct Row {
    /// The store's kind, as `LockStore::kind` says it; also the name of its
    /// cargo feature, for the heavy stores.
    pub kind: &'static str,
    /// The URL schemes that pick it; the first is its own.
    pub schemes: &'static [&'static str],
    /// Which binary carries it.
    pub carried_by: Binary,
    /// Whose clock the lock's times are read on (for `CRONLOCK_NTPDATE`'s note).
    pub clock: &'static str,
    /// How tooz's driver for this store keeps its lock.
    pub tooz: Tooz,
    /// tooz's default namespace on this store, where its driver has one
    /// (`?namespace=` in tooz's URL, `CRONLOCK_TOOZ_NAMESPACE` here).
    pub tooz_namespace: Option<&'static str>,
    /// Its settings parser; `None` when this build left the store out.
    settings: Option<Settings>,
}

impl Row {
    /// Whether this build carries the store (its cargo feature was on).
    pub fn built(&self) -> bool {
        self.settings.is_some()
    }

    /// The row whose schemes include `scheme`.
    pub fn of_scheme(scheme: &str) -> Option<&'static Row> {
        STORES.iter().find(|row| row.schemes.contains(&scheme))
    }
}

/// Whether a row's binary is `cronlock`, as a literal, so that the light
/// opener's match drops the heavy rows' arms before code is made for them.
macro_rules! light {
    (Cronlock) => {
        true
    };
    (Stores) => {
        false
    };
}

/// The table: each store's row, and the enum of their settings.
macro_rules! stores {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident($target:ty) {
            kind: $kind:literal,
            schemes: [$($scheme:literal),+],
            carried_by: $binary:ident,
            clock: $clock:literal,
            tooz: $tooz:expr,
            tooz_namespace: $tooz_namespace:expr,
            built: cfg($cfg:meta),
            settings: $settings:expr,
            open: $open:expr,
            open_tooz: $open_tooz:expr,
        }
    )*) => {
        /// Where locks live: the settings of the store `CRONLOCK_URL` names.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Store {
            $(
                $(#[doc = $doc])*
                #[cfg($cfg)]
                $variant(Box<$target>),
            )*
        }

        /// Every store, in the order the README lists them.
        pub const STORES: &[Row] = &[$(
            Row {
                kind: $kind,
                schemes: &[$($scheme),+],
                carried_by: Binary::$binary,
                clock: $clock,
                tooz: $tooz,
                tooz_namespace: $tooz_namespace,
                settings: {
                    #[cfg($cfg)]
                    let settings: Option<Settings> = Some(|scheme, rest, shared| {
                        Ok(Store::$variant(Box::new(($settings)(scheme, rest, shared)?)))
                    });
                    #[cfg(not($cfg))]
                    let settings: Option<Settings> = None;
                    settings
                },
            },
        )*];

        impl Store {
            /// This store's row of [`STORES`].
            pub fn row(&self) -> &'static Row {
                let kind = match self {
                    $( #[cfg($cfg)] Store::$variant(_) => $kind, )*
                };
                STORES.iter().find(|row| row.kind == kind).expect("every store has a row")
            }
        }

        impl fmt::Display for Store {
            /// Where the store keeps its locks, for people; never a password.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( #[cfg($cfg)] Store::$variant(target) => target.fmt(f), )*
                }
            }
        }

        /// Opens `config.store`, if this binary carries it (`ALL`: every
        /// store; else only those `cronlock` carries, so that the others'
        /// clients are not linked into it).
        fn open_with<'a, const ALL: bool>(config: &'a Config, report: &'a Report) -> Result<Box<dyn LockStore + 'a>> {
            let row = config.store.row();
            match &config.store {
                $(
                    #[cfg($cfg)]
                    Store::$variant(target) if ALL || light!($binary) => {
                        let open: Opener<$target> = if config.key_style == KeyStyle::Tooz {
                            $open_tooz
                        } else {
                            $open
                        };
                        open(config, &**target, report)
                    }
                )*
                #[allow(unreachable_patterns)]
                _ => bail!("the {} store is run by cronlock-stores", row.kind),
            }
        }
    };
}

stores! {
    /// A Redis server (standalone, found through Sentinel, or a cluster node).
    Redis(redis::settings::RedisTarget) {
        kind: "redis",
        schemes: ["redis", "rediss"],
        carried_by: Cronlock,
        clock: "the Redis server's clock",
        tooz: Tooz::Expires(30),
        tooz_namespace: Some("_tooz"),
        built: cfg(all()),
        settings: |scheme, rest, shared| redis::settings::parse(Some((scheme, rest)), shared),
        open: |_, target, report| Ok(Box::new(redis::RedisLock::new(target, report)?)),
        open_tooz: |config, target, report| {
            // The settings fill in the row's default, tooz's `_tooz`.
            let namespace = config.tooz_namespace.as_deref().unwrap_or_default();
            Ok(Box::new(redis::tooz::ToozRedisLock::new(target, report, namespace)?))
        },
    }
    /// A table and `GET_LOCK` names in MySQL or MariaDB.
    Mysql(mysql::settings::MysqlTarget) {
        kind: "mysql",
        schemes: ["mysql", "mariadb"],
        carried_by: Stores,
        clock: "the MySQL server's clock",
        tooz: Tooz::Session,
        tooz_namespace: None,
        built: cfg(feature = "mysql"),
        settings: |_, rest, shared| mysql::settings::parse(rest, shared),
        open: |config, target, report| Ok(Box::new(mysql::MysqlLock::new(target, report)?.with_key_style(config.key_style))),
        open_tooz: |_, target, report| Ok(Box::new(mysql::tooz::ToozMysqlLock::new(target, report)?)),
    }
    /// A table in PostgreSQL.
    Postgres(postgres::settings::PostgresTarget) {
        kind: "postgres",
        schemes: ["postgres", "postgresql"],
        carried_by: Stores,
        clock: "the PostgreSQL server's clock",
        tooz: Tooz::Session,
        tooz_namespace: None,
        built: cfg(feature = "postgres"),
        settings: |_, rest, shared| postgres::settings::parse(rest, shared),
        open: |_, target, report| Ok(Box::new(postgres::PostgresLock::new(target, report)?)),
        open_tooz: |_, target, report| Ok(Box::new(postgres::tooz::ToozPostgresLock::new(target, report)?)),
    }
    /// A memcached server.
    Memcached(memcached::settings::MemcachedTarget) {
        kind: "memcached",
        schemes: ["memcached"],
        carried_by: Cronlock,
        clock: "the memcached server's clock",
        tooz: Tooz::Expires(30),
        tooz_namespace: None,
        built: cfg(all()),
        settings: |_, rest, shared| memcached::settings::parse(rest, shared),
        open: |_, target, report| Ok(Box::new(memcached::MemcachedLock::new(target, report))),
        open_tooz: |config, target, report| {
            Ok(Box::new(memcached::tooz::ToozMemcachedLock::new(target, report, &config.node)))
        },
    }
    /// An etcd cluster.
    Etcd(etcd::settings::EtcdTarget) {
        kind: "etcd",
        schemes: ["etcd", "etcds", "etcd3", "etcd3+http"],
        carried_by: Cronlock,
        clock: "etcd's lease timers, counted by its leader",
        tooz: Tooz::Expires(30),
        tooz_namespace: None,
        built: cfg(all()),
        settings: etcd::settings::parse,
        open: |_, target, report| Ok(Box::new(etcd::EtcdLock::new(target, report)?)),
        open_tooz: |_, target, report| Ok(Box::new(etcd::tooz::ToozEtcdLock::new(target, report)?)),
    }
    /// A ZooKeeper ensemble.
    ZooKeeper(zookeeper::settings::ZooKeeperTarget) {
        kind: "zookeeper",
        schemes: ["zookeeper", "kazoo"],
        carried_by: Stores,
        clock: "the ZooKeeper server's clock",
        tooz: Tooz::Session,
        tooz_namespace: Some("tooz"),
        built: cfg(feature = "zookeeper"),
        settings: |_, rest, shared| zookeeper::settings::parse(rest, shared),
        open: |config, target, report| Ok(Box::new(zookeeper::ZooKeeperLock::new(config, target, report)?)),
        open_tooz: |config, target, report| Ok(Box::new(zookeeper::ZooKeeperLock::new(config, target, report)?)),
    }
    /// Items in a DynamoDB table.
    DynamoDb(dynamodb::settings::DynamoTarget) {
        kind: "dynamodb",
        schemes: ["dynamodb"],
        carried_by: Stores,
        clock: "this host's clock; keep it synchronised",
        tooz: Tooz::NoDriver,
        tooz_namespace: None,
        built: cfg(feature = "dynamodb"),
        settings: |_, rest, shared| dynamodb::settings::parse(rest, shared),
        open: |config, target, report| {
            Ok(Box::new(dynamodb::DynamoLock::new(target, report)?.with_key_style(config.key_style)))
        },
        open_tooz: no_tooz_driver,
    }
    /// Lock files in a local directory.
    Directory(directory::settings::DirectoryTarget) {
        kind: "directory",
        schemes: ["file"],
        carried_by: Cronlock,
        clock: "this host's clock, which every run of this directory shares",
        tooz: Tooz::Session,
        tooz_namespace: None,
        built: cfg(all()),
        settings: |_, rest, _| directory::settings::parse(rest),
        open: |_, target, _| Ok(Box::new(directory::DirectoryLock::new(&target.path)?)),
        open_tooz: |_, target, _| Ok(Box::new(directory::tooz::ToozFileLock::new(&target.path)?)),
    }
}

/// The `open_tooz` of a store tooz has no driver for (its row says
/// `Tooz::NoDriver`): one line saying so.
#[cfg(feature = "dynamodb")]
fn no_tooz_driver<'a, T>(config: &'a Config, _: &'a T, _: &'a Report) -> Result<Box<dyn LockStore + 'a>> {
    bail!(
        "CRONLOCK_KEY_STYLE=tooz: tooz (and so coolock) has no driver for the {} store",
        config.store.row().kind
    )
}

/// The store `url` names, its settings read by its row's parser; Redis,
/// from the original's variables, when there is no URL.
pub fn settings(url: Option<&str>, shared: &mut Shared) -> Result<Store> {
    let Some(url) = url else {
        return Ok(Store::Redis(Box::new(redis::settings::parse(None, shared)?)));
    };
    let (scheme, rest) = url::split(url)?;
    let row = Row::of_scheme(scheme).ok_or_else(|| {
        let schemes: Vec<&str> = STORES.iter().flat_map(|row| row.schemes.iter().copied()).collect();
        anyhow!(
            "CRONLOCK_URL: unknown scheme {scheme:?}; expected one of {}",
            schemes.join(", ")
        )
    })?;
    let parse = row.settings.ok_or_else(|| {
        anyhow!(
            "this cronlock was built without the {kind} store (cargo feature \"{kind}\"); build it with the default features",
            kind = row.kind
        )
    })?;
    parse(scheme, rest, shared)
}

/// Opens the store `config.store` names, whichever binary carries it.
/// Nothing is sent to a server yet: each store connects on its first
/// request, so a bad setting found here costs no connection.
pub fn open<'a>(config: &'a Config, report: &'a Report) -> Result<Box<dyn LockStore + 'a>> {
    open_with::<true>(config, report)
}

/// [`open`] for the stores `cronlock` carries; any other is an error
/// (`crate::app` hands those to `cronlock-stores` before it gets here).
/// Not naming the other stores' clients here keeps them out of `cronlock`.
pub fn open_light<'a>(config: &'a Config, report: &'a Report) -> Result<Box<dyn LockStore + 'a>> {
    open_with::<false>(config, report)
}
