//! The command's process: run in a group of its own under a watchdog, with
//! its timeout and the signals passed on ([`supervise`]), the watchdog that
//! kills the group if cronlock itself dies ([`watchdog`]), and the signals
//! cronlock waits on ([`signals`]).

pub mod signals;
pub mod supervise;
pub mod watchdog;
