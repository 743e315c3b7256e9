//! tooz's PostgreSQL lock (`postgresql://`): the two-integer advisory lock
//! keyed by the first two bytes of md5(name), in the URL's database, both
//! ways with coolock; the pair itself is the lock, whoever takes it; and a
//! holder whose connection the server ends while another session takes the
//! lock stops its command.

use crate::tooz::tooz_env;
use crate::util::postgres::Postgres;
use crate::util::*;

/// tooz's pair for `nightly`: md5("nightly") = 0a e3 ...
const NIGHTLY: (u8, u8) = (0x0a, 0xe3);

/// A server with a `jobs` database and a role that may log in to it,
/// cronlock's settings and coolock's URL for it.
fn setup() -> (Postgres, Vec<(String, String)>, String) {
    let server = Postgres::start();
    server.create_user("locker", "s3cret", &[]);
    server.sql("CREATE DATABASE jobs");
    let url = server
        .url("locker", "s3cret", "jobs")
        .replacen("postgres://", "postgresql://", 1);
    let env = vec![
        ("CRONLOCK_URL".to_string(), format!("{url}?sslmode=disable")),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
    ];
    (server, env, url)
}

crate::tooz::both_ways!(setup());

/// The pid and database of the sessions holding the advisory lock on
/// `NIGHTLY` in its two-integer form, one line each.
fn nightly_holders(server: &Postgres) -> String {
    server.sql(&format!(
        "SELECT l.pid, d.datname FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {} AND l.objid = {} AND l.objsubid = 2",
        NIGHTLY.0, NIGHTLY.1
    ))
}

#[test]
fn the_lock_is_the_advisory_pair_of_the_first_md5_bytes_in_the_urls_database() {
    let (server, env, _) = setup();
    let dir = TempDir::new("tooz-pg-bytes");
    let gated = Gated::new(&dir, "job");
    let holder = spawn_gated(&tooz_env(&env, "nightly"), &gated, "");
    gated.wait_started();
    let held = nightly_holders(&server);
    let (pid, database) = held
        .split_once('\t')
        .unwrap_or_else(|| panic!("no advisory lock (10, 227): {held:?}"));
    assert_eq!(database, "jobs");
    assert_eq!(
        server.sql(&format!("SELECT usename FROM pg_stat_activity WHERE pid = {pid}")),
        "locker"
    );
    assert_eq!(
        server.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        "1",
        "one lock, nothing else"
    );
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(nightly_holders(&server), "", "released with the command");
}

#[test]
fn a_plain_clients_advisory_lock_keeps_cronlock_out() {
    let (server, env, _) = setup();
    let dir = TempDir::new("tooz-pg-plain");
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    std::thread::scope(|scope| {
        // A session in the same database holds the pair until it is ended.
        let client = scope.spawn(|| {
            server.try_sql(&format!(
                "\\c jobs\nSELECT pg_advisory_lock({}, {}); SELECT pg_sleep(60)",
                NIGHTLY.0, NIGHTLY.1
            ))
        });
        wait_until(
            std::time::Duration::from_secs(10),
            "the plain client to take the lock",
            || !nightly_holders(&server).is_empty(),
        );
        let kept_out = run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]);
        // Ended before any assertion, so that a failing one does not wait for its sleep.
        let held = nightly_holders(&server);
        let (pid, _) = held.split_once('\t').expect("the plain client holds the lock");
        server.sql(&format!("SELECT pg_terminate_backend({pid})"));
        assert!(client.join().unwrap().is_err(), "the plain client's session was ended");
        kept_out.expect(200);
        assert!(!marker.exists(), "cronlock ran while another session held the lock");
    });
    wait_until(
        std::time::Duration::from_secs(10),
        "the plain client's lock to go",
        || nightly_holders(&server).is_empty(),
    );
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(0);
    assert!(marker.exists());
}

/// The server ends the holder's connection and another session (a coolock
/// host) takes the lock: the holder cannot take it back and kills its
/// command, exit 201.
#[test]
fn a_holder_whose_advisory_lock_another_session_takes_kills_its_command() {
    let (server, env, _) = setup();
    let dir = TempDir::new("tooz-pg-lost");
    let holder = DoomedHolder::start(&tooz_env(&env, "nightly"), &dir);
    let held = nightly_holders(&server);
    let (pid, _) = held.split_once('\t').expect("the holder holds no advisory lock");
    std::thread::scope(|scope| {
        // Ends the holder's backend and waits for the lock, then keeps it a while.
        let taker = scope.spawn(|| {
            server.try_sql(&format!(
                "\\c jobs\nSELECT pg_terminate_backend({pid}); SELECT pg_advisory_lock({}, {}); SELECT pg_sleep(3)",
                NIGHTLY.0, NIGHTLY.1
            ))
        });
        holder.expect_hold_lost("nightly", "another session has taken it");
        taker.join().unwrap().unwrap();
    });
}
