//! tooz's MySQL lock (`mysql://`): the named lock `GET_LOCK('<name>', 0)`
//! on a connection of the holder's own, both ways with coolock; the name
//! itself is the lock, whoever takes it; and a holder whose connection the
//! server ends while another session takes the name stops its command.

use std::process::Child;
use std::time::Duration;

use crate::tooz::tooz_env;
use crate::util::mariadb::MariaDb;
use crate::util::*;

/// A server with a `tooz` database and a user allowed everything in it,
/// cronlock's settings for it and coolock's URL (the same URL).
fn setup() -> (MariaDb, Vec<(String, String)>, String) {
    let server = MariaDb::start();
    server.sql("CREATE DATABASE tooz");
    server.create_user("cron", "s3cret", &["ALL ON tooz.*"]);
    let url = server.url("cron", "s3cret", "tooz");
    let env = vec![
        ("CRONLOCK_URL".to_string(), url.clone()),
        ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
    ];
    (server, env, url)
}

crate::tooz::both_ways!(setup());

/// The connection that holds `GET_LOCK(name)` ("NULL": nobody).
fn get_lock_holder(server: &MariaDb, name: &str) -> String {
    server.sql(&format!("SELECT IS_USED_LOCK('{name}')"))
}

/// A plain client's session holding `GET_LOCK(name, 0)` until killed.
fn hold_with_plain_client(server: &MariaDb, name: &str) -> Child {
    let child = server.session(&format!("SELECT GET_LOCK('{name}', 0); SELECT SLEEP(120)"));
    wait_until(Duration::from_secs(10), "the plain client to take the name", || {
        get_lock_holder(server, name) != "NULL"
    });
    child
}

#[test]
fn the_lock_is_the_named_get_lock_on_the_holders_own_connection() {
    let (server, env, _) = setup();
    let dir = TempDir::new("tooz-mysql-bytes");
    let gated = Gated::new(&dir, "job");
    let holder = spawn_gated(&tooz_env(&env, "nightly"), &gated, "");
    gated.wait_started();
    let id = get_lock_holder(&server, "nightly");
    assert_ne!(id, "NULL", "nobody holds GET_LOCK('nightly')");
    assert_eq!(
        server.sql(&format!(
            "SELECT USER FROM information_schema.PROCESSLIST WHERE ID = {id}"
        )),
        "cron"
    );
    assert_eq!(server.sql("SHOW TABLES FROM tooz"), "", "tooz's lock needs no table");
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(get_lock_holder(&server, "nightly"), "NULL", "released with the command");
}

#[test]
fn a_plain_clients_get_lock_keeps_cronlock_out() {
    let (server, env, _) = setup();
    let dir = TempDir::new("tooz-mysql-plain");
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    let mut client = hold_with_plain_client(&server, "nightly");
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(200);
    assert!(!marker.exists(), "cronlock ran while another session held the name");
    let _ = client.kill();
    let _ = client.wait();
    wait_until(Duration::from_secs(10), "the plain client's name to be freed", || {
        get_lock_holder(&server, "nightly") == "NULL"
    });
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(0);
    assert!(marker.exists());
}

/// The server ends the holder's connection and another session (a coolock
/// host) takes the name: the holder cannot take it back and kills its
/// command, exit 201.
#[test]
fn a_holder_whose_name_another_session_takes_kills_its_command() {
    let (server, env, _) = setup();
    let dir = TempDir::new("tooz-mysql-lost");
    let holder = DoomedHolder::start(&tooz_env(&env, "nightly"), &dir);
    let id = get_lock_holder(&server, "nightly");
    assert_ne!(id, "NULL", "the holder holds no GET_LOCK");
    let mut taker = server.session(&format!("KILL {id}; SELECT GET_LOCK('nightly', 10); SELECT SLEEP(5)"));
    holder.expect_hold_lost("nightly", "another session has taken the name");
    let _ = taker.kill();
    let _ = taker.wait();
}
