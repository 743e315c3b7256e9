//! The DynamoDB store (`CRONLOCK_URL=dynamodb://TABLE`): one item per lock,
//! in lock-exec's format, so lock-exec hosts and cronlock hosts can share a
//! table and exclude each other.
//!
//! An item is lock-exec's `key` (S: the lock's key) and `expire` (N: unix
//! nanoseconds; the lock may be taken once the clock has passed it), plus
//! cronlock's own attributes, which lock-exec ignores: `cronlock_token` (a
//! random proof of ownership that release and renewal check),
//! `cronlock_owner` (the owner record, see `crate::lock::owner`, with `"ended"`
//! added once a release keeps the lock), `cronlock_start` and
//! `cronlock_end` (unix seconds), and `cronlock_ttl` (unix seconds, for an
//! optional DynamoDB TTL).
//! Taking is one `PutItem` under lock-exec's own condition,
//! `attribute_not_exists(#key) OR expire < :now`, so exactly one contender
//! wins. Every later step is conditioned on our token, so a release never
//! touches an item that someone else (cronlock or lock-exec) has written.
//!
//! cronlock's lock times are whole seconds: a lock held through second E is
//! written as `expire` = the last nanosecond of E, so "held while E >= now"
//! and lock-exec's "taken once expire < now" say the same thing.
//!
//! `CRONLOCK_FENCING`: a job key's fencing token is the item whose key is
//! the job key followed by [`FENCE_TAIL`] (a NUL, which no lock's name can
//! hold: names come from the environment and the command line), with one
//! number, `cronlock_fence`, and no `expire` nor `cronlock_ttl`, so that
//! neither a take nor a TTL ever touches it. DynamoDB cannot check one item
//! and return another's new value in one request (a transaction returns
//! none), so the counter is bumped first (`ADD`, which returns the new
//! value) and the lock read consistently after: a later holder can only
//! take the lock after that read, so it bumps later and gets more.
//!
//! `CRONLOCK_HISTORY`: a job key's runs are one item whose key is the job
//! key followed by [`RUNS_TAIL`] (a NUL again), with the records, newest
//! first, in the list `cronlock_runs`, the last success in
//! `cronlock_succeeded` and a number, `cronlock_version`, and again no
//! `expire` nor TTL. A run reads the item consistently, puts its record in
//! front, cuts the list to the count kept, and writes it back with one
//! `UpdateItem` (the last success too, when the run succeeded) on the
//! condition that the version is still the one it read; another run's
//! write in between fails the condition, and the run reads again. An item
//! is at most 400 KB, so the records kept are also cut to [`HISTORY_BYTES`],
//! the oldest first, and a record over [`RECORD_BYTES`] is not kept; every
//! write costs a write unit per KB of the whole item.
//!
//! DynamoDB has no clock to ask, so every time here is this host's clock
//! (lock-exec does the same); the README says how far clock skew moves a
//! lock. The SDK is async: this store alone starts a current-thread tokio
//! runtime and blocks on each request.

pub mod settings;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use tokio::runtime::Runtime;

use crate::key::KeyStyle;
use crate::lock::{Acquire, Claim, Fencing, History, Keep, Lease, LockStore, Release, Renewal, Seen};
use crate::report::Report;
use settings::DynamoTarget;

