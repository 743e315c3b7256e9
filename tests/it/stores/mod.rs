//! The conformance suite, cronlockctl's suite and what only one store does, a module per store.

mod directory;
mod dynamodb;
mod etcd;
mod memcached;
mod mysql;
mod postgres;
mod redis;
mod zookeeper;
