//! The store conformance suite against a private DynamoDB emulator (moto),
//! lock-exec hosts sharing cronlock's table, and the ways a DynamoDB
//! setting can be wrong.

use crate::util::dynamodb::{aws_env, DynamoServer, SECRET, TABLE};
use crate::util::*;

// DynamoDB keeps the counter (moto keeps it in memory and is never
// restarted here).
crate::conformance::server_fixture!(Dynamo(DynamoServer), fencing: Some(true), history: true);

crate::conformance::suite!(Dynamo);
crate::ctl_suite::suite!(Dynamo);

/// A failed run: 201, one line on stderr, and no secret anywhere.
fn expect_one_line_error(result: &Run) -> String {
    result.expect(201);
    let stderr = result.stderr();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains(SECRET) && !result.stdout().contains(SECRET),
        "{stderr}"
    );
    stderr
}

#[test]
fn a_lock_exec_holder_makes_cronlock_exit_200() {
    let server = DynamoServer::start();
    let dir = TempDir::new("lock-exec-holds");
    assert!(server.lock_exec_take("nightly", 600));
    let env = with(
        &server.env(),
        &[("CRONLOCK_KEY", "nightly"), ("CRONLOCK_KEY_STYLE", "lock-exec")],
    );
    run(&env, &["sh", "-c", &format!("touch {}", dir.join("ran").display())]).expect(200);
    assert!(!dir.join("ran").exists());
    // Once lock-exec's time is over, cronlock takes it over.
    assert!(server.lock_exec_take("short", 0));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let env = with(
        &server.env(),
        &[("CRONLOCK_KEY", "short"), ("CRONLOCK_KEY_STYLE", "lock-exec")],
    );
    run(&env, &["true"]).expect(0);
}

#[test]
fn a_cronlock_holder_fails_lock_execs_conditional_put() {
    let server = DynamoServer::start();
    let dir = TempDir::new("cronlock-holds");
    let env = with(
        &server.env(),
        &[("CRONLOCK_KEY", "nightly"), ("CRONLOCK_KEY_STYLE", "lock-exec")],
    );
    let gated = Gated::new(&dir, "holder");
    let holder = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let taken = server.lock_exec_take("nightly", 600);
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(!taken, "lock-exec took a held lock");
    assert!(output.status.success());
    // Within the grace, still held for lock-exec too.
    assert!(!server.lock_exec_take("nightly", 600));
}

