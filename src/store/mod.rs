//! The lock stores, one module each, and the one place where the configured
//! store (picked by `CRONLOCK_URL`'s scheme in `crate::config`) is opened.

pub mod dynamodb;
pub mod file;
pub mod redis;

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
        Store::DynamoDb(target) => Box::new(dynamodb::DynamoLock::new(target, report)?),
    })
}
