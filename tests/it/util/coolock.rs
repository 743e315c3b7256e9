//! The real coolock 0.0.1 (tooz 1.67.2, Python 2.7), as
//! scripts/coolock-install.sh installs it and scripts/test.sh names it in
//! `CRONLOCK_TEST_COOLOCK`. Without it, or without python2, the tests that
//! need it print why and pass.
//!
//! What a test must know of coolock: a run that finds the lock taken exits
//! 0 without a word on stdout or stderr (only its log says "Did not acquire
//! lock"), so a marker file tells whether its command ran; it holds the
//! lock at least its guard time (30 s unless `-g`), so tests pass `-g 0`;
//! and it does not pass signals on to its command, so it runs in a session
//! of its own that [`Holder`] kills whole.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{wait_until, TempDir};

/// An installed coolock.
pub struct Coolock {
    dir: PathBuf,
}

impl Coolock {
    /// The install `CRONLOCK_TEST_COOLOCK` names, or why there is none.
    pub fn installed() -> Result<Coolock, String> {
        let dir = std::env::var_os("CRONLOCK_TEST_COOLOCK")
            .map(PathBuf::from)
            .ok_or("CRONLOCK_TEST_COOLOCK is not set (scripts/test.sh sets it)")?;
        if !dir.join("bin/coolock").is_file() {
            return Err(format!("{}/bin/coolock is missing", dir.display()));
        }
        super::python2_installed()?;
        Ok(Coolock { dir })
    }

    /// Whether the Python module `module` (a tooz driver's client, such as
    /// `etcd3`) was installed beside coolock.
    pub fn has_module(&self, module: &str) -> bool {
        self.python(&["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn python(&self, args: &[&str]) -> Command {
        let mut command = Command::new("python2");
        command
            .args(args)
            .env("PYTHONPATH", &self.dir)
            .env("PYENV_VERSION", "2.7.18")
            .stdin(Stdio::null());
        command
    }

    /// `coolock -b URL -l NAME -n NODE -g 0 -w 0 -- SHELL`, in a session of
    /// its own, its log in `log`, with no config file but the arguments
    /// (HOME is `home`, where it would look for `~/.coolock`).
    pub fn command(&self, url: &str, name: &str, node: &str, shell: &str, home: &TempDir) -> Command {
        let mut command = Command::new("setsid");
        command
            .arg("python2")
            .arg(self.dir.join("bin/coolock"))
            .args(["-b", url, "-l", name, "-n", node, "-g", "0", "-w", "0"])
            .arg("-f")
            .arg(Self::log(home))
            .args(["--", shell])
            .env("HOME", home.path())
            .env("PYTHONPATH", &self.dir)
            .env("PYENV_VERSION", "2.7.18")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Where [`Coolock::command`] logs.
    pub fn log(home: &TempDir) -> PathBuf {
        home.join("coolock.log")
    }

    /// Runs coolock once with `shell` and says whether it ran it: its exit
    /// status is 0 either way, so `shell` must leave a mark for this to read.
    /// Panics on any other exit status, with its log.
    pub fn run(&self, url: &str, name: &str, shell: &str, home: &TempDir) {
        let status = self.command(url, name, "coolock-host", shell, home).status().unwrap();
        assert!(
            status.code() == Some(0),
            "coolock exited {status}:\n{}",
            std::fs::read_to_string(Self::log(home)).unwrap_or_default()
        );
    }

    /// Starts coolock holding the lock on `name` until [`Holder`] is
    /// dropped or finished: its command waits for a file to appear.
    pub fn hold(&self, url: &str, name: &str, home: &TempDir) -> Holder {
        let started = home.join("holder-started");
        let go = home.join("holder-go");
        let shell = format!(
            "touch {started}; while [ ! -e {go} ]; do sleep 0.05; done",
            started = started.display(),
            go = go.display()
        );
        let child = self.command(url, name, "coolock-holder", &shell, home).spawn().unwrap();
        let mut holder = Holder {
            child,
            started,
            go,
            log: Self::log(home),
        };
        holder.wait_started();
        holder
    }
}

/// A coolock whose command runs, holding its lock.
pub struct Holder {
    child: Child,
    started: PathBuf,
    go: PathBuf,
    log: PathBuf,
}

impl Holder {
    fn wait_started(&mut self) {
        let (child, started, log) = (&mut self.child, &self.started, &self.log);
        wait_until(Duration::from_secs(30), "coolock to take its lock and start", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "coolock exited {status} before its command ran:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            started.exists()
        });
    }

    /// Lets the command end and waits for coolock to release and exit.
    pub fn finish(mut self) {
        std::fs::write(&self.go, b"").unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "coolock exited {status}");
    }

    /// Whether `path` is this holder's own marker (for tests that list files).
    pub fn owns(&self, path: &Path) -> bool {
        path == self.started || path == self.go
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Gone already when the test finished it.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
