//! Asking Sentinel where the master is (`CRONLOCK_USE_SENTINEL=yes`).

use anyhow::anyhow;
use redis::{RedisConnectionInfo, Value};

use super::{brief, connection_info, open, Failure};
use crate::config::{RedisTarget, Sentinel};
use crate::report::Report;

/// Asks each sentinel in turn for the master's address. An unknown master
/// name is final (as in the original); a sentinel that cannot be reached
/// passes the question to the next, and when none answers the caller's
/// reconnect policy applies.
pub(super) fn master(sentinel: &Sentinel, target: &RedisTarget, report: &Report) -> Result<(String, u16), Failure> {
    let mut last_error = None;
    for (host, port) in &sentinel.nodes {
        report.info(format_args!(
            "asking sentinel at '{host}' port '{port}' for master '{}'",
            sentinel.master
        ));
        let mut redis_info = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(password) = &sentinel.password {
            redis_info = redis_info.set_password(password);
        }
        let info = connection_info(host, *port, target, redis_info).map_err(Failure::Fatal)?;
        let reply = open(info, target.timeout).and_then(|mut connection| {
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&sentinel.master)
                .query::<Value>(&mut connection)
        });
        match reply {
            Ok(Value::Nil) => {
                return Err(Failure::Fatal(anyhow!(
                    "unknown master '{}' at sentinel '{host}' port '{port}'",
                    sentinel.master
                )))
            }
            Ok(Value::Array(items)) if items.len() == 2 => {
                let text = |v: &Value| match v {
                    Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                    Value::SimpleString(s) => Some(s.clone()),
                    _ => None,
                };
                let master_host = text(&items[0]);
                let master_port = text(&items[1]).and_then(|p| p.parse::<u16>().ok());
                if let (Some(master_host), Some(master_port)) = (master_host, master_port) {
                    report.info(format_args!(
                        "sentinel names master at '{master_host}' port '{master_port}'"
                    ));
                    return Ok((master_host, master_port));
                }
                return Err(Failure::Fatal(anyhow!(
                    "sentinel at '{host}' port '{port}' gave an unreadable master address"
                )));
            }
            Ok(other) => {
                return Err(Failure::Fatal(anyhow!(
                    "sentinel at '{host}' port '{port}' gave an unexpected answer: {other:?}"
                )))
            }
            Err(err) if err.kind() == redis::ErrorKind::AuthenticationFailed => {
                return Err(Failure::Fatal(anyhow!(
                    "invalid auth for sentinel at '{host}' port '{port}' (CRONLOCK_SENTINEL_AUTH)"
                )))
            }
            Err(err) => {
                report.info(format_args!("sentinel at '{host}' port '{port}': {}", brief(&err)));
                last_error = Some(err);
            }
        }
    }
    Err(match last_error {
        Some(err) => Failure::Connect(err),
        None => Failure::Fatal(anyhow!("CRONLOCK_SENTINEL_HOST names no sentinel")),
    })
}
