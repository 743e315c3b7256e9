//! The lock protocol against real Redis servers: keys, values, TTLs and exit codes.

use std::process::Stdio;

use crate::util::*;

#[test]
fn first_run_takes_the_lock_and_keeps_it_for_the_grace() {
    let redis = RedisServer::start();
    let before = redis.now();
    run(&redis.env(), &["true"]).expect(0);
    let key = key_for("cronlock.", &["true"]);
    let value: i64 = redis.query(&["GET", &key]).parse().unwrap();
    assert!((value - (before + 41)).abs() <= 1, "value {value}, start {before}");
    let ttl: i64 = redis.query(&["TTL", &key]).parse().unwrap();
    assert!((40..=41).contains(&ttl), "ttl {ttl}");
}

#[test]
fn command_exit_code_is_passed_through() {
    let redis = RedisServer::start();
    run(&redis.env(), &["sh", "-c", "exit 7"]).expect(7);
    run(&redis.env(), &["sh", "-c", "exit 0; echo other"]).expect(0);
}

#[test]
fn key_and_prefix_name_the_lock() {
    let redis = RedisServer::start();
    let env = with(
        &redis.env(),
        &[("CRONLOCK_KEY", "my job"), ("CRONLOCK_PREFIX", "app1.")],
    );
    run(&env, &["true"]).expect(0);
    assert_ne!(redis.query(&["EXISTS", "app1.my job"]), "0");
    // Another command with the same key is held.
    run(&env, &["false"]).expect(200);
}

#[test]
fn reset_deletes_the_key_and_exits_200() {
    let redis = RedisServer::start();
    let dir = TempDir::new("reset");
    let cmd = marker(&dir);
    run(&redis.env(), &cmd).expect(0);
    run(&with(&redis.env(), &[("CRONLOCK_RESET", "yes")]), &cmd).expect(200);
    assert_eq!(redis.query(&["DBSIZE"]), "0");
    assert_eq!(runs(&dir), 1, "reset must not run the command");
    run(&redis.env(), &cmd).expect(0);
    assert_eq!(runs(&dir), 2);
}

#[test]
fn db_setting_selects_the_database() {
    let redis = RedisServer::start();
    run(&with(&redis.env(), &[("CRONLOCK_DB", "1")]), &["true"]).expect(0);
    let key = key_for("cronlock.", &["true"]);
    assert_eq!(redis.query(&["-n", "1", "EXISTS", &key]), "1");
    assert_eq!(redis.query(&["-n", "0", "EXISTS", &key]), "0");
}

#[test]
fn invalid_databases_exit_201_and_lock_nothing() {
    let redis = RedisServer::start();
    let negative = run(&with(&redis.env(), &[("CRONLOCK_DB", "-1")]), &["true"]);
    negative.expect(201);
    assert!(negative.stderr().contains("CRONLOCK_DB"), "{}", negative.stderr());
    let too_big = run(&with(&redis.env(), &[("CRONLOCK_DB", "99")]), &["true"]);
    too_big.expect(201);
    assert!(
        too_big.stderr().contains("db '99' does not exist"),
        "{}",
        too_big.stderr()
    );
    assert_eq!(redis.query(&["DBSIZE"]), "0");
}

#[test]
fn wrong_password_exits_201_and_right_one_runs() {
    let redis = RedisServer::with_password("s3cret pass");
    let wrong = run(&with(&redis.env(), &[("CRONLOCK_AUTH", "nope")]), &["true"]);
    wrong.expect(201);
    assert!(wrong.stderr().contains("invalid auth"), "{}", wrong.stderr());
    assert!(!wrong.stderr().contains("nope"), "password leaked: {}", wrong.stderr());
    let missing = run(
        &[
            ("CRONLOCK_HOST".into(), "127.0.0.1".into()),
            ("CRONLOCK_PORT".into(), redis.port.to_string()),
        ],
        &["true"],
    );
    missing.expect(201);
    run(&redis.env(), &["true"]).expect(0);
}

