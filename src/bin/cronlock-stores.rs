//! `cronlock-stores`: cronlock with every lock store, started by `cronlock`
//! when `CRONLOCK_URL` names a store it does not carry itself (see
//! `cronlock::app`). It can also be run directly, as `cronlock` is.
#![cfg_attr(not(test), no_main)]

cronlock::c_main!(|args| cronlock::app::main(args, cronlock::store::open, true));
