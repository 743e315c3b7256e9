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
//!
//! It also keeps cronlock's descriptors, standard streams aside: the store
//! connections and lock files. Where a lock lives as long as its holder's
//! connection or file (PostgreSQL's advisory lock, MySQL's `GET_LOCK`, the
//! directory store's flock), a SIGKILL of cronlock then frees the lock only
//! once the last process of the command's group is dead, not while the
//! command is still running: a forked keeper leaves the group, kills it, and
//! holds those descriptors until no live process is left in it.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::waitpid;
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
                close_standard_streams();
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
        kill_group_then_let_go();
    }
    // SAFETY: leaving the forked child without running cronlock's exit code.
    unsafe { libc::_exit(0) }
}

/// cronlock is gone: kills our group (the command, everything it started,
/// and us), and keeps cronlock's lock descriptors open until all of it is dead.
fn kill_group_then_let_go() {
    let group = nix::unistd::getpgrp();
    // SAFETY: as in `start`, the keeper only makes system calls.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // The keeper: a session (and group) of its own, so the kill
            // spares it. It holds the descriptors it inherited.
            let _ = nix::unistd::setsid();
            let _ = killpg(group, Signal::SIGKILL);
            wait_until_dead(group, None, None);
        }
        Ok(ForkResult::Parent { child }) => {
            // The keeper's kill ends us here. Should the keeper die first,
            // kill the group ourselves, so that no command outlives cronlock.
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            let _ = killpg(group, Signal::SIGKILL);
        }
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Returns true once no live process is left in `group` apart from
/// `except`, false if `until` comes first. Zombies count as dead: they hold
/// no descriptors and no flock. Polls, as nothing tells a process that isn't
/// the parent when a group empties; after SIGKILL this is a matter of
/// milliseconds. Makes system calls only (no allocation) unless it has to
/// say it is still waiting, for the forked keeper's sake (which passes no
/// `except` and says nothing).
pub fn wait_until_dead(group: Pid, except: Option<Pid>, until: Option<Instant>) -> bool {
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    let mut told = false;
    while any_alive(group.as_raw(), except.map_or(0, Pid::as_raw)) {
        let now = Instant::now();
        if until.is_some_and(|until| now >= until) {
            return false;
        }
        if !told && until.is_none() && except.is_some() && now - started > Duration::from_secs(10) {
            eprintln!("cronlock: the command's processes are still alive 10s after SIGKILL; waiting for them before releasing the lock");
            told = true;
        }
        let pause_until = until.map_or(pause, |until| pause.min(until.saturating_duration_since(now)));
        std::thread::sleep(pause_until);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
}

/// Whether `/proc` shows a process of `group`, other than `except`, that is
/// neither a zombie nor dead.
fn any_alive(group: i32, except: i32) -> bool {
    // SAFETY: plain syscalls on buffers of our own stack.
    unsafe {
        let dir = libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if dir < 0 {
            // No /proc to read: the group exists while any member does,
            // zombies included, so this errs on the side of waiting.
            return libc::kill(-group, 0) == 0;
        }
        let mut entries = [0u8; 8192];
        let mut found = false;
        'read: loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, entries.as_mut_ptr(), entries.len());
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            while at + 19 < n as usize {
                // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
                let reclen = u16::from_ne_bytes([entries[at + 16], entries[at + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let name = &entries[at + 19..at + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if let Some(pid) = parse_pid(name) {
                    if pid != except && member_alive(name, group) {
                        found = true;
                        break 'read;
                    }
                }
                at += reclen;
            }
        }
        libc::close(dir);
        found
    }
}

fn parse_pid(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter()
        .try_fold(0i32, |n, &d| n.checked_mul(10)?.checked_add(i32::from(d - b'0')))
}

/// Whether the process named `pid` (its /proc entry) is in `group` and not a
/// zombie, from `/proc/<pid>/stat`: "pid (comm) state ppid pgrp ...".
fn member_alive(pid: &[u8], group: i32) -> bool {
    let mut path = [0u8; 32];
    let parts: [&[u8]; 3] = [b"/proc/", pid, b"/stat\0"];
    let mut len = 0;
    for part in parts {
        path[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    let mut stat = [0u8; 512];
    // SAFETY: `path` is NUL-terminated; `stat` is ours.
    let read = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            // Gone since the directory was read.
            return false;
        }
        let read = libc::read(fd, stat.as_mut_ptr().cast(), stat.len());
        libc::close(fd);
        read
    };
    if read <= 0 {
        return false;
    }
    stat_says_alive_in(&stat[..read as usize], group)
}

/// Parses a stat line; the command name may hold spaces and parentheses,
/// so the fields are counted from its last ')'.
fn stat_says_alive_in(stat: &[u8], group: i32) -> bool {
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (Some(state), Some(_ppid), Some(pgrp)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    let alive = !matches!(state, b"Z" | b"X" | b"x");
    alive && parse_pid(pgrp) == Some(group)
}

/// Closes stdin, stdout and stderr, so that the watchdog does not keep a
/// pipe that someone reads to its end open after cronlock. Every other
/// descriptor stays: see the module comment.
fn close_standard_streams() {
    // SAFETY: plain descriptor syscalls in the single-threaded child.
    unsafe {
        for fd in 0..3 {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn stat_lines_are_read_from_the_last_parenthesis() {
        assert!(stat_says_alive_in(b"42 (sleep) S 1 77 77 0 -1", 77));
        assert!(!stat_says_alive_in(b"42 (sleep) S 1 78 78 0 -1", 77));
        assert!(!stat_says_alive_in(b"42 (sleep) Z 1 77 77 0 -1", 77));
        assert!(stat_says_alive_in(b"42 (a) b (S 1 2) R 1 77 77 0", 77));
        assert!(!stat_says_alive_in(b"42 (cut", 77));
    }

    #[test]
    fn pids_are_digits_only() {
        assert_eq!(parse_pid(b"1234"), Some(1234));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"99999999999"), None);
    }

    #[test]
    fn a_live_group_is_seen_until_its_last_member_dies() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = Pid::from_raw(child.id() as i32);
        assert!(any_alive(group.as_raw(), 0));
        assert!(!any_alive(group.as_raw(), group.as_raw()));
        child.kill().unwrap();
        // Not yet reaped: a zombie, which counts as dead.
        assert!(wait_until_dead(group, None, None));
        child.wait().unwrap();
        assert!(!any_alive(group.as_raw(), 0));
    }
}