const NANOS: i64 = 1_000_000_000;
/// The longest pause between two retries of one request.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// lock-exec's attribute names, and ours beside them.
const KEY: &str = "key";
const EXPIRE: &str = "expire";
const TOKEN: &str = "cronlock_token";
const OWNER: &str = "cronlock_owner";
const START: &str = "cronlock_start";
const END: &str = "cronlock_end";
const TTL: &str = "cronlock_ttl";
/// The longest key DynamoDB takes, in bytes.
const MAX_KEY: usize = 2048;
/// A fencing counter's number.
const FENCE: &str = "cronlock_fence";
/// What a fencing counter's key adds to its job key's.
const FENCE_TAIL: &str = "\u{0}fence";
/// What the key of a job's runs (`CRONLOCK_HISTORY`) adds to its job key's.
const RUNS_TAIL: &str = "\u{0}runs";
/// The runs' records, newest first (L of S).
const RUNS: &str = "cronlock_runs";
/// The last success's record (S).
const SUCCEEDED: &str = "cronlock_succeeded";
/// The runs item's version, one more at every write (N).
const VERSION: &str = "cronlock_version";
/// The most bytes of records one job's runs keep: with a last success of
/// at most [`RECORD_BYTES`], the key and the attributes' names, the item
/// stays well under DynamoDB's 400 KB.
const HISTORY_BYTES: usize = 256 * 1024;
/// The largest record kept.
const RECORD_BYTES: usize = 64 * 1024;
/// Reads and conditional writes of one job's runs before giving up: each
/// failed one is another run's record written, so this many runs ending
/// together all get theirs in.
const HISTORY_ROUNDS: u32 = 100;

/// Locks as items of one DynamoDB table.
pub struct DynamoLock {
    table: String,
    /// For messages: where the SDK sends requests.
    region: String,
    runtime: Runtime,
    client: Client,
    /// Our owner record (see `crate::lock::owner`), kept from the take so that a
    /// release that keeps the lock can add when the command ended.
    owner: Option<String>,
    /// `CRONLOCK_KEY_STYLE=lock-exec`: the lock is shared with lock-exec hosts.
    lock_exec: bool,
}

impl DynamoLock {
    /// The client for `target.table`, with credentials, region and endpoint
    /// found as the AWS CLI finds them. Sends nothing to DynamoDB (finding a
    /// region may ask the instance metadata service when nothing else names one).
    pub fn new(target: &DynamoTarget, report: &Report) -> Result<DynamoLock> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| anyhow!("starting the DynamoDB client: {err}"))?;
        // rustls with ring, as the Redis store's TLS: the SDK's default
        // client would bring aws-lc-rs as a second crypto library.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut timeouts = TimeoutConfig::builder();
        if let Some(timeout) = target.connection.timeout {
            timeouts = timeouts.connect_timeout(timeout).operation_attempt_timeout(timeout);
        }
        let retry = RetryConfig::standard()
            .with_max_attempts(target.connection.reconnect_attempts.saturating_add(1))
            .with_initial_backoff(
                Duration::from_secs(target.connection.reconnect_backoff).max(Duration::from_millis(10)),
            )
            .with_max_backoff(MAX_BACKOFF);
        let sdk = runtime.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .timeout_config(timeouts.build())
                .retry_config(retry)
                .load(),
        );
        let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
            anyhow!(
                "DynamoDB table {:?}: no AWS region; set AWS_REGION (or a region in the AWS profile)",
                target.table
            )
        })?;
        report.info(format_args!(
            "DynamoDB table {} in region {region}, times from this host's clock",
            target.table
        ));
        Ok(DynamoLock {
            table: target.table.clone(),
            region,
            client: Client::new(&sdk),
            runtime,
            owner: None,
            lock_exec: false,
        })
    }

    /// The store for `style`: under `lock-exec` it gives no fencing tokens.
    pub fn with_key_style(mut self, style: KeyStyle) -> DynamoLock {
        self.lock_exec = style == KeyStyle::LockExec;
        self
    }

    /// One line for a failed request: what was being done, and why, without
    /// the SDK's debug dump (which repeats the request).
    fn error<E>(&self, doing: &str, err: SdkError<E>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let table = &self.table;
        let region = &self.region;
        let why = match &err {
            SdkError::ServiceError(service) => match service.err().code() {
                Some("ResourceNotFoundException") => {
                    return anyhow!(
                        "DynamoDB table {table:?} not found in region {region}; create it as the README shows"
                    )
                }
                Some(code) => format!("{code}: {}", service.err().message().unwrap_or("no message")),
                None => format!(
                    "HTTP {} without a DynamoDB error: is the endpoint DynamoDB?",
                    service.raw().status().as_u16()
                ),
            },
            SdkError::TimeoutError(_) => "no answer in time (CRONLOCK_REDIS_TIMEOUT)".to_string(),
            SdkError::DispatchFailure(dispatch) if dispatch.is_io() || dispatch.is_timeout() => {
                format!("cannot reach DynamoDB: {}", chain(&err))
            }
            _ if chain(&err).contains("no credentials found") => "no AWS credentials found; set AWS_ACCESS_KEY_ID and \
                AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the host an instance or container role"
                .to_string(),
            SdkError::DispatchFailure(_) => format!("{}; is the endpoint DynamoDB?", chain(&err)),
            SdkError::ResponseError(_) => format!("an answer that is not DynamoDB's: {}", chain(&err)),
            _ => chain(&err),
        };
        anyhow!("DynamoDB table {table:?} ({region}): {doing}: {why}")
    }

    /// The item of `key`, read consistently; `None` when there is none.
    fn read(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send();
        match self.runtime.block_on(request) {
            Ok(out) => Ok(out.item),
            Err(err) => Err(self.error("reading the lock", err)),
        }
    }
}

