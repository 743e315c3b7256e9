//! One run of cronlock, from the settings to the exit status, shared by the
//! two binaries: `cronlock` carries the stores whose clients are small
//! (Redis, the directory, memcached, etcd) and starts `cronlock-stores`, its
//! sibling with every store, when `CRONLOCK_URL` names another one. The
//! clients of MySQL, PostgreSQL, ZooKeeper and DynamoDB (an async runtime,
//! the AWS SDK) made the binary four times larger and a Redis run 0.1-0.2 ms
//! slower (more pages touched at start and in the fork of the watchdog);
//! kept out of `cronlock`, they cost only the runs that use them (one
//! `execve`, beside their several milliseconds of network). Which binary
//! carries a store is its row in `crate::store::STORES`. `cronlock-stores`
//! reads the settings again with the same `config::load`, rather than
//! being handed them: the whole handoff (cronlock's start and read of the
//! settings, the `execve`, and the second start and read) measured
//! 0.16 ms (median of 400 runs each of `cronlock` and `cronlock-stores`
//! against a closed MySQL port, interleaved).

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::{self, Config, FencingMode, Search};
use crate::exit::Outcome;
use crate::key;
use crate::lock::lease::LockKeeper;
use crate::lock::take::{self, Plan, Taken};
use crate::lock::{Claim, Feature, Fencing, Keep, LockStore, Release};
use crate::process::signals;
use crate::process::supervise::{self, Ended, Job};
use crate::report::syslog::{Event, Syslog};
use crate::report::watcher::{self, Watcher};
use crate::report::Report;
use crate::speed::startup;
use crate::store;

/// Opens the configured store: `store::open` (every store) or
/// `store::open_light` (the ones `cronlock` itself carries).
pub type Opener = for<'a> fn(&'a Config, &'a Report) -> Result<Box<dyn LockStore + 'a>>;

/// The sibling binary with every store.
pub const ALL_STORES: &str = "cronlock-stores";

/// A binary's whole work: [`run`], an error printed as one line (exit 201),
/// and the exit status to return from C's `main`.
pub fn main(args: &[OsString], open: Opener, all_stores: bool) -> i32 {
    let outcome = run(args, open, all_stores).unwrap_or_else(|err| {
        watcher::early_error(args, &err);
        Outcome::Error
    });
    i32::from(outcome.code())
}

/// Runs cronlock with `args` (the command), opening stores with `open`;
/// `all_stores`: this binary carries every store, else a store it lacks
/// is left to [`ALL_STORES`] beside it, before anything is printed or taken.
/// Once the settings are read, the run's end (an error too) is told to
/// what watches it (`report::watcher`); only an error that comes back here
/// is left for the caller to print.
pub fn run(args: &[OsString], open: Opener, all_stores: bool) -> Result<Outcome> {
    startup::standard_fds()?;
    startup::ignore_sigpipe();
    // Blocked from the start: a SIGTERM that arrives while we take the lock
    // must not leave a taken lock with no command behind it.
    signals::block()?;
    let config = config::load(std::env::vars_os(), &Search::standard())?;
    let mut watcher = Watcher::new(&config, args);
    let result = run_configured(args, open, all_stores, &config, &mut watcher);
    let lost = matches!(&result, Err(err) if err.is::<LeaseLost>());
    watcher.finish(result, lost)
}

