//! The store conformance suite against a private memcached, and what
//! cronlock does with a memcached URL that leads nowhere useful.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::memcached::MemcachedServer;
use crate::util::*;

// Fencing best effort: memcached keeps nothing on disk and evicts.
crate::conformance::server_fixture!(Memcached(MemcachedServer), fencing: Some(false), history: true);

crate::conformance::suite!(Memcached);
crate::ctl_suite::suite!(Memcached);

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

/// A proxy in front of memcached that holds back the answer to the first
/// request (the read) of each of the first `n` connections until all `n`
/// have been read: every contender then sees the same state before any of
/// them writes, which timing alone rarely arranges.
fn barrier_proxy(upstream: u16, n: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrived = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for (index, client) in listener.incoming().flatten().enumerate() {
            let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut client_in, &mut server_out));
            let arrived = Arc::clone(&arrived);
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                if index < n {
                    // `stats` and `gets` each end with END.
                    let mut first = Vec::new();
                    let mut buf = [0; 4096];
                    while first.windows(5).filter(|w| w == b"END\r\n").count() < 2 {
                        match server_in.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(read) => first.extend_from_slice(&buf[..read]),
                        }
                    }
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while arrived.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let _ = client_out.write_all(&first);
                }
                let _ = std::io::copy(&mut server_in, &mut client_out);
            });
        }
    });
    port
}