impl LockStore for DynamoLock {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn acquire(&mut self, claim: &Claim) -> Result<Acquire> {
        let key = key_text(claim.key)?;
        self.owner = claim.owner.map(str::to_string);
        // A failed take whose answer lacks the item (an emulator that
        // ignores ReturnValuesOnConditionCheckFailure) reads it; when the
        // item is gone by then, the take is tried again.
        for _ in 0..3 {
            let now = now_nanos();
            let start = now.div_euclid(NANOS);
            let expires_at = start + claim.release + 1;
            let token = crate::net::random::token();
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, AttributeValue::S(key.to_string()))
                .item(EXPIRE, number(last_nano(expires_at)))
                .item(TOKEN, AttributeValue::S(token.clone()))
                .item(START, number(start))
                .item(TTL, number(expires_at + 1))
                .condition_expression("attribute_not_exists(#key) OR #expire < :now")
                .expression_attribute_names("#key", KEY)
                .expression_attribute_names("#expire", EXPIRE)
                .expression_attribute_values(":now", number(now))
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            if let Some(owner) = claim.owner {
                put = put.item(OWNER, AttributeValue::S(owner.to_string()));
            }
            let mut lease = Lease::new(claim.key, start, expires_at);
            lease.token = Some(token);
            let failed = match self.runtime.block_on(put.send()) {
                Ok(out) => {
                    return Ok(match out.attributes() {
                        Some(old) if !old.is_empty() => Acquire::TakenOver {
                            lease,
                            expired_ago: start - expire_of(old).div_euclid(NANOS),
                        },
                        _ => Acquire::Taken(lease),
                    })
                }
                Err(err) => err,
            };
            // The holder's item, when the take failed because the lock is held.
            let returned = match failed.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(held)) => held.item().cloned(),
                _ => return Err(self.error("taking the lock", failed)),
            };
            let holder = match returned {
                Some(item) if !item.is_empty() => Some(item),
                _ => self.read(key)?,
            };
            if let Some(item) = holder {
                // Our own item: the SDK sent the put again after an answer
                // that did not come in time, and the first one had taken
                // the lock (seen with a herd of 1,000 runs at one instant).
                if item.get(TOKEN).and_then(|t| t.as_s().ok()) == lease.token.as_ref() {
                    return Ok(Acquire::Taken(lease));
                }
                let until = expire_of(&item).div_euclid(NANOS);
                return Ok(Acquire::Held {
                    expires_in: until.saturating_sub(start).max(0),
                });
            }
        }
        Ok(Acquire::Held { expires_in: 0 })
    }

    fn release(&mut self, lease: &Lease, keep: Keep) -> Result<Release> {
        let key = key_text(&lease.key)?;
        let token = lease.token.clone().unwrap_or_default();
        let now = now_nanos().div_euclid(NANOS);
        let until = keep.until(lease.start, now);
        // A missing item (reset while the command ran) counts as ours, as in
        // the other stores: the grace is claimed again.
        let ours = "attribute_not_exists(#key) OR #token = :token";
        if until <= now {
            let request = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(key.to_string()))
                .condition_expression(ours)
                .expression_attribute_names("#key", KEY)
                .expression_attribute_names("#token", TOKEN)
                .expression_attribute_values(":token", AttributeValue::S(token))
                .send();
            return match self.runtime.block_on(request) {
                Ok(_) => Ok(Release::Dropped),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(Release::NotOurs)
                }
                Err(err) => Err(self.error("releasing the lock", err)),
            };
        }
        // The owner record says when the command ended, so an operator can
        // tell a lock in its grace from a running one.
        let (set_owner, owner) = match &self.owner {
            Some(owner) => (", #owner = :owner", Some(crate::lock::owner::with_ended(owner, now))),
            None => ("", None),
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .update_expression(format!(
                "SET #expire = :expire, #token = :token, #start = :start, #end = :end, #ttl = :ttl{set_owner}"
            ))
            .condition_expression(ours)
            .expression_attribute_names("#key", KEY)
            .expression_attribute_names("#expire", EXPIRE)
            .expression_attribute_names("#token", TOKEN)
            .expression_attribute_names("#start", START)
            .expression_attribute_names("#end", END)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":expire", number(last_nano(until)))
            .expression_attribute_values(":token", AttributeValue::S(token))
            .expression_attribute_values(":start", number(lease.start))
            .expression_attribute_values(":end", number(now))
            .expression_attribute_values(":ttl", number(until + 1));
        if let Some(owner) = owner {
            request = request
                .expression_attribute_names("#owner", OWNER)
                .expression_attribute_values(":owner", AttributeValue::S(owner));
        }
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(Release::Kept { until }),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Release::NotOurs)
            }
            Err(err) => Err(self.error("releasing the lock", err)),
        }
    }

    fn fencing(&self) -> Fencing {
        fencing(self.lock_exec)
    }

    /// The counter bumped first, the lock read after; see the module's
    /// comment. The SDK may send a bump again after an answer that did not
    /// come in time: a token skipped is harmless.
    fn fence(&mut self, lease: &Lease, name: &[u8]) -> Result<Option<u64>> {
        let key = key_text(&lease.key)?;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(fence_key(name)?))
            .update_expression("ADD #fence :one")
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_values(":one", number(1))
            .return_values(ReturnValue::UpdatedNew)
            .send();
        let bumped = match self.runtime.block_on(request) {
            Ok(out) => out.attributes,
            Err(err) => return Err(self.error("bumping the fencing counter", err)),
        };
        let token = fence_of(bumped.as_ref())
            .and_then(|token| token.ok_or_else(|| anyhow!("the fencing counter's bump returned no number")))
            .with_context(|| format!("DynamoDB table {:?}", self.table))?;
        let ours = match (self.read(key)?, &lease.token) {
            (Some(item), Some(ours)) => item.get(TOKEN).and_then(|t| t.as_s().ok()) == Some(ours),
            _ => false,
        };
        Ok(ours.then_some(token))
    }

    fn newest_fence(&mut self, name: &[u8]) -> Result<Option<u64>> {
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(fence_key(name)?))
            .consistent_read(true)
            .send();
        match self.runtime.block_on(request) {
            Ok(out) => fence_of(out.item.as_ref()).with_context(|| format!("DynamoDB table {:?}", self.table)),
            Err(err) => Err(self.error("reading the fencing counter", err)),
        }
    }

    /// Not under lock-exec's style: that table is lock-exec's too.
    fn keeps_history(&self) -> bool {
        !self.lock_exec
    }

    /// Read, put in front, write back on the condition that the version
    /// is the one read; see the module's comment. A write the SDK sent again
    /// after an answer that did not come in time fails the condition (the
    /// first one went through): the record is then found in the list read
    /// again, and not added twice.
    fn record_run(&mut self, name: &[u8], record: &str, succeeded: bool, keep: u32) -> Result<()> {
        if record.len() > RECORD_BYTES {
            bail!(
                "the run's record is {} bytes, more than the {RECORD_BYTES} a job's history keeps in DynamoDB",
                record.len()
            );
        }
        let key = AttributeValue::S(companion_key(name, RUNS_TAIL)?);
        for _ in 0..HISTORY_ROUNDS {
            let request = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(KEY, key.clone())
                .consistent_read(true)
                .send();
            let item = match self.runtime.block_on(request) {
                Ok(out) => out.item.unwrap_or_default(),
                Err(err) => return Err(self.error("reading the job's runs", err)),
            };
            let (version, old) = runs_of(&item).with_context(|| format!("DynamoDB table {:?}", self.table))?;
            if old.iter().any(|run| run == record) {
                return Ok(());
            }
            let next = version.checked_add(1).ok_or_else(|| {
                anyhow!(
                    "DynamoDB table {:?}: the job's runs are at their last version",
                    self.table
                )
            })?;
            let runs = with_run(old, record, keep);
            let mut update = "SET #runs = :runs, #version = :next".to_string();
            if succeeded {
                update.push_str(", #succeeded = :record");
            }
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, key.clone())
                .update_expression(update)
                .expression_attribute_names("#runs", RUNS)
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(
                    ":runs",
                    AttributeValue::L(runs.into_iter().map(AttributeValue::S).collect()),
                )
                .expression_attribute_values(":next", number(next));
            request = if version == 0 {
                request.condition_expression("attribute_not_exists(#version)")
            } else {
                request
                    .condition_expression("#version = :version")
                    .expression_attribute_values(":version", number(version))
            };
            if succeeded {
                request = request
                    .expression_attribute_names("#succeeded", SUCCEEDED)
                    .expression_attribute_values(":record", AttributeValue::S(record.to_string()));
            }
            match self.runtime.block_on(request.send()) {
                Ok(_) => return Ok(()),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(self.error("writing the job's runs", err)),
            }
        }
        bail!(
            "DynamoDB table {:?}: the job's runs kept changing under us ({HISTORY_ROUNDS} tries)",
            self.table
        )
    }

    fn run_history(&mut self, name: &[u8]) -> Result<History> {
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(companion_key(name, RUNS_TAIL)?))
            .consistent_read(true)
            .send();
        let item = match self.runtime.block_on(request) {
            Ok(out) => out.item.unwrap_or_default(),
            Err(err) => return Err(self.error("reading the job's runs", err)),
        };
        let (_, runs) = runs_of(&item).with_context(|| format!("DynamoDB table {:?}", self.table))?;
        let last_success = match item.get(SUCCEEDED) {
            Some(AttributeValue::S(record)) => Some(record.clone()),
            _ => None,
        };
        Ok(History { runs, last_success })
    }

    fn inspect(&mut self, key: &[u8]) -> Result<Option<Seen>> {
        let text = key_text(key)?;
        Ok(self.read(text)?.map(|item| seen(key.to_vec(), &item)))
    }

    /// A Scan of the whole table, page by page (DynamoDB has no index on a
    /// key's prefix); the filter only trims what comes back.
    fn list(&mut self, prefix: &[u8]) -> Result<Vec<Seen>> {
        let Ok(prefix) = std::str::from_utf8(prefix) else {
            // DynamoDB's keys are strings: none starts with bytes that are not UTF-8.
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if !prefix.is_empty() {
                scan = scan
                    .filter_expression("begins_with(#key, :prefix)")
                    .expression_attribute_names("#key", KEY)
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string()));
            }
            let page = match self.runtime.block_on(scan.send()) {
                Ok(page) => page,
                Err(err) => return Err(self.error("listing the locks", err)),
            };
            for item in page.items() {
                match item.get(KEY) {
                    // Fencing counters and histories (see `companion_key`).
                    Some(AttributeValue::S(key)) if key.contains('\u{0}') => {}
                    Some(AttributeValue::S(key)) => found.push(seen(key.as_bytes().to_vec(), item)),
                    _ => {}
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn reset(&mut self, key: &[u8]) -> Result<bool> {
        let key = key_text(key)?;
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .return_values(ReturnValue::AllOld)
            .send();
        match self.runtime.block_on(request) {
            Ok(out) => Ok(out.attributes().is_some_and(|old| !old.is_empty())),
            Err(err) => Err(self.error("resetting the lock", err)),
        }
    }

    fn renew(&mut self, lease: &Lease, seconds: i64, _after_unknown: bool, limit: Duration) -> Renewal {
        // The token alone tells whether the item is still ours: a renewal
        // whose answer was lost changed only `expire`, so the next one
        // needs no special case.
        let key = match key_text(&lease.key) {
            Ok(key) => key,
            Err(err) => {
                return Renewal::Unconfirmed {
                    message: format!("{err:#}"),
                    maybe_sent: false,
                }
            }
        };
        let expires_at = now_nanos().div_euclid(NANOS) + seconds + 1;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .update_expression("SET #expire = :expire, #ttl = :ttl")
            .condition_expression("#token = :token")
            .expression_attribute_names("#expire", EXPIRE)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_names("#token", TOKEN)
            .expression_attribute_values(":expire", number(last_nano(expires_at)))
            .expression_attribute_values(":ttl", number(expires_at + 1))
            .expression_attribute_values(":token", AttributeValue::S(lease.token.clone().unwrap_or_default()))
            .send();
        match self
            .runtime
            .block_on(async { tokio::time::timeout(limit, request).await })
        {
            Ok(Ok(_)) => Renewal::Renewed { expires_at },
            Ok(Err(err))
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Renewal::Lost
            }
            Ok(Err(err)) => Renewal::Unconfirmed {
                maybe_sent: !matches!(err, SdkError::ConstructionFailure(_)),
                message: format!("{:#}", self.error("renewing the lease", err)),
            },
            Err(_) => Renewal::Unconfirmed {
                message: format!("DynamoDB table {:?}: no answer to the renewal in time", self.table),
                maybe_sent: true,
            },
        }
    }
}

