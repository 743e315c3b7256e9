//! The local backend: lock files in a directory, for a single host without
//! Redis (`CRONLOCK_URL=file:///var/lock/cronlock`).
//!
//! Each key is a file holding "<expiry> running|done". The holder keeps an
//! exclusive `flock` on it while the command runs, so the kernel itself tells
//! a live holder from a crashed one: a "running" file nobody holds belongs to
//! a run that died, and is taken over at once. Every state change happens
//! under a short `flock` on the directory, so two contenders never interleave.
//! Grace and RELEASE keep their Redis meaning: after a run the file says
//! "done" until start + GRACE + 1, and a live holder past start + RELEASE + 1
//! is replaced by a new file (the old holder notices at release and leaves
//! the new one alone).
//!
//! `CRONLOCK_FENCING`: a job key's fencing token is the number in the file
//! `.fence.<name>` beside its lock, made on the first fenced run and never
//! removed. The run that holds the lock file checks, under the directory's
//! `flock`, that the file at the lock's name is still the one it holds, and
//! bumps the counter (a new file renamed over the old, both synced) before
//! letting the directory go: a run that takes the lock after ours can only
//! do so under that same `flock`, after our bump, so it bumps later and gets
//! more. A lock file's name never starts with a dot ([`file_name`] escapes a
//! key's leading `.`), so no dot file is taken for a lock.
//!
//! `CRONLOCK_HISTORY`: a job key's runs are the file `.runs.<name>`, one
//! record of JSON a line, newest first, and its last success the file
//! `.succeeded.<name>`, both beside the counter and never removed. A run
//! adds its record under the directory's `flock` (read, prepend, cut to
//! the count kept, write a new file and rename it over the old), so runs
//! that end together each add theirs, one after the other.

pub mod settings;
pub mod tooz;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use super::escape::file_name;
use crate::lock::{Acquire, Claim, Feature, Fencing, History, Keep, Lease, LockStore, Release, Seen};

/// What the name of a fencing counter starts with; a dot, so that
/// cronlockctl never lists one as a lock.
const FENCE_PREFIX: &str = ".fence.";
/// What the name of a job's runs (`CRONLOCK_HISTORY`) starts with.
const RUNS_PREFIX: &str = ".runs.";
/// What the name of a job's last success starts with.
const SUCCEEDED_PREFIX: &str = ".succeeded.";

/// Lock files in one directory.
pub struct DirectoryLock {
    dir: PathBuf,
    /// The file we hold while the command runs.
    held: Option<Flock<File>>,
    /// The owner record we wrote, kept for the release's rewrite.
    owner: String,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Running(i64),
    Done(i64),
    Unknown,
}

impl DirectoryLock {
    /// A store in `dir`, created (mode 0755) if missing.
    pub fn new(dir: &Path) -> Result<DirectoryLock> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("lock directory {}", dir.display()))?;
        Ok(DirectoryLock {
            dir: dir.to_path_buf(),
            held: None,
            owner: String::new(),
        })
    }

    fn mutex(&self) -> Result<Flock<File>> {
        let dir = File::open(&self.dir).with_context(|| format!("lock directory {}", self.dir.display()))?;
        Flock::lock(dir, FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)
            .with_context(|| format!("locking directory {}", self.dir.display()))
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        self.dir.join(file_name(key))
    }

    /// The fencing counter of the job key `name`.
    fn counter_path(&self, name: &[u8]) -> PathBuf {
        self.companion_path(FENCE_PREFIX, name)
    }

    /// The file kept for the job key `name` beside its lock whose name
    /// starts with `prefix`, a dot.
    fn companion_path(&self, prefix: &str, name: &[u8]) -> PathBuf {
        self.dir.join(format!("{prefix}{}", file_name(name)))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn open_run_file(path: &Path, create_new: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o644);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    options
        .open(path)
        .with_context(|| format!("lock file {}", path.display()))
}

fn read_state(file: &mut File) -> State {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut text).is_err() {
        return State::Unknown;
    }
    let mut words = text.split_whitespace();
    match (words.next().and_then(|w| w.parse::<i64>().ok()), words.next()) {
        (Some(at), Some("running")) => State::Running(at),
        (Some(at), Some("done")) => State::Done(at),
        _ => State::Unknown,
    }
}

/// The first line is the state; the second, when there is one, the owner
/// record (see `crate::lock::owner`).
fn write_state(file: &mut File, expiry: i64, state: &str, owner: &str) -> Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{expiry} {state}\n{owner}\n").as_bytes())?;
    Ok(())
}

