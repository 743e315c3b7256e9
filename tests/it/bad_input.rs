//! Every variable × every kind of bad value, with the outcome the README
//! documents: "ok" (the value is used or means the default, the command
//! runs), "held" (200), or "error" (exit 201 with one line on stderr).
//! Nothing may panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use crate::util::*;

const KINDS: [(&str, &[u8]); 6] = [
    ("empty", b""),
    ("garbage", b"x!y?z"),
    ("negative", b"-5"),
    ("huge", b"99999999999999999999999"),
    ("unicode", "\u{fc}n\u{ef}c\u{f8}d\u{e9}\u{1f512}".as_bytes()),
    ("non-utf8", b"\xff\xfe"),
];

/// Expected outcome per variable, in the order of KINDS. An empty value
/// always means the default. Numbers, yes/no settings, ports, files and URLs
/// accept nothing else; free text (key, prefix, names, passwords) takes any
/// UTF-8; bytes that are not UTF-8 are refused everywhere.
const TABLE: &[(&str, [&str; 6])] = &[
    ("HOST", ["ok", "error", "error", "error", "error", "error"]),
    // Empty means 6379, which tests never touch: checked from what it tries.
    ("PORT", ["6379", "error", "error", "error", "error", "error"]),
    // The test server has no password: any password is refused by it.
    ("AUTH", ["ok", "error", "error", "error", "error", "error"]),
    // A user without CRONLOCK_AUTH is an error.
    ("USER", ["ok", "error", "error", "error", "error", "error"]),
    ("DB", ["ok", "error", "error", "error", "error", "error"]),
    ("REDIS_TIMEOUT", ["ok", "error", "error", "error", "error", "error"]),
    // Negative grace: the lock is dropped when the command ends.
    ("GRACE", ["ok", "error", "ok", "error", "error", "error"]),
    ("RELEASE", ["ok", "error", "error", "error", "error", "error"]),
    (
        "RECONNECT_ATTEMPTS",
        ["ok", "error", "error", "error", "error", "error"],
    ),
    ("RECONNECT_BACKOFF", ["ok", "error", "error", "error", "error", "error"]),
    ("KEY", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("PREFIX", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("VERBOSE", ["ok", "error", "error", "error", "error", "error"]),
    ("RESET", ["ok", "error", "error", "error", "error", "error"]),
    ("NTPDATE", ["ok", "error", "error", "error", "error", "error"]),
    ("TIMEOUT", ["ok", "error", "error", "error", "error", "error"]),
    ("KILL_AFTER", ["ok", "error", "error", "error", "error", "error"]),
    ("LEASE", ["ok", "error", "error", "error", "error", "error"]),
    ("HOLD", ["ok", "error", "error", "error", "error", "error"]),
    ("KEY_STYLE", ["ok", "error", "error", "error", "error", "error"]),
    // Read only with CRONLOCK_KEY_STYLE=tooz: alone, any value is an error.
    ("TOOZ_NAMESPACE", ["ok", "error", "error", "error", "error", "error"]),
    ("SHOW_KEY", ["ok", "error", "error", "error", "error", "error"]),
    ("WAIT", ["ok", "error", "error", "error", "error", "error"]),
    ("CONCURRENCY", ["ok", "error", "error", "error", "error", "error"]),
    ("JITTER", ["ok", "error", "error", "error", "error", "error"]),
    ("SLOT", ["ok", "error", "error", "error", "error", "error"]),
    ("NODE", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("SYSLOG", ["ok", "error", "error", "error", "error", "error"]),
    // Facility and socket while syslog is off are an error.
    ("SYSLOG_FACILITY", ["ok", "error", "error", "error", "error", "error"]),
    ("SYSLOG_SOCKET", ["ok", "error", "error", "error", "error", "error"]),
    // A named config file must exist.
    ("CONFIG", ["ok", "error", "error", "error", "error", "error"]),
    ("USE_SENTINEL", ["ok", "error", "error", "error", "error", "error"]),
    // Read only with CRONLOCK_USE_SENTINEL=yes, as in the original.
    ("SENTINEL_MASTER", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("SENTINEL_HOST", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("SENTINEL_PORT", ["ok", "error", "error", "error", "error", "error"]),
    ("SENTINEL_AUTH", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("TLS", ["ok", "error", "error", "error", "error", "error"]),
    ("TLS_SKIP_VERIFY", ["ok", "error", "error", "error", "error", "error"]),
    // TLS settings while TLS is off are an error.
    ("TLS_CA_FILE", ["ok", "error", "error", "error", "error", "error"]),
    ("TLS_CERT_FILE", ["ok", "error", "error", "error", "error", "error"]),
    ("TLS_KEY_FILE", ["ok", "error", "error", "error", "error", "error"]),
    ("TLS_SERVER_NAME", ["ok", "error", "error", "error", "error", "error"]),
    ("URL", ["ok", "error", "error", "error", "error", "error"]),
    ("PING_URL", ["ok", "error", "error", "error", "error", "error"]),
    // Any path is taken; one that cannot be written is a warning, and the
    // exit status stays the command's.
    ("METRICS_DIR", ["ok", "ok", "ok", "ok", "ok", "error"]),
    ("LOG_FORMAT", ["ok", "error", "error", "error", "error", "error"]),
    ("FENCING", ["ok", "error", "error", "error", "error", "error"]),
    // Read only with CRONLOCK_SLOT=auto: alone, any value is an error.
    ("SCHEDULE", ["ok", "error", "error", "error", "error", "error"]),
    ("HISTORY", ["ok", "error", "error", "error", "error", "error"]),
];

fn outcome(redis: &RedisServer, name: &str, value: &[u8]) -> (String, String) {
    let base = [("CRONLOCK_REDIS_TIMEOUT", "2"), ("CRONLOCK_RECONNECT_ATTEMPTS", "0")];
    let mut command = cronlock(&with(&redis.env(), &base));
    command.env(format!("CRONLOCK_{name}"), OsStr::from_bytes(value));
    let output = command.args(["true"]).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let code = match output.status.code() {
        Some(0) => "ok".to_string(),
        Some(200) => "held".to_string(),
        Some(201) => "error".to_string(),
        other => format!("{other:?}"),
    };
    (code, stderr)
}

#[test]
fn every_variable_with_every_kind_of_bad_value() {
    let redis = RedisServer::start();
    let mut wrong = Vec::new();
    for (name, expected) in TABLE {
        for ((kind, value), want) in KINDS.iter().zip(expected) {
            redis.query(&["FLUSHALL"]);
            if *want == "6379" {
                assert!(value.is_empty());
                let result = run(
                    &[
                        ("CRONLOCK_HOST".into(), "nowhere.invalid".into()),
                        (format!("CRONLOCK_{name}"), String::new()),
                        ("CRONLOCK_VERBOSE".into(), "yes".into()),
                        ("CRONLOCK_RECONNECT_ATTEMPTS".into(), "0".into()),
                    ],
                    &["true"],
                );
                result.expect(201);
                assert!(result.stderr().contains("port '6379'"), "{}", result.stderr());
                continue;
            }
            let (got, stderr) = outcome(&redis, name, value);
            assert!(!stderr.contains("panicked"), "CRONLOCK_{name} {kind}: {stderr}");
            if got == "error" {
                assert_eq!(stderr.trim_end().lines().count(), 1, "CRONLOCK_{name} {kind}: {stderr}");
                assert!(stderr.starts_with("cronlock: "), "CRONLOCK_{name} {kind}: {stderr}");
            }
            if got != *want {
                wrong.push(format!(
                    "CRONLOCK_{name} {kind}: expected {want}, got {got}: {}",
                    stderr.trim_end()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_table_covers_every_variable_the_config_knows() {
    let names: Vec<&str> = TABLE.iter().map(|(name, _)| *name).collect();
    for name in cronlock::config::KNOWN {
        assert!(
            names.contains(name),
            "CRONLOCK_{name} is missing from the bad-input table"
        );
    }
}

/// A build without a heavy store's cargo feature (`cargo build
/// --no-default-features`) refuses a URL that names it, with one line that
/// says which feature, and never shows the password.
#[cfg(not(feature = "mysql"))]
#[test]
fn a_store_built_out_is_refused_with_one_line_naming_its_feature() {
    for (url, feature) in [
        ("mysql://cron:s3cret@127.0.0.1/jobs", "\"mysql\""),
        ("postgres://cron:s3cret@127.0.0.1/jobs", "\"postgres\""),
        ("zookeeper://127.0.0.1:2181", "\"zookeeper\""),
        ("dynamodb://locks", "\"dynamodb\""),
    ] {
        let env = vec![("CRONLOCK_URL".to_string(), url.to_string())];
        crate::util::expect_refusal(&env, feature, &["s3cret"]);
    }
}
