//! The signals cronlock waits on, and waiting for them synchronously.
//!
//! Every signal we care about stays blocked for the whole run and is taken
//! with `sigtimedwait`: no asynchronous handlers, no threads, no races
//! between "the child exited" and "we were told to stop". (The `ctrlc` crate
//! installs a handler on a thread of its own; with the signals blocked and
//! waited for here, it would never see one, so it is not used.)

use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Signals that ask cronlock to stop; they are passed on to the command.
pub const TERMINATING: [Signal; 4] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT];

/// The set cronlock blocks: the terminating ones and SIGCHLD.
pub fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in TERMINATING {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks [`handled`] signals for this (single-threaded) process, so that
/// they queue until we wait for them instead of killing us mid-protocol.
pub fn block() -> nix::Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled()), None)
}

/// Waits until one of `set` is pending or `timeout` passes (`None`: forever).
/// Returns the signal taken, or `None` on timeout.
pub fn wait(set: &SigSet, timeout: Option<Duration>) -> Option<Signal> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let spec = remaining.map(nix::sys::time::TimeSpec::from_duration);
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the set, info and timespec pointers are valid for the call.
        let result = unsafe {
            libc::sigtimedwait(
                set.as_ref(),
                &mut info,
                spec.as_ref()
                    .map_or(std::ptr::null(), |s| s.as_ref() as *const libc::timespec),
            )
        };
        if result > 0 {
            if let Ok(signal) = Signal::try_from(result) {
                return Some(signal);
            }
            continue;
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN => return None,
            // EINTR: a signal outside the set (e.g. SIGSTOP/SIGCONT) interrupted us.
            _ => {
                if remaining.is_some_and(|r| r.is_zero()) {
                    return None;
                }
            }
        }
    }
}

/// Sleeps for `duration` unless a terminating signal arrives first, which is returned.
pub fn sleep_unless_told_to_stop(duration: Duration) -> Option<Signal> {
    let mut set = SigSet::empty();
    for signal in TERMINATING {
        set.add(signal);
    }
    wait(&set, Some(duration))
}

/// A terminating signal that is already pending, taken off the queue: a
/// wait with a zero timeout returns at once either way.
pub fn take_pending_termination() -> Option<Signal> {
    sleep_unless_told_to_stop(Duration::ZERO)
}