#[test]
fn acl_user_needs_only_the_commands_of_the_lock_scripts() {
    let redis = RedisServer::start();
    redis.query(&[
        "ACL",
        "SETUSER",
        "locker",
        "on",
        ">pass word",
        "resetkeys",
        "~cronlock.*",
        "-@all",
        "+eval",
        "+get",
        "+set",
        "+del",
        "+expireat",
        "+time",
        "+select",
    ]);
    redis.query(&["ACL", "SETUSER", "noeval", "on", ">pw", "~*", "-@all", "+get"]);
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_USER", "locker"),
            ("CRONLOCK_AUTH", "pass word"),
            ("CRONLOCK_KEY", "acl"),
        ],
    );
    run(&env, &["true"]).expect(0);
    let ttl: i64 = redis.query(&["TTL", "cronlock.acl"]).parse().unwrap();
    assert!((40..=41).contains(&ttl), "ttl {ttl}");
    run(&env, &["true"]).expect(200);
    run(&with(&env, &[("CRONLOCK_RESET", "1")]), &["true"]).expect(200);
    assert_eq!(redis.query(&["EXISTS", "cronlock.acl"]), "0");

    let wrong = run(&with(&env, &[("CRONLOCK_AUTH", "not it")]), &["true"]);
    wrong.expect(201);
    assert!(wrong.stderr().contains("invalid auth"), "{}", wrong.stderr());
    assert!(
        !wrong.stderr().contains("not it"),
        "password leaked: {}",
        wrong.stderr()
    );

    let denied = run(
        &with(&redis.env(), &[("CRONLOCK_USER", "noeval"), ("CRONLOCK_AUTH", "pw")]),
        &["true"],
    );
    denied.expect(201);
    assert!(denied.stderr().contains("NOPERM"), "{}", denied.stderr());
    assert_eq!(redis.query(&["DBSIZE"]), "0");
}

#[test]
fn password_given_to_a_server_without_one_exits_201_without_locking() {
    let redis = RedisServer::start();
    run(
        &with(&redis.env(), &[("CRONLOCK_AUTH", "INVALID_AUTH_CODE")]),
        &["true"],
    )
    .expect(201);
    assert_eq!(redis.query(&["DBSIZE"]), "0");
}

#[test]
fn stale_lock_is_taken_over() {
    let redis = RedisServer::start();
    let key = key_for("cronlock.", &["true"]);
    let past = (redis.now() - 100).to_string();
    redis.query(&["SET", &key, &past]);
    run(&redis.env(), &["true"]).expect(0);
    let value: i64 = redis.query(&["GET", &key]).parse().unwrap();
    assert!(value > redis.now(), "grace value expected, got {value}");
}

#[test]
fn future_dated_lock_without_ttl_is_respected() {
    let redis = RedisServer::start();
    let key = key_for("cronlock.", &["true"]);
    let future = (redis.now() + 1000).to_string();
    redis.query(&["SET", &key, &future]);
    run(&redis.env(), &["true"]).expect(200);
    assert_eq!(redis.query(&["GET", &key]), future);
    assert_eq!(
        redis.query(&["TTL", &key]),
        "-1",
        "someone else's key is left untouched"
    );
}

#[test]
fn lock_value_and_ttl_while_running_follow_release() {
    let redis = RedisServer::start();
    let dir = TempDir::new("running");
    let gated = Gated::new(&dir, "job");
    let env = with(
        &redis.env(),
        &[("CRONLOCK_RELEASE", "300"), ("CRONLOCK_KEY", "running")],
    );
    let start = redis.now();
    let mut child = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let value: i64 = redis.query(&["GET", "cronlock.running"]).parse().unwrap();
    assert!((value - (start + 301)).abs() <= 1, "value {value}");
    let ttl: i64 = redis.query(&["TTL", "cronlock.running"]).parse().unwrap();
    assert!((300..=302).contains(&ttl), "every key has a TTL from the start: {ttl}");
    gated.open();
    assert!(child.wait().unwrap().success());
}

#[test]
fn negative_grace_drops_the_lock_after_the_run() {
    let redis = RedisServer::start();
    run(&with(&redis.env(), &[("CRONLOCK_GRACE", "-1")]), &["true"]).expect(0);
    assert_eq!(redis.query(&["DBSIZE"]), "0");
    run(&with(&redis.env(), &[("CRONLOCK_GRACE", "-1")]), &["true"]).expect(0);
}

