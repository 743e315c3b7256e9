//! tooz's etcd lock: both ways with coolock on each of tooz's two etcd
//! drivers (`etcd3+http://`, etcd3gw on the JSON gateway under `/v3beta/`,
//! and `etcd3://`, python-etcd3 on gRPC), the bytes cronlock writes (both
//! drivers' keys on one lease), a key of either driver keeping cronlock
//! out, and the lease kept alive while the command runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tooz::tooz_env;
use crate::util::coolock::Coolock;
use crate::util::etcd::Etcd;
use crate::util::*;

/// A private etcd, cronlock's settings for it and coolock's URL.
type Setup = (Etcd, Vec<(String, String)>, String);

/// The fixture with coolock's URL on `scheme`.
fn etcd(scheme: &str) -> Setup {
    let etcd = Etcd::start();
    let env = etcd.env();
    let url = format!("{scheme}://127.0.0.1:{}", etcd.port);
    (etcd, env, url)
}

/// The fixture for coolock on `scheme`, or `None` (the reason printed, the
/// test skipped) where that tooz driver cannot run here: `etcd3+http://`
/// needs etcd's `/v3beta/` gateway, `etcd3://` the python `etcd3` module.
fn driver(scheme: &str) -> Option<Setup> {
    if scheme == "etcd3" && !Coolock::installed().is_ok_and(|c| c.has_module("etcd3")) {
        println!("skipped: the python etcd3 module (tooz's etcd3:// driver) is not installed beside coolock");
        return None;
    }
    let setup = etcd(scheme);
    if scheme == "etcd3+http" && !serves_v3beta(setup.0.port) {
        println!("skipped: this etcd does not serve /v3beta/, which etcd3gw 0.2.6 (tooz's etcd3+http driver) needs");
        return None;
    }
    Some(setup)
}

