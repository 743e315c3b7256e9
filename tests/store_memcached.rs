//! The store conformance suite against a private memcached, and what
//! cronlock does with a memcached URL that leads nowhere useful.

mod conformance;
mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use util::memcached::MemcachedServer;
use util::*;

struct Memcached(MemcachedServer);

impl conformance::Fixture for Memcached {
    fn start() -> Memcached {
        Memcached(MemcachedServer::start())
    }

    fn env(&self) -> Vec<(String, String)> {
        self.0.env()
    }

    fn stop(&mut self) -> bool {
        self.0.kill();
        true
    }
}

conformance::suite!(Memcached);

/// Runs `true` against `url` and checks for exit 201, one stderr line
/// containing `expected`, and that the command did not run.
#[track_caller]
fn refused(extra: &[(&str, &str)], expected: &str) {
    let dir = TempDir::new("refused");
    let marker = dir.join("ran");
    let env = with(
        &[],
        &[("CRONLOCK_REDIS_TIMEOUT", "1"), ("CRONLOCK_RECONNECT_ATTEMPTS", "1")],
    );
    let result = run(
        &with(&env, extra),
        &["sh", "-c", &format!("touch {}", marker.display())],
    );
    result.expect(201);
    let stderr = result.stderr();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!marker.exists(), "the command must not run");
}

#[test]
fn the_lock_holds_its_expiry_and_a_token_and_expires_with_it() {
    let server = MemcachedServer::start();
    let env = with(&server.env(), &[("CRONLOCK_KEY", "look"), ("CRONLOCK_GRACE", "30")]);
    run(&env, &["true"]).expect(0);
    let value = server.get("cronlock.look").expect("the lock is stored");
    let mut words = value.split(' ');
    let expiry: i64 = words.next().unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now + 28..=now + 31).contains(&expiry), "{value} at {now}");
    assert_eq!(words.next().map(str::len), Some(32), "{value}");
    // memcached's own expiry (meta get, flag t: seconds left) ends with it.
    let meta = server.request("mg cronlock.look t\r\n").unwrap();
    let ttl: i64 = meta.trim().strip_prefix("HD t").unwrap().parse().unwrap();
    assert!(
        (expiry - now - 2..=expiry - now).contains(&ttl),
        "{meta} for {value} at {now}"
    );
}

#[test]
fn keys_with_spaces_and_long_keys_lock_as_any_other() {
    let server = MemcachedServer::start();
    let dir = TempDir::new("keys");
    let long = "k".repeat(400);
    for key in ["a key with spaces", "tab\tand%", long.as_str()] {
        let env = with(&server.env(), &[("CRONLOCK_KEY", key)]);
        let gated = Gated::new(&dir, &format!("{}", key.len()));
        let mut holder = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
        gated.wait_started();
        run(&env, &["true"]).expect(200);
        gated.open();
        assert!(holder.wait().unwrap().success());
    }
    // Distinct keys stay distinct after escaping.
    run(
        &with(&server.env(), &[("CRONLOCK_KEY", "a%20key with spaces")]),
        &["true"],
    )
    .expect(0);
}

#[test]
fn a_bad_memcached_url_exits_201_with_one_line() {
    refused(&[("CRONLOCK_URL", "memcached://h:0")], "not a port number");
    refused(&[("CRONLOCK_URL", "memcached://user:pw@h")], "no user or password");
    refused(&[("CRONLOCK_URL", "memcached://h/1")], "only a host and a port");
}

#[test]
fn redis_settings_with_a_memcached_url_exit_201_with_one_line() {
    let url = ("CRONLOCK_URL", "memcached://127.0.0.1");
    refused(&[url, ("CRONLOCK_AUTH", "pw")], "not supported with a memcached://");
    refused(&[url, ("CRONLOCK_TLS", "yes")], "not supported with a memcached://");
}

#[test]
fn an_unreachable_port_exits_201_with_one_line() {
    let port = free_port().to_string();
    let url = format!("memcached://127.0.0.1:{port}");
    refused(&[("CRONLOCK_URL", &url)], "cannot reach memcached");
}

#[test]
fn a_redis_server_on_the_port_exits_201_with_one_line() {
    let redis = RedisServer::start();
    let url = format!("memcached://127.0.0.1:{}", redis.port);
    refused(&[("CRONLOCK_URL", &url)], "not a memcached server");
}

/// A listener that answers every connection with `reply` (then, if
/// `hang`, keeps it open in silence).
fn fake_server(reply: &'static [u8], hang: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let mut request = [0; 256];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut request);
            let _ = stream.write_all(reply);
            if hang {
                kept.push(stream);
            }
        }
    });
    port
}

#[test]
fn a_server_writing_garbage_exits_201_with_one_line() {
    let port = fake_server(b"\x00\xffgarbage without a line end", false);
    let url = format!("memcached://127.0.0.1:{port}");
    refused(&[("CRONLOCK_URL", &url)], "not a memcached server");
    let port = fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n", false);
    let url = format!("memcached://127.0.0.1:{port}");
    refused(&[("CRONLOCK_URL", &url)], "not a memcached server");
}

#[test]
fn a_server_that_never_answers_exits_201_after_the_timeout() {
    let port = fake_server(b"", true);
    let url = format!("memcached://127.0.0.1:{port}");
    refused(&[("CRONLOCK_URL", &url)], "no answer within CRONLOCK_REDIS_TIMEOUT");
}