#[test]
fn twenty_simultaneous_runs_execute_exactly_once() {
    let redis = RedisServer::start();
    let dir = TempDir::new("contention");
    let cmd = marker(&dir);
    let children: Vec<_> = (0..20)
        .map(|_| {
            cronlock(&redis.env())
                .args(&cmd)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 19, "{codes:?}");
    assert_eq!(runs(&dir), 1);
}

#[test]
fn verbose_output_never_shows_the_password() {
    let redis = RedisServer::with_password("hunter2-secret");
    let result = run(&with(&redis.env(), &[("CRONLOCK_VERBOSE", "yes")]), &["true"]);
    result.expect(0);
    assert!(result.stderr().contains("acquired"), "{}", result.stderr());
    assert!(!result.stderr().contains("hunter2"), "{}", result.stderr());
}

#[test]
fn the_owner_record_lives_and_dies_with_the_lock() {
    let redis = RedisServer::start();
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_KEY", "owned"),
            ("CRONLOCK_NODE", "web-7"),
            ("CRONLOCK_GRACE", "30"),
        ],
    );
    run(&env, &["sh", "-c", "exit 0", "x\"y"]).expect(0);
    let record = redis.query(&["GET", "cronlock.owned:owner"]);
    assert!(
        record.starts_with(r#"{"node":"web-7","pid":"#)
            && record.contains(r#","command":"sh -c exit 0 x\"y","ended":"#),
        "{record}"
    );
    // Same life as the lock, and gone with it.
    let ttl = |key: &str| redis.query(&["TTL", key]).parse::<i64>().unwrap();
    assert!((ttl("cronlock.owned") - ttl("cronlock.owned:owner")).abs() <= 1);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(redis.query(&["DBSIZE"]), "0");
    // With no new setting, only the original's key and the owner record are written.
    run(&redis.env(), &["true"]).expect(0);
    let mut keys: Vec<String> = redis.query(&["KEYS", "*"]).lines().map(String::from).collect();
    keys.sort();
    let key = key_for("cronlock.", &["true"]);
    assert_eq!(keys, vec![key.clone(), format!("{key}:owner")]);
}

#[test]
fn an_acl_that_covers_only_the_lock_key_still_takes_the_lock() {
    let redis = RedisServer::start();
    redis.query(&[
        "ACL",
        "SETUSER",
        "narrow",
        "on",
        ">pw",
        "resetkeys",
        "%RW~cronlock.narrow",
        "-@all",
        "+eval",
        "+get",
        "+set",
        "+del",
        "+expireat",
        "+time",
        "+select",
    ]);
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_USER", "narrow"),
            ("CRONLOCK_AUTH", "pw"),
            ("CRONLOCK_KEY", "narrow"),
        ],
    );
    run(&env, &["true"]).expect(0);
    run(&env, &["true"]).expect(200);
    assert_eq!(redis.query(&["EXISTS", "cronlock.narrow:owner"]), "0");
}

#[test]
fn a_waiter_marks_itself_and_is_woken_by_the_release() {
    let redis = RedisServer::start();
    let dir = TempDir::new("wake");
    let gated = Gated::new(&dir, "holder");
    let env = with(&redis.env(), &[("CRONLOCK_KEY", "wake"), ("CRONLOCK_GRACE", "-1")]);
    let mut holder = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let waiter = cronlock(&with(&env, &[("CRONLOCK_WAIT", "60")]))
        .args(["true"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(std::time::Duration::from_secs(10), "the waiter's marker", || {
        redis.query(&["EXISTS", "cronlock.wake:waiting"]) == "1"
    });
    gated.open();
    assert!(holder.wait().unwrap().success());
    let output = waiter.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // What waiting leaves behind is short-lived: a marker, and a token that a
    // release pushed while the waiter was trying the lock rather than blocked.
    for key in ["cronlock.wake:waiting", "cronlock.wake:wake"] {
        let ttl: i64 = redis.query(&["TTL", key]).parse().unwrap();
        assert!(ttl == -2 || (0..=10).contains(&ttl), "{key}: {ttl}");
    }
}