/// The run once its settings are read.
fn run_configured(
    args: &[OsString],
    open: Opener,
    all_stores: bool,
    config: &Config,
    watcher: &mut Watcher,
) -> Result<Outcome> {
    if !all_stores && config.store.row().carried_by != store::Binary::Cronlock {
        return Err(exec_all_stores(args, config));
    }
    let report = Report {
        verbose: config.verbose,
    };
    if let Some(file) = &config.file {
        report.info(format_args!("including config from {}", file.display()));
    }
    for note in &config.notes {
        report.info(format_args!("{note}"));
    }
    if config.ntpdate {
        let clock = config.store.row().clock;
        report.info(format_args!(
            "CRONLOCK_NTPDATE=yes: not running ntpdate; lock times come from {clock}"
        ));
    }
    if args.is_empty() && !config.reset {
        anyhow::bail!(
            "usage: cronlock COMMAND [ARGUMENTS...] (settings come from CRONLOCK_* variables; see the README)"
        );
    }

    let utf8 = key::locale_is_utf8(
        env_bytes("LC_ALL").as_deref(),
        env_bytes("LC_CTYPE").as_deref(),
        env_bytes("LANG").as_deref(),
    );
    let mut key = key::styled_key(
        config.key_style,
        config.prefix.as_bytes(),
        config.key.as_deref().map(str::as_bytes),
        args,
        utf8,
    )?;
    // One lock per scheduled slot: the fire time is part of its name.
    let scheduled = config.slot.map(|slot| slot.fire_time(config::slot::now()));
    // The fencing counter is the job's: every slot and fire time shares it.
    let job_key_len = key.len();
    if let Some(at) = scheduled {
        key.extend_from_slice(format!("@{at}").as_bytes());
    }
    watcher.key(&key);
    if config.show_key {
        let mut line = b"cronlock: key ".to_vec();
        line.extend_from_slice(&key);
        line.push(b'\n');
        let _ = std::io::stderr().write_all(&line);
    }

    let mut store = open(config, &report)?;
    for (feature, asked) in [
        (Feature::Lease, config.lease.is_some()),
        (Feature::Hold, config.hold > 0),
    ] {
        if let Some(why) = store.lacks(feature).filter(|_| asked) {
            anyhow::bail!(
                "{} is not supported by the {} store: {why}",
                feature.variable(),
                store.kind()
            );
        }
    }
    if config.history > 0 && !store.keeps_history() {
        let why = match config.key_style {
            key::KeyStyle::Cronlock | key::KeyStyle::Golock => "it keeps no run history yet".to_string(),
            // The other tools' hosts share the lock but would keep no history.
            style => format!("it keeps none with CRONLOCK_KEY_STYLE={}", style.name()),
        };
        anyhow::bail!("CRONLOCK_HISTORY is not supported by the {} store: {why}", store.kind());
    }
    match (config.fencing, store.fencing()) {
        (FencingMode::Off, _) | (FencingMode::On, Fencing::BestEffort(_)) | (_, Fencing::Durable) => {}
        (_, Fencing::Unsupported(why)) => {
            anyhow::bail!("CRONLOCK_FENCING is not supported by the {} store: {why}", store.kind())
        }
        (FencingMode::Required, Fencing::BestEffort(why)) => anyhow::bail!(
            "CRONLOCK_FENCING=required: the {} store's tokens could start again lower: {why}; use on to take them anyway",
            store.kind()
        ),
    }
    let syslog = config.syslog.as_ref().and_then(|(facility, path)| {
        Syslog::open(path, *facility, "cronlock")
            .map_err(|err| watcher.warn(&format!("{err}; going on without syslog")))
            .ok()
    });
    watcher.set_syslog(syslog);
    let result = run_with(
        store.as_mut(),
        config,
        &report,
        args,
        (&key, job_key_len),
        scheduled,
        watcher,
    );
    // In JSON mode syslog has had each event; the line of old is for text.
    if let Some(syslog) = watcher.syslog().filter(|_| !watcher.json()) {
        let command = crate::lock::owner::command_line(args);
        let (event, status) = match &result {
            Ok(Outcome::ResetDone) => return result,
            Ok(Outcome::Held) => (Event::Held, Outcome::Held.code()),
            Ok(Outcome::TimedOut) => (Event::TimedOut, Outcome::TimedOut.code()),
            Ok(outcome) => (Event::Taken, outcome.code()),
            Err(err) if err.is::<LeaseLost>() => (Event::LeaseLost, Outcome::Error.code()),
            Err(_) => (Event::Error, Outcome::Error.code()),
        };
        syslog.send(event, &key, &command, Some(i32::from(status)));
    }
    result
}

/// The lock was lost while the command ran (its lease, or the store's hold
/// on it); its group was killed.
#[derive(Debug)]
struct LeaseLost(String);

impl std::fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LeaseLost {}

