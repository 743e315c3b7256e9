//! The PostgreSQL store beyond the conformance suite: bad input (one line,
//! exit 201, never the password), the advisory lock, least privilege.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::postgres::Postgres;
use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PASSWORD: &str = "hunter2-secret";

fn url_env(url: String) -> Vec<(String, String)> {
    vec![
        ("CRONLOCK_URL".to_string(), url),
        ("CRONLOCK_RECONNECT_ATTEMPTS".to_string(), "0".to_string()),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "3".to_string()),
    ]
}

/// Exit 201, one line on stderr, the password nowhere, the command not run.
fn refused(env: &[(String, String)], expected: &str) {
    let dir = TempDir::new("pg-bad");
    let marker = dir.join("ran");
    let result = run(env, &["sh", "-c", &format!("touch {}", marker.display())]);
    result.expect(201);
    let (stdout, stderr) = (result.stdout(), result.stderr());
    eprint!("{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    assert!(!stderr.contains(PASSWORD) && !stdout.contains(PASSWORD), "{stderr}");
    assert!(!marker.exists(), "the command must not run");
}

fn server_with_locker() -> Postgres {
    let server = Postgres::start();
    server.create_user("locker", PASSWORD, &["CREATE ON SCHEMA public"]);
    server
}

fn env_for(server: &Postgres, user: &str, db: &str) -> Vec<(String, String)> {
    url_env(format!("{}?sslmode=disable", server.url(user, PASSWORD, db)))
}

#[test]
fn a_bad_url_is_refused_without_the_password() {
    refused(
        &url_env(format!("postgres://u:{PASSWORD}@127.0.0.1:99999/db")),
        "not a port number",
    );
    refused(
        &url_env(format!("postgres://u:{PASSWORD}@127.0.0.1/db?sslmode=sometimes")),
        "sslmode",
    );
    refused(
        &url_env(format!("postgresql://u:{PASSWORD}@127.0.0.1/db?options=x")),
        "not supported",
    );
}

#[test]
fn a_wrong_password_missing_database_and_missing_privilege_are_one_line_each() {
    let server = server_with_locker();
    let wrong = url_env(format!(
        "{}?sslmode=disable",
        server.url("locker", &format!("{PASSWORD}x"), "postgres")
    ));
    refused(&wrong, "password authentication failed");
    refused(&env_for(&server, "locker", "nosuchdb"), "nosuchdb");
    server.create_user("weak", PASSWORD, &[]);
    server.sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    refused(
        &env_for(&server, "weak", "postgres"),
        "table cronlock_locks does not exist",
    );
}

#[test]
fn a_server_that_is_not_postgres_or_not_there_is_refused() {
    let redis = RedisServer::start();
    refused(
        &url_env(format!(
            "postgres://u:{PASSWORD}@127.0.0.1:{}/db?sslmode=disable",
            redis.port
        )),
        "PostgreSQL at '127.0.0.1'",
    );
    // A listener that answers anything with garbage.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.0 400 Bad Request\r\n\r\n");
            open.push(stream);
        }
    });
    refused(
        &url_env(format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/db")),
        "no answer within 3s",
    );
    refused(
        &url_env(format!("postgres://u:{PASSWORD}@127.0.0.1:{}/db", free_port())),
        "cannot reach PostgreSQL",
    );
}

#[test]
fn least_privilege_on_a_table_made_beforehand_is_enough() {
    let server = Postgres::start();
    server.create_user("cron", PASSWORD, &[]);
    server.sql(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         CREATE TABLE cronlock_locks (name bytea PRIMARY KEY, expires_at bigint NOT NULL, token text NOT NULL,
             running boolean NOT NULL DEFAULT false, backend integer, server text, owner text);
         GRANT SELECT, INSERT, UPDATE, DELETE ON cronlock_locks TO cron;",
    );
    let env = with(&env_for(&server, "cron", "postgres"), &[("CRONLOCK_KEY", "k")]);
    run(&env, &["true"]).expect(0);
    run(&env, &["true"]).expect(200);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    run(&env, &["true"]).expect(0);
}

#[test]
fn a_crashed_holder_is_taken_over_long_before_its_release() {
    let server = server_with_locker();
    let dir = TempDir::new("pg-crash");
    let env = with(
        &env_for(&server, "locker", "postgres"),
        &[("CRONLOCK_KEY", "crash"), ("CRONLOCK_RELEASE", "600")],
    );
    let gated = Gated::new(&dir, "job");
    let mut child = spawn_gated(&env, &gated, "");
    gated.wait_started();
    run(&env, &["true"]).expect(200);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let crashed = Instant::now();
    wait_until(Duration::from_secs(10), "the lock to be taken over", || {
        run(&env, &["true"]).code() == 0
    });
    // The takeover's 2 s pause with the advisory lock, and a margin.
    assert!(crashed.elapsed() < Duration::from_secs(5), "{:?}", crashed.elapsed());
}

