//! CRONLOCK_SYSLOG: one line per lock event, received on a datagram socket
//! the test binds in place of /dev/log.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::util::*;

/// A datagram socket bound in `dir` in place of /dev/log, and its path;
/// a read waits up to 10 s.
pub fn daemon(dir: &TempDir) -> (PathBuf, UnixDatagram) {
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (path, socket)
}

/// The next line the daemon received.
pub fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 4096];
    let n = socket.recv(&mut buffer).expect("a syslog line within the timeout");
    String::from_utf8_lossy(&buffer[..n]).to_string()
}

#[test]
fn each_event_sends_one_line_with_key_command_and_status() {
    let redis = RedisServer::start();
    let dir = TempDir::new("syslog");
    let (path, socket) = daemon(&dir);
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_SYSLOG", "yes"),
            ("CRONLOCK_SYSLOG_FACILITY", "local3"),
            ("CRONLOCK_SYSLOG_SOCKET", path.to_str().unwrap()),
            ("CRONLOCK_KEY", "logged"),
        ],
    );
    // local3 = 19: 19 * 8 + 6 (info) = 158, + 4 (warning) = 156, + 3 (err) = 155.
    run(&env, &["sh", "-c", "exit 3"]).expect(3);
    let line = receive(&socket);
    assert!(line.starts_with("<158>"), "{line}");
    assert!(line.contains("cronlock["), "{line}");
    assert!(
        line.contains("lock taken") && line.contains("key=cronlock.logged"),
        "{line}"
    );
    assert!(
        line.contains("command=\"sh -c exit 3\"") && line.ends_with("status=3"),
        "{line}"
    );

    run(&env, &["true"]).expect(200);
    let line = receive(&socket);
    assert!(
        line.starts_with("<158>") && line.contains("held") && line.ends_with("status=200"),
        "{line}"
    );

    let timed = with(&env, &[("CRONLOCK_KEY", "slow"), ("CRONLOCK_TIMEOUT", "1")]);
    run(&timed, &["sleep", "30"]).expect(202);
    let line = receive(&socket);
    assert!(
        line.starts_with("<156>") && line.contains("timed out") && line.ends_with("status=202"),
        "{line}"
    );

    let gated = Gated::new(&dir, "lease");
    let leased = with(&env, &[("CRONLOCK_KEY", "leased"), ("CRONLOCK_LEASE", "3")]);
    let child = cronlock(&leased)
        .args(["sh", "-c", &gated.script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    redis.query(&["DEL", "cronlock.leased"]);
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(201));
    let line = receive(&socket);
    assert!(
        line.starts_with("<155>") && line.contains("lease lost") && line.ends_with("status=201"),
        "{line}"
    );

    let broken = with(&env, &[("CRONLOCK_KEY", "x"), ("CRONLOCK_DB", "99999")]);
    run(&broken, &["true"]).expect(201);
    let line = receive(&socket);
    assert!(
        line.starts_with("<155>") && line.contains("error") && line.ends_with("status=201"),
        "{line}"
    );
}

#[test]
fn a_missing_syslog_socket_is_one_warning_and_the_run_goes_on() {
    let redis = RedisServer::start();
    let env = with(
        &redis.env(),
        &[
            ("CRONLOCK_SYSLOG", "yes"),
            ("CRONLOCK_SYSLOG_SOCKET", "/nonexistent/log"),
        ],
    );
    let result = run(&env, &["true"]);
    result.expect(0);
    assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
    assert!(
        result.stderr().contains("warning") && result.stderr().contains("/nonexistent/log"),
        "{}",
        result.stderr()
    );
    let result = run(
        &with(&redis.env(), &[("CRONLOCK_SYSLOG_FACILITY", "local3")]),
        &["true"],
    );
    result.expect(201);
    assert!(result.stderr().contains("syslog is off"), "{}", result.stderr());
}

#[test]
fn the_directory_store_logs_its_events_too() {
    let dir = TempDir::new("syslog-dir");
    let (path, socket) = daemon(&dir);
    let env = vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("file://{}", dir.join("locks").display()),
        ),
        ("CRONLOCK_SYSLOG".to_string(), "yes".to_string()),
        ("CRONLOCK_SYSLOG_SOCKET".to_string(), path.to_str().unwrap().to_string()),
        ("CRONLOCK_KEY".to_string(), "dir".to_string()),
    ];
    run(&env, &["true"]).expect(0);
    assert!(receive(&socket).contains("lock taken: key=cronlock.dir"));
    run(&env, &["true"]).expect(200);
    assert!(receive(&socket).ends_with("status=200"));
}
