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
