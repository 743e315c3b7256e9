//! tooz's file lock (`CRONLOCK_KEY_STYLE=tooz` on `file://DIR`), as tooz
//! 1.67.2's file driver takes it through fasteners: the file `DIR/<name>`
//! (created empty, mode 0644, and left in place), locked whole with a POSIX
//! record lock (`lockf`: `F_SETLK`, a write lock from 0 to the end), held for
//! as long as the process keeps the file open. That is not `flock(2)`: on
//! Linux the two kinds do not exclude each other, so cronlock's own
//! directory lock would not keep a coolock out, nor the reverse.
//!
//! The lock dies with the process, so it ends with the command: there is no
//! grace period and no `CRONLOCK_HOLD`, as with coolock (whose guard time
//! holds it a while longer by sleeping). A name with `/` in it is a path
//! below the directory, as tooz makes it; one that would leave the
//! directory (`..`) is refused, as tooz refuses it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

use crate::lock::{Acquire, Claim, Feature, Fencing, Keep, Lease, LockStore, Release};

/// tooz's lock files in one directory.
pub struct ToozFileLock {
    dir: PathBuf,
    /// The locked file while the command runs; closing it lets the lock go.
    held: Option<File>,
}

impl ToozFileLock {
    /// tooz's locks in `dir`, which must exist (tooz makes it at start; so
    /// does cronlock, with the same mode as its own lock directory).
    pub fn new(dir: &Path) -> Result<ToozFileLock> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .with_context(|| format!("lock directory {}", dir.display()))?;
        Ok(ToozFileLock {
            dir: dir.to_path_buf(),
            held: None,
        })
    }

    /// `DIR/<name>`, as tooz's `safe_abs_path` allows it.
    fn path(&self, name: &[u8]) -> Result<PathBuf> {
        let name = std::str::from_utf8(name).context("CRONLOCK_KEY: a tooz lock name is text (UTF-8)")?;
        let relative = Path::new(name);
        if name.is_empty() || !relative.components().all(|part| matches!(part, Component::Normal(_))) {
            bail!("CRONLOCK_KEY={name:?}: a tooz lock name must stay inside the lock directory");
        }
        Ok(self.dir.join(relative))
    }
}

/// `lockf(fd, F_TLOCK, 0)` as fasteners calls it: a write lock on the whole
/// file, without waiting. `Ok(false)` when another process holds it.
fn try_lock_whole(file: &File) -> Result<bool> {
    let whole = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match fcntl(file, FcntlArg::F_SETLK(&whole)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

impl LockStore for ToozFileLock {
    fn kind(&self) -> &'static str {
        "directory"
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Hold => {
                Some("with CRONLOCK_KEY_STYLE=tooz the lock is tooz's file lock, which ends with the command")
            }
            Feature::Lease => Some("tooz's file lock lives as long as the process; there is nothing to renew"),
        }
    }

    fn fencing(&self) -> Fencing {
        Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=tooz the lock is tooz's file lock alone, which coolock hosts take without a fencing token",
        )
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let path = self.path(claim.key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("lock directory {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("lock file {}", path.display()))?;
        if !try_lock_whole(&file).with_context(|| format!("locking {}", path.display()))? {
            // A process holds it; tooz's lock has no expiry to report.
            return Ok(Acquire::Held {
                expires_in: claim.release,
            });
        }
        self.held = Some(file);
        let now = super::now();
        Ok(Acquire::Taken(Lease::new(claim.key, now, now + claim.release + 1)))
    }

    fn release(&mut self, _lease: &Lease, _keep: Keep) -> Result<Release> {
        // Closing the file releases the record lock; the file stays, as tooz leaves it.
        Ok(match self.held.take() {
            Some(_) => Release::Dropped,
            None => Release::NotOurs,
        })
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        // A record lock cannot be taken from its process; only a free one's
        // file can go, and tooz makes it again on the next acquire.
        let path = self.path(key)?;
        match File::open(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).with_context(|| format!("lock file {}", path.display())),
            Ok(_) => {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        let store = ToozFileLock {
            dir: PathBuf::from("/var/lock/tooz"),
            held: None,
        };
        assert_eq!(store.path(b"coolock").unwrap(), PathBuf::from("/var/lock/tooz/coolock"));
        assert_eq!(store.path(b"a/b").unwrap(), PathBuf::from("/var/lock/tooz/a/b"));
        for bad in [&b"../x"[..], b"/etc/x", b"", b"a/../../x", b"\xff"] {
            assert!(store.path(bad).is_err(), "{bad:?}");
        }
    }
}