/// The number in the fencing counter `path`; `None` when there is no file.
fn read_counter(path: &Path) -> Result<Option<u64>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("fencing counter {}", path.display())),
    };
    match text.trim().parse() {
        Ok(token) => Ok(Some(token)),
        Err(_) => anyhow::bail!(
            "fencing counter {} holds {:?}, not a number; put the job's newest token back in it",
            path.display(),
            text.trim()
        ),
    }
}

/// Writes `token` into the fencing counter `path`; see [`write_whole`].
fn write_counter(dir: &Path, path: &Path, token: u64) -> Result<()> {
    write_whole(dir, path, format!("{token}\n").as_bytes(), "fencing counter")
}

/// Writes `text` into `path` (a `what`, for messages) so that a crash
/// leaves either the old text or the new, and the new one survives a power
/// cut once this returns: a new file, synced, renamed over the old, and
/// the directory synced. The caller holds the directory's `flock`, so the
/// temporary name is ours alone; it starts with `.new`, where the names of
/// counters and histories start with their own prefixes, so that it is no
/// other key's file.
fn write_whole(dir: &Path, path: &Path, text: &[u8], what: &str) -> Result<()> {
    let mut temporary = std::ffi::OsString::from(".new");
    temporary.push(path.file_name().unwrap_or_default());
    let temporary = dir.join(temporary);
    let context = || format!("{what} {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temporary)
        .with_context(context)?;
    file.write_all(text).with_context(context)?;
    file.sync_all().with_context(context)?;
    fs::rename(&temporary, path).with_context(context)?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing lock directory {}", dir.display()))
}

/// The text of `path` (a `what`, for messages); empty when there is no file.
fn read_text(path: &Path, what: &str) -> Result<String> {
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(err).with_context(|| format!("{what} {}", path.display())),
    }
}

