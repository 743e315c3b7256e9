//! `CRONLOCK_LOG_FORMAT=json`: one JSON object per line for each event of
//! a run, on stderr and as the message of the syslog line. Every object
//! opens with the same fields in the same order (`event`, `time`, `key`,
//! `command`, `host`, `pid`), then the event's own; docs/watching.md lists
//! them, and they only ever grow.

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::report::clock;

/// The longest key, in bytes, before it is cut and ends in `...`.
const KEY_LIMIT: usize = 512;
/// The longest command line, in bytes, before it is cut and ends in `...`.
const COMMAND_LIMIT: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The lock was taken; the command starts.
    Taken,
    /// Another run holds the lock; the command did not run (exit 200).
    Held,
    /// The lock is held and `CRONLOCK_WAIT` waits for it.
    Waiting,
    /// The command ended and the lock was given back (or kept for its grace).
    Released,
    /// The lock was lost while the command ran; its group was killed.
    Lost,
    /// The command outlived `CRONLOCK_TIMEOUT` and its group was killed.
    Timeout,
    /// cronlock itself failed (exit 201).
    Error,
    /// Something beside the run failed (a ping, the metrics, syslog); the
    /// run goes on and its exit status is unchanged.
    Warning,
}

impl Kind {
    /// The `event` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Taken => "taken",
            Kind::Held => "held",
            Kind::Waiting => "waiting",
            Kind::Released => "released",
            Kind::Lost => "lost",
            Kind::Timeout => "timeout",
            Kind::Error => "error",
            Kind::Warning => "warning",
        }
    }

    /// The syslog severity: 3 (err), 4 (warning) or 6 (info).
    pub fn severity(self) -> u8 {
        match self {
            Kind::Taken | Kind::Held | Kind::Waiting | Kind::Released => 6,
            Kind::Timeout | Kind::Warning => 4,
            Kind::Lost | Kind::Error => 3,
        }
    }
}

/// Who the events are about: the same in every event of a run.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The lock's key, once it is known.
    pub key: Option<&'a [u8]>,
    /// The command and its arguments.
    pub args: &'a [OsString],
    /// `CRONLOCK_NODE`: the host name unless set.
    pub host: &'a str,
}

/// One event as a line of JSON (without the newline): the common fields,
/// then `fields` in their order.
pub fn line(kind: Kind, subject: &Subject, at: SystemTime, fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    let key = subject
        .key
        .map_or(Value::Null, |key| Value::String(cut(key, KEY_LIMIT)));
    let command = crate::lock::owner::command_line(subject.args);
    let common = [
        ("event", Value::from(kind.name())),
        ("time", Value::String(clock::rfc3339(at))),
        ("key", key),
        ("command", Value::String(cut(&command, COMMAND_LIMIT))),
        ("host", Value::from(subject.host)),
        ("pid", Value::from(std::process::id())),
    ];
    for (i, (name, value)) in common.iter().chain(fields).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*name).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// Writes `line` and a newline to stderr in one write, so that lines of
/// several processes sharing the stream never interleave.
pub fn print(line: &str) {
    let mut whole = String::with_capacity(line.len() + 1);
    whole.push_str(line);
    whole.push('\n');
    let _ = std::io::stderr().write_all(whole.as_bytes());
}

/// Seconds as the events and metrics give them: to the millisecond.
pub fn seconds(d: Duration) -> Value {
    Value::from((d.as_millis() as f64) / 1000.0)
}

/// `bytes` as text (U+FFFD for what is not UTF-8), cut at a character
/// boundary at most `limit` bytes in and then ended with `...`.
fn cut(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= limit {
        return text.into_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn subject<'a>(key: Option<&'a [u8]>, args: &'a [OsString]) -> Subject<'a> {
        Subject {
            key,
            args,
            host: "web1",
        }
    }

    #[test]
    fn the_common_fields_come_first_in_order() {
        let args = [OsString::from("sh"), OsString::from("-c"), OsString::from("exit 3")];
        let at = UNIX_EPOCH + Duration::from_millis(1_764_460_800_250);
        let text = line(
            Kind::Released,
            &subject(Some(b"cronlock.k"), &args),
            at,
            &[
                ("exit_code", Value::from(3)),
                ("duration_seconds", seconds(Duration::from_millis(1500))),
            ],
        );
        let pid = std::process::id();
        assert_eq!(
            text,
            format!(
                r#"{{"event":"released","time":"2025-11-30T00:00:00.250Z","key":"cronlock.k","command":"sh -c exit 3","host":"web1","pid":{pid},"exit_code":3,"duration_seconds":1.5}}"#
            )
        );
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["event"], "released");
    }

    #[test]
    fn odd_bytes_stay_on_one_line_and_long_values_are_cut() {
        use std::os::unix::ffi::OsStringExt;
        let args = [
            OsString::from("echo \"a\"\n\u{2028}"),
            OsString::from_vec(vec![0xff; 3000]),
        ];
        let text = line(
            Kind::Error,
            &subject(None, &args),
            UNIX_EPOCH,
            &[("message", Value::from("x\ny"))],
        );
        assert!(!text.contains('\n'), "{text}");
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["key"], Value::Null);
        let command = parsed["command"].as_str().expect("a string");
        assert!(command.starts_with("echo \"a\"\n\u{2028} \u{fffd}") && command.ends_with("..."));
        assert!(command.len() <= COMMAND_LIMIT + 3, "{}", command.len());
        assert_eq!(parsed["message"], "x\ny");
    }

    #[test]
    fn severities_follow_syslog() {
        let expected = [
            (Kind::Taken, 6),
            (Kind::Waiting, 6),
            (Kind::Timeout, 4),
            (Kind::Warning, 4),
            (Kind::Lost, 3),
            (Kind::Error, 3),
        ];
        for (kind, severity) in expected {
            assert_eq!(kind.severity(), severity, "{kind:?}");
        }
    }
}
