//! `cronlock`: every argument is the command to run under the lock. It
//! carries the light stores and hands the others to `cronlock-stores`
//! (see `cronlock::app`). C's `main` is the entry point (`cronlock::speed`).
#![cfg_attr(not(test), no_main)]

cronlock::c_main!(|args| cronlock::app::main(args, cronlock::store::open_light, false));
