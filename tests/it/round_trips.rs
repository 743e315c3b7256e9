//! Round trips: a whole run is at most two (AUTH and SELECT travel with the
//! lock script; the release is one), counted by a proxy between cronlock
//! and a real server, and by the server's own command statistics.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::util::*;

/// Forwards one connection at a time to `upstream` and counts the client's
/// turns: bytes from the client that follow an answer (or open the
/// connection) start a new round trip.
struct Proxy {
    port: u16,
    turns: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let turns = Arc::new(AtomicUsize::new(0));
        let counter = turns.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                // true: the last bytes went to the client (an answer).
                let answered = Arc::new(AtomicBool::new(true));
                let up = {
                    let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let (answered, counter) = (answered.clone(), counter.clone());
                    std::thread::spawn(move || {
                        pump(&mut from, &mut to, |_| {
                            if answered.swap(false, Ordering::SeqCst) {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                        })
                    })
                };
                let (mut from, mut to) = (server, client);
                pump(&mut from, &mut to, |_| answered.store(true, Ordering::SeqCst));
                let _ = up.join();
            }
        });
        Proxy { port, turns }
    }
}

fn pump(from: &mut TcpStream, to: &mut TcpStream, mut seen: impl FnMut(usize)) {
    let mut buf = [0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen(n);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn commandstats(redis: &RedisServer) -> Vec<String> {
    redis
        .query(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_config"))
        .map(|l| l.split(",usec").next().unwrap().to_string())
        .collect()
}

#[test]
fn a_run_with_password_and_database_is_two_round_trips() {
    let redis = RedisServer::with_password("pw");
    let proxy = Proxy::start(redis.port);
    redis.query(&["CONFIG", "RESETSTAT"]);
    let env = with(
        &redis.env(),
        &[("CRONLOCK_PORT", &proxy.port.to_string()), ("CRONLOCK_DB", "3")],
    );
    run(&env, &["true"]).expect(0);
    assert_eq!(
        proxy.turns.load(Ordering::SeqCst),
        2,
        "round trips of a run that takes the lock"
    );
    assert_only_scripts(&redis, 2, 1);

    // A run that finds the lock held: one round trip.
    redis.query(&["CONFIG", "RESETSTAT"]);
    run(&env, &["true"]).expect(200);
    assert_eq!(proxy.turns.load(Ordering::SeqCst), 3);
    assert_only_scripts(&redis, 1, 1);

    // A semaphore: every slot is tried in one script, held or not.
    let semaphore = with(&env, &[("CRONLOCK_CONCURRENCY", "3"), ("CRONLOCK_KEY", "sem")]);
    for _ in 0..3 {
        run(&semaphore, &["true"]).expect(0);
    }
    redis.query(&["CONFIG", "RESETSTAT"]);
    run(&semaphore, &["true"]).expect(200);
    assert_eq!(proxy.turns.load(Ordering::SeqCst), 3 + 6 + 1);
    assert_only_scripts(&redis, 1, 3);
}

/// The server saw `evals` scripts and, outside them, nothing but AUTH (also
/// sent by redis-cli here): no CLIENT SETINFO, HELLO, PING or SELECT of our own.
fn assert_only_scripts(redis: &RedisServer, evals: usize, slots: usize) {
    let stats = commandstats(redis);
    assert!(stats.contains(&format!("cmdstat_eval:calls={evals}")), "{stats:?}");
    // Inside the scripts: GET, SET, EXPIREAT, DEL, TIME, SELECT and EXISTS (is
    // anyone waiting?), at most twice per script and slot (the lock and its
    // owner record).
    let inside = ["get", "set", "expireat", "del", "time", "select", "exists"];
    for stat in &stats {
        let name = stat.trim_start_matches("cmdstat_").split(':').next().unwrap();
        let calls: usize = stat.rsplit('=').next().unwrap().parse().unwrap();
        match name {
            "eval" | "auth" => {}
            _ if inside.contains(&name) => assert!(calls <= 2 * evals * slots, "{stats:?}"),
            _ => panic!("unexpected command {name}: {stats:?}"),
        }
    }
}
