//! Runs the command: in a process group of its own (led by the watchdog), a
//! timeout that kills the whole group, terminating signals passed on to it,
//! and lease renewals while it runs.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::process::signals;
use crate::process::watchdog::{self, Watchdog};

/// What to run and how.
pub struct Job<'a> {
    /// The program and its arguments, exactly as cronlock received them.
    pub argv: &'a [OsString],
    /// Extra environment (the config file's `export`ed assignments).
    pub env: &'a [(String, String)],
    /// Kill the group with SIGKILL after this long.
    pub timeout: Option<Duration>,
    /// After passing on a terminating signal, SIGKILL the group this much later.
    pub kill_after: Duration,
}

/// Keeping the lock while the command runs: work on a schedule (lease
/// renewals, hold checks), and in lease mode a deadline by which the command
/// must be dead unless a renewal succeeds.
pub trait Keeper {
    /// When to call [`Keeper::keep`] next.
    fn due(&self) -> Instant;
    /// Past this moment the lock may be someone else's (lease mode); `None`
    /// for a lock that does not run out while its command runs.
    fn deadline(&self) -> Option<Instant>;
    /// What is due (a renewal, a hold check); `Err(why)` when the command
    /// must be killed now.
    fn keep(&mut self) -> Result<(), String>;
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this code.
    Exited(i32),
    /// Died of this signal (not one we sent for the timeout).
    Signaled(i32),
    /// Killed by us when the timeout ran out.
    TimedOut,
    /// Could not be started: not found.
    NotFound,
    /// Could not be started: found but not executable.
    NotExecutable,
    /// Killed by us because the lock was lost: the lease was lost or could
    /// not be renewed, or the store's hold on it could not be kept.
    LockLost(String),
}

/// Starts the command and waits for it. Signals in [`signals::handled`] must
/// already be blocked (see `signals::block`), so none is lost before the wait.
pub fn run(job: &Job, keeper: Option<&mut dyn Keeper>) -> Ended {
    let program = &job.argv[0];
    // The command's group is the watchdog's, so the timeout, passed-on
    // signals and the watchdog all reach the grandchildren too.
    let mut watchdog = match Watchdog::start() {
        Ok(watchdog) => Some(watchdog),
        Err(err) => {
            eprintln!("cronlock: no watchdog ({err}); the command is killed with cronlock, its children may not be");
            None
        }
    };
    let spawned = match &watchdog {
        Some(dog) => match command(job, Some(dog.group)).spawn() {
            // The watchdog died before the command could join its group.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EPERM | libc::ESRCH)) => {
                watchdog = None;
                command(job, None).spawn()
            }
            other => other,
        },
        None => command(job, None).spawn(),
    };
    let child = match spawned {
        Ok(child) => child,
        Err(err) => return spawn_failure(program, &err),
    };
    let pid = Pid::from_raw(child.id() as i32);
    // We reap with waitpid ourselves; std's Child has nothing left to do.
    drop(child);
    let group = watchdog.as_ref().map_or(pid, |dog| dog.group);
    let (ended, sent) = supervise(pid, group, job, keeper);
    // The command is reaped, but what it started may still be dying of what
    // we sent it: the lock is released only once none of it runs. (A group
    // we sent nothing is not waited for: a job may leave a daemon behind.)
    let except = watchdog.as_ref().map(|dog| dog.group);
    match sent {
        Sent::Nothing => {}
        Sent::Signal { kill_at } => {
            if !watchdog::wait_until_dead(group, except, Some(kill_at)) {
                let _ = killpg(group, Signal::SIGKILL);
                watchdog::wait_until_dead(group, except, None);
            }
        }
        Sent::Kill => {
            watchdog::wait_until_dead(group, except, None);
        }
    }
    if let Some(watchdog) = watchdog {
        watchdog.stand_down();
    }
    ended
}