/// The key as DynamoDB's string type needs it.
fn key_text(key: &[u8]) -> Result<&str> {
    match std::str::from_utf8(key) {
        Ok("") => bail!("the DynamoDB store needs a non-empty key"),
        Ok(key) if key.len() > MAX_KEY => bail!("the key is longer than DynamoDB's 2048 bytes"),
        Ok(key) => Ok(key),
        Err(_) => bail!("the key is not UTF-8, which DynamoDB's string keys need"),
    }
}

/// Whether the store gives fencing tokens (`lock_exec`: under
/// `CRONLOCK_KEY_STYLE=lock-exec`).
fn fencing(lock_exec: bool) -> Fencing {
    if lock_exec {
        return Fencing::Unsupported(
            "with CRONLOCK_KEY_STYLE=lock-exec the lock is shared with lock-exec hosts, which take it without a fencing token",
        );
    }
    // DynamoDB keeps every acknowledged write; the counter has no expiry.
    Fencing::Durable
}

/// The key of the fencing counter of the job key `name`: the name and
/// [`FENCE_TAIL`], a name too long for both cut and followed by its md5.
fn fence_key(name: &[u8]) -> Result<String> {
    companion_key(name, FENCE_TAIL)
}

/// The key of an item kept for the job key `name` beside its lock: the
/// name and `tail` (which starts with a NUL, as no lock's name can), a name
/// too long for both cut and followed by its md5.
fn companion_key(name: &[u8], tail: &str) -> Result<String> {
    let text = key_text(name)?;
    if text.len() + tail.len() <= MAX_KEY {
        return Ok(format!("{text}{tail}"));
    }
    let mut cut = MAX_KEY - 64;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Ok(format!("{}~{:x}{tail}", &text[..cut], md5::compute(name)))
}

