//! The conformance suite, cronlockctl's suite and what only one store does, a module per store.

mod directory;
#[cfg(feature = "dynamodb")]
mod dynamodb;
mod etcd;
mod memcached;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod redis;
#[cfg(feature = "zookeeper")]
mod zookeeper;
