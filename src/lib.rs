//! cronlock: run a command only if a shared lock can be taken, so that the
//! same crontab on many hosts runs each job once. ARCHITECTURE.md draws the
//! rooms below and how a run moves through them.

pub mod app;
pub mod config;
pub mod ctl;
pub mod exit;
pub mod key;
pub mod lock;
pub mod net;
pub mod process;
pub mod report;
pub mod speed;
pub mod store;