/// A runs item's version (0 when there is none) and records, newest first.
fn runs_of(item: &HashMap<String, AttributeValue>) -> Result<(i64, Vec<String>)> {
    let version = match item.get(VERSION) {
        None => 0,
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| anyhow!("the job's runs have the version {n:?}, not a number"))?,
        Some(other) => bail!("the job's runs have the version {other:?}, not a number"),
    };
    let runs = match item.get(RUNS) {
        Some(AttributeValue::L(runs)) => runs.iter().filter_map(|run| run.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    };
    Ok((version, runs))
}

/// The records once `record` is put in front of `old`: at most `keep` of
/// them and [`HISTORY_BYTES`] bytes, the oldest dropped first.
fn with_run(old: Vec<String>, record: &str, keep: u32) -> Vec<String> {
    let keep = usize::try_from(keep).unwrap_or(usize::MAX).max(1);
    let mut bytes = record.len();
    let mut runs = vec![record.to_string()];
    for run in old.into_iter().take(keep - 1) {
        bytes += run.len();
        if bytes > HISTORY_BYTES {
            break;
        }
        runs.push(run);
    }
    runs
}

/// A fencing counter's number, from its item (or the attributes an update
/// returned); `None` when there is none.
fn fence_of(item: Option<&HashMap<String, AttributeValue>>) -> Result<Option<u64>> {
    match item.and_then(|item| item.get(FENCE)) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("the fencing counter holds {n:?}, not a token")),
        Some(other) => bail!("the fencing counter holds {other:?}, not a number"),
    }
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The last nanosecond of unix second `second`.
fn last_nano(second: i64) -> i64 {
    second.saturating_mul(NANOS).saturating_add(NANOS - 1)
}