#[test]
fn a_taken_over_runs_release_leaves_lock_execs_item_alone() {
    let server = DynamoServer::start();
    let dir = TempDir::new("taken-over");
    // GRACE=-1: a release that did not check its token would delete the item.
    let env = with(
        &server.env(),
        &[
            ("CRONLOCK_KEY", "job"),
            ("CRONLOCK_KEY_STYLE", "lock-exec"),
            ("CRONLOCK_RELEASE", "0"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let gated = Gated::new(&dir, "first");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let first = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    wait_until(
        std::time::Duration::from_secs(10),
        "cronlock's RELEASE to run out",
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                > started + 2
        },
    );
    let taken = server.lock_exec_take("job", 600);
    gated.open();
    assert!(first.wait_with_output().unwrap().status.success());
    assert!(taken, "lock-exec could not take over a stale cronlock lock");
    let item = server.item("job");
    assert!(item.contains("'expire'") && !item.contains("cronlock_token"), "{item}");
    run(&env, &["true"]).expect(200);
}

#[test]
fn the_item_is_in_lock_execs_format_with_cronlocks_beside_it() {
    let server = DynamoServer::start();
    let env = with(&server.env(), &[("CRONLOCK_KEY", "fmt"), ("CRONLOCK_GRACE", "30")]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    run(&env, &["true"]).expect(0);
    let item = server.item("cronlock.fmt");
    assert!(item.contains("('key', ('S', 'cronlock.fmt'))"), "{item}");
    assert!(item.contains("cronlock_token"), "{item}");
    let expire: i64 = item
        .split("('expire', ('N', '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no numeric expire: {item}"));
    // Nanoseconds: the last one of start + GRACE + 1.
    let second = expire / 1_000_000_000;
    assert!((before + 31..=before + 33).contains(&second), "{expire} vs {before}");
    assert_eq!(expire % 1_000_000_000, 999_999_999);
}

#[test]
fn a_bad_table_name_exits_201_with_one_line() {
    let server = DynamoServer::start();
    let env = with(&server.env(), &[("CRONLOCK_URL", "dynamodb://x")]);
    let stderr = expect_one_line_error(&run(&env, &["true"]));
    assert!(stderr.contains("CRONLOCK_URL"), "{stderr}");
}

#[test]
fn a_missing_table_is_named_and_exits_201() {
    let server = DynamoServer::start();
    let env = with(&server.env(), &[("CRONLOCK_URL", "dynamodb://no-such-table")]);
    let stderr = expect_one_line_error(&run(&env, &["true"]));
    assert!(stderr.contains("\"no-such-table\" not found"), "{stderr}");
    // The table the fixture made is there.
    assert!(server.item("anything") == "None");
    let _ = TABLE;
}

#[test]
fn an_unreachable_endpoint_exits_201_with_one_line() {
    let mut env = aws_env(&format!("http://127.0.0.1:{}", free_port()));
    env.push(("CRONLOCK_URL".into(), "dynamodb://locks".into()));
    env.push(("CRONLOCK_RECONNECT_ATTEMPTS".into(), "1".into()));
    let stderr = expect_one_line_error(&run(&env, &["true"]));
    assert!(stderr.contains("cannot reach DynamoDB"), "{stderr}");
}

#[test]
fn a_redis_server_at_the_endpoint_exits_201_with_one_line() {
    let redis = RedisServer::start();
    let mut env = aws_env(&format!("http://127.0.0.1:{}", redis.port));
    env.push(("CRONLOCK_URL".into(), "dynamodb://locks".into()));
    env.push(("CRONLOCK_RECONNECT_ATTEMPTS".into(), "0".into()));
    env.push(("CRONLOCK_REDIS_TIMEOUT".into(), "3".into()));
    expect_one_line_error(&run(&env, &["true"]));
}

#[test]
fn no_region_exits_201_with_one_line() {
    let server = DynamoServer::start();
    let env: Vec<(String, String)> = server
        .env()
        .into_iter()
        .filter(|(name, _)| name != "AWS_REGION")
        .collect();
    let stderr = expect_one_line_error(&run(&env, &["true"]));
    assert!(stderr.contains("AWS_REGION"), "{stderr}");
}

#[test]
fn no_credentials_exits_201_with_one_line() {
    let server = DynamoServer::start();
    let env: Vec<(String, String)> = server
        .env()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("AWS_ACCESS") && !name.starts_with("AWS_SECRET"))
        .collect();
    let stderr = expect_one_line_error(&run(&env, &["true"]));
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
}

#[test]
fn cronlockctl_shows_a_lock_exec_item_as_held_with_no_owner_record() {
    let server = DynamoServer::start();
    assert!(server.lock_exec_take("nightly", 600));
    let env = with(
        &server.env(),
        &[("CRONLOCK_KEY", "nightly"), ("CRONLOCK_KEY_STYLE", "lock-exec")],
    );
    let status = ctl(&env, &["--json", "status", "--key", "nightly"]);
    status.expect(1);
    let answer: serde_json::Value = serde_json::from_str(status.stdout().trim()).unwrap();
    assert_eq!(answer["state"], "held", "{answer}");
    assert_eq!(answer["original"], true, "{answer}");
    assert_eq!(answer["owner"], serde_json::Value::Null);
    assert!(
        (598..=600).contains(&answer["expires_in"].as_i64().unwrap()),
        "{answer}"
    );
    let text = ctl(&env, &["status", "--key", "nightly"]);
    assert!(text.stdout().contains("no owner record"), "{}", text.stdout());
    // lock-exec's names have no prefix: list shows every item of the table.
    run(&with(&server.env(), &[("CRONLOCK_KEY", "mine")]), &["true"]).expect(0);
    let listed = ctl(&env, &["list"]);
    listed.expect(0);
    let stdout = listed.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("cronlock.mine: kept"), "{stdout}");
    assert!(lines[1].starts_with("nightly: held"), "{stdout}");
    // Under the cronlock style, only the prefixed one.
    let prefixed = ctl(&server.env(), &["list"]);
    assert_eq!(prefixed.stdout().lines().count(), 1, "{}", prefixed.stdout());
}

