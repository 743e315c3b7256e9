//! Who holds a lock: the record cronlock keeps beside it (coolock's node
//! name, plus what an operator needs at 3 a.m.: the pid, the start time and
//! the command line). It is one line of JSON, so scripts can parse it:
//! `{"node":"web1","pid":4242,"start":1764460800,"command":"sh -c job"}`.
//! A store that can adds `"ended":<unix time>` when the command ends and
//! the lock is kept for its grace or hold.
//!
//! The record never replaces the lock's own value, which stays the
//! original's expiry time: hosts running the original script read locks as
//! before and simply ignore the record.

use std::ffi::OsString;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;

/// The record for a run on `node`, by process `pid`, started at `start`
/// (unix seconds, this host's clock), running `args`.
pub fn record(node: &str, pid: u32, start: i64, args: &[OsString]) -> String {
    let command = command_line(args);
    let mut out = String::from("{\"node\":");
    json_string(&mut out, node.as_bytes());
    let _ = write!(out, ",\"pid\":{pid},\"start\":{start},\"command\":");
    json_string(&mut out, &command);
    out.push('}');
    out
}

/// The arguments joined by spaces, as `'${@}'` expands inside a string.
pub fn command_line(args: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(arg.as_bytes());
    }
    out
}

/// `record` with the time the command ended added, for a lock kept after
/// it; a record that is not a JSON object, or already says so, is kept.
pub fn with_ended(record: &str, ended: i64) -> String {
    match record.strip_suffix('}') {
        Some(head) if !record.contains("\"ended\":") => format!("{head},\"ended\":{ended}}}"),
        _ => record.to_string(),
    }
}

/// The record of a finished run for `CRONLOCK_HISTORY`: the owner record
/// with when it ended, its exit status and its fencing token (if any):
/// `{..., "ended":1764460812,"exit":0,"token":17}`.
pub fn run_record(owner: &str, ended: i64, exit: u8, token: Option<u64>) -> String {
    let ended = with_ended(owner, ended);
    let head = ended.strip_suffix('}').unwrap_or(&ended);
    match token {
        Some(token) => format!("{head},\"exit\":{exit},\"token\":{token}}}"),
        None => format!("{head},\"exit\":{exit}}}"),
    }
}

/// The host name, the default of `CRONLOCK_NODE`.
pub fn host_name() -> String {
    host_name_or("unknown")
}

/// The host name, or `fallback` when it cannot be read or is not UTF-8.
pub fn host_name_or(fallback: &str) -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| fallback.to_string())
}

/// A JSON string. Bytes that are not UTF-8 (a command line may hold any)
/// become U+FFFD, so the record always parses.
fn json_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn the_end_is_added_once() {
        let record = r#"{"node":"a","pid":1,"start":5,"command":"x"}"#;
        let ended = with_ended(record, 9);
        assert_eq!(ended, r#"{"node":"a","pid":1,"start":5,"command":"x","ended":9}"#);
        assert_eq!(with_ended(&ended, 10), ended);
        assert_eq!(with_ended("", 10), "");
    }

    #[test]
    fn the_record_is_one_line_of_json_whatever_the_command() {
        let args = vec![
            OsString::from("sh"),
            OsString::from("-c"),
            OsString::from("echo \"hi\"\n\\ \u{1}"),
            OsString::from_vec(vec![0xff]),
        ];
        assert_eq!(
            record("web1", 42, 1_764_460_800, &args),
            r#"{"node":"web1","pid":42,"start":1764460800,"command":"sh -c echo \"hi\"\n\\ \u0001 �"}"#
        );
    }
}