/// The command, in the watchdog's `group` or (without one) in a group of its own.
fn command(job: &Job, group: Option<Pid>) -> Command {
    let mut command = Command::new(&job.argv[0]);
    command.args(&job.argv[1..]).envs(job.env.iter().map(|(k, v)| (k, v)));
    command.process_group(group.map_or(0, Pid::as_raw));
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (sigprocmask, prctl, getppid, kill).
    unsafe {
        command.pre_exec(move || {
            // Our blocked signals must not stay blocked in the command (std
            // resets the mask only on some of its spawn paths).
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            // Besides the watchdog: if cronlock is SIGKILLed, the command
            // itself dies at once.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                // The parent died between fork and prctl.
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGKILL);
            }
            Ok(())
        });
    }
    command
}

fn spawn_failure(program: &OsString, err: &io::Error) -> Ended {
    let name = program.to_string_lossy();
    match err.kind() {
        io::ErrorKind::NotFound => {
            eprintln!("cronlock: {name}: command not found");
            Ended::NotFound
        }
        _ => {
            eprintln!("cronlock: {name}: {err}");
            Ended::NotExecutable
        }
    }
}

/// What cronlock sent the command's group.
enum Sent {
    Nothing,
    /// A terminating signal passed on; SIGKILL is due at `kill_at`.
    Signal {
        kill_at: Instant,
    },
    /// SIGKILL (the timeout, a lost lease, `KILL_AFTER` run out).
    Kill,
}

/// Waits for `pid`, acting on `group` (which it belongs to). Also says
/// what the group was sent.
fn supervise(pid: Pid, group: Pid, job: &Job, mut keeper: Option<&mut dyn Keeper>) -> (Ended, Sent) {
    let deadline = job.timeout.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut lost: Option<String> = None;
    let mut killed = false;
    let set = signals::handled();
    loop {
        if let Some(ended) = reap(pid, timed_out) {
            let ended = match lost {
                Some(why) => Ended::LockLost(why),
                None => ended,
            };
            let sent = match kill_at {
                _ if killed => Sent::Kill,
                Some(kill_at) => Sent::Signal { kill_at },
                None => Sent::Nothing,
            };
            return (ended, sent);
        }
        if lost.is_none() {
            if let Some(keeper) = keeper.as_deref_mut() {
                let now = Instant::now();
                let verdict = if keeper.deadline().is_some_and(|deadline| now >= deadline) {
                    Err("the lease could not be renewed before it ran out".to_string())
                } else if now >= keeper.due() {
                    keeper.keep()
                } else {
                    Ok(())
                };
                if let Err(why) = verdict {
                    // Someone else may run the job from now on: no grace period.
                    let _ = killpg(group, Signal::SIGKILL);
                    killed = true;
                    lost = Some(why);
                    continue;
                }
            }
        }
        let keeper_times = keeper
            .as_deref()
            .filter(|_| lost.is_none())
            .map(|k| k.deadline().map_or(k.due(), |deadline| k.due().min(deadline)));
        let next = [deadline.filter(|_| !timed_out), kill_at, keeper_times]
            .into_iter()
            .flatten()
            .min();
        let wait_for = next.map(|at| at.saturating_duration_since(Instant::now()));
        match signals::wait(&set, wait_for) {
            Some(Signal::SIGCHLD) => {}
            Some(signal) => {
                // Errors are ignored: the group may have just exited (ESRCH).
                let _ = killpg(group, signal);
                kill_at.get_or_insert(Instant::now() + job.kill_after);
            }
            None => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) && !timed_out {
                    timed_out = true;
                }
                if timed_out || kill_at.is_some_and(|k| now >= k) {
                    let _ = killpg(group, Signal::SIGKILL);
                    killed = true;
                    kill_at = None;
                }
            }
        }
    }
}

fn reap(pid: Pid, timed_out: bool) -> Option<Ended> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Ended::Exited(code)),
            // Once we have killed it for the timeout, whatever signal it
            // died of (ours, or another that raced it) is the timeout.
            Ok(WaitStatus::Signaled(..)) if timed_out => return Some(Ended::TimedOut),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Some(Ended::Signaled(signal as i32)),
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => return None,
            Err(Errno::EINTR) => continue,
            // ECHILD: nobody else reaps our children, so this cannot happen;
            // if it does, never hang on it and never report a success.
            Err(err) => {
                eprintln!("cronlock: lost track of the command: {err}");
                return Some(Ended::Exited(255));
            }
        }
    }
}
