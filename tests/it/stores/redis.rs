//! The store conformance suite and cronlockctl's suite against a private
//! redis-server, and SCAN pagination over a thousand locks.

use crate::util::*;

// Fencing best effort: Redis replicates asynchronously, a failover may lose bumps.
crate::conformance::server_fixture!(Redis(RedisServer), fencing: Some(false), history: true);

crate::conformance::suite!(Redis);
crate::ctl_suite::suite!(Redis);

#[test]
fn list_pages_through_a_thousand_locks_with_scan() {
    let redis = RedisServer::start();
    // 1000 locks as cronlock writes them, 1000 owner records beside them,
    // and keys under another prefix that only --all-prefixes shows.
    redis.query(&[
        "EVAL",
        "for i = 1, 1000 do redis.call('SET', 'cronlock.job' .. i, '4000000000') \
         redis.call('SET', 'cronlock.job' .. i .. ':owner', '{\"node\":\"n\",\"pid\":1,\"start\":1,\"command\":\"c\"}') \
         redis.call('SET', 'other.job' .. i, '4000000000') end",
        "0",
    ]);
    let listed = ctl(&redis.env(), &["--json", "list"]);
    listed.expect(0);
    let lines = listed.json_lines();
    assert_eq!(lines.len(), 1000);
    assert!(lines.iter().all(|l| l["state"] == "held" && l["owner"]["node"] == "n"));
    let all = ctl(&redis.env(), &["list", "--all-prefixes"]);
    assert_eq!(all.stdout().lines().count(), 2000);
}

#[test]
fn help_and_version() {
    let help = ctl(&[], &["--help"]);
    help.expect(0);
    for command in [
        "key",
        "status",
        "list",
        "unlock",
        "why",
        "fence",
        "history",
        "check",
        "--max-age",
        "--json",
        "--force",
        "--all-prefixes",
    ] {
        assert!(help.stdout().contains(command), "{command}");
    }
    let version = ctl(&[], &["--version"]);
    version.expect(0);
    assert_eq!(version.stdout(), format!("cronlockctl {}\n", env!("CARGO_PKG_VERSION")));
    ctl(&[], &["frobnicate", "--key", "x"]).expect(2);
}

/// A connection of the test's own to `server`, answered (so it holds one
/// of the server's client slots), authenticated with `password` if given.
fn client_slot(server: &RedisServer, password: Option<&str>) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut held = None;
    wait_until(std::time::Duration::from_secs(10), "a client slot of our own", || {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", server.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut request = String::new();
        if let Some(password) = password {
            request.push_str(&format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len()));
        }
        request.push_str("*1\r\n$4\r\nPING\r\n");
        let mut answer = [0u8; 64];
        let read = stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.read(&mut answer))
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&answer[..read]);
        let ok = text.ends_with("+PONG\r\n")
            || (text == "+OK\r\n" && {
                let more = stream.read(&mut answer).unwrap_or(0);
                &answer[..more] == b"+PONG\r\n"
            });
        if ok {
            held = Some(stream);
        }
        ok
    });
    held.unwrap()
}

/// How many connections the server has turned away over its `maxclients`
/// (INFO's `rejected_connections`), asked on `slot`.
fn rejected(slot: &mut std::net::TcpStream) -> u64 {
    use std::io::{Read, Write};
    slot.write_all(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n").unwrap();
    let mut text = String::new();
    let mut chunk = [0u8; 4096];
    while !text.contains("rejected_connections:") || !text.ends_with("\r\n") {
        let read = slot.read(&mut chunk).unwrap();
        assert!(read > 0, "the server closed our slot");
        text.push_str(&String::from_utf8_lossy(&chunk[..read]));
    }
    text.lines()
        .find_map(|line| line.strip_prefix("rejected_connections:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A server at its `maxclients` answers "max number of clients reached" and
/// closes: a run waits for a slot with short pauses (within
/// CRONLOCK_REDIS_TIMEOUT) instead of exiting 201, with and without a
/// password (whose AUTH travels with the first command).
#[test]
fn a_server_at_its_maxclients_is_waited_for_not_an_error() {
    for password in [None, Some("s3cret")] {
        let mut extra = vec!["--maxclients", "1"];
        if let Some(password) = password {
            extra.extend(["--requirepass", password]);
        }
        let server = RedisServer::start_with(&extra, password);
        let mut slot = client_slot(&server, password);
        let dir = TempDir::new("maxclients");
        let mut command = cronlock(&with(&server.env(), &[("CRONLOCK_KEY", "full")]));
        command.env_remove("CRONLOCK_RECONNECT_BACKOFF");
        let run = command
            .args(marker(&dir))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let before = rejected(&mut slot);
        wait_until(std::time::Duration::from_secs(10), "the run to be turned away", || {
            rejected(&mut slot) > before
        });
        drop(slot);
        let output = run.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "password {password:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(runs(&dir), 1);
    }
}

#[test]
fn tooz_style_refuses_fencing_and_history_with_one_line() {
    let redis = RedisServer::start();
    let tooz = with(&redis.env(), &[("CRONLOCK_KEY_STYLE", "tooz")]);
    let line = expect_refusal(&with(&tooz, &[("CRONLOCK_FENCING", "on")]), "CRONLOCK_FENCING", &[]);
    assert!(line.contains("CRONLOCK_KEY_STYLE=tooz"), "{line}");
    let line = expect_refusal(&with(&tooz, &[("CRONLOCK_HISTORY", "5")]), "CRONLOCK_HISTORY", &[]);
    assert!(line.contains("CRONLOCK_KEY_STYLE=tooz"), "{line}");
}
