//! What a run tells the systems that watch cron, when asked to: JSON
//! events ([`events`], `CRONLOCK_LOG_FORMAT=json`), pings ([`ping`],
//! `CRONLOCK_PING_URL`) and metrics ([`metrics`], `CRONLOCK_METRICS_DIR`),
//! each told about the run's steps from here. With none of them set, every
//! step returns at once: nothing is allocated, read or sent.
//!
//! None of it can change the run's exit status: a ping or a metrics file
//! that fails is one warning line.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::{Config, LogFormat, Watch};
use crate::exit::Outcome;
use crate::lock::Release;
use crate::report::events::{self, Kind, Subject};
use crate::report::metrics;
use crate::report::ping::{self, Pending, Ping};
use crate::report::syslog::Syslog;

/// One run's watcher.
pub struct Watcher<'a> {
    watch: &'a Watch,
    /// Anything to do at all.
    on: bool,
    /// `CRONLOCK_NODE`.
    host: &'a str,
    args: &'a [OsString],
    syslog: Option<Syslog>,
    key: Option<Vec<u8>>,
    /// How long the lock was waited for, once taken.
    waited: Option<Duration>,
    /// When the lock was taken and the command started.
    started: Option<SystemTime>,
    /// When the command ended.
    ended: Option<SystemTime>,
    /// The start ping, still on its way while the command runs.
    start_ping: Option<Pending>,
}

