//! What the stores with a server share: TLS ([`tls`]), a plain-or-TLS
//! connection opened within a time limit ([`transport`], which the run's
//! pings use too), the reconnect schedule and the pause for a busy server
//! ([`reconnect`]), and the random tokens and jitter ([`random`]).

pub mod random;
pub mod reconnect;
pub mod tls;
pub mod transport;
