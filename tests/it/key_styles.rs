//! CRONLOCK_KEY_STYLE against a real Redis: the lock lands under the name
//! the other tool gives the same command, and CRONLOCK_SHOW_KEY prints it.

use crate::util::*;

/// `printf '%s' 'echo hi' | md5sum`: golock's and sera's digest (no newline).
const JOINED_MD5: &str = "d28b1973427f736bce1d09e6babe5ec8";
/// Python 2.7's `abs(hash(u"echo hi"))`, lockex's id for `echo hi`.
const LOCKEX_ID: &str = "5153941267102531345";

#[test]
fn each_style_locks_under_the_other_tools_name() {
    let redis = RedisServer::start();
    let cronlock_key = key_for("cronlock.", &["echo", "hi"]);
    let golock_key = format!("cronlock.{JOINED_MD5}");
    let lockex_key = format!("/lockex/{LOCKEX_ID}");
    for (style, expected) in [
        ("cronlock", cronlock_key.as_str()),
        ("golock", golock_key.as_str()),
        ("sera", JOINED_MD5),
        ("lockex", lockex_key.as_str()),
    ] {
        let env = with(
            &redis.env(),
            &[("CRONLOCK_KEY_STYLE", style), ("CRONLOCK_SHOW_KEY", "yes")],
        );
        let result = run(&env, &["echo", "hi"]);
        result.expect(0);
        assert_eq!(result.stderr(), format!("cronlock: key {expected}\n"), "{style}");
        assert_ne!(redis.query(&["EXISTS", expected]), "0", "{style}: {expected}");
    }
    let exec = with(
        &redis.env(),
        &[("CRONLOCK_KEY_STYLE", "lock-exec"), ("CRONLOCK_KEY", "nightly-report")],
    );
    run(&exec, &["true"]).expect(0);
    assert_ne!(redis.query(&["EXISTS", "nightly-report"]), "0");
}

#[test]
fn lock_exec_style_without_a_key_and_unknown_styles_are_errors() {
    let redis = RedisServer::start();
    let result = run(&with(&redis.env(), &[("CRONLOCK_KEY_STYLE", "lock-exec")]), &["true"]);
    result.expect(201);
    assert!(result.stderr().contains("needs CRONLOCK_KEY"), "{}", result.stderr());
    let result = run(&with(&redis.env(), &[("CRONLOCK_KEY_STYLE", "golok")]), &["true"]);
    result.expect(201);
    assert!(
        result.stderr().contains("expected one of cronlock, golock"),
        "{}",
        result.stderr()
    );
    assert_eq!(redis.query(&["DBSIZE"]), "0");
}

#[test]
fn each_style_names_the_lock_file_of_the_directory_store() {
    let dir = TempDir::new("key-styles");
    let env = vec![(
        "CRONLOCK_URL".to_string(),
        format!("file://{}", dir.join("locks").display()),
    )];
    // The directory store %-escapes what a file name cannot hold ('/').
    for (style, file) in [
        ("golock", format!("cronlock.{JOINED_MD5}")),
        ("sera", JOINED_MD5.to_string()),
        ("lockex", format!("%2Flockex%2F{LOCKEX_ID}")),
    ] {
        let env = with(&env, &[("CRONLOCK_KEY_STYLE", style), ("CRONLOCK_SHOW_KEY", "yes")]);
        run(&env, &["echo", "hi"]).expect(0);
        assert!(dir.join("locks").join(&file).exists(), "{style}: {file}");
    }
}
