//! What the process needs before it does anything else. The binary starts
//! at C's `main` instead of Rust's runtime start-up (measured 0.1 ms per run
//! faster: that start-up reads /proc/self/maps and installs a signal stack
//! and handlers to report stack overflows, which cronlock does not need).
//! The two parts of it that matter are done here.

use std::ffi::{CStr, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;

use nix::libc;

/// Opens /dev/null on any of descriptors 0, 1 and 2 that is closed, so that
/// the Redis socket or a lock file can never become our "stdout" (and have
/// messages written into it) when cron or a supervisor starts us without one.
pub fn standard_fds() -> io::Result<()> {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: a valid array of three pollfd; a zero timeout returns at once.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } >= 0;
    for pollfd in fds {
        let closed = if polled {
            pollfd.revents & libc::POLLNVAL != 0
        } else {
            // Where poll is refused (some sandboxes), ask each descriptor.
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(pollfd.fd, libc::F_GETFD) };
            flags == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        };
        if closed {
            // The lowest free descriptor: this one, as those below are open.
            // SAFETY: a valid C string; the descriptor is kept for good.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != pollfd.fd {
                return Err(io::Error::other(format!(
                    "could not open /dev/null as descriptor {}",
                    pollfd.fd
                )));
            }
        }
    }
    Ok(())
}

/// A write to a closed stdout or stderr fails instead of killing cronlock
/// while it holds the lock. The command gets the default action back
/// (std's spawn resets SIGPIPE in the child).
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN has no handler to be unsafe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The arguments after the program name, as C's `main` received them.
///
/// # Safety
/// `argv` must hold `argc` valid C strings, as the C runtime passes them.
pub unsafe fn args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    (1..usize::try_from(argc).unwrap_or(0))
        // SAFETY: the caller guarantees argc entries of NUL-terminated strings.
        .map(|i| OsString::from_vec(unsafe { CStr::from_ptr(*argv.add(i)) }.to_bytes().to_vec()))
        .collect()
}

/// The body of a binary that starts at C's `main`: the arena as its global
/// allocator (a run takes about 23 KiB, 60 KiB over TLS with a CA file;
/// loading the system's CA store, TLS without one, overflows into the system
/// allocator) and a `main` that hands the arguments after the program's name
/// to `$run`, returning its exit status. The binary's crate root also needs
/// `#![cfg_attr(not(test), no_main)]`, which a macro cannot write.
#[macro_export]
macro_rules! c_main {
    ($run:expr) => {
        #[global_allocator]
        static ALLOCATOR: $crate::speed::arena::Arena<{ 256 << 10 }> = $crate::speed::arena::Arena::new();

        /// # Safety
        /// Called by the C runtime only, with its `argc` and `argv`.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn main(
            argc: ::nix::libc::c_int,
            argv: *const *const ::nix::libc::c_char,
        ) -> ::nix::libc::c_int {
            // SAFETY: as the C runtime passes them.
            let args = unsafe { $crate::speed::startup::args(argc, argv) };
            ($run)(&args)
        }
    };
}