/// A job's runs once `record` is added in front of `old`: at most `keep`
/// lines, newest first, each ending in a newline.
fn with_run(old: &str, record: &str, keep: u32) -> String {
    let record = record.replace(['\r', '\n'], " ");
    let keep = usize::try_from(keep).unwrap_or(usize::MAX).max(1);
    let older = old.lines().filter(|line| !line.is_empty());
    std::iter::once(record.as_str())
        .chain(older)
        .take(keep)
        .map(|line| format!("{line}\n"))
        .collect()
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl LockStore for DirectoryLock {
    fn kind(&self) -> &'static str {
        "directory"
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Lease => {
                Some("the directory store already frees a crashed run's lock at once (the kernel drops its flock)")
            }
            Feature::Hold => None,
        }
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let (key, release) = (claim.key, claim.release);
        self.owner = claim.owner.unwrap_or("").replace('\n', " ");
        let _mutex = self.mutex()?;
        let path = self.path(key);
        let start = now();
        let expires_at = start + release + 1;
        let lease = Lease::new(key, start, expires_at);
        let file = open_run_file(&path, false)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut file) => {
                // Nobody is running: only a finished run's grace can hold us back.
                let state = read_state(&mut file);
                let outcome = match state {
                    State::Done(at) if at >= start => return Ok(Acquire::Held { expires_in: at - start }),
                    State::Done(at) | State::Running(at) => Acquire::TakenOver {
                        lease,
                        expired_ago: start - at,
                    },
                    State::Unknown => Acquire::Taken(lease),
                };
                write_state(&mut file, expires_at, "running", &self.owner)?;
                self.held = Some(file);
                Ok(outcome)
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let at = match read_state(&mut file) {
                    State::Running(at) | State::Done(at) => at,
                    State::Unknown => i64::MAX,
                };
                if at >= start {
                    return Ok(Acquire::Held {
                        expires_in: at.saturating_sub(start),
                    });
                }
                // A live holder past its RELEASE: replace its file, as Redis
                // lets a stale lock be taken over.
                fs::remove_file(&path).with_context(|| format!("lock file {}", path.display()))?;
                let fresh = open_run_file(&path, true)?;
                let mut fresh = Flock::lock(fresh, FlockArg::LockExclusiveNonblock)
                    .map_err(|(_, errno)| errno)
                    .with_context(|| format!("locking {}", path.display()))?;
                write_state(&mut fresh, expires_at, "running", &self.owner)?;
                self.held = Some(fresh);
                Ok(Acquire::TakenOver {
                    lease,
                    expired_ago: start - at,
                })
            }
            Err((_, errno)) => Err(errno).with_context(|| format!("locking {}", path.display())),
        }
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let _mutex = self.mutex()?;
        let path = self.path(&lease.key);
        let keep_until = keep.until(lease.start, now());
        let Some(mut held) = self.held.take() else {
            return Ok(Release::NotOurs);
        };
        let ours = same_file(&held, &path);
        if !ours && path.exists() {
            return Ok(Release::NotOurs);
        }
        if keep_until <= now() {
            if ours {
                fs::remove_file(&path).with_context(|| format!("lock file {}", path.display()))?;
            }
            return Ok(Release::Dropped);
        }
        if !ours {
            // Reset while we ran: claim the grace again, as the original does.
            held = Flock::lock(open_run_file(&path, true)?, FlockArg::LockExclusiveNonblock)
                .map_err(|(_, errno)| errno)
                .with_context(|| format!("locking {}", path.display()))?;
        }
        write_state(
            &mut held,
            keep_until,
            "done",
            &crate::lock::owner::with_ended(&self.owner, now()),
        )?;
        Ok(Release::Kept { until: keep_until })
    }

    /// The counter lives on disk and only grows.
    fn fencing(&self) -> Fencing {
        Fencing::Durable
    }

    /// Under the directory's `flock`: the lock file is still the one we
    /// hold (not replaced by a takeover, nor removed by a reset), and the
    /// counter is bumped; nobody can take the lock between the two.
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let _mutex = self.mutex()?;
        let ours = self
            .held
            .as_ref()
            .is_some_and(|held| same_file(held, &self.path(&lease.key)));
        if !ours {
            return Ok(None);
        }
        let counter = self.counter_path(name);
        let token = read_counter(&counter)?.unwrap_or(0).checked_add(1).with_context(|| {
            format!(
                "fencing counter {} is at its largest value; no more tokens",
                counter.display()
            )
        })?;
        write_counter(&self.dir, &counter, token)?;
        Ok(Some(token))
    }

    /// Renamed into place whole, so the file is read without the `flock`.
    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        read_counter(&self.counter_path(name))
    }

    fn keeps_history(&self) -> bool {
        true
    }

    /// Under the directory's `flock`, so that no other run's record is lost
    /// between our read and our rename.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        let _mutex = self.mutex()?;
        let runs = self.companion_path(RUNS_PREFIX, name);
        let text = with_run(&read_text(&runs, "run history")?, record, keep);
        write_whole(&self.dir, &runs, text.as_bytes(), "run history")?;
        if succeeded {
            let success = self.companion_path(SUCCEEDED_PREFIX, name);
            let first = text.lines().next().unwrap_or_default();
            write_whole(&self.dir, &success, format!("{first}\n").as_bytes(), "last success")?;
        }
        Ok(())
    }

    /// Both files are renamed into place whole, so they are read without the `flock`.
    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let runs = read_text(&self.companion_path(RUNS_PREFIX, name), "run history")?;
        let success = read_text(&self.companion_path(SUCCEEDED_PREFIX, name), "last success")?;
        Ok(History {
            runs: runs.lines().filter(|line| !line.is_empty()).map(String::from).collect(),
            last_success: success.lines().next().filter(|line| !line.is_empty()).map(String::from),
        })
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let _mutex = self.mutex()?;
        let path = self.path(key);
        match File::open(&path) {
            Ok(file) => Ok(Some(seen(key.to_vec(), file))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("lock file {}", path.display())),
        }
    }

    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let _mutex = self.mutex()?;
        let entries = fs::read_dir(&self.dir).with_context(|| format!("lock directory {}", self.dir.display()))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("lock directory {}", self.dir.display()))?;
            // Dot files are not locks: fencing counters, histories, files being written.
            let Some(key) = entry
                .file_name()
                .to_str()
                .filter(|name| !name.starts_with('.'))
                .map(key_of_file)
            else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            if let Ok(file) = File::open(entry.path()) {
                found.push(seen(key, file));
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let _mutex = self.mutex()?;
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).with_context(|| format!("lock file {}", path.display())),
        }
    }
}

/// What a lock file says, and whether a live run holds its flock.
fn seen(key: Vec<u8>, mut file: File) -> Seen {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let mut lines = text.lines();
    let mut words = lines.next().unwrap_or("").split_whitespace();
    let expires_at = words.next().and_then(|w| w.parse::<i64>().ok());
    let owner = lines.next().filter(|line| !line.is_empty()).map(String::from);
    let running = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_) => false,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => true,
        Err(_) => false,
    };
    Seen {
        key,
        expires_at,
        now: now(),
        owner,
        running: Some(running),
    }
}

