//! `cronlockctl`: see, explain and clear cronlock's locks. It reads the same
//! configuration as `cronlock` (environment, config file, `CRONLOCK_URL`,
//! every store) and names a lock by `--key K` or by the job's command line
//! after `--`, exactly as it stands in the crontab.
//!
//! `migrate coolock` reads coolock's settings instead (see [`migrate`]).
//!
//! Exit codes: 0 free (or done), 1 held (or, for `unlock`, no lock), 2 error.

mod fence;
mod migrate;
mod runs;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use crate::config::{self, Config, Search};
use crate::key;
use crate::lock::slot_key;
use crate::lock::{LockStore, Seen};
use crate::report::Report;
use crate::store;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const HELP: &str = "\
cronlockctl: see, explain and clear cronlock's locks

Usage:
  cronlockctl [OPTIONS] key    (--key K | -- COMMAND...)   the key cronlock would use
  cronlockctl [OPTIONS] status (--key K | -- COMMAND...)   free, held (by whom, until when)
  cronlockctl [OPTIONS] list                               every lock under CRONLOCK_PREFIX
  cronlockctl [OPTIONS] unlock (--key K | -- COMMAND...)   remove a lock that no run holds
  cronlockctl [OPTIONS] why    (--key K | -- COMMAND...)   what a run now would do, and why
  cronlockctl [OPTIONS] fence  [KEY TOKEN | (--key K | -- COMMAND...) TOKEN]
                                                           exit 0 only if TOKEN is KEY's newest fencing token
  cronlockctl [OPTIONS] history (--key K | -- COMMAND... | KEY)
                                                           the job's last runs, across the fleet
  cronlockctl [OPTIONS] check  (--key K | -- COMMAND... | KEY) --max-age AGE
                                                           exit 1 if no run succeeded within AGE
  cronlockctl migrate coolock [FILE...]                    coolock's settings as a cronlock.conf

Options:
  --key K          the lock's name, as CRONLOCK_KEY would give it
  --json           one JSON object (one per line for list)
  --force          unlock even a lock whose holder may still run
  --all-prefixes   list every lock, whatever its prefix
  --max-age AGE    check: 90s, 30m, 1h, 2d
  -h, --help       this text
  -V, --version    the version

Settings come from the CRONLOCK_* variables and the config file, as for
cronlock (CRONLOCK_URL, CRONLOCK_PREFIX, CRONLOCK_KEY_STYLE,
CRONLOCK_CONCURRENCY...). Exit codes: 0 free, 1 held (unlock: there was no
lock), 2 error (unlock: refused).

fence checks a job's CRONLOCK_FENCING_TOKEN before the job writes: exit 0
while TOKEN is still the newest token of KEY (the job's CRONLOCK_LOCK_KEY),
1 once a later holder has a newer one. Inside a job run with
CRONLOCK_FENCING=on, `cronlockctl fence` alone reads both from the job's
environment.

history and check read what the store keeps of a job's runs when the job
runs with CRONLOCK_HISTORY=N: its last N runs (host, start, end, exit
status, fencing token) and its last success, however old. check --max-age
exits 1 when no host has run the job successfully within AGE: the alert for
a job that every host skipped.

migrate coolock reads coolock's settings files (/etc/coolock, then
~/.coolock; or the FILEs named, a later one overriding an earlier one) and
prints the cronlock.conf that takes the same tooz lock; what has no
equivalent is named in a comment and on stderr.
";

/// What the command line asks for.
#[derive(Debug, Default)]
pub(crate) struct Request {
    command: String,
    key: Option<String>,
    job: Vec<OsString>,
    /// The words after `migrate` (the tool, then its settings files) or
    /// `fence` (the key and the token).
    operands: Vec<OsString>,
    json: bool,
    force: bool,
    all_prefixes: bool,
    /// `check --max-age`, in seconds.
    max_age: Option<u64>,
}

impl Request {
    /// Whether the job is named by `--key` or a command line.
    fn names_a_job(&self) -> bool {
        self.key.is_some() || !self.job.is_empty()
    }
}