/// Ten runs that all read the lock before any of them writes: exactly one
/// runs its command.
fn ten_simultaneous_contenders(server: &MemcachedServer, label: &str) {
    let dir = TempDir::new(label);
    let proxy = barrier_proxy(server.port, 10);
    let env = with(
        &[],
        &[
            ("CRONLOCK_URL", &format!("memcached://127.0.0.1:{proxy}")),
            ("CRONLOCK_KEY", "race"),
        ],
    );
    let marker = format!("echo x >> {}", dir.join("ran").display());
    let contenders: Vec<_> = (0..10)
        .map(|_| {
            cronlock(&env)
                .args(["sh", "-c", &marker])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes: Vec<i32> = contenders
        .into_iter()
        .map(|child| child.wait_with_output().unwrap().status.code().unwrap_or(-1))
        .collect();
    codes.sort();
    assert_eq!(codes, [0, 200, 200, 200, 200, 200, 200, 200, 200, 200], "{label}");
    let runs = std::fs::read_to_string(dir.join("ran")).unwrap_or_default();
    assert_eq!(runs.lines().count(), 1, "{label}");
}

#[test]
fn contenders_reading_at_the_same_moment_have_exactly_one_winner() {
    let server = MemcachedServer::start();
    // Nobody holds it: every contender tries `add`.
    ten_simultaneous_contenders(&server, "free");
    // A holder whose time ran out: every contender tries to take it over.
    let stale = format!("{} someone-else", unix_now() - 5);
    let set = format!("set cronlock.race 0 600 {}\r\n{stale}\r\n", stale.len());
    assert_eq!(server.request(&set).as_deref(), Some("STORED\r\n"));
    ten_simultaneous_contenders(&server, "stale");
}

#[test]
fn a_late_release_leaves_the_new_holders_value_alone() {
    let server = MemcachedServer::start();
    let dir = TempDir::new("late");
    let env = with(&server.env(), &[("CRONLOCK_KEY", "late"), ("CRONLOCK_RELEASE", "0")]);
    let first = Gated::new(&dir, "first");
    let taken_at = unix_now();
    let mut first_run = cronlock(&env).args(["sh", "-c", &first.script]).spawn().unwrap();
    first.wait_started();
    wait_until(Duration::from_secs(10), "the first run's time to run out", || {
        unix_now() > taken_at + 2
    });
    let env = with(&server.env(), &[("CRONLOCK_KEY", "late"), ("CRONLOCK_RELEASE", "600")]);
    let second = Gated::new(&dir, "second");
    let mut second_run = cronlock(&env).args(["sh", "-c", &second.script]).spawn().unwrap();
    second.wait_started();
    let taken_over = server.get("cronlock.late").unwrap();
    first.open();
    assert!(first_run.wait().unwrap().success());
    let after_release = server.get("cronlock.late");
    second.open();
    assert!(second_run.wait().unwrap().success());
    // Not merely still held (the first run's grace would do that): the
    // second run's own value, untouched.
    assert_eq!(after_release.as_deref(), Some(taken_over.as_str()));
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

/// Waits until the clock of `server` (`stats`' time, which memcached
/// moves once a second on a tick of its own) shows a later second.
fn next_server_second(server: &MemcachedServer) {
    let now = || {
        let stats = server.request("stats\r\n").unwrap_or_default();
        let time = stats.lines().find_map(|line| line.strip_prefix("STAT time "));
        time.and_then(|time| time.trim().parse::<i64>().ok()).unwrap()
    };
    let start = now();
    wait_until(Duration::from_secs(5), "memcached's clock to tick", || now() > start);
}

/// The token a run under `env` gets (its command prints it).
#[track_caller]
fn fencing_token(env: &[(String, String)]) -> u64 {
    let result = run(env, &["sh", "-c", "echo \"$CRONLOCK_FENCING_TOKEN\""]);
    result.expect(0);
    result.stdout().trim().parse().unwrap()
}

#[test]
fn fencing_tokens_outgrow_a_counter_lost_to_an_eviction_or_a_restart() {
    let server = MemcachedServer::start();
    let fenced = [
        ("CRONLOCK_KEY", "fenced"),
        ("CRONLOCK_FENCING", "on"),
        ("CRONLOCK_GRACE", "-1"),
    ];
    let env = with(&server.env(), &fenced);
    let before = unix_now() - 2;
    let mut tokens = vec![fencing_token(&env), fencing_token(&env)];
    // The counter is the item beside the lock, with no expiry, holding the
    // newest token, which starts from the server's clock.
    assert_eq!(server.get("cronlock.fenced%:fence"), Some(tokens[1].to_string()));
    let meta = server.request("mg cronlock.fenced%:fence t\r\n").unwrap();
    assert_eq!(meta.trim(), "HD t-1", "{meta}");
    assert!(tokens[0] / 1_000_000 > before as u64, "{tokens:?} at {before}");
    // Evicted, in a later second of the server's clock (within the second
    // it was made, a lost counter starts again where it did: see the
    // store's comment).
    next_server_second(&server);
    assert_eq!(
        server.request("delete cronlock.fenced%:fence\r\n").as_deref(),
        Some("DELETED\r\n")
    );
    tokens.push(fencing_token(&env));
    tokens.push(fencing_token(&env));
    // A restart forgets everything: a new server is the same.
    next_server_second(&server);
    drop(server);
    let restarted = MemcachedServer::start();
    let env = with(&restarted.env(), &fenced);
    tokens.push(fencing_token(&env));
    tokens.push(fencing_token(&env));
    assert!(tokens.windows(2).all(|pair| pair[0] < pair[1]), "{tokens:?}");
    // The counter is no lock to cronlockctl.
    let listed = ctl(&env, &["list"]);
    listed.expect(0);
    assert_eq!(listed.stdout(), "", "{}", listed.stdout());
    ctl(&env, &["fence", "cronlock.fenced", &tokens[5].to_string()]).expect(0);
}

#[test]
fn toozs_style_refuses_fencing_with_one_line() {
    let server = MemcachedServer::start();
    let env = with(
        &server.env(),
        &[("CRONLOCK_KEY_STYLE", "tooz"), ("CRONLOCK_FENCING", "on")],
    );
    let line = expect_refusal(&env, "CRONLOCK_KEY_STYLE=tooz", &[]);
    assert!(line.contains("CRONLOCK_FENCING"), "{line}");
}

/// `cronlockctl history` of `job`, newest first.
fn history(env: &[(String, String)], job: &str) -> Vec<serde_json::Value> {
    let listed = ctl(env, &["--json", "history", "--key", job]);
    listed.expect(0);
    listed.json_lines()
}

/// The value of the item `key`, whole (`MemcachedServer::get` stops at
/// the first line).
fn value(server: &MemcachedServer, key: &str) -> Option<String> {
    let reply = server.request(&format!("get {key}\r\n"))?;
    let mut parts = reply.split("\r\n");
    parts.next().filter(|header| header.starts_with("VALUE "))?;
    parts.next().map(str::to_string)
}

#[test]
fn the_history_is_two_items_beside_the_lock_that_no_listing_shows_nor_a_reset_removes() {
    let server = MemcachedServer::start();
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
    // The runs are lines of JSON, newest first, cut to two; the last
    // success is the record alone; neither item expires.
    let runs = value(&server, "cronlock.kept%:runs").expect("the runs are stored");
    let lines: Vec<serde_json::Value> = runs.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{runs}");
    assert_eq!((&lines[0]["exit"], &lines[1]["exit"]), (&4.into(), &0.into()), "{runs}");
    let success: serde_json::Value =
        serde_json::from_str(&value(&server, "cronlock.kept%:succeeded").expect("the last success is stored")).unwrap();
    assert_eq!(success["exit"], 0);
    for key in ["cronlock.kept%:runs", "cronlock.kept%:succeeded"] {
        let meta = server.request(&format!("mg {key} t\r\n")).unwrap();
        assert_eq!(meta.trim(), "HD t-1", "{key}: {meta}");
    }
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["exit"], &runs[1]["exit"]), (&4.into(), &0.into()));
    // Nothing is listed but the lock kept for its grace.
    let kept = with(&env, &[("CRONLOCK_GRACE", "60")]);
    run(&kept, &["true"]).expect(0);
    let listed = ctl(&env, &["--json", "list"]);
    listed.expect(0);
    let locks = listed.json_lines();
    assert_eq!(locks.len(), 1, "{}", listed.stdout());
    assert_eq!(locks[0]["key"], "cronlock.kept");
    // An unlock and a reset take the lock, never the history.
    ctl(&env, &["unlock", "--key", "kept"]).expect(0);
    run(&kept, &["true"]).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    let listed = ctl(&env, &["list"]);
    listed.expect(0);
    assert_eq!(listed.stdout(), "");
    ctl(&env, &["status", "--key", "kept"]).expect(0);
    let runs = history(&env, "kept");
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["exit"], &runs[1]["exit"]), (&0.into(), &0.into()));
    ctl(&env, &["check", "--key", "kept", "--max-age", "1h"]).expect(0);
    // tooz's style keeps none, and says so in one line.
    let line = expect_refusal(&with(&env, &[("CRONLOCK_KEY_STYLE", "tooz")]), "CRONLOCK_HISTORY", &[]);
    assert!(line.contains("not supported"), "{line}");
}

