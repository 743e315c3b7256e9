//! `CRONLOCK_METRICS_DIR`: metrics for node_exporter's textfile collector,
//! one file per key in Prometheus's text format (docs/watching.md lists
//! the metrics). The counters go on from run to run: each run reads the
//! previous file, adds itself, and writes the whole file anew to a
//! temporary file in the same directory that it then renames over the old
//! one, so the collector reads the old file or the new one, never half of
//! either. Runs of the same host take turns at that through an flock on a
//! lock file in the directory.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::libc;

use crate::exit::Outcome;
use crate::report::clock;

/// The file the runs of this host lock while they update a metrics file.
pub const LOCK_FILE: &str = ".cronlock-metrics.lock";

/// What the file says about one run, as [`record`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// How it ended.
    pub outcome: Outcome,
    /// When the lock was taken and the command started, if it was.
    pub started: Option<SystemTime>,
    /// When the command ended, if it ran.
    pub ended: Option<SystemTime>,
    /// How long the lock was waited for before it was taken.
    pub waited: Option<Duration>,
}

/// A metric: name, type and help text.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

/// The counters, in the order they are written.
const COUNTERS: [Family; 4] = [
    Family {
        name: "cronlock_runs_total",
        kind: "counter",
        help: "Runs of cronlock for this key on this host, whatever their outcome.",
    },
    Family {
        name: "cronlock_skips_total",
        kind: "counter",
        help: "Runs that found the lock held by another run and did not start the command (exit 200).",
    },
    Family {
        name: "cronlock_timeouts_total",
        kind: "counter",
        help: "Runs whose command outlived CRONLOCK_TIMEOUT and was killed (exit 202).",
    },
    Family {
        name: "cronlock_errors_total",
        kind: "counter",
        help: "Runs that failed in cronlock itself, the lock lost while the command ran among them (exit 201).",
    },
];

/// The last run that took the lock, in the order they are written.
const LAST: [Family; 5] = [
    Family {
        name: "cronlock_last_start_timestamp_seconds",
        kind: "gauge",
        help: "When the last run that took the lock started its command (unix time).",
    },
    Family {
        name: "cronlock_last_end_timestamp_seconds",
        kind: "gauge",
        help: "When the command of the last run that took the lock ended (unix time).",
    },
    Family {
        name: "cronlock_last_exit_code",
        kind: "gauge",
        help: "The exit status of the last run that took the lock.",
    },
    Family {
        name: "cronlock_last_duration_seconds",
        kind: "gauge",
        help: "How long the command of the last run that took the lock ran.",
    },
    Family {
        name: "cronlock_last_lock_wait_seconds",
        kind: "gauge",
        help: "How long the last run that took the lock waited for it (CRONLOCK_WAIT).",
    },
];

/// The metrics file of `key` in `dir`: the key as the directory store
/// names its lock files (`%XX` escapes, a long key shortened with its md5)
/// and `.prom`, the ending the collector reads.
pub fn file_for(dir: &Path, key: &[u8]) -> PathBuf {
    dir.join(format!("{}.prom", crate::store::escape::file_name(key)))
}

/// Adds `run` to the metrics file of `key` in `dir`. An error names the
/// file; the caller prints it as a warning and the run goes on.
pub fn record(dir: &Path, key: &[u8], run: &Run) -> Result<()> {
    let path = file_for(dir, key);
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .with_context(|| format!("metrics not written: {}", lock_path.display()))?;
    let _turn = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("metrics not written: locking {}", lock_path.display()))?;
    let before = match fs::read_to_string(&path) {
        Ok(text) => samples(&text),
        Err(err) if err.kind() == ErrorKind::NotFound => HashMap::new(),
        Err(err) => return Err(err).with_context(|| format!("metrics not written: reading {}", path.display())),
    };
    let text = render(key, &before, run);
    replace(&path, text.as_bytes()).with_context(|| format!("metrics not written: {}", path.display()))
}

/// Writes `bytes` to a new file beside `path`, then renames it over `path`.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name the collector does not read (it reads `*.prom`).
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(&temporary)
        .and_then(|mut file: File| file.write_all(bytes))
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// The values of the previous file, by metric name (each name has one
/// sample: the file holds one key). Lines that do not read are skipped, so
/// a damaged file starts its counters again, as a restarted exporter would.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let name = line.split(['{', ' ']).next()?;
            let value = line.rsplit_once(' ')?.1.parse::<f64>().ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// The whole new file: the counters grown by `run`, and the last run's
