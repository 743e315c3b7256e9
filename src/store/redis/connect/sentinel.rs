//! Asking Sentinel where the master is (`CRONLOCK_USE_SENTINEL=yes`).

use std::time::Duration;

use anyhow::anyhow;

use super::wire::{Connection, WireError};
use super::{Failure, Reply};
use crate::net::tls::TlsSetup;
use crate::report::Report;
use crate::store::redis::settings::Sentinel;

/// Asks each sentinel in turn for the master's address. An unknown master
/// name is final (as in the original); a sentinel that cannot be reached
/// passes the question to the next, and when none answers the caller's
/// reconnect policy applies. TLS, when on, applies to sentinels too.
pub(super) fn master(
    sentinel: &Sentinel,
    tls: Option<&TlsSetup>,
    timeout: Option<Duration>,
    report: &Report,
) -> Result<(String, u16), Failure> {
    let mut last_error = None;
    for (host, port) in &sentinel.nodes {
        report.info(format_args!(
            "asking sentinel at '{host}' port '{port}' for master '{}'",
            sentinel.master
        ));
        let where_ = format!("sentinel at '{host}' port '{port}'");
        let question = ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&sentinel.master)
            .get_packed_command();
        let reply = Connection::open(host, *port, tls, timeout).and_then(|mut connection| {
            if let Some(password) = &sentinel.password {
                connection.authenticate_with_first_request(None, password);
            }
            connection.exchange(&question, 1)
        });
        let mut replies = match reply {
            Ok(replies) => replies,
            Err(WireError::Fatal(why)) => return Err(Failure::Fatal(anyhow!("{where_}: {why}"))),
            Err(err) => {
                report.info(format_args!("{where_}: {err}"));
                last_error = Some(format!("{where_}: {err}"));
                continue;
            }
        };
        let answer = replies.pop().unwrap_or(Reply::Nil);
        if let Some(Reply::Error(err)) = replies.first() {
            return Err(Failure::Fatal(anyhow!(
                "invalid auth for {where_} (CRONLOCK_SENTINEL_AUTH): {}",
                err
            )));
        }
        return match answer {
            Reply::Nil => Err(Failure::Fatal(anyhow!(
                "unknown master '{}' at {where_}",
                sentinel.master
            ))),
            Reply::Array(items) if items.len() == 2 => {
                let text = |v: &Reply| match v {
                    Reply::Bulk(bytes) => String::from_utf8(bytes.clone()).ok(),
                    Reply::Status(s) => Some(s.clone()),
                    _ => None,
                };
                match (text(&items[0]), text(&items[1]).and_then(|p| p.parse::<u16>().ok())) {
                    (Some(master_host), Some(master_port)) => {
                        report.info(format_args!(
                            "sentinel names master at '{master_host}' port '{master_port}'"
                        ));
                        Ok((master_host, master_port))
                    }
                    _ => Err(Failure::Fatal(anyhow!("{where_} gave an unreadable master address"))),
                }
            }
            Reply::Error(err) if err.code() == "NOAUTH" => Err(Failure::Fatal(anyhow!(
                "{where_} wants a password: set CRONLOCK_SENTINEL_AUTH"
            ))),
            Reply::Error(err) => Err(Failure::Fatal(anyhow!("{where_} answered: {}", err))),
            other => Err(Failure::Fatal(anyhow!("{where_} gave an unexpected answer: {other:?}"))),
        };
    }
    Err(match last_error {
        Some(why) => Failure::Connect(why),
        None => Failure::Fatal(anyhow!("CRONLOCK_SENTINEL_HOST names no sentinel")),
    })
}
