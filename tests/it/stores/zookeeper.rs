//! The store conformance suite against a private ZooKeeper server.

use std::time::{Duration, Instant};

use crate::util::zookeeper::ZooKeeper;

/// The session timeout cronlock asks for, which the test servers grant.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

// The token is a zxid, kept on disk with the server's data.
crate::conformance::server_fixture!(Zk(ZooKeeper), fencing: Some(true), history: true, restart);

crate::conformance::suite!(Zk);
crate::ctl_suite::suite!(Zk);

#[test]
fn a_server_of_another_kind_exits_201_with_one_line() {
    use std::net::TcpListener;
    // Accepts and never answers, as a wrong service on the port might.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("zookeeper://127.0.0.1:{port}");
    let accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4).flatten() {
            held.push(stream);
        }
    });
    let result = crate::util::run(&[("CRONLOCK_URL".to_string(), url)], &["true"]);
    result.expect(201);
    assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
    drop(accepting);
}

#[test]
fn a_server_nobody_listens_on_is_tried_again_on_the_reconnect_schedule() {
    let url = format!("zookeeper://127.0.0.1:{}", crate::util::free_port());
    let env = crate::util::with(
        &[("CRONLOCK_URL".to_string(), url)],
        &[("CRONLOCK_RECONNECT_ATTEMPTS", "2")],
    );
    let result = crate::util::run(&env, &["true"]);
    result.expect(201);
    let stderr = result.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("connection refused") && stderr.contains("after 3 attempts"),
        "{stderr}"
    );
    let verbose = crate::util::run(&crate::util::with(&env, &[("CRONLOCK_VERBOSE", "yes")]), &["true"]);
    assert!(
        verbose.stderr().contains("reconnecting in 0s (2 of 2)"),
        "{}",
        verbose.stderr()
    );
}

#[test]
fn a_bad_url_exits_201_with_one_line() {
    for url in ["zookeeper://", "zookeeper://h:99999", "zookeeper://h/a//b"] {
        let result = crate::util::run(&[("CRONLOCK_URL".to_string(), url.to_string())], &["true"]);
        result.expect(201);
        assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
    }
}