fn parse(args: &[OsString]) -> Result<Option<Request>> {
    let mut request = Request::default();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.to_str() {
            Some("--") => {
                request.job = words.by_ref().cloned().collect();
                break;
            }
            // (`--version` is answered in main, before any setting is read.)
            Some("-h" | "--help") => return Ok(None),
            Some("--json") => request.json = true,
            Some("--force") => request.force = true,
            Some("--all-prefixes") => request.all_prefixes = true,
            Some("--key") => {
                let value = words.next().context("--key needs a value")?;
                let value = value.to_str().context("--key: not valid UTF-8")?;
                request.key = Some(value.to_string());
            }
            Some(other) if other.starts_with("--key=") => request.key = Some(other["--key=".len()..].to_string()),
            Some("--max-age") => {
                let value = words.next().context("--max-age needs a value, such as 1h")?;
                request.max_age = Some(runs::age(value.to_str().unwrap_or(""))?);
            }
            Some(other) if other.starts_with("--max-age=") => {
                request.max_age = Some(runs::age(&other["--max-age=".len()..])?);
            }
            Some(other) if other.starts_with('-') => bail!("unknown option {other:?}; see cronlockctl --help"),
            Some(other) if request.command.is_empty() => request.command = other.to_string(),
            _ if matches!(request.command.as_str(), "migrate" | "fence" | "history" | "check") => {
                request.operands.push(word.clone())
            }
            _ => bail!("unexpected argument {word:?}; the job's command line goes after --"),
        }
    }
    if request.command.is_empty() {
        bail!("no command given; see cronlockctl --help");
    }
    Ok(Some(request))
}

/// The whole of `cronlockctl`: its arguments, one line on error (exit 2).
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let wants_version = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-V" || a == "--version");
    if wants_version {
        println!("cronlockctl {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match parse(&args).and_then(|request| match request {
        None => {
            print!("{HELP}");
            Ok(0)
        }
        Some(request) => run(&request),
    }) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "cronlockctl: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(request: &Request) -> Result<u8> {
    // migrate reads coolock's settings, not cronlock's: no store is opened.
    if request.command == "migrate" {
        if request.key.is_some() || request.json || !request.job.is_empty() {
            bail!("migrate takes no --key, --json or command line; see cronlockctl --help");
        }
        return migrate::run(&request.operands);
    }
    let mut config = config::load(std::env::vars_os(), &Search::standard())?;
    if let Some(key) = &request.key {
        config.key = Some(key.clone());
    }
    let report = Report { verbose: false };
    match request.command.as_str() {
        "fence" => return fence::run(&config, &report, request),
        "history" => return runs::history(&config, &report, request),
        "check" => return runs::check(&config, &report, request),
        _ => {}
    }
    if request.command == "list" {
        let mut store = store::open(&config, &report)?;
        return list(store.as_mut(), &config, request);
    }
    if !request.names_a_job() {
        bail!("name the lock: --key K, or the job's command line after --");
    }
    let key = job_key(&config, request)?;
    if request.command == "key" {
        if request.json {
            println!("{}", json!({ "key": text(&key), "style": config.key_style.name() }));
        } else {
            let mut out = key.clone();
            out.push(b'\n');
            std::io::stdout().write_all(&out)?;
        }
        return Ok(0);
    }
    let mut store = store::open(&config, &report)?;
    let slots: Vec<Vec<u8>> = (1..=config.concurrency).map(|slot| slot_key(&key, slot)).collect();
    let mut seen = Vec::new();
    for slot in &slots {
        seen.push((slot.clone(), store.inspect(slot)?));
    }
    match request.command.as_str() {
        "status" => status(&config, &key, &seen, request.json),
        "why" => why(&config, store.as_mut(), &key, &seen, request.json),
        "unlock" => unlock(store.as_mut(), &seen, request),
        other => bail!("unknown command {other:?}; see cronlockctl --help"),
    }
}

/// The key cronlock would use for the job that `request` names.
pub(crate) fn job_key(config: &Config, request: &Request) -> Result<Vec<u8>> {
    let utf8 = key::locale_is_utf8(
        std::env::var_os("LC_ALL").as_ref().map(|v| v.as_bytes()),
        std::env::var_os("LC_CTYPE").as_ref().map(|v| v.as_bytes()),
        std::env::var_os("LANG").as_ref().map(|v| v.as_bytes()),
    );
    key::styled_key(
        config.key_style,
        config.prefix.as_bytes(),
        config.key.as_deref().map(str::as_bytes),
        &request.job,
        utf8,
    )
}

/// What a lock's record says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No lock, or one whose time has run out.
    Free,
    /// Its command runs (or may: a host that died looks the same until the
    /// lock expires). A lock without an expiry (lockex's) is held while the
    /// store sees its holder run.
    Running,
    /// Its command has ended; the grace or hold keeps it.
    Kept,
}