fn env_bytes(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(|v| v.as_bytes().to_vec())
}

fn run_with(
    store: &mut dyn LockStore,
    config: &Config,
    report: &Report,
    args: &[OsString],
    (key, job_key_len): (&[u8], usize),
    scheduled: Option<i64>,
    watcher: &mut Watcher,
) -> Result<Outcome> {
    let shown = String::from_utf8_lossy(key);
    if config.reset {
        // Every slot of a semaphore, so that no copy is left holding one.
        let mut existed = false;
        for slot in 1..=config.concurrency {
            existed |= store.reset(&crate::lock::slot_key(key, slot))?;
        }
        report.info(format_args!(
            "reset {shown}: {}",
            if existed { "deleted" } else { "was not set" }
        ));
        return Ok(Outcome::ResetDone);
    }

    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let owner = crate::lock::owner::record(&config.node, std::process::id(), started, args);
    let claim = Claim {
        key,
        release: config.lease.unwrap_or(config.release),
        owner: Some(&owner),
    };
    let plan = Plan {
        jitter: Duration::from_millis(config.jitter_ms),
        wait: Duration::from_secs(config.wait),
        slots: config.concurrency,
    };
    let taken = take::take(store, &claim, plan, report, &mut |expires_in| {
        watcher.waiting(expires_in)
    })?;
    let mut fenced = Vec::new();
    let mut token = None;
    let mut lease = match taken {
        Taken::Held { expires_in, waited } => {
            if expires_in == 0 {
                report.info(format_args!("lock {shown} is held, expiring now"));
            } else {
                report.info(format_args!("lock {shown} is held (expires in {expires_in}s)"));
            }
            watcher.held(expires_in, waited);
            return Ok(Outcome::Held);
        }
        Taken::Stopped(signal) => {
            report.info(format_args!("received {signal} before taking the lock"));
            return Ok(Outcome::Signaled(signal as i32));
        }
        Taken::Ours {
            lease,
            expired_ago,
            waited,
        } => {
            let taken = String::from_utf8_lossy(&lease.key);
            match expired_ago {
                None => report.info(format_args!("lock {taken} acquired")),
                Some(ago) => report.info(format_args!("lock {taken} had expired {ago}s ago; taken over")),
            }
            if config.fencing != FencingMode::Off {
                let job_key = &key[..job_key_len];
                let fenced_token = match store.fence(&lease, job_key) {
                    Ok(token) => token,
                    Err(err) => {
                        // The command will not run: give the lock back at
                        // once rather than leave it held until RELEASE.
                        let _ = store.release(&lease, Keep { grace: -1, hold: 0 });
                        return Err(err.context(format!("taking the fencing token of {taken}")));
                    }
                };
                let Some(given) = fenced_token else {
                    report.info(format_args!(
                        "lock {taken} was taken over before its fencing token; another run holds it"
                    ));
                    watcher.held(0, waited);
                    return Ok(Outcome::Held);
                };
                report.info(format_args!("lock {taken}: fencing token {given}"));
                token = Some(given);
                fenced = vec![
                    ("CRONLOCK_FENCING_TOKEN".to_string(), given.to_string()),
                    (
                        "CRONLOCK_LOCK_KEY".to_string(),
                        String::from_utf8_lossy(job_key).into_owned(),
                    ),
                    ("CRONLOCK_OWNER".to_string(), owner.clone()),
                ];
            }
            watcher.taken(waited);
            lease
        }
    };
    let shown = String::from_utf8_lossy(&lease.key).into_owned();
    let mut env = config.exported.clone();
    env.extend(fenced);
    env.extend(store.job_env(&lease));
    if let Some(at) = scheduled {
        // As Kubernetes annotates a CronJob's run with its scheduled time.
        env.push((
            "CRONLOCK_SCHEDULED_TIME".to_string(),
            crate::report::clock::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(at.max(0) as u64)),
        ));
    }

    // Told to stop while taking the lock: give it back without running.
    let ended = match signals::take_pending_termination() {
        Some(signal) => {
            report.info(format_args!("received {signal} before starting the command"));
            Ended::Signaled(signal as i32)
        }
        None => {
            let job = Job {
                argv: args,
                env: &env,
                timeout: (config.timeout > 0).then(|| Duration::from_secs(config.timeout)),
                kill_after: Duration::from_secs(config.kill_after),
            };
            // Before the request that wrote the lock (take sets it).
            let asked_at = lease.asked_at.unwrap_or_else(Instant::now);
            match LockKeeper::new(store, &mut lease, config.lease, asked_at, report) {
                Some(mut keeper) => supervise::run(&job, Some(&mut keeper)),
                None => supervise::run(&job, None),
            }
        }
    };

    watcher.ended(ended == Ended::TimedOut, config.timeout);
    let mut lease_lost = None;
    let outcome = match ended {
        Ended::LockLost(why) => {
            lease_lost = Some(why);
            Outcome::Error
        }
        Ended::Exited(code) => Outcome::Exited(code),
        Ended::Signaled(signal) => Outcome::Signaled(signal),
        Ended::NotFound => Outcome::NotFound,
        Ended::NotExecutable => Outcome::NotExecutable,
        Ended::TimedOut => {
            let mut line = b"emergency: had to kill '".to_vec();
            line.extend_from_slice(&crate::lock::owner::command_line(args));
            line.extend_from_slice(format!("' after {}s timeout\n", config.timeout).as_bytes());
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(&line).and_then(|()| stdout.flush());
            Outcome::TimedOut
        }
    };

    // With CRONLOCK_SLOT the lock is kept at least until its slot ends.
    let grace = match (scheduled, config.slot) {
        (Some(at), Some(slot)) => config.grace.max(at + slot.seconds as i64 - started - 1),
        _ => config.grace,
    };
    let released = store.release(
        &lease,
        Keep {
            grace,
            hold: config.hold,
        },
    );
    if config.history > 0 {
        let exit = if lease_lost.is_some() {
            Outcome::Error.code()
        } else {
            outcome.code()
        };
        let ended = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let record = crate::lock::owner::run_record(&owner, ended, exit, token);
        // Like the metrics: what the history could not keep is a warning,
        // never the run's exit status.
        if let Err(err) = store.record_run(&key[..job_key_len], &record, exit == 0, config.history) {
            watcher.warn(&format!(
                "the run could not be added to the history of {shown}: {err:#}"
            ));
        }
    }
    if let Some(why) = lease_lost {
        let what = if config.lease.is_some() { "lease" } else { "hold" };
        return Err(LeaseLost(format!(
            "{what} of {shown} lost: {why}; the command's process group was killed"
        ))
        .into());
    }
    if let Ok(release) = &released {
        watcher.released(outcome, release);
    }
    match released {
        Ok(Release::Kept { until }) => report.info(format_args!("lock {shown} kept until {until} (grace)")),
        Ok(Release::Dropped) => report.info(format_args!("lock {shown} released")),
        Ok(Release::NotOurs) => report.info(format_args!("lock {shown} belongs to another run now; left alone")),
        Err(err) => {
            return Err(err.context(format!(
                "the command ended (exit status {}) but the lock could not be released",
                outcome.code()
            )))
        }
    }
    Ok(outcome)
}

/// Replaces this process with [`ALL_STORES`] from the same directory, with
/// the same arguments and environment; returns only when that fails.
fn exec_all_stores(args: &[OsString], config: &Config) -> anyhow::Error {
    let exec = || -> Result<std::convert::Infallible> {
        let path = std::env::current_exe()
            .context("finding cronlock's own path")?
            .with_file_name(ALL_STORES);
        let program = CString::new(path.as_os_str().as_bytes()).context("the path of cronlock-stores")?;
        let mut argv = vec![program.clone()];
        for arg in args {
            argv.push(CString::new(arg.as_bytes()).context("an argument holds a NUL byte")?);
        }
        nix::unistd::execv(&program, &argv).with_context(|| {
            format!(
                "the {} store is run by {} beside cronlock, which could not be started",
                config.store.row().kind,
                path.display()
            )
        })
    };
    match exec() {
        Ok(never) => match never {},
        Err(err) => err,
    }
}
