//! tooz's Redis lock (`redis://`): the key `_tooz_<name>_lock` holding a
//! token, `SET NX PX 30000`, both ways with coolock; a key set by hand as
//! tooz sets it keeps cronlock out, and cronlock's renewals keep its key.

use std::time::Duration;

use crate::tooz::{renewals_keep_the_key, tooz_env, while_held};
use crate::util::*;

/// A Redis server, cronlock's settings for it and coolock's URL.
fn setup() -> (RedisServer, Vec<(String, String)>, String) {
    let server = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", server.port);
    let env = server.env();
    (server, env, url)
}

crate::tooz::both_ways!(setup());

mod namespaced {
    crate::tooz::both_ways!(crate::tooz::namespaced(super::setup()));
}

#[test]
fn a_namespace_starts_the_key_and_the_default_one_is_another_lock() {
    let (server, env, _) = crate::tooz::namespaced(setup());
    while_held(&env, &[("CRONLOCK_GRACE", "-1")], |_| {
        assert_eq!(server.query(&["EXISTS", "ns_nightly_lock"]), "1");
        assert_eq!(server.query(&["EXISTS", "_tooz_nightly_lock"]), "0");
        // An empty setting is tooz's default namespace, `_tooz`: another lock.
        let default = with(&tooz_env(&env, "nightly"), &[("CRONLOCK_TOOZ_NAMESPACE", "")]);
        run(&with(&default, &[("CRONLOCK_GRACE", "-1")]), &["true"]).expect(0);
        run(&tooz_env(&env, "nightly"), &["true"]).expect(200);
    });
    assert_eq!(server.query(&["EXISTS", "ns_nightly_lock"]), "0", "released");
}

#[test]
fn the_key_holds_a_hex_token_for_thirty_seconds_in_the_chosen_database() {
    let (server, env, _) = setup();
    while_held(&env, &[("CRONLOCK_DB", "2"), ("CRONLOCK_GRACE", "-1")], |_| {
        let token = server.query(&["-n", "2", "GET", "_tooz_nightly_lock"]);
        assert!(
            token.len() == 32 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "not 32 lowercase hex digits: {token:?}"
        );
        let pttl: i64 = server
            .query(&["-n", "2", "PTTL", "_tooz_nightly_lock"])
            .parse()
            .unwrap();
        assert!((20_000..=30_000).contains(&pttl), "PTTL {pttl}");
        assert_eq!(
            server.query(&["EXISTS", "_tooz_nightly_lock"]),
            "0",
            "database 0 is untouched"
        );
    });
    assert_eq!(
        server.query(&["-n", "2", "EXISTS", "_tooz_nightly_lock"]),
        "0",
        "released"
    );
    // A grace keeps the key, still with a token, until the grace is over.
    while_held(&env, &[("CRONLOCK_GRACE", "60")], |_| {});
    let pttl: i64 = server.query(&["PTTL", "_tooz_nightly_lock"]).parse().unwrap();
    assert!((50_000..=61_000).contains(&pttl), "kept for the grace: PTTL {pttl}");
}

#[test]
fn a_lock_set_as_tooz_sets_it_keeps_cronlock_out() {
    let (server, env, _) = setup();
    assert_eq!(
        server.query(&["SET", "_tooz_nightly_lock", "x", "NX", "PX", "30000"]),
        "OK"
    );
    run(&tooz_env(&env, "nightly"), &["true"]).expect(200);
    assert_eq!(
        server.query(&["GET", "_tooz_nightly_lock"]),
        "x",
        "another's lock is left alone"
    );
    run(&tooz_env(&env, "other"), &["true"]).expect(0);
    server.query(&["DEL", "_tooz_nightly_lock"]);
    run(&tooz_env(&env, "nightly"), &["true"]).expect(0);
}

#[test]
fn renewals_keep_the_key_past_its_first_lease() {
    let (server, env, _) = setup();
    // Taken no earlier than the spawn with PX 3000: without a renewal the
    // key is gone 3 s later.
    renewals_keep_the_key(&env, Duration::from_millis(3500), || {
        let pttl: i64 = server.query(&["PTTL", "_tooz_nightly_lock"]).parse().unwrap();
        assert!(pttl > 0, "the key lapsed (PTTL {pttl})");
        Duration::from_millis(pttl as u64)
    });
}

/// `cronlockctl migrate coolock` carries the backend URL's `?namespace=`
/// over: a cronlock on the printed file is kept out by the real coolock on
/// the same URL.
#[test]
fn a_migrated_namespace_shares_coolocks_lock() {
    let coolock = crate::tooz::coolock_or_skip!();
    let (_server, _, url) = crate::tooz::namespaced(setup());
    let dir = TempDir::new("migrate-namespace");
    let conf = dir.join("coolock.conf");
    std::fs::write(&conf, format!("coordination-backend: {url}\nlock: nightly\n")).unwrap();
    let home = [("HOME".to_string(), dir.path().display().to_string())];
    let out = ctl(&home, &["migrate", "coolock", &conf.display().to_string()]);
    out.expect(0);
    assert!(
        out.stdout().contains("CRONLOCK_TOOZ_NAMESPACE=ns\n"),
        "{}",
        out.stdout()
    );
    let migrated = dir.join("cronlock.conf");
    std::fs::write(&migrated, out.stdout()).unwrap();
    let env = [("CRONLOCK_CONFIG".to_string(), migrated.display().to_string())];
    let holder = coolock.hold(&url, "nightly", &dir);
    let marker = dir.join("ran");
    run(&env, &["touch", &marker.display().to_string()]).expect(200);
    assert!(!marker.exists(), "cronlock ran while coolock held the lock");
    holder.finish();
}