/// A takeover of a crashed run holds the advisory lock 2 s before it takes
/// the row, and takes nothing if its own connection dies meanwhile, as the
/// backend of a contender does that outlived its postmaster.
#[test]
fn a_takeover_whose_connection_dies_in_its_pause_takes_nothing() {
    let server = server_with_locker();
    let dir = TempDir::new("pg-pause");
    let env = with(
        &env_for(&server, "locker", "postgres"),
        &[("CRONLOCK_KEY", "pause"), ("CRONLOCK_RELEASE", "600")],
    );
    let gated = Gated::new(&dir, "job");
    let mut holder = spawn_gated(&env, &gated, "");
    gated.wait_started();
    kill(Pid::from_raw(holder.id() as i32), Signal::SIGKILL).unwrap();
    holder.wait().unwrap();
    let advisory = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";
    wait_until(Duration::from_secs(10), "the crashed run's advisory lock to go", || {
        server.sql(advisory) == "0"
    });
    let contender = cronlock(&env)
        .args(marker(&dir))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the contender to take the advisory lock",
        || server.sql(advisory) == "1",
    );
    server.sql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'");
    let output = contender.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(200),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        runs(&dir),
        0,
        "the contender took the lock on a connection that was gone"
    );
    // The crashed run's lock is still taken over, by a run that keeps its connection.
    run(&env, &marker(&dir)).expect(0);
    assert_eq!(runs(&dir), 1);
}

/// The backend that holds an advisory lock, as psql prints it (empty: none).
fn advisory_holder(server: &Postgres) -> String {
    server.sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted")
}

/// The server ends a holder's connection while its command runs (an
/// operator's pg_terminate_backend, an idle timeout, a proxy): the holder
/// takes its advisory lock back on a new connection and runs on, still
/// holding the lock.
#[test]
fn a_holder_whose_connection_the_server_ends_takes_its_advisory_lock_back() {
    let server = server_with_locker();
    let dir = TempDir::new("pg-retake");
    let env = with(
        &env_for(&server, "locker", "postgres"),
        &[("CRONLOCK_KEY", "retake"), ("CRONLOCK_RELEASE", "600")],
    );
    let gated = Gated::new(&dir, "job");
    let holder = spawn_gated(&env, &gated, "");
    gated.wait_started();
    let first = advisory_holder(&server);
    assert!(!first.is_empty(), "the holder holds no advisory lock");
    server.sql(&format!("SELECT pg_terminate_backend({first})"));
    wait_until(
        Duration::from_secs(10),
        "the holder to take its advisory lock back",
        || {
            let now = advisory_holder(&server);
            !now.is_empty() && now != first
        },
    );
    run(&env, &["true"]).expect(200);
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    run(&env, &["true"]).expect(200);
}

/// The same, but another session takes the advisory lock first (as a run
/// taking a crashed holder's job over does): the holder cannot take it back
/// and kills its command before that run could start it, exit 201.
#[test]
fn a_holder_whose_advisory_lock_another_session_takes_kills_its_command() {
    let server = server_with_locker();
    let dir = TempDir::new("pg-lost-hold");
    let env = with(
        &env_for(&server, "locker", "postgres"),
        &[("CRONLOCK_KEY", "lost"), ("CRONLOCK_RELEASE", "600")],
    );
    let holder = DoomedHolder::start(&env, &dir);
    let first = advisory_holder(&server);
    assert!(!first.is_empty(), "the holder holds no advisory lock");
    std::thread::scope(|scope| {
        // One session ends the holder's backend and takes the advisory lock
        // as soon as that backend lets go (a waiter gets it before anyone
        // can try), then keeps it a while.
        let taker = scope.spawn(|| {
            server.try_sql(&format!(
                "SELECT pg_terminate_backend({first}); \
                 SELECT pg_advisory_lock(('x' || left(md5('cronlock.lost'), 16))::bit(64)::bigint); \
                 SELECT pg_sleep(3)"
            ))
        });
        holder.expect_hold_lost("cronlock.lost", "another session has taken it");
        taker.join().unwrap().unwrap();
    });
}

#[test]
fn a_server_restart_while_the_command_runs_does_not_free_its_lock() {
    let mut server = Postgres::start_durable();
    server.create_user("locker", PASSWORD, &["CREATE ON SCHEMA public"]);
    let dir = TempDir::new("pg-restart");
    let env = with(
        &env_for(&server, "locker", "postgres"),
        &[("CRONLOCK_KEY", "restart"), ("CRONLOCK_RELEASE", "600")],
    );
    let gated = Gated::new(&dir, "job");
    let holder_env = with(
        &env,
        &[
            ("CRONLOCK_RECONNECT_ATTEMPTS", "5"),
            ("CRONLOCK_RECONNECT_BACKOFF", "1"),
        ],
    );
    let child = cronlock(&holder_env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    // A crash of one backend makes the postmaster restart all of them (and
    // drop every advisory lock) without a new start time.
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| server.try_sql("SELECT pg_sleep(30)"));
        wait_until(Duration::from_secs(10), "a backend to crash", || {
            let pid = server.sql("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
            match pid.trim().parse::<i32>() {
                Ok(pid) => kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok(),
                Err(_) => false,
            }
        });
        assert!(sleeper.join().unwrap().is_err());
    });
    wait_until(Duration::from_secs(20), "the server to recover", || {
        server.try_sql("SELECT 1").is_ok()
    });
    run(&env, &["true"]).expect(200);
    // A full restart: the same.
    server.restart();
    run(&env, &["true"]).expect(200);
    gated.open();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