/// values (this one's if it took the lock, else the previous file's).
fn render(key: &[u8], before: &HashMap<String, f64>, run: &Run) -> String {
    let label = label_value(key);
    let counted = [
        true,
        run.outcome == Outcome::Held,
        run.outcome == Outcome::TimedOut,
        run.outcome == Outcome::Error,
    ];
    let mut out = String::with_capacity(2048);
    for (family, counts) in COUNTERS.iter().zip(counted) {
        let value = before.get(family.name).copied().unwrap_or(0.0) + f64::from(u8::from(counts));
        push(&mut out, family, &label, value);
    }
    let last = run.started.map(|started| {
        let ended = run.ended.unwrap_or(started);
        let ran = ended.duration_since(started).unwrap_or_default();
        [
            clock::unix_seconds(started),
            clock::unix_seconds(ended),
            f64::from(run.outcome.code()),
            millis(ran),
            millis(run.waited.unwrap_or_default()),
        ]
    });
    for (i, family) in LAST.iter().enumerate() {
        let value = match last {
            Some(values) => Some(values[i]),
            None => before.get(family.name).copied(),
        };
        // Nothing until a run on this host has taken the lock.
        if let Some(value) = value {
            push(&mut out, family, &label, value);
        }
    }
    out
}

fn push(out: &mut String, family: &Family, label: &str, value: f64) {
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
    let _ = writeln!(out, "{}{{key=\"{label}\"}} {value}", family.name);
}

/// Seconds to the millisecond.
fn millis(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

/// The key as a label value of the text format: UTF-8 (U+FFFD for other
/// bytes), with `\`, `"` and newlines escaped.
fn label_value(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for c in String::from_utf8_lossy(key).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn label_values_escape_what_the_format_asks() {
        assert_eq!(label_value(b"cronlock.abc"), "cronlock.abc");
        assert_eq!(label_value(b"a\\b\"c\nd\xff"), "a\\\\b\\\"c\\nd\u{fffd}");
    }

    #[test]
    fn counters_grow_and_the_last_run_is_kept_across_skips() {
        let ran = Run {
            outcome: Outcome::Exited(3),
            started: Some(at(1_000_000_500)),
            ended: Some(at(1_000_002_750)),
            waited: Some(Duration::from_millis(1250)),
        };
        let first = render(b"k", &HashMap::new(), &ran);
        assert!(first.contains("cronlock_runs_total{key=\"k\"} 1\n"), "{first}");
        assert!(first.contains("cronlock_last_exit_code{key=\"k\"} 3\n"), "{first}");
        assert!(
            first.contains("cronlock_last_start_timestamp_seconds{key=\"k\"} 1000000.5\n"),
            "{first}"
        );
        assert!(
            first.contains("cronlock_last_duration_seconds{key=\"k\"} 2.25\n"),
            "{first}"
        );
        assert!(
            first.contains("cronlock_last_lock_wait_seconds{key=\"k\"} 1.25\n"),
            "{first}"
        );

        let skipped = Run {
            outcome: Outcome::Held,
            started: None,
            ended: None,
            waited: None,
        };
        let second = render(b"k", &samples(&first), &skipped);
        assert!(second.contains("cronlock_runs_total{key=\"k\"} 2\n"), "{second}");
        assert!(second.contains("cronlock_skips_total{key=\"k\"} 1\n"), "{second}");
        assert!(second.contains("cronlock_last_exit_code{key=\"k\"} 3\n"), "{second}");
        assert!(
            second.contains("cronlock_last_duration_seconds{key=\"k\"} 2.25\n"),
            "{second}"
        );
    }

    #[test]
    fn no_last_run_until_one_took_the_lock() {
        let failed = Run {
            outcome: Outcome::Error,
            started: None,
            ended: None,
            waited: None,
        };
        let text = render(b"k", &HashMap::new(), &failed);
        assert!(text.contains("cronlock_errors_total{key=\"k\"} 1\n"), "{text}");
        assert!(!text.contains("cronlock_last_"), "{text}");
    }

    #[test]
    fn a_damaged_file_starts_the_counts_again() {
        let text = "cronlock_runs_total{key=\"k\"} x\ngarbage\n# HELP cronlock_skips_total 9\n";
        assert!(samples(text).is_empty());
    }
}
