//! `cronlockctl fence`: whether a job's fencing token (`CRONLOCK_FENCING`)
//! is still the newest for its lock, so that a shell job can check before
//! it writes. Exit 0 newest, 1 stale (or never given), 2 error.

use anyhow::{bail, Context, Result};

use super::Request;
use crate::config::Config;
use crate::report::Report;
use crate::store;

/// `fence`: 0 while the token is the key's newest, 1 once it is not.
pub(super) fn run(config: &Config, report: &Report, request: &Request) -> Result<u8> {
    let named = request.names_a_job();
    let operand = |i: usize| -> Result<&str> {
        request.operands[i]
            .to_str()
            .context("fence: an operand is not valid UTF-8")
    };
    let (key, token) = match (named, request.operands.len()) {
        (true, 1) => (super::job_key(config, request)?, operand(0)?.to_string()),
        (false, 2) => (operand(0)?.as_bytes().to_vec(), operand(1)?.to_string()),
        (false, 0) => {
            let from_job = |name: &str| {
                std::env::var(name).with_context(|| {
                    format!("{name} is not set: give KEY TOKEN, or run inside a job with CRONLOCK_FENCING=on")
                })
            };
            let key = from_job("CRONLOCK_LOCK_KEY")?;
            (key.into_bytes(), from_job("CRONLOCK_FENCING_TOKEN")?)
        }
        _ => bail!("fence takes KEY TOKEN, or --key K (or -- COMMAND...) and TOKEN; see cronlockctl --help"),
    };
    let token: u64 = token
        .parse()
        .with_context(|| format!("fence: {token:?} is not a fencing token (a whole number)"))?;
    let mut store = store::open(config, report)?;
    if let crate::lock::Fencing::Unsupported(why) = store.fencing() {
        bail!("the {} store has no fencing tokens: {why}", store.kind());
    }
    let newest = store.newest_fence(&key)?;
    if newest == Some(token) {
        return Ok(0);
    }
    let shown = super::text(&key);
    match newest {
        Some(newest) if newest > token => {
            eprintln!("cronlockctl: fencing token {token} of {shown} is stale: {newest} is newer")
        }
        Some(newest) => {
            eprintln!("cronlockctl: fencing token {token} of {shown} was never given (the newest is {newest})")
        }
        None => eprintln!("cronlockctl: no fencing token was ever given for {shown}"),
    }
    Ok(1)
}