#[test]
fn cronlockctl_list_pages_through_the_scan() {
    let server = DynamoServer::start();
    // More than one page of moto's Scan (1 MB): 300 items of 4 KB each.
    server.python_ok(&format!(
        "pad = 'x' * 4000\n\
         for i in range(300):\n    db.put_item(TableName='{TABLE}', Item={{'key': {{'S': 'cronlock.job%d' % i}}, \
         'expire': {{'N': str(time.time_ns() + 600 * 10**9)}}, 'pad': {{'S': pad}}}})\n\
         db.put_item(TableName='{TABLE}', Item={{'key': {{'S': 'other'}}, 'expire': {{'N': '0'}}}})"
    ));
    let listed = ctl(&server.env(), &["--json", "list"]);
    listed.expect(0);
    let lines = listed.json_lines();
    assert_eq!(lines.len(), 300);
    assert!(lines.iter().all(|l| l["state"] == "held"));
    let all = ctl(&server.env(), &["list", "--all-prefixes"]);
    assert_eq!(all.stdout().lines().count(), 301);
}

#[test]
fn the_fencing_counter_is_an_item_no_listing_shows() {
    let server = DynamoServer::start();
    let env = with(
        &server.env(),
        &[
            ("CRONLOCK_KEY", "fenced"),
            ("CRONLOCK_FENCING", "required"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let token = |env: &[(String, String)]| {
        let result = run(env, &["sh", "-c", "echo \"$CRONLOCK_FENCING_TOKEN\""]);
        result.expect(0);
        result.stdout().trim().to_string()
    };
    assert_eq!(token(&env), "1");
    assert_eq!(token(&env), "2");
    // Its key ends in a NUL, which no lock's name can hold; it has no
    // expire and no TTL attribute.
    assert_eq!(
        server.item("cronlock.fenced\0fence"),
        "[('cronlock_fence', ('N', '2')), ('key', ('S', 'cronlock.fenced\\x00fence'))]"
    );
    // The counter outlives a reset, and is no lock to cronlockctl.
    let kept = with(&env, &[("CRONLOCK_GRACE", "60")]);
    assert_eq!(token(&kept), "3");
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(token(&env), "4");
    for all in [&["list"][..], &["list", "--all-prefixes"]] {
        let listed = ctl(&env, all);
        listed.expect(0);
        assert_eq!(listed.stdout(), "", "{all:?}");
    }
    ctl(&env, &["status", "--key", "fenced"]).expect(0);
    ctl(&env, &["fence", "cronlock.fenced", "4"]).expect(0);
    ctl(&env, &["fence", "cronlock.fenced", "3"]).expect(1);
}

#[test]
fn lock_execs_style_refuses_fencing_with_one_line() {
    let server = DynamoServer::start();
    let env = with(
        &server.env(),
        &[
            ("CRONLOCK_KEY", "nightly"),
            ("CRONLOCK_KEY_STYLE", "lock-exec"),
            ("CRONLOCK_FENCING", "on"),
        ],
    );
    let line = expect_refusal(&env, "CRONLOCK_KEY_STYLE=lock-exec", &[SECRET]);
    assert!(line.contains("CRONLOCK_FENCING"), "{line}");
    // Without fencing the style takes the lock as before.
    run(&with(&env, &[("CRONLOCK_FENCING", "off")]), &["true"]).expect(0);
}

/// `cronlockctl history` of `job`, newest first.
fn history(env: &[(String, String)], job: &str) -> Vec<serde_json::Value> {
    let listed = ctl(env, &["--json", "history", "--key", job]);
    listed.expect(0);
    listed.json_lines()
}

#[test]
fn the_history_is_one_item_beside_the_lock_that_no_listing_shows_nor_a_reset_removes() {
    let server = DynamoServer::start();
    let env = with(
        &server.env(),
        &[
            ("CRONLOCK_KEY", "kept"),
            ("CRONLOCK_HISTORY", "2"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    for _ in 0..3 {
        run(&env, &["true"]).expect(0);
    }
    run(&env, &["sh", "-c", "exit 4"]).expect(4);
    // Its key ends in a NUL, as the fencing counter's; the records, cut to
    // two, the last success and a version; no expire and no TTL.
    let item = server.python_ok(&format!(
        "item = db.get_item(TableName='{TABLE}', Key={{'key': {{'S': 'cronlock.kept\\x00runs'}}}}, ConsistentRead=True)['Item']\n\
         print(sorted(item), item['cronlock_version']['N'], len(item['cronlock_runs']['L']))"
    ));
    assert_eq!(
        item,
        "['cronlock_runs', 'cronlock_succeeded', 'cronlock_version', 'key'] 4 2"
    );
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["exit"], &runs[1]["exit"]), (&4.into(), &0.into()));
    // Nothing is listed but the lock kept for its grace.
    let kept = with(&env, &[("CRONLOCK_GRACE", "60")]);
    run(&kept, &["true"]).expect(0);
    for all in [&["--json", "list"][..], &["--json", "list", "--all-prefixes"]] {
        let listed = ctl(&env, all);
        listed.expect(0);
        let locks = listed.json_lines();
        assert_eq!(locks.len(), 1, "{all:?}: {}", listed.stdout());
        assert_eq!(locks[0]["key"], "cronlock.kept");
    }
    // An unlock and a reset take the lock, never the history.
    ctl(&env, &["unlock", "--key", "kept"]).expect(0);
    run(&kept, &["true"]).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    let listed = ctl(&env, &["list", "--all-prefixes"]);
    listed.expect(0);
    assert_eq!(listed.stdout(), "");
    ctl(&env, &["status", "--key", "kept"]).expect(0);
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["exit"], &runs[1]["exit"]), (&0.into(), &0.into()));
    ctl(&env, &["check", "--key", "kept", "--max-age", "1h"]).expect(0);
}

#[test]
fn lock_execs_style_refuses_the_history_with_one_line() {
    let server = DynamoServer::start();
    let env = with(
        &server.env(),
        &[
            ("CRONLOCK_KEY", "nightly"),
            ("CRONLOCK_KEY_STYLE", "lock-exec"),
            ("CRONLOCK_HISTORY", "5"),
        ],
    );
    let line = expect_refusal(&env, "CRONLOCK_HISTORY", &[SECRET]);
    assert!(line.contains("not supported"), "{line}");
}

#[test]
fn runs_that_end_together_each_keep_their_record_and_the_cut_holds() {
    let server = DynamoServer::start();
    // Every run's first read of the history is answered once all eight
    // have asked: all but one of their writes then fail the condition.
    let proxy = super::memcached::read_together_proxy(server.port, 8, b"cronlock.together\\u0000runs");
    let mut env = aws_env(&format!("http://127.0.0.1:{proxy}"));
    env.push(("CRONLOCK_URL".into(), format!("dynamodb://{TABLE}")));
    let env = with(
        &env,
        &[
            ("CRONLOCK_KEY", "together"),
            ("CRONLOCK_CONCURRENCY", "8"),
            ("CRONLOCK_HISTORY", "10"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let pids_of = |runs: &[serde_json::Value]| {
        let mut pids: Vec<u64> = runs.iter().map(|run| run["pid"].as_u64().unwrap()).collect();
        pids.sort_unstable();
        pids
    };
    let mut first = super::memcached::end_together(&env, 8);
    first.sort_unstable();
    assert_eq!(pids_of(&history(&env, "together")), first, "no record lost");
    // Eight more, of which the newest ten records hold all.
    let mut second = super::memcached::end_together(&env, 8);
    second.sort_unstable();
    let runs = history(&env, "together");
    assert_eq!(runs.len(), 10);
    assert_eq!(pids_of(&runs[..8]), second, "the second eight are the newest eight");
}
