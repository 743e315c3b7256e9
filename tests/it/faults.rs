//! Faults with real processes: Redis down, killed and restarted, a server
//! that never answers, a command that ignores SIGTERM, the wrapper
//! SIGKILLed.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_kill_after() {
    let redis = RedisServer::start();
    let dir = TempDir::new("ignore-term");
    let started = dir.join("started");
    let script = format!("trap '' TERM; touch {}; sleep 60", started.display());
    let env = with(
        &redis.env(),
        &[("CRONLOCK_KILL_AFTER", "1"), ("CRONLOCK_KEY", "stubborn")],
    );
    let child = cronlock(&env).args(["sh", "-c", &script]).spawn().unwrap();
    wait_until(Duration::from_secs(10), "the command to start", || started.exists());
    let signalled = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    // It died of the SIGKILL that followed: 128 + 9.
    assert_eq!(output.status.code(), Some(137));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let ttl: i64 = redis.query(&["TTL", "cronlock.stubborn"]).parse().unwrap();
    assert!((1..=41).contains(&ttl), "released with grace, ttl {ttl}");
}

#[test]
fn sigkill_to_the_wrapper_kills_the_commands_whole_group() {
    let redis = RedisServer::start();
    let dir = TempDir::new("wrapper-kill");
    let pids = dir.join("pids");
    // The shell (direct child) and a grandchild in the background.
    let script = format!("sleep 300 & echo $$ $! > {}; wait", pids.display());
    let child = cronlock(&redis.env()).args(["sh", "-c", &script]).spawn().unwrap();
    wait_until(Duration::from_secs(10), "the command to start", || {
        std::fs::read_to_string(&pids).is_ok_and(|s| s.ends_with('\n'))
    });
    let both: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let mut child = child;
    child.wait().unwrap();
    for pid in both {
        wait_until(Duration::from_secs(5), "the command and its grandchild to die", || {
            !alive(pid)
        });
    }
}

#[test]
fn redis_down_before_the_lock_honours_attempts_and_backoff() {
    let env = vec![
        ("CRONLOCK_HOST".to_string(), "127.0.0.1".to_string()),
        ("CRONLOCK_PORT".to_string(), free_port().to_string()),
        ("CRONLOCK_RECONNECT_ATTEMPTS".to_string(), "2".to_string()),
        ("CRONLOCK_RECONNECT_BACKOFF".to_string(), "1".to_string()),
    ];
    let started = Instant::now();
    let result = run(&env, &["touch", "/nonexistent/never"]);
    let took = started.elapsed();
    result.expect(201);
    // Waits of 0 s then 1 s between the three tries.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(result.stderr().contains("after 3 attempts"), "{}", result.stderr());
}

#[test]
fn redis_restarted_while_the_command_runs_gets_the_release() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let dir = TempDir::new("restart");
    let gated = Gated::new(&dir, "job");
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_KEY", "restart"),
            ("CRONLOCK_RECONNECT_ATTEMPTS", "10"),
            ("CRONLOCK_RECONNECT_BACKOFF", "1"),
            ("CRONLOCK_VERBOSE", "yes"),
        ],
    );
    let child = cronlock(&env)
        .args(["sh", "-c", &format!("{}; echo finished", gated.script)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    redis.kill();
    gated.open();
    // The release fails at least once while nobody listens, then finds the
    // new server (which starts empty: the key is written back with its grace).
    let back = RedisServer::start_on(port, &[]);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "finished\n",
        "the command ran to its end"
    );
    let ttl: i64 = back.query(&["TTL", "cronlock.restart"]).parse().unwrap();
    assert!((1..=41).contains(&ttl), "ttl {ttl}: {stderr}");
}

#[test]
fn a_server_that_never_answers_is_given_up_after_the_redis_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and keeps it open without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let env = vec![
        ("CRONLOCK_HOST".to_string(), "127.0.0.1".to_string()),
        ("CRONLOCK_PORT".to_string(), port.to_string()),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "1".to_string()),
    ];
    let started = Instant::now();
    let result = run(&env, &["touch", "/nonexistent/never"]);
    let took = started.elapsed();
    result.expect(201);
    // The lock request went out, so it is not resent (it may have run):
    // one timeout, no reconnect loop.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(result.stderr().contains("no answer within"), "{}", result.stderr());
}
