//! Lock stores other than Redis.

pub mod file;
