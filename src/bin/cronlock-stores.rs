//! `cronlock-stores`: cronlock with every lock store, started by `cronlock`
//! when `CRONLOCK_URL` names a store it does not carry itself (MySQL,
//! PostgreSQL, ZooKeeper, DynamoDB); see `cronlock::app`. It can also be
//! run directly, as `cronlock` is.
// C's main is the entry point; see `cronlock::startup` for why. (Not in
// the unit-test build, whose harness brings its own main.)
#![cfg_attr(not(test), no_main)]

use cronlock::{app, startup, store};

/// Every allocation of the binary; see `cronlock::arena` for why. A run
/// takes about 23 KiB, 60 KiB over TLS with a CA file; loading the system's
/// CA store (TLS without one) overflows into the system allocator.
#[global_allocator]
static ALLOCATOR: cronlock::arena::Arena<{ 256 << 10 }> = cronlock::arena::Arena::new();

/// # Safety
/// Called by the C runtime only, with its `argc` and `argv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn main(argc: nix::libc::c_int, argv: *const *const nix::libc::c_char) -> nix::libc::c_int {
    // SAFETY: as the C runtime passes them.
    let args = unsafe { startup::args(argc, argv) };
    app::main(&args, store::open, true)
}
