//! Runs the command: its own process group, a timeout that kills the whole
//! group, and terminating signals passed on to it.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::signals;

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

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// Starts the command and waits for it. Signals in [`signals::handled`] must
/// already be blocked (see `signals::block`), so none is lost before the wait.
pub fn run(job: &Job) -> Ended {
    let program = &job.argv[0];
    let mut command = Command::new(program);
    command.args(&job.argv[1..]).envs(job.env.iter().map(|(k, v)| (k, v)));
    // Its own process group, so that the timeout and passed-on signals reach
    // the grandchildren too, and a Ctrl-C at a terminal reaches it through us.
    command.process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (sigprocmask, prctl, getppid, kill).
    unsafe {
        command.pre_exec(move || {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            // If cronlock itself is SIGKILLed, the command must not live on
            // unsupervised while its lock runs out.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                // The parent died between fork and prctl.
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGKILL);
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return spawn_failure(program, &err),
    };
    let pid = Pid::from_raw(child.id() as i32);
    // We reap with waitpid ourselves; std's Child has nothing left to do.
    drop(child);
    supervise(pid, job)
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

fn supervise(pid: Pid, job: &Job) -> Ended {
    let deadline = job.timeout.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let mut timed_out = false;
    let set = signals::handled();
    loop {
        if let Some(ended) = reap(pid, timed_out) {
            return ended;
        }
        let next = [deadline.filter(|_| !timed_out), kill_at].into_iter().flatten().min();
        let wait_for = next.map(|at| at.saturating_duration_since(Instant::now()));
        match signals::wait(&set, wait_for) {
            Some(Signal::SIGCHLD) => {}
            Some(signal) => {
                // Errors are ignored: the group may have just exited (ESRCH).
                let _ = killpg(pid, signal);
                kill_at.get_or_insert(Instant::now() + job.kill_after);
            }
            None => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) && !timed_out {
                    timed_out = true;
                }
                if timed_out || kill_at.is_some_and(|k| now >= k) {
                    let _ = killpg(pid, Signal::SIGKILL);
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
