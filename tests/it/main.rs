//! The integration tests, one crate (one build, one link): each module runs
//! the built binaries against real servers that `util` starts on free
//! loopback ports. `conformance` and `ctl_suite` are the behaviours every
//! store passes, called from `stores::<name>`; `chaos` is the chaos loop,
//! run against each store with a server.

mod chaos;
mod conformance;
mod ctl_suite;
mod stores;
mod util;

mod bad_input;
mod cluster;
mod cluster_etcd;
#[cfg(feature = "zookeeper")]
mod cluster_zookeeper;
mod config;
mod contention;
mod db_fixtures;
mod docs;
mod faults;
mod fuzz;
mod herd;
mod key_styles;
mod lease;
mod lock;
#[cfg(feature = "zookeeper")]
mod lockex_zookeeper;
#[cfg(feature = "postgres")]
mod postgres;
mod round_trips;
mod sentinel;
mod slot;
mod supervise;
mod syslog;
mod tls;
mod tooz;
mod watch;
