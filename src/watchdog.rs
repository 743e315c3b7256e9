//! The watchdog: a small forked copy of cronlock that kills the command's
//! whole process group if cronlock dies without saying goodbye (SIGKILL,
//! the OOM killer). A parent-death signal reaches only the direct child; the
//! watchdog leads the group the command joins, so it reaches everything the
//! command started, and the command is never outside that group.
//!
//! Its only link to cronlock is a pipe whose write end only cronlock holds:
//! a byte means "stand down", end of file without one means cronlock is gone.
//! It keeps cronlock's blocked signals, so the ones cronlock passes on to
//! the group reach only the command. (Starting our binary afresh instead of
//! forking measured 0.17 ms slower per run.)

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{fork, ForkResult, Pid};

/// The watchdog's process name (at most 15 bytes).
pub const NAME: &std::ffi::CStr = c"cronlock-watch";

/// A running watchdog, seen from cronlock.
pub struct Watchdog {
    /// The process group it leads; the command joins it.
    pub group: Pid,
    line: OwnedFd,
}

impl Watchdog {
    /// Forks the watchdog as the leader of a new process group.
    pub fn start() -> nix::Result<Watchdog> {
        let (theirs, ours) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: the child only makes system calls (closes descriptors,
        // reads, kills, exits), so it is sound even where a store runs a
        // thread of its own (the ZooKeeper session's): nothing it touches
        // can be left locked by a thread the fork did not copy.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(ours);
                let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
                // Shown by ps (and top) in place of cronlock's own name.
                let _ = nix::sys::prctl::set_name(NAME);
                close_all_but(theirs.as_raw_fd());
                watch(&theirs)
            }
            ForkResult::Parent { child } => {
                // Also from this side, so the group exists before the command
                // is put in it, whichever process runs first.
                let _ = nix::unistd::setpgid(child, child);
                Ok(Watchdog {
                    group: child,
                    line: ours,
                })
            }
        }
    }

    /// The command has been reaped: the watchdog exits without killing.
    pub fn stand_down(self) {
        let _ = nix::unistd::write(&self.line, b"x");
    }
}

fn watch(line: &OwnedFd) -> ! {
    let mut byte = [0u8; 1];
    let said_goodbye = loop {
        match nix::unistd::read(line, &mut byte) {
            Ok(n) => break n > 0,
            Err(Errno::EINTR) => continue,
            Err(_) => break false,
        }
    };
    if !said_goodbye {
        // Our own group: the command and everything it started (and us).
        let _ = killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
    }
    // SAFETY: leaving the forked child without running cronlock's exit code.
    unsafe { libc::_exit(0) }
}

/// Closes every descriptor except `keep`, so the watchdog holds no socket,
/// lock file or pipe of cronlock's (stdout included) open after it.
fn close_all_but(keep: i32) {
    // SAFETY: plain descriptor syscalls in the single-threaded child.
    unsafe {
        for fd in 0..keep {
            libc::close(fd);
        }
        if libc::syscall(libc::SYS_close_range, keep as u32 + 1, u32::MAX, 0) != 0 {
            for fd in keep + 1..4096 {
                libc::close(fd);
            }
        }
    }
}