/// An item's `expire`; an item without a readable one (not written by
/// lock-exec nor cronlock) counts as held for ever, as DynamoDB's own
/// `expire < :now` finds no such item expired.
fn expire_of(item: &HashMap<String, AttributeValue>) -> i64 {
    match item.get(EXPIRE) {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(i64::MAX),
        _ => i64::MAX,
    }
}

/// A lock as cronlockctl sees it. Times are this host's clock, as for
/// every other step here; an item lock-exec wrote has no owner record.
fn seen(key: Vec<u8>, item: &HashMap<String, AttributeValue>) -> Seen {
    let owner = match item.get(OWNER) {
        Some(AttributeValue::S(owner)) => Some(owner.clone()),
        _ => None,
    };
    // Only a release that keeps the lock writes the end; a take (PutItem)
    // replaces the whole item, so an end always belongs to the present holder.
    let running = matches!(item.get(END), Some(AttributeValue::N(_))).then_some(false);
    Seen {
        key,
        expires_at: Some(expire_of(item).div_euclid(NANOS)),
        now: now_nanos().div_euclid(NANOS),
        owner,
        running,
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// An error and its causes on one line, each cause once.
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = next {
        let text = e.to_string().replace('\n', " ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_end_on_their_last_nanosecond() {
        assert_eq!(last_nano(5), 5_999_999_999);
        assert_eq!(last_nano(5).div_euclid(NANOS), 5);
        assert_eq!(last_nano(i64::MAX), i64::MAX);
    }

    #[test]
    fn an_unreadable_expire_is_held_for_ever() {
        let mut item = HashMap::new();
        assert_eq!(expire_of(&item), i64::MAX);
        item.insert(EXPIRE.to_string(), AttributeValue::S("soon".into()));
        assert_eq!(expire_of(&item), i64::MAX);
        item.insert(EXPIRE.to_string(), number(42));
        assert_eq!(expire_of(&item), 42);
    }

    #[test]
    fn an_item_shows_its_expiry_in_seconds_and_its_end() {
        let mut item = HashMap::new();
        item.insert(EXPIRE.to_string(), number(last_nano(1_000)));
        let lock_exec = seen(b"k".to_vec(), &item);
        assert_eq!(
            (lock_exec.expires_at, lock_exec.owner, lock_exec.running),
            (Some(1_000), None, None)
        );
        item.insert(OWNER.to_string(), AttributeValue::S("{}".into()));
        item.insert(END.to_string(), number(990));
        let kept = seen(b"k".to_vec(), &item);
        assert_eq!((kept.owner.as_deref(), kept.running), (Some("{}"), Some(false)));
    }

    #[test]
    fn fencing_counters_have_keys_no_lock_can_have() {
        assert_eq!(fence_key(b"cronlock.abc").unwrap(), "cronlock.abc\u{0}fence");
        for long in [&[b'a'; 2048][..], "\u{e9}".repeat(1024).as_bytes()] {
            let key = fence_key(long).unwrap();
            assert!(key.len() <= MAX_KEY && key.ends_with(FENCE_TAIL), "{}", key.len());
        }
        assert_ne!(fence_key(&[b'a'; 2048]).unwrap(), fence_key(&[b'a'; 2047]).unwrap());
        assert!(fence_key(b"\xff").is_err());
        let mut item = HashMap::new();
        assert_eq!(fence_of(Some(&item)).unwrap(), None);
        item.insert(FENCE.to_string(), number(7));
        assert_eq!(fence_of(Some(&item)).unwrap(), Some(7));
        item.insert(FENCE.to_string(), AttributeValue::S("7".into()));
        assert!(fence_of(Some(&item)).is_err());
    }

    #[test]
    fn histories_have_keys_no_lock_nor_counter_can_have() {
        assert_eq!(
            companion_key(b"cronlock.abc", RUNS_TAIL).unwrap(),
            "cronlock.abc\u{0}runs"
        );
        for long in [&[b'a'; 2048][..], "\u{e9}".repeat(1024).as_bytes()] {
            let key = companion_key(long, RUNS_TAIL).unwrap();
            assert!(key.len() <= MAX_KEY && key.ends_with(RUNS_TAIL), "{}", key.len());
            assert_ne!(key, fence_key(long).unwrap());
        }
    }

    #[test]
    fn the_runs_keep_the_newest_records_within_their_count_and_size() {
        let mut runs = Vec::new();
        for n in 1..=5 {
            runs = with_run(runs, &n.to_string(), 3);
        }
        assert_eq!(runs, ["5", "4", "3"]);
        assert_eq!(with_run(runs.clone(), "6", 0), ["6"]);
        let big = "x".repeat(HISTORY_BYTES / 3);
        let mut runs = Vec::new();
        for n in 1..=4 {
            runs = with_run(runs, &format!("{n}{big}"), 1000);
        }
        assert!(runs.iter().map(String::len).sum::<usize>() <= HISTORY_BYTES);
        let kept: Vec<&str> = runs.iter().map(|run| &run[..1]).collect();
        assert_eq!(kept, ["4", "3"]);
        let mut item = HashMap::new();
        assert_eq!(runs_of(&item).unwrap(), (0, Vec::new()));
        item.insert(VERSION.to_string(), number(7));
        item.insert(
            RUNS.to_string(),
            AttributeValue::L(vec![AttributeValue::S("b".into()), AttributeValue::S("a".into())]),
        );
        assert_eq!(runs_of(&item).unwrap(), (7, vec!["b".to_string(), "a".to_string()]));
        item.insert(VERSION.to_string(), AttributeValue::S("7".into()));
        assert!(runs_of(&item).is_err());
    }

    #[test]
    fn lock_execs_style_gives_no_fencing_tokens() {
        assert_eq!(fencing(false), Fencing::Durable);
        let Fencing::Unsupported(why) = fencing(true) else {
            panic!("lock-exec's style must refuse fencing");
        };
        assert!(why.contains("CRONLOCK_KEY_STYLE=lock-exec"), "{why}");
    }

    #[test]
    fn keys_must_be_text_dynamodb_accepts() {
        assert_eq!(key_text(b"cronlock.abc").unwrap(), "cronlock.abc");
        assert!(key_text(b"").is_err());
        assert!(key_text(b"\xff").is_err());
        assert!(key_text(&[b'a'; 2049]).is_err());
    }
}
