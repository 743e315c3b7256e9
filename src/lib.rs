//! cronlock: run a command only if a shared lock can be taken, so that the
//! same crontab on many hosts runs each job once.

pub mod app;
pub mod arena;
pub mod config;
pub mod exit;
pub mod key;
pub mod lease;
pub mod lock;
pub mod owner;
pub mod random;
pub mod report;
pub mod signals;
pub mod startup;
pub mod store;
pub mod supervise;
pub mod syslog;
pub mod take;
pub mod tls;
pub mod watchdog;