impl<'a> Watcher<'a> {
    /// The watcher of a run of `args` under `config`.
    pub fn new(config: &'a Config, args: &'a [OsString]) -> Watcher<'a> {
        Watcher {
            watch: &config.watch,
            on: config.watch.is_on(),
            host: &config.node,
            args,
            syslog: None,
            key: None,
            waited: None,
            started: None,
            ended: None,
            start_ping: None,
        }
    }

    /// Whether cronlock's lines are JSON events.
    pub fn json(&self) -> bool {
        self.watch.log_format == LogFormat::Json
    }

    /// Keeps the syslog connection: in JSON mode each event goes there too.
    pub fn set_syslog(&mut self, syslog: Option<Syslog>) {
        self.syslog = syslog;
    }

    /// The syslog connection, if there is one.
    pub fn syslog(&self) -> Option<&Syslog> {
        self.syslog.as_ref()
    }

    /// One warning line: `cronlock: warning: ...`, or a `warning` event.
    /// Never pass a password here.
    pub fn warn(&self, message: &str) {
        if self.json() {
            self.event(Kind::Warning, &[("message", Value::from(message))]);
        } else {
            events::print(&format!("cronlock: warning: {message}"));
        }
    }

    /// The run's key is known.
    pub fn key(&mut self, key: &[u8]) {
        if self.on {
            self.key = Some(key.to_vec());
        }
    }

    /// Every slot is held and `CRONLOCK_WAIT` starts waiting.
    pub fn waiting(&self, expires_in: i64) {
        if !self.json() {
            return;
        }
        self.event(Kind::Waiting, &[("expires_in_seconds", Value::from(expires_in))]);
    }

    /// Every slot is held and the wait, if any, is over: the run ends 200.
    pub fn held(&self, expires_in: i64, waited: Duration) {
        if !self.json() {
            return;
        }
        self.event(
            Kind::Held,
            &[
                ("exit_code", Value::from(Outcome::Held.code())),
                ("wait_seconds", events::seconds(waited)),
                ("expires_in_seconds", Value::from(expires_in)),
            ],
        );
    }

    /// The lock was taken after `waited`; the command starts now.
    pub fn taken(&mut self, waited: Duration) {
        if !self.on {
            return;
        }
        self.waited = Some(waited);
        self.started = Some(SystemTime::now());
        self.event(Kind::Taken, &[("wait_seconds", events::seconds(waited))]);
        if let Some(url) = &self.watch.ping {
            let body = format!("cronlock on {}: lock {} taken", self.host, self.shown_key());
            self.start_ping = Some(ping::send(url, Ping::Start, body));
        }
    }

    /// The command ended; `timed_out`: killed after `timeout` seconds.
    pub fn ended(&mut self, timed_out: bool, timeout: u64) {
        if !self.on {
            return;
        }
        self.ended = Some(SystemTime::now());
        if timed_out {
            self.event(
                Kind::Timeout,
                &[
                    ("exit_code", Value::from(Outcome::TimedOut.code())),
                    ("duration_seconds", self.duration()),
                    ("timeout_seconds", Value::from(timeout)),
                ],
            );
        }
    }

    /// The lock was given back (or kept for its grace); the run ends with `outcome`.
    pub fn released(&self, outcome: Outcome, release: &Release) {
        if !self.json() {
            return;
        }
        let how = match release {
            Release::Dropped => "dropped",
            Release::Kept { .. } => "kept",
            Release::NotOurs => "not_ours",
        };
        self.event(
            Kind::Released,
            &[
                ("exit_code", Value::from(outcome.code())),
                ("duration_seconds", self.duration()),
                ("release", Value::from(how)),
            ],
        );
    }

    /// The run is over: the `error` or `lost` event (`lost`: the lock was
    /// lost while the command ran), the metrics, the end ping. In JSON mode
    /// an error has been told as an event by then, and comes back as
    /// `Ok(Outcome::Error)` so that it is not printed again.
    pub fn finish(mut self, result: anyhow::Result<Outcome>, lost: bool) -> anyhow::Result<Outcome> {
        let outcome = *result.as_ref().unwrap_or(&Outcome::Error);
        if !self.on || outcome == Outcome::ResetDone {
            return result;
        }
        let message = result.as_ref().err().map(|err| format!("{err:#}"));
        if let Some(message) = &message {
            let mut fields = vec![("exit_code", Value::from(outcome.code()))];
            if self.started.is_some() {
                fields.push(("duration_seconds", self.duration()));
            }
            fields.push(("message", Value::from(message.as_str())));
            self.event(if lost { Kind::Lost } else { Kind::Error }, &fields);
        }
        if let (Some(dir), Some(key)) = (&self.watch.metrics_dir, &self.key) {
            let run = metrics::Run {
                outcome,
                started: self.started,
                ended: self.ended,
                waited: self.waited,
            };
            if let Err(err) = metrics::record(dir, key, &run) {
                self.warn(&format!("{err:#}"));
            }
        }
        if let Some(url) = &self.watch.ping {
            let mut failures = Vec::new();
            if let Some(Err(why)) = self.start_ping.take().map(Pending::wait) {
                failures.push(why);
            }
            let (ping, body) = self.last_ping(outcome, message.as_deref());
            if let Err(why) = ping::send(url, ping, body).wait() {
                failures.push(why);
            }
            if !failures.is_empty() {
                self.warn(&format!("ping to {} failed: {}", url.shown(), failures.join("; ")));
            }
        }
        match result {
            Err(_) if self.json() => Ok(Outcome::Error),
            other => other,
        }
    }

    /// The ping that ends the run, and its one line for the check's log.
    fn last_ping(&self, outcome: Outcome, error: Option<&str>) -> (Ping, String) {
        let who = format!("cronlock on {}: {}", self.host, self.shown_key());
        if outcome == Outcome::Held {
            return (Ping::Skipped, format!("{who}: held by another run; not run (exit 200)"));
        }
        let code = outcome.code();
        let body = match (error, self.started) {
            (Some(error), _) => format!("{who}: exit status {code}: {error}"),
            (None, Some(_)) => format!("{who}: exit status {code} after {}s", self.duration()),
            (None, None) => format!("{who}: exit status {code}"),
        };
        (Ping::Exit(code), body)
    }

    /// From the command's start to its end (or to now), in seconds.
    fn duration(&self) -> Value {
        let end = self.ended.unwrap_or_else(SystemTime::now);
        let ran = self.started.and_then(|started| end.duration_since(started).ok());
        events::seconds(ran.unwrap_or_default())
    }

    fn shown_key(&self) -> String {
        self.key.as_deref().map_or_else(
            || "(no key yet)".to_string(),
            |key| String::from_utf8_lossy(key).into_owned(),
        )
    }

    /// Prints `kind` with `fields` in JSON mode, and sends it to syslog.
    /// (The steps that only print check for JSON mode before building
    /// their fields, so that a run without it allocates nothing.)
    fn event(&self, kind: Kind, fields: &[(&str, Value)]) {
        if !self.json() {
            return;
        }
        let subject = Subject {
            key: self.key.as_deref(),
            args: self.args,
            host: self.host,
        };
        let line = events::line(kind, &subject, SystemTime::now(), fields);
        events::print(&line);
        if let Some(syslog) = &self.syslog {
            syslog.send_message(kind.severity(), &line);
        }
    }
}

/// cronlock's error line when the settings could not be read (so there is
/// no [`Watcher`]): an `error` event if `CRONLOCK_LOG_FORMAT=json` is in the
/// environment, else `cronlock: ...`.
pub fn early_error(args: &[OsString], err: &anyhow::Error) {
    let json = std::env::var("CRONLOCK_LOG_FORMAT")
        .ok()
        .and_then(|format| LogFormat::parse(&format))
        == Some(LogFormat::Json);
    if !json {
        events::print(&format!("cronlock: {err:#}"));
        return;
    }
    let host = crate::lock::owner::host_name();
    let subject = Subject {
        key: None,
        args,
        host: &host,
    };
    let fields = [
        ("exit_code", Value::from(Outcome::Error.code())),
        ("message", Value::from(format!("{err:#}"))),
    ];
    events::print(&events::line(Kind::Error, &subject, SystemTime::now(), &fields));
}
