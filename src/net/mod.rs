//! What the stores with a server share: TLS ([`tls`]), the reconnect
//! schedule and the pause for a busy server ([`reconnect`]), and the random
//! tokens and jitter ([`random`]).

pub mod random;
pub mod reconnect;
pub mod tls;
