//! tooz's memcached lock (`memcached://`): the key `__TOOZ_LOCK_<name>`
//! holding the node's name with flags 1, both ways with coolock; a key added
//! by hand as tooz adds it keeps cronlock out, and cronlock's renewals keep
//! its key.

use std::time::Duration;

use crate::tooz::{renewals_keep_the_key, tooz_env, while_held};
use crate::util::memcached::MemcachedServer;
use crate::util::*;

/// A memcached server, cronlock's settings for it and coolock's URL.
fn setup() -> (MemcachedServer, Vec<(String, String)>, String) {
    let server = MemcachedServer::start();
    let url = format!("memcached://127.0.0.1:{}", server.port);
    let env = with(&server.env(), &[("CRONLOCK_NODE", "web-7")]);
    (server, env, url)
}

crate::tooz::both_ways!(setup());

/// `mg <key> t f v`: the item's seconds left, flags and value.
fn meta(server: &MemcachedServer, key: &str) -> Option<(i64, u32, String)> {
    let reply = server.request(&format!("mg {key} t f v\r\n"))?;
    let (header, rest) = reply.split_once("\r\n")?;
    let mut words = header.split(' ');
    (words.next()? == "VA").then_some(())?;
    let (mut ttl, mut flags) = (None, None);
    for word in words {
        if let Some(t) = word.strip_prefix('t') {
            ttl = t.parse().ok();
        } else if let Some(f) = word.strip_prefix('f') {
            flags = f.parse().ok();
        }
    }
    Some((ttl?, flags?, rest.split("\r\n").next()?.to_string()))
}

#[test]
fn the_key_holds_the_node_name_with_flags_one_for_thirty_seconds() {
    let (server, env, _) = setup();
    while_held(&env, &[("CRONLOCK_GRACE", "-1")], |_| {
        let (ttl, flags, value) = meta(&server, "__TOOZ_LOCK_nightly").expect("the lock's item");
        assert_eq!((flags, value.as_str()), (1, "web-7"));
        assert!((25..=30).contains(&ttl), "{ttl} s left");
    });
    assert_eq!(server.get("__TOOZ_LOCK_nightly"), None, "released");
}

#[test]
fn a_lock_added_as_tooz_adds_it_keeps_cronlock_out() {
    let (server, env, _) = setup();
    let added = server.request("add __TOOZ_LOCK_nightly 1 30 5\r\nweb-1\r\n");
    assert_eq!(added.as_deref(), Some("STORED\r\n"));
    run(&tooz_env(&env, "nightly"), &["true"]).expect(200);
    assert_eq!(server.get("__TOOZ_LOCK_nightly").as_deref(), Some("web-1"));
    // `add` fails whoever asks, even a run with the holder's node name.
    run(
        &with(&tooz_env(&env, "nightly"), &[("CRONLOCK_NODE", "web-1")]),
        &["true"],
    )
    .expect(200);
    server.request("delete __TOOZ_LOCK_nightly\r\n");
    run(&tooz_env(&env, "nightly"), &["true"]).expect(0);
}

#[test]
fn renewals_keep_the_key_past_its_first_lease() {
    let (server, env, _) = setup();
    // Added no earlier than the spawn to expire 3 s on, which memcached may
    // stretch by up to a second: without a renewal gone 4 s later.
    renewals_keep_the_key(&env, Duration::from_secs(5), || {
        let (ttl, _, value) = meta(&server, "__TOOZ_LOCK_nightly").expect("the key lapsed");
        assert_eq!(value, "web-7");
        Duration::from_secs(ttl.max(0) as u64)
    });
}
