//! `cronlockctl history` and `cronlockctl check`: what the store keeps of a
//! job's runs (`CRONLOCK_HISTORY`), across every host that ran it.
//!
//! `check --max-age` is the alert for a job that ran nowhere: every host
//! skipped it (exit 200 is no failure, so nothing else alerts), or every
//! run failed. It reads the job's last success, which the store keeps
//! however many runs come after it.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::{text, utc, Request};
use crate::config::Config;
use crate::lock::History;
use crate::report::Report;
use crate::store;

/// `N`, `Ns`, `Nm`, `Nh` or `Nd` as seconds.
pub(super) fn age(value: &str) -> Result<u64> {
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&seconds| seconds > 0)
        .ok_or_else(|| anyhow!("--max-age {value:?}: expected an age such as 90s, 30m, 1h or 2d"))
}

/// The job key and its history.
fn read(config: &Config, report: &Report, request: &Request) -> Result<(Vec<u8>, History)> {
    let key = match (request.names_a_job(), &request.operands[..]) {
        (true, []) => super::job_key(config, request)?,
        (false, [key]) => key
            .to_str()
            .context("the key is not valid UTF-8")?
            .as_bytes()
            .to_vec(),
        _ => bail!(
            "{} takes the job's key (--key K, -- COMMAND..., or the full key as CRONLOCK_LOCK_KEY gives it); see cronlockctl --help",
            request.command
        ),
    };
    let mut store = store::open(config, report)?;
    if !store.keeps_history() {
        bail!("the {} store keeps no run history yet", store.kind());
    }
    let history = store.run_history(&key)?;
    Ok((key, history))
}

/// One run's record as a line: when, where, how it ended.
fn describe(record: &str) -> String {
    let Ok(run) = serde_json::from_str::<Value>(record) else {
        return format!("(a record that is not JSON: {record})");
    };
    let number = |field: &str| run.get(field).and_then(Value::as_i64);
    let mut line = match number("start") {
        Some(start) => utc(start),
        None => "(no start)".to_string(),
    };
    if let Some(node) = run.get("node").and_then(Value::as_str) {
        line.push_str(&format!("  {node}"));
    }
    if let Some(pid) = number("pid") {
        line.push_str(&format!(" pid {pid}"));
    }
    if let Some(exit) = number("exit") {
        line.push_str(&format!("  exit {exit}"));
    }
    if let (Some(start), Some(end)) = (number("start"), number("ended")) {
        line.push_str(&format!("  ran {} s", (end - start).max(0)));
    }
    if let Some(token) = run.get("token").and_then(Value::as_u64) {
        line.push_str(&format!("  token {token}"));
    }
    if let Some(command) = run.get("command").and_then(Value::as_str) {
        line.push_str(&format!("  command {command:?}"));
    }
    line
}

/// `history`: the runs kept, newest first. Exit 0, or 1 when none is kept.
pub(super) fn history(config: &Config, report: &Report, request: &Request) -> Result<u8> {
    if request.max_age.is_some() {
        bail!("--max-age goes with check; see cronlockctl --help");
    }
    let (key, history) = read(config, report, request)?;
    if history.runs.is_empty() {
        eprintln!(
            "cronlockctl: no runs of {} are kept (is CRONLOCK_HISTORY set for the job?)",
            text(&key)
        );
        return Ok(1);
    }
    for record in &history.runs {
        if request.json {
            println!("{record}");
        } else {
            println!("{}", describe(record));
        }
    }
    Ok(0)
}

/// `check --max-age AGE`: 0 when a run succeeded within AGE (by this host's
/// clock), 1 when none did.
pub(super) fn check(config: &Config, report: &Report, request: &Request) -> Result<u8> {
    let Some(max_age) = request.max_age else {
        bail!("check needs --max-age, such as --max-age 1h");
    };
    let (key, history) = read(config, report, request)?;
    let now = crate::config::slot::now();
    let ended = history
        .last_success
        .as_deref()
        .and_then(|record| serde_json::from_str::<Value>(record).ok())
        .and_then(|run| run.get("ended").and_then(Value::as_i64));
    let shown = text(&key);
    let fresh = ended.is_some_and(|ended| now - ended <= max_age as i64);
    if request.json {
        let last: Value = history
            .last_success
            .as_deref()
            .and_then(|record| serde_json::from_str(record).ok())
            .unwrap_or(Value::Null);
        println!(
            "{}",
            serde_json::json!({ "key": shown, "max_age": max_age, "ok": fresh, "last_success": last })
        );
    } else if fresh {
        println!(
            "{shown}: last success {}",
            describe(history.last_success.as_deref().unwrap_or(""))
        );
    } else {
        match ended {
            Some(ended) => println!(
                "{shown}: no successful run within {max_age} s; the last ended {} ({} s ago)",
                utc(ended),
                now - ended
            ),
            None => println!("{shown}: no successful run is on record"),
        }
    }
    Ok(if fresh { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_several_units() {
        assert_eq!(age("90").unwrap(), 90);
        assert_eq!(age("90s").unwrap(), 90);
        assert_eq!(age("30m").unwrap(), 1800);
        assert_eq!(age("1h").unwrap(), 3600);
        assert_eq!(age("2d").unwrap(), 172_800);
        for bad in ["", "0", "h", "1w", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_reads_as_one_line() {
        let line = describe(
            r#"{"node":"web1","pid":42,"start":1764460800,"command":"sh -c job","ended":1764460812,"exit":0,"token":17}"#,
        );
        assert_eq!(
            line,
            "2025-11-30 00:00:00 UTC  web1 pid 42  exit 0  ran 12 s  token 17  command \"sh -c job\""
        );
    }
}