/// A proxy in front of `upstream` that holds back the answer to the first
/// request of each connection in which `needle` appears, until `n`
/// connections have sent theirs: every run then reads the same history
/// before any of them writes, which timing alone rarely arranges. Plain
/// TCP, so the DynamoDB tests use it too (in front of moto's HTTP).
pub(super) fn read_together_proxy(upstream: u16, n: usize, needle: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrived = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let asked = Arc::new(AtomicUsize::new(0));
            let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut server_in, mut client_out) = (server, client);
            let seen = Arc::clone(&asked);
            let counted = Arc::clone(&arrived);
            std::thread::spawn(move || {
                let mut recent = Vec::new();
                let mut buf = [0; 16384];
                loop {
                    let read = match client_in.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = server_out.shutdown(Shutdown::Both);
                            return;
                        }
                        Ok(read) => read,
                    };
                    recent.extend_from_slice(&buf[..read]);
                    if seen.load(Ordering::SeqCst) == 0 && recent.windows(needle.len()).any(|w| w == needle) {
                        seen.store(1, Ordering::SeqCst);
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    let keep = recent.len().saturating_sub(needle.len());
                    recent.drain(..keep);
                    if server_out.write_all(&buf[..read]).is_err() {
                        return;
                    }
                }
            });
            let arrived = Arc::clone(&arrived);
            std::thread::spawn(move || {
                let mut buf = [0; 16384];
                loop {
                    let read = match server_in.read(&mut buf) {
                        // An HTTP/1.0 server closes after each answer.
                        Ok(0) | Err(_) => {
                            let _ = client_out.shutdown(Shutdown::Both);
                            return;
                        }
                        Ok(read) => read,
                    };
                    // The request was sent before its answer came, so the
                    // first bytes after it was seen are its answer.
                    if asked.load(Ordering::SeqCst) == 1 {
                        asked.store(2, Ordering::SeqCst);
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while arrived.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    if client_out.write_all(&buf[..read]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Lets `n` runs of `env` (a semaphore of at least `n` slots) end at once
/// and returns their pids.
pub(super) fn end_together(env: &[(String, String)], n: usize) -> Vec<u64> {
    end_together_around(env, n, |open| open())
}

/// [`end_together`], `around` given the call that lets them end (to hold
/// something the runs need around it).
pub(super) fn end_together_around(env: &[(String, String)], n: usize, around: impl FnOnce(&dyn Fn())) -> Vec<u64> {
    let dir = TempDir::new("history-together");
    let gates: Vec<Gated> = (0..n).map(|i| Gated::new(&dir, &format!("run{i}"))).collect();
    let children: Vec<_> = gates
        .iter()
        .map(|gated| cronlock(env).args(["sh", "-c", &gated.script]).spawn().unwrap())
        .collect();
    for gated in &gates {
        gated.wait_started();
    }
    around(&|| {
        for gated in &gates {
            gated.open();
        }
    });
    children
        .into_iter()
        .map(|mut child| {
            let pid = u64::from(child.id());
            assert!(child.wait().unwrap().success());
            pid
        })
        .collect()
}

#[test]
fn runs_that_end_together_each_keep_their_record_and_the_cut_holds() {
    let server = MemcachedServer::start();
    let proxy = read_together_proxy(server.port, 8, b"gets cronlock.together%:runs\r\n");
    let env = with(
        &[],
        &[
            ("CRONLOCK_URL", &format!("memcached://127.0.0.1:{proxy}")),
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
    let mut first = end_together(&env, 8);
    first.sort_unstable();
    assert_eq!(pids_of(&history(&env, "together")), first, "no record lost");
    // Eight more, of which the newest ten records hold all.
    let mut second = end_together(&env, 8);
    let runs = history(&env, "together");
    assert_eq!(runs.len(), 10);
    let mut newest = pids_of(&runs[..8]);
    second.sort_unstable();
    assert_eq!(newest.len(), 8);
    newest.dedup();
    assert_eq!(newest, second, "the second eight are the newest eight");
}