fn json(run: &crate::util::Run) -> serde_json::Value {
    serde_json::from_str(run.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

#[test]
fn cronlockctl_shows_a_lockex_style_lock_as_held_while_its_holder_runs() {
    let zk = ZooKeeper::start();
    let dir = crate::util::TempDir::new("ctl-lockex");
    let env = crate::util::with(
        &zk.env(),
        &[("CRONLOCK_KEY_STYLE", "lockex"), ("CRONLOCK_KEY", "nightly")],
    );
    crate::util::ctl(&env, &["status", "--key", "nightly"]).expect(0);
    let gated = crate::util::Gated::new(&dir, "job");
    let mut child = crate::util::cronlock(&env)
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    let held = crate::util::ctl(&env, &["--json", "status", "--key", "nightly"]);
    held.expect(1);
    let answer = json(&held);
    assert_eq!(answer["key"], "/lockex/nightly");
    assert_eq!(answer["state"], "held", "{answer}");
    assert_eq!(answer["running"], true);
    assert_eq!(answer["expires_at"], serde_json::Value::Null);
    assert_eq!(answer["original"], false);
    let text = crate::util::ctl(&env, &["status", "--key", "nightly"]);
    let pid = child.id().to_string();
    assert!(
        text.stdout().contains(&format!(":{pid}\"")) && text.stdout().contains("no expiry"),
        "{}",
        text.stdout()
    );
    // list looks under /lockex/ in this style.
    let listed = crate::util::ctl(&env, &["list"]);
    assert_eq!(listed.stdout().lines().count(), 1, "{}", listed.stdout());
    let why = crate::util::ctl(
        &crate::util::with(&env, &[("CRONLOCK_WAIT", "5")]),
        &["why", "--key", "nightly"],
    );
    assert!(why.stdout().contains("wait up to 5 s"), "{}", why.stdout());
    crate::util::ctl(&env, &["unlock", "--key", "nightly"]).expect(2);
    gated.open();
    assert!(child.wait().unwrap().success());
    // The lock ends with the command, as lockex's does.
    crate::util::ctl(&env, &["status", "--key", "nightly"]).expect(0);
    crate::util::ctl(&env, &["unlock", "--key", "nightly"]).expect(1);
}

#[test]
fn cronlockctl_shows_a_killed_holders_lock_as_free() {
    let zk = ZooKeeper::start();
    let dir = crate::util::TempDir::new("ctl-killed");
    let env = crate::util::with(&zk.env(), &[("CRONLOCK_KEY", "killed")]);
    let gated = crate::util::Gated::new(&dir, "job");
    let mut child = crate::util::cronlock(&env)
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    crate::util::ctl(&env, &["status", "--key", "killed"]).expect(1);
    child.kill().unwrap();
    child.wait().unwrap();
    // Its session ends within the session timeout; then the record is an orphan.
    crate::util::wait_until(std::time::Duration::from_secs(30), "the session to expire", || {
        crate::util::ctl(&env, &["status", "--key", "killed"]).code() == 0
    });
    let answer = json(&crate::util::ctl(&env, &["--json", "status", "--key", "killed"]));
    assert_eq!(answer["state"], "free", "{answer}");
    assert_eq!(answer["running"], false, "{answer}");
    crate::util::run(&env, &["true"]).expect(0);
    gated.open();
}

#[test]
fn a_holder_whose_server_stops_answering_kills_its_command_before_its_session_can_expire() {
    let zk = ZooKeeper::start();
    let dir = crate::util::TempDir::new("frozen");
    let env = crate::util::with(&zk.env(), &[("CRONLOCK_KEY", "frozen")]);
    let holder = crate::util::DoomedHolder::start(&env, &dir);
    // Frozen, the server answers nothing and keeps the connection open,
    // as when the network to it fails.
    let frozen = Instant::now();
    zk.pause();
    holder.expect_hold_lost("cronlock.frozen", "no ZooKeeper server has confirmed the session");
    let killed_after = frozen.elapsed();
    eprintln!("the holder's command was killed {killed_after:?} after the server froze");
    // The server expires the session once it has heard nothing from it for
    // its timeout (3 s: tickTime=500 grants what cronlock asks for), counted
    // from the last word it heard, before the freeze; another host may then
    // take the job.
    assert!(
        killed_after < SESSION_TIMEOUT,
        "the holder ran on for {killed_after:?}, past its session's timeout"
    );
    // Frozen past the timeout, the server expires the session as it wakes;
    // the job is then free for another run.
    crate::util::wait_until(Duration::from_secs(10), "the session timeout to pass", || {
        frozen.elapsed() > SESSION_TIMEOUT + Duration::from_secs(1)
    });
    zk.resume();
    crate::util::wait_until(Duration::from_secs(15), "another run to take the job", || {
        crate::util::run(&env, &crate::util::marker(&dir)).code() == 0
    });
    assert_eq!(crate::util::runs(&dir), 1);
}

/// The server's newest zxid, from `srvr`'s `Zxid: 0x...` line.
fn server_zxid(zk: &ZooKeeper) -> u64 {
    let answer = crate::util::zookeeper::four_letters(zk.port, "srvr").expect("srvr answers");
    answer
        .lines()
        .find_map(|line| line.strip_prefix("Zxid: 0x"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no zxid in {answer}"))
}

#[test]
fn the_fencing_token_is_a_zxid_kept_on_a_counter_node_that_outlives_the_lock() {
    let zk = ZooKeeper::start();
    let dir = crate::util::TempDir::new("zk-fenced");
    let env = crate::util::with(&zk.env(), &[("CRONLOCK_KEY", "fenced"), ("CRONLOCK_FENCING", "on")]);
    let out = dir.join("job");
    let job = format!(
        "echo \"$CRONLOCK_LOCK_KEY $CRONLOCK_FENCING_TOKEN\" > {}",
        out.display()
    );
    let fenced = |env: &[(String, String)]| {
        let before = server_zxid(&zk);
        crate::util::run(env, &["sh", "-c", &job]).expect(0);
        let line = std::fs::read_to_string(&out).unwrap();
        let (key, token) = line.trim().split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let token: u64 = token.parse().unwrap_or_else(|_| panic!("{line:?}"));
        // Given by a write of the run's own, after the server's newest
        // zxid before it, and no later than its newest after it.
        assert!(before < token && token <= server_zxid(&zk), "{before} {token}");
        (key.to_string(), token)
    };
    let (key, first) = fenced(&env);
    let counter = format!("{key}#fence");
    let client = zk.client();
    assert!(
        client.children("/cronlock").contains(&counter),
        "{:?}",
        client.children("/cronlock")
    );
    // cronlockctl shows the lock, not its counter.
    let listed = crate::util::ctl(&env, &["list"]);
    assert_eq!(listed.stdout().lines().count(), 1, "{}", listed.stdout());
    assert!(!listed.stdout().contains("#fence"), "{}", listed.stdout());
    // The counter outlives the lock: the next token is larger.
    crate::util::ctl(&env, &["unlock", "--key", "fenced"]).expect(0);
    assert!(client.children("/cronlock").contains(&counter));
    let (_, second) = fenced(&crate::util::with(&env, &[("CRONLOCK_GRACE", "-1")]));
    assert!(second > first, "{first} then {second}");
    assert_eq!(client.children("/cronlock"), vec![counter]);
    crate::util::ctl(&env, &["fence", &key, &first.to_string()]).expect(1);
    crate::util::ctl(&env, &["fence", &key, &second.to_string()]).expect(0);
}

#[test]
fn fencing_is_refused_with_one_line_in_the_lockex_and_tooz_styles() {
    let zk = ZooKeeper::start();
    for style in ["lockex", "tooz"] {
        let env = crate::util::with(
            &zk.env(),
            &[
                ("CRONLOCK_KEY_STYLE", style),
                ("CRONLOCK_KEY", "fenced"),
                ("CRONLOCK_FENCING", "on"),
            ],
        );
        let refused = crate::util::run(&env, &["true"]);
        refused.expect(201);
        let stderr = refused.stderr();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("CRONLOCK_FENCING") && stderr.contains(&format!("CRONLOCK_KEY_STYLE={style}")),
            "{stderr}"
        );
    }
}

/// The records `cronlockctl history` shows for `key`, newest first.
fn history(env: &[(String, String)], key: &str) -> Vec<serde_json::Value> {
    let listed = crate::util::ctl(env, &["--json", "history", "--key", key]);
    assert!(matches!(listed.code(), 0 | 1), "{}", listed.stderr());
    listed.json_lines()
}

#[test]
fn the_history_is_nodes_beside_the_lock_that_list_and_unlock_leave_alone() {
    let zk = ZooKeeper::start();
    let env = crate::util::with(
        &zk.env(),
        &[
            ("CRONLOCK_KEY", "kept"),
            ("CRONLOCK_HISTORY", "2"),
            ("CRONLOCK_FENCING", "on"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    crate::util::run(&env, &["true"]).expect(0);
    for _ in 0..2 {
        crate::util::run(&env, &["sh", "-c", "exit 3"]).expect(3);
    }
    // The last run keeps its lock, for cronlockctl to find.
    crate::util::run(
        &crate::util::with(&env, &[("CRONLOCK_GRACE", "300")]),
        &["sh", "-c", "exit 4"],
    )
    .expect(4);
    let client = zk.client();
    let beside = ["cronlock.kept#fence", "cronlock.kept#runs", "cronlock.kept#succeeded"];
    let mut with_lock = vec!["cronlock.kept"];
    with_lock.extend(beside);
    assert_eq!(client.children("/cronlock"), with_lock);
    let records = client.children("/cronlock/cronlock.kept#runs");
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|name| name.starts_with("run-")), "{records:?}");
    let success = client.data("/cronlock/cronlock.kept#succeeded").unwrap();
    let success: serde_json::Value = serde_json::from_slice(&success).unwrap();
    assert_eq!(success["exit"], 0, "{success}");
    let exits = |env: &[(String, String)]| -> Vec<i64> {
        history(env, "kept")
            .iter()
            .map(|run| run["exit"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(exits(&env), [4, 3]);
    // cronlockctl shows the lock, not its history.
    let listed = crate::util::ctl(&env, &["--json", "list"]);
    listed.expect(0);
    let lines = listed.json_lines();
    assert_eq!(lines.len(), 1, "{}", listed.stdout());
    assert_eq!(lines[0]["key"], "cronlock.kept", "{}", listed.stdout());
    // unlock removes the lock, and leaves the history and the counter.
    crate::util::ctl(&env, &["unlock", "--key", "kept"]).expect(0);
    assert_eq!(client.children("/cronlock"), beside);
    assert_eq!(client.children("/cronlock/cronlock.kept#runs"), records);
    let listed = crate::util::ctl(&env, &["--json", "list"]);
    assert!(listed.json_lines().is_empty(), "{}", listed.stdout());
    crate::util::ctl(&env, &["status", "--key", "kept"]).expect(0);
    assert_eq!(exits(&env), [4, 3]);
    crate::util::ctl(&env, &["check", "--key", "kept", "--max-age", "1h"]).expect(0);
    // So does CRONLOCK_RESET, which deletes the lock (exit 200).
    crate::util::run(&crate::util::with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(client.children("/cronlock"), beside);
    assert_eq!(exits(&env), [4, 3]);
    crate::util::run(&env, &["true"]).expect(0);
    assert_eq!(exits(&env), [0, 4]);
    // A smaller count cuts the history at the next run.
    let one = crate::util::with(&env, &[("CRONLOCK_HISTORY", "1")]);
    crate::util::run(&one, &["sh", "-c", "exit 5"]).expect(5);
    assert_eq!(exits(&env), [5]);
    assert_eq!(client.children("/cronlock/cronlock.kept#runs").len(), 1);
}

#[test]
fn a_record_too_large_for_a_node_is_a_warning_and_the_run_goes_on() {
    let zk = ZooKeeper::start();
    let env = crate::util::with(
        &zk.env(),
        &[
            ("CRONLOCK_KEY", "large"),
            ("CRONLOCK_HISTORY", "3"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    crate::util::run(&env, &["true"]).expect(0);
    let long = "x".repeat(100 * 1024);
    let result = crate::util::run(&env, &["sh", "-c", "exit 0", &long]);
    result.expect(0);
    let stderr = result.stderr();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("history") && stderr.contains("bytes"), "{stderr}");
    // The runs before it are still there.
    assert_eq!(history(&env, "large").len(), 1);
}

#[test]
fn history_is_refused_with_one_line_in_the_lockex_and_tooz_styles() {
    let zk = ZooKeeper::start();
    for style in ["lockex", "tooz"] {
        let env = crate::util::with(
            &zk.env(),
            &[
                ("CRONLOCK_KEY_STYLE", style),
                ("CRONLOCK_KEY", "kept"),
                ("CRONLOCK_HISTORY", "3"),
            ],
        );
        let refused = crate::util::run(&env, &["true"]);
        refused.expect(201);
        let stderr = refused.stderr();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("CRONLOCK_HISTORY") && stderr.contains(&format!("CRONLOCK_KEY_STYLE={style}")),
            "{stderr}"
        );
        crate::util::ctl(&env, &["history", "--key", "kept"]).expect(2);
    }
    assert!(zk.client().children("/cronlock").is_empty());
}