/// Whether the member on `port` answers the JSON gateway under `/v3beta/`,
/// where etcd3gw 0.2.6 sends its requests (etcd 3.4 serves it beside `/v3/`;
/// 3.5 dropped it).
fn serves_v3beta(port: u16) -> bool {
    let body = r#"{"key":"AA=="}"#;
    let request = format!(
        "POST /v3beta/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// coolock on `etcd3+http://` (etcd3gw, the JSON gateway).
mod gateway_driver {
    crate::tooz::both_ways!(match super::driver("etcd3+http") {
        Some(setup) => setup,
        None => return,
    });
}

/// coolock on `etcd3://` (python-etcd3, gRPC).
mod grpc_driver {
    crate::tooz::both_ways!(match super::driver("etcd3") {
        Some(setup) => setup,
        None => return,
    });
}

/// Every key in the store, with its value and lease, from `etcdctl get -w json`.
fn kvs(etcd: &Etcd) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let json: Value = serde_json::from_str(&etcd.ctl(&["get", "--prefix", "", "-w", "json"])).unwrap();
    let bytes = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .unwrap()
    };
    json["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        bytes(&kv["key"]),
                        bytes(&kv["value"]),
                        kv["lease"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `etcdctl lease timetolive` for `lease`: (granted TTL, remaining).
fn time_to_live(etcd: &Etcd, lease: i64) -> (i64, i64) {
    let json: Value =
        serde_json::from_str(&etcd.ctl(&["lease", "timetolive", &format!("{lease:x}"), "-w", "json"])).unwrap();
    (
        json["granted-ttl"].as_i64().unwrap_or(0),
        json["ttl"].as_i64().unwrap_or(-1),
    )
}

/// The two keys, each with the same 16-byte value on one lease: the lease.
fn both_keys_on_one_lease(etcd: &Etcd) -> i64 {
    let kvs = kvs(etcd);
    let keys: Vec<&[u8]> = kvs.iter().map(|(k, _, _)| k.as_slice()).collect();
    assert_eq!(keys, [&b"/locks/nightly"[..], b"/tooz/locksnightly"], "{kvs:?}");
    let (value, lease) = (&kvs[0].1, kvs[0].2);
    assert_eq!(value.len(), 16, "{kvs:?}");
    assert!(lease != 0 && kvs[1].2 == lease && &kvs[1].1 == value, "{kvs:?}");
    lease
}

#[test]
fn both_drivers_keys_are_held_on_one_lease_and_released_or_kept_after() {
    let (etcd, env, _) = etcd("etcd3");
    let dir = TempDir::new("tooz-etcd-bytes");
    let gated = Gated::new(&dir, "holder");
    let holder = cronlock(&with(&tooz_env(&env, "nightly"), &[("CRONLOCK_GRACE", "-1")]))
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    let lease = both_keys_on_one_lease(&etcd);
    let (granted, _) = time_to_live(&etcd, lease);
    assert_eq!(granted, 30, "tooz's lock_timeout");
    gated.open();
    assert!(holder.wait_with_output().unwrap().status.success());
    assert!(kvs(&etcd).is_empty(), "both keys go with a grace of -1");
    assert!(
        !etcd.ctl(&["lease", "list"]).contains(&format!("{lease:x}")),
        "the lease is revoked"
    );

    // A grace keeps both keys, moved to a lease of what is left of it.
    run(
        &with(&tooz_env(&env, "nightly"), &[("CRONLOCK_GRACE", "120")]),
        &["true"],
    )
    .expect(0);
    let kept = both_keys_on_one_lease(&etcd);
    let (granted, _) = time_to_live(&etcd, kept);
    assert!((100..=121).contains(&granted), "granted {granted}");
    run(&tooz_env(&env, "nightly"), &["true"]).expect(200);
    run(
        &with(&tooz_env(&env, "nightly"), &[("CRONLOCK_RESET", "yes")]),
        &["true"],
    )
    .expect(200);
    assert!(kvs(&etcd).is_empty(), "a reset deletes both keys");
}

#[test]
fn either_drivers_key_put_by_etcdctl_keeps_cronlock_out() {
    let (etcd, env, _) = etcd("etcd3");
    let dir = TempDir::new("tooz-etcd-etcdctl");
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    for key in ["/locks/nightly", "/tooz/locksnightly"] {
        etcd.ctl(&["put", key, "someone-else"]);
        run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(200);
        assert!(!marker.exists(), "cronlock ran while {key} was there");
        assert_eq!(kvs(&etcd).len(), 1, "nothing of cronlock's is left beside {key}");
        etcd.ctl(&["del", key]);
    }
    run(
        &with(&tooz_env(&env, "nightly"), &[("CRONLOCK_GRACE", "-1")]),
        &["sh", "-c", &touch],
    )
    .expect(0);
    assert!(marker.exists());
}

#[test]
fn the_lease_is_kept_alive_while_the_command_runs() {
    let (etcd, env, _) = etcd("etcd3");
    let dir = TempDir::new("tooz-etcd-renew");
    let gated = Gated::new(&dir, "holder");
    let env = with(
        &tooz_env(&env, "nightly"),
        &[("CRONLOCK_LEASE", "3"), ("CRONLOCK_GRACE", "-1")],
    );
    let holder = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let started = Instant::now();
    let lease = both_keys_on_one_lease(&etcd);
    // Unrenewed, the 3 s lease (granted before the command started) would
    // be gone within 3 s, and its keys with it.
    wait_until(Duration::from_secs(10), "keep-alives past 3 s", || {
        let (granted, remaining) = time_to_live(&etcd, lease);
        assert_eq!(granted, 3);
        assert!(remaining > 0, "the lease expired while the command ran");
        started.elapsed() > Duration::from_secs(5)
    });
    assert_eq!(both_keys_on_one_lease(&etcd), lease);
    gated.open();
    assert!(holder.wait_with_output().unwrap().status.success());
}
