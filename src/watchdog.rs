//! The watchdog: a second, tiny cronlock process that kills the command's
//! whole process group if cronlock dies without saying goodbye (SIGKILL, the
//! OOM killer). A parent-death signal reaches only the direct child; the
//! watchdog leads the group the command joins, so it reaches everything.
//!
//! It is our own binary started again (posix_spawn, so no copy of our memory
//! is made) with `argv[0]` set to [`ARGV0`]; its standard input is a pipe
//! whose other end only cronlock holds. A byte on the pipe means "stand
//! down"; end of file without one means cronlock is gone.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::signals;

/// How the watchdog process is told apart from a normal run.
pub const ARGV0: &str = "cronlock-watchdog";

/// A running watchdog, seen from cronlock.
pub struct Watchdog {
    /// The process group it leads; the command joins it.
    pub group: Pid,
    line: OwnedFd,
}

impl Watchdog {
    /// Starts the watchdog as the leader of a new process group. Terminating
    /// signals are blocked in it from the start, so that the ones cronlock
    /// passes on to the group reach only the command.
    pub fn start() -> nix::Result<Watchdog> {
        let (theirs, ours) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut actions = PosixSpawnFileActions::init()?;
        actions.add_dup2(theirs.as_raw_fd(), 0)?;
        // It prints nothing, and must not keep a pipe that cronlock's caller
        // reads open (Rust's start-up points them at /dev/null).
        actions.add_close(1)?;
        actions.add_close(2)?;
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETPGROUP | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK)?;
        attr.set_pgroup(Pid::from_raw(0))?;
        attr.set_sigmask(&signals::handled())?;
        let argv0 = CString::new(ARGV0).map_err(|_| nix::Error::EINVAL)?;
        let pid = posix_spawn(c"/proc/self/exe", &actions, &attr, &[argv0], &[] as &[CString])?;
        Ok(Watchdog { group: pid, line: ours })
    }

    /// The command has been reaped: the watchdog exits without killing.
    pub fn stand_down(self) {
        let _ = nix::unistd::write(&self.line, b"x");
    }
}

/// The watchdog's whole life: wait on standard input, then kill the group
/// unless cronlock said goodbye.
pub fn watch() -> ! {
    let mut byte = [0u8; 1];
    let said_goodbye = loop {
        match nix::unistd::read(std::io::stdin(), &mut byte) {
            Ok(n) => break n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break false,
        }
    };
    if !said_goodbye {
        // Our own group: the command and everything it started (and us).
        let _ = killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
    }
    std::process::exit(0)
}