/// The key a lock file's name stands for (the reverse of [`file_name`]; a
/// name shortened with its md5 stands for itself).
fn key_of_file(name: &str) -> Vec<u8> {
    super::escape::unescape(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> Claim<'static> {
        Claim {
            key: b"k",
            release: 100,
            owner: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cronlock-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn file_names_are_safe_for_any_key() {
        assert_eq!(file_name(b"cronlock.abc"), "cronlock.abc");
        assert_eq!(file_name(b"../x y/\xff"), "%2E.%2Fx%20y%2F%FF");
        assert!(file_name(&[b'a'; 1000]).len() <= 200);
        for key in [&b"cronlock.abc"[..], b"../x y/\xff", b".hidden:2"] {
            assert_eq!(key_of_file(&file_name(key)), key);
        }
    }

    #[test]
    fn second_taker_is_held_then_grace_applies() {
        let dir = temp_dir("grace");
        let mut first = DirectoryLock::new(&dir).unwrap();
        let lease = match first.acquire(&claim()).unwrap() {
            Acquire::Taken(lease) => lease,
            other => panic!("{other:?}"),
        };
        let mut second = DirectoryLock::new(&dir).unwrap();
        assert!(matches!(second.acquire(&claim()).unwrap(), Acquire::Held { .. }));
        assert!(matches!(
            first.release(&lease, Keep { grace: 30, hold: 0 }).unwrap(),
            Release::Kept { .. }
        ));
        assert!(matches!(second.acquire(&claim()).unwrap(), Acquire::Held { .. }));
        assert!(second.reset(b"k").unwrap());
        assert!(matches!(second.acquire(&claim()).unwrap(), Acquire::Taken(_)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_reset_or_taken_over_gets_no_fencing_token() {
        let dir = temp_dir("fence");
        // A holder whose RELEASE is already over, so the next run takes over.
        let stale = Claim { release: -5, ..claim() };
        let mut first = DirectoryLock::new(&dir).unwrap();
        let Acquire::Taken(lease) = first.acquire(&stale).unwrap() else {
            panic!()
        };
        assert_eq!(first.fence(&lease, b"k").unwrap(), Some(1));
        assert_eq!(first.newest_fence(b"k").unwrap(), Some(1));
        let mut second = DirectoryLock::new(&dir).unwrap();
        let Acquire::TakenOver { lease: newer, .. } = second.acquire(&claim()).unwrap() else {
            panic!()
        };
        assert_eq!(first.fence(&lease, b"k").unwrap(), None);
        assert_eq!(second.fence(&newer, b"k").unwrap(), Some(2));
        // Reset while it runs: no longer ours either, and the counter stays.
        assert!(first.reset(b"k").unwrap());
        assert_eq!(second.fence(&newer, b"k").unwrap(), None);
        assert_eq!(second.newest_fence(b"k").unwrap(), Some(2));
        let Acquire::Taken(third) = first.acquire(&claim()).unwrap() else {
            panic!()
        };
        assert_eq!(first.fence(&third, b"k").unwrap(), Some(3));
        assert_eq!(first.list(b"").unwrap().len(), 1, "the counter is no lock");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_history_keeps_the_newest_runs_and_the_last_success_beside_the_lock() {
        let dir = temp_dir("history");
        let mut store = DirectoryLock::new(&dir).unwrap();
        assert_eq!(store.run_history(b"k").unwrap(), History::default());
        store.record_run(b"k", "{\"n\":1}", true, 2).unwrap();
        for n in 2..=4 {
            store.record_run(b"k", &format!("{{\"n\":{n}}}"), false, 2).unwrap();
        }
        let history = store.run_history(b"k").unwrap();
        assert_eq!(history.runs, ["{\"n\":4}", "{\"n\":3}"]);
        assert_eq!(history.last_success.as_deref(), Some("{\"n\":1}"));
        assert_eq!(store.run_history(b"other").unwrap(), History::default());
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".runs.k", ".succeeded.k"]);
        assert!(store.list(b"").unwrap().is_empty());
        assert_eq!(with_run("", "a\nb", 0), "a b\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn negative_grace_drops_the_lock_and_a_crashed_run_is_taken_over() {
        let dir = temp_dir("crash");
        let mut first = DirectoryLock::new(&dir).unwrap();
        let Acquire::Taken(lease) = first.acquire(&claim()).unwrap() else {
            panic!()
        };
        assert_eq!(
            first.release(&lease, Keep { grace: -1, hold: 0 }).unwrap(),
            Release::Dropped
        );
        // A run that "crashed": its file says running but nobody holds it.
        let Acquire::Taken(_) = first.acquire(&claim()).unwrap() else {
            panic!()
        };
        drop(first);
        let mut second = DirectoryLock::new(&dir).unwrap();
        assert!(matches!(second.acquire(&claim()).unwrap(), Acquire::TakenOver { .. }));
        fs::remove_dir_all(&dir).unwrap();
    }
}