impl State {
    fn of(seen: Option<&Seen>) -> State {
        match seen {
            None => State::Free,
            Some(seen) if seen.expires_at.is_none() && seen.running == Some(true) => State::Running,
            Some(seen) if seen.expires_at.is_none_or(|at| at < seen.now) => State::Free,
            Some(seen) if seen.running == Some(false) => State::Kept,
            Some(_) => State::Running,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Free => "free",
            State::Running => "held",
            State::Kept => "kept",
        }
    }
}

/// The owner record parsed, when it is JSON.
fn owner(seen: &Seen) -> Option<Value> {
    seen.owner
        .as_deref()
        .and_then(|record| serde_json::from_str(record).ok())
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stable JSON form of one lock (documented in the README).
fn lock_json(key: &[u8], seen: Option<&Seen>) -> Value {
    let state = State::of(seen);
    let owner = seen.and_then(owner);
    json!({
        "key": text(key),
        "state": state.name(),
        "expires_at": seen.and_then(|s| s.expires_at),
        "expires_in": seen.and_then(|s| s.expires_at.map(|at| at - s.now)),
        "running": seen.and_then(|s| s.running),
        "original": seen.is_some() && state != State::Free && seen.is_some_and(|s| s.owner.is_none()),
        "owner": owner,
    })
}

/// One line for people.
fn describe(key: &[u8], seen: Option<&Seen>) -> String {
    let state = State::of(seen);
    let Some(seen) = seen else {
        return format!("{}: free (no lock)", text(key));
    };
    let until = match seen.expires_at {
        Some(at) => format!("{} ({:+} s)", utc(at), at - seen.now),
        None if seen.running == Some(true) => "when its run ends (the lock has no expiry)".to_string(),
        None => "a value that is not a time".to_string(),
    };
    let who = match owner(seen) {
        Some(owner) => {
            let mut who = format!(
                "{} pid {}, started {}, command {}",
                owner["node"].as_str().unwrap_or("?"),
                owner["pid"],
                owner["start"].as_i64().map(utc).unwrap_or_else(|| "?".into()),
                owner["command"]
            );
            if let Some(ended) = owner["ended"].as_i64() {
                who.push_str(&format!(", ended {}", utc(ended)));
            }
            who
        }
        None => match &seen.owner {
            Some(record) => format!("an owner record that is not JSON: {record:?}"),
            // The JSON's "original": the original script writes no record;
            // neither do other tools sharing the store (lock-exec, for one).
            None => "a run that left no owner record (the original script's, or another tool's)".to_string(),
        },
    };
    match state {
        State::Free => format!("{}: free (the last lock expired at {until}; held by {who})", text(key)),
        State::Running => format!("{}: held by {who}; expires {until}", text(key)),
        State::Kept => format!(
            "{}: kept after its run (grace or hold) by {who}; until {until}",
            text(key)
        ),
    }
}

fn status(config: &Config, key: &[u8], seen: &[(Vec<u8>, Option<Seen>)], as_json: bool) -> Result<u8> {
    let all_held = seen.iter().all(|(_, s)| State::of(s.as_ref()) != State::Free);
    if as_json {
        let object = if seen.len() == 1 {
            lock_json(&seen[0].0, seen[0].1.as_ref())
        } else {
            json!({
                "key": text(key),
                "state": if all_held { "held" } else { "free" },
                "slots": seen.iter().map(|(k, s)| lock_json(k, s.as_ref())).collect::<Vec<_>>(),
            })
        };
        println!("{object}");
    } else {
        if seen.len() > 1 {
            println!(
                "{}: semaphore of {} slots, {}",
                text(key),
                config.concurrency,
                if all_held { "all held" } else { "a slot is free" }
            );
        }
        for (slot, s) in seen {
            println!("{}", describe(slot, s.as_ref()));
        }
    }
    Ok(if all_held { 1 } else { 0 })
}

fn list(store: &mut dyn LockStore, config: &Config, request: &Request) -> Result<u8> {
    let prefix = if request.all_prefixes {
        &b""[..]
    } else {
        config.key_style.key_prefix(config.prefix.as_bytes())
    };
    for seen in store.list(prefix)? {
        if request.json {
            println!("{}", lock_json(&seen.key, Some(&seen)));
        } else {
            println!("{}", describe(&seen.key, Some(&seen)));
        }
    }
    Ok(0)
}

fn unlock(store: &mut dyn LockStore, seen: &[(Vec<u8>, Option<Seen>)], request: &Request) -> Result<u8> {
    let present: Vec<&(Vec<u8>, Option<Seen>)> = seen.iter().filter(|(_, s)| s.is_some()).collect();
    if present.is_empty() {
        let names: Vec<String> = seen.iter().map(|(k, _)| text(k)).collect();
        if request.json {
            println!("{}", json!({ "key": names[0], "removed": [] }));
        } else {
            println!("{}: no lock to remove", names.join(", "));
        }
        return Ok(1);
    }
    let live: Vec<&&(Vec<u8>, Option<Seen>)> = present
        .iter()
        .filter(|(_, s)| State::of(s.as_ref()) == State::Running)
        .collect();
    if !live.is_empty() && !request.force {
        let (key, s) = live[0];
        bail!(
            "refusing to remove {}: its holder may still run, so a second copy could start ({}); add --force to remove it anyway",
            text(key),
            describe(key, s.as_ref())
        );
    }
    let mut removed = Vec::new();
    for (key, s) in &present {
        if store.reset(key)? {
            if !request.json {
                println!("removed {}", describe(key, s.as_ref()));
            }
            removed.push(lock_json(key, s.as_ref()));
        }
    }
    if request.json {
        println!("{}", json!({ "key": text(&seen[0].0), "removed": removed }));
    }
    Ok(0)
}

fn why(
    config: &Config,
    store: &mut dyn LockStore,
    key: &[u8],
    seen: &[(Vec<u8>, Option<Seen>)],
    as_json: bool,
) -> Result<u8> {
    let free = seen.iter().find(|(_, s)| State::of(s.as_ref()) == State::Free);
    let soonest = seen
        .iter()
        .filter_map(|(_, s)| s.as_ref().and_then(|s| s.expires_at.map(|at| (at, s.now))))
        .min();
    let verdict = match (free, soonest) {
        (Some(_), _) => "run: the lock is free".to_string(),
        (None, Some((at, now))) if config.wait > 0 => format!(
            "wait up to {} s (CRONLOCK_WAIT) for the lock; it expires at {} ({:+} s) unless its holder gives it back sooner",
            config.wait,
            utc(at),
            at - now
        ),
        (None, Some((at, now))) => format!(
            "exit 200 without running: the lock is held until {} ({:+} s)",
            utc(at),
            at - now
        ),
        (None, None) if config.wait > 0 => format!(
            "wait up to {} s (CRONLOCK_WAIT) for its holder to give the lock back",
            config.wait
        ),
        (None, None) => "exit 200 without running: the lock is held".to_string(),
    };
    let derivation = match (&config.key, config.key_style.name()) {
        (Some(_), style) => format!("CRONLOCK_KEY with style {style}"),
        (None, "cronlock") => "md5 of the command line as `echo \"$@\"` prints it".to_string(),
        (None, style) => format!("the command line, named as {style} names it"),
    };
    if as_json {
        println!(
            "{}",
            json!({
                "key": text(key),
                "derived_from": derivation,
                "store": store.kind(),
                "locks": seen.iter().map(|(k, s)| lock_json(k, s.as_ref())).collect::<Vec<_>>(),
                "a_run_now_would": verdict,
            })
        );
    } else {
        println!("key:   {} ({derivation})", text(key));
        println!("store: {}", config.store);
        for (slot, s) in seen {
            println!("state: {}", describe(slot, s.as_ref()));
        }
        println!("a run now would: {verdict}");
    }
    Ok(if free.is_some() { 0 } else { 1 })
}

/// A unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(at: i64) -> String {
    let c = crate::report::clock::Civil::of(at);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(expires_at: Option<i64>, running: Option<bool>) -> Seen {
        Seen {
            key: b"k".to_vec(),
            expires_at,
            now: 100,
            owner: None,
            running,
        }
    }

    #[test]
    fn a_lock_without_expiry_is_held_only_while_its_run_lives() {
        assert_eq!(State::of(Some(&seen(None, Some(true)))), State::Running);
        assert_eq!(State::of(Some(&seen(None, None))), State::Free);
        assert_eq!(State::of(Some(&seen(Some(99), Some(true)))), State::Free);
        assert_eq!(State::of(Some(&seen(Some(100), Some(false)))), State::Kept);
        assert_eq!(State::of(Some(&seen(Some(100), None))), State::Running);
    }

    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_764_460_800), "2025-11-30 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
