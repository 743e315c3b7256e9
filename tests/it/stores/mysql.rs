//! The store conformance suite against a private MariaDB server, and what
//! only the MySQL store does: sera's `GET_LOCK` names, a crashed holder
//! freed at once, the lock table made on first use, the history's tables
//! and runs ending at once, and bad input.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::util::mariadb::MariaDb;
use crate::util::pki::Pki;
use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A private server with a `cronlock` database and a user allowed everything in it.
struct Mysql(MariaDb);

impl Mysql {
    fn start() -> Mysql {
        let server = MariaDb::start();
        server.sql("CREATE DATABASE cronlock");
        server.create_user("cron", "s3cret:@/pw", &["ALL ON cronlock.*"]);
        Mysql(server)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CRONLOCK_URL".to_string(),
                self.0.url("cron", "s3cret:@/pw", "cronlock"),
            ),
            ("CRONLOCK_REDIS_TIMEOUT".to_string(), "5".to_string()),
        ]
    }
}

impl crate::conformance::Fixture for Mysql {
    fn start() -> Mysql {
        Mysql::start()
    }

    fn env(&self) -> Vec<(String, String)> {
        Mysql::env(self)
    }

    fn stop(&mut self) -> bool {
        self.0.kill();
        true
    }

    /// The counter is an InnoDB row, written to the OS at each commit here.
    fn fencing(&self) -> Option<bool> {
        Some(true)
    }

    fn restart(&mut self) -> bool {
        self.0.restart();
        true
    }

    fn keeps_history(&self) -> bool {
        true
    }
}

crate::conformance::suite!(Mysql);
crate::ctl_suite::suite!(Mysql);

/// sera's name for a command: the md5 hex of its arguments joined by spaces.
fn sera_name(args: &[&str]) -> String {
    format!("{:x}", md5::compute(args.join(" ")))
}

/// A second session that takes `GET_LOCK(name)` as sera does and holds it
/// until killed.
fn hold_as_sera(server: &MariaDb, name: &str) -> Child {
    let child = server.session(&format!("SELECT GET_LOCK('{name}', 0); SELECT SLEEP(120)"));
    wait_until(Duration::from_secs(10), "the sera session to take its lock", || {
        server.sql(&format!("SELECT IS_FREE_LOCK('{name}')")) == "0"
    });
    child
}

#[test]
fn a_name_held_by_sera_exits_200_without_running() {
    let mysql = Mysql::start();
    let dir = TempDir::new("sera-holds");
    let marker = dir.join("ran");
    let args = ["sh", "-c", &format!("echo x >> {}", marker.display())];
    let env = with(&mysql.env(), &[("CRONLOCK_KEY_STYLE", "sera")]);
    let mut sera = hold_as_sera(&mysql.0, &sera_name(&args));
    run(&env, &args).expect(200);
    assert!(!marker.exists(), "the command must not run while sera holds the name");
    sera.kill().unwrap();
    sera.wait().unwrap();
    wait_until(Duration::from_secs(10), "the sera session's lock to go", || {
        mysql.0.sql(&format!("SELECT IS_FREE_LOCK('{}')", sera_name(&args))) == "1"
    });
    run(&env, &args).expect(0);
    assert!(marker.exists());
}

#[test]
fn sera_finds_the_name_taken_while_cronlock_runs() {
    let mysql = Mysql::start();
    let dir = TempDir::new("cronlock-holds");
    let gated = Gated::new(&dir, "job");
    let args = ["sh", "-c", gated.script.as_str()];
    let name = sera_name(&args);
    let env = with(&mysql.env(), &[("CRONLOCK_KEY_STYLE", "sera")]);
    let child = cronlock(&env).args(args).stderr(Stdio::piped()).spawn().unwrap();
    gated.wait_started();
    assert_eq!(mysql.0.sql(&format!("SELECT IS_FREE_LOCK('{name}')")), "0");
    assert_eq!(mysql.0.sql(&format!("SELECT GET_LOCK('{name}', 0)")), "0");
    gated.open();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The command has ended: sera may take the name, though cronlock's
    // own hosts still see the grace in the row.
    assert_eq!(mysql.0.sql(&format!("SELECT IS_FREE_LOCK('{name}')")), "1");
    run(&env, &args).expect(200);
}

#[test]
fn the_lock_table_is_made_on_first_use_with_the_documented_columns() {
    let mysql = Mysql::start();
    run(&mysql.env(), &["true"]).expect(0);
    let columns = mysql.0.sql(
        "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = 'cronlock' AND TABLE_NAME = 'cronlock_locks'",
    );
    assert_eq!(columns, "name,expires_at,state,token,holder,owner");
    // A user that may only use the table, as the README grants it, works.
    mysql.0.create_user(
        "user",
        "pw",
        &["SELECT, INSERT, UPDATE, DELETE ON cronlock.cronlock_locks"],
    );
    let env = vec![("CRONLOCK_URL".to_string(), mysql.0.url("user", "pw", "cronlock"))];
    run(&with(&env, &[("CRONLOCK_KEY", "limited")]), &["true"]).expect(0);
    run(&with(&env, &[("CRONLOCK_KEY", "limited")]), &["true"]).expect(200);
}

#[test]
fn fencing_counters_get_a_table_of_their_own_made_by_the_first_fenced_run() {
    let mysql = Mysql::start();
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "fenced"), ("CRONLOCK_GRACE", "-1")]);
    let fenced = with(&env, &[("CRONLOCK_FENCING", "on")]);
    let fence_table = || {
        mysql.0.sql(
            "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'cronlock' AND TABLE_NAME = 'cronlock_locks_fence'",
        )
    };
    run(&env, &["true"]).expect(0);
    assert_eq!(fence_table(), "0", "a run without fencing must not make the table");
    // A user granted only the lock table, as the README's least privilege.
    mysql.0.create_user(
        "limited",
        "pw",
        &["SELECT, INSERT, UPDATE, DELETE ON cronlock.cronlock_locks"],
    );
    let limited = with(
        &[("CRONLOCK_URL".to_string(), mysql.0.url("limited", "pw", "cronlock"))],
        &[
            ("CRONLOCK_KEY", "fenced"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_FENCING", "on"),
        ],
    );
    // MariaDB tells a user without rights on a table nothing of whether it exists.
    expect_refusal(&limited, "needs the table cronlock.cronlock_locks_fence", &[]);
    let token = |env: &[(String, String)]| {
        let result = run(env, &["sh", "-c", "echo \"$CRONLOCK_FENCING_TOKEN\""]);
        result.expect(0);
        result.stdout().trim().to_string()
    };
    assert_eq!(token(&fenced), "1");
    assert_eq!(
        mysql
            .0
            .sql("SELECT token FROM cronlock.cronlock_locks_fence WHERE name = 'cronlock.fenced'"),
        "1"
    );
    // The table without the grant: one line saying what fencing needs.
    expect_refusal(&limited, "needs the table cronlock.cronlock_locks_fence", &[]);
    mysql
        .0
        .sql("GRANT SELECT, INSERT, UPDATE ON cronlock.cronlock_locks_fence TO 'limited'@'%'");
    assert_eq!(token(&limited), "2");
    // The counter outlives the lock and a reset.
    run(&with(&fenced, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(token(&fenced), "3");
    // sera and tooz hosts take the lock by its GET_LOCK alone.
    for (style, named) in [("sera", "CRONLOCK_KEY_STYLE=sera"), ("tooz", "CRONLOCK_KEY_STYLE=tooz")] {
        let line = expect_refusal(&with(&fenced, &[("CRONLOCK_KEY_STYLE", style)]), named, &[]);
        assert!(line.contains("CRONLOCK_FENCING"), "{line}");
    }
}

#[test]
fn the_history_gets_tables_of_its_own_that_no_reset_or_listing_touches() {
    let mysql = Mysql::start();
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "hist"), ("CRONLOCK_GRACE", "-1")]);
    let kept = with(&env, &[("CRONLOCK_HISTORY", "2")]);
    let tables = || {
        mysql.0.sql(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'cronlock' \
             AND TABLE_NAME IN ('cronlock_locks_runs', 'cronlock_locks_succeeded')",
        )
    };
    run(&env, &["true"]).expect(0);
    ctl(&kept, &["history", "--key", "hist"]).expect(1);
    assert_eq!(
        tables(),
        "0",
        "neither a run without a history nor a look at none makes them"
    );
    // A user granted only the lock table, as the README's least privilege:
    // the run goes on, and one warning names the tables.
    mysql.0.create_user(
        "limited",
        "pw",
        &["SELECT, INSERT, UPDATE, DELETE ON cronlock.cronlock_locks"],
    );
    let limited = with(
        &[("CRONLOCK_URL".to_string(), mysql.0.url("limited", "pw", "cronlock"))],
        &[
            ("CRONLOCK_KEY", "hist"),
            ("CRONLOCK_GRACE", "-1"),
            ("CRONLOCK_HISTORY", "2"),
        ],
    );
    let needs = "needs the tables cronlock.cronlock_locks_runs and cronlock.cronlock_locks_succeeded";
    let warned = run(&limited, &["true"]);
    warned.expect(0);
    assert_eq!(warned.stderr().lines().count(), 1, "{}", warned.stderr());
    assert!(warned.stderr().contains(needs), "{}", warned.stderr());
    let refused = ctl(&limited, &["history", "--key", "hist"]);
    refused.expect(2);
    assert!(refused.stderr().contains(needs), "{}", refused.stderr());
    // A user that may create them does, and keeps the newest two runs.
    run(&kept, &["true"]).expect(0);
    for _ in 0..3 {
        run(&kept, &["sh", "-c", "exit 3"]).expect(3);
    }
    let count = || {
        mysql
            .0
            .sql("SELECT COUNT(*) FROM cronlock.cronlock_locks_runs WHERE name = 'cronlock.hist'")
    };
    assert_eq!(count(), "2");
    let success = mysql
        .0
        .sql("SELECT record FROM cronlock.cronlock_locks_succeeded WHERE name = 'cronlock.hist'");
    assert!(success.contains("\"exit\":0"), "{success}");
    // The grants the README gives are enough.
    mysql.0.sql(
        "GRANT SELECT, INSERT, DELETE ON cronlock.cronlock_locks_runs TO 'limited'@'%'; \
         GRANT SELECT, INSERT, UPDATE ON cronlock.cronlock_locks_succeeded TO 'limited'@'%'",
    );
    let recorded = run(&limited, &["sh", "-c", "exit 4"]);
    recorded.expect(4);
    assert_eq!(recorded.stderr(), "");
    let listed = ctl(&limited, &["--json", "history", "--key", "hist"]);
    listed.expect(0);
    let exits: Vec<_> = listed.json_lines().iter().map(|run| run["exit"].clone()).collect();
    assert_eq!(exits, [4, 3]);
    // A lock in its grace is the only thing cronlockctl lists; a reset and
    // an unlock take it, never the history.
    run(&with(&kept, &[("CRONLOCK_GRACE", "60")]), &["true"]).expect(0);
    let all = ctl(&env, &["--json", "list", "--all-prefixes"]);
    all.expect(0);
    let keys: Vec<_> = all.json_lines().iter().map(|lock| lock["key"].clone()).collect();
    assert_eq!(keys, ["cronlock.hist"]);
    ctl(&env, &["unlock", "--key", "hist"]).expect(0);
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    let all = ctl(&env, &["list", "--all-prefixes"]);
    all.expect(0);
    assert_eq!(all.stdout(), "");
    assert_eq!(count(), "2");
    ctl(&kept, &["check", "--key", "hist", "--max-age", "1h"]).expect(0);
    // sera hosts share the GET_LOCK, and keep no history.
    let line = expect_refusal(&with(&kept, &[("CRONLOCK_KEY_STYLE", "sera")]), "CRONLOCK_HISTORY", &[]);
    assert!(line.contains("not supported"), "{line}");
}

#[test]
fn runs_that_end_at_once_all_reach_the_history_and_the_trim_keeps_n() {
    let mysql = Mysql::start();
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "herd"), ("CRONLOCK_GRACE", "-1")]);
    let count = || {
        mysql
            .0
            .sql("SELECT COUNT(*) FROM cronlock.cronlock_locks_runs WHERE name = 'cronlock.herd'")
    };
    runs_ending_at_once(&env, 8, 100);
    assert_eq!(count(), "8", "no run may be lost");
    runs_ending_at_once(&env, 8, 100);
    assert_eq!(count(), "16");
    // Each trim waits for the one before it: exactly N are left, while
    // another job's runs end at the same moment.
    let other = with(&mysql.env(), &[("CRONLOCK_KEY", "other"), ("CRONLOCK_GRACE", "-1")]);
    std::thread::scope(|scope| {
        scope.spawn(|| runs_ending_at_once(&other, 8, 3));
        runs_ending_at_once(&env, 8, 3);
    });
    assert_eq!(count(), "3");
    assert_eq!(
        mysql
            .0
            .sql("SELECT COUNT(*) FROM cronlock.cronlock_locks_runs WHERE name = 'cronlock.other'"),
        "3"
    );
}

/// A TCP proxy to `port` that takes its first `silent` connections and
/// never forwards them (as a server whose listen queue a herd has filled
/// leaves a connection without its greeting), and forwards every later one.
fn proxy_that_ignores_the_first(port: u16, silent: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut ignored = Vec::new();
        for client in listener.incoming().flatten() {
            if ignored.len() < silent {
                ignored.push(client);
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    proxy
}

/// A connection whose greeting does not come is given up after a few
/// seconds and made anew, not waited for for the whole
/// CRONLOCK_REDIS_TIMEOUT (30 s by default): with 1,000 runs at once, a
/// server's overflowing listen queue leaves connections like that, which a
/// new connection gets past at once.
#[test]
fn a_connection_without_a_greeting_is_made_anew_within_seconds() {
    let mysql = Mysql::start();
    let proxy = proxy_that_ignores_the_first(mysql.0.port, 1);
    let env = vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("mysql://cron:{}@127.0.0.1:{proxy}/cronlock", url_encode("s3cret:@/pw")),
        ),
        ("CRONLOCK_KEY".to_string(), "greeting".to_string()),
    ];
    let started = std::time::Instant::now();
    let mut command = cronlock(&env);
    // The default backoff: a run that treated the silence as a dead server
    // would wait 5 s more before its next try.
    command.env_remove("CRONLOCK_RECONNECT_BACKOFF");
    let output = command.arg("true").output().unwrap();
    let took = started.elapsed();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

/// A TCP listener that answers every connection with an HTTP error.
fn garbage_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            let mut sink = [0u8; 512];
            let _ = stream.read(&mut sink);
        }
    });
    port
}

#[test]
fn bad_input_exits_201_with_one_line_and_never_shows_the_password() {
    let mysql = Mysql::start();
    mysql
        .0
        .create_user("nocreate", "hunter2", &["SELECT, INSERT, UPDATE, DELETE ON cronlock.*"]);
    let garbage = garbage_server();
    let redis = RedisServer::start();
    let closed = free_port();
    let cases = [
        ("bad URL", "mysql://cron:hunter2@127.0.0.1/".to_string(), "database"),
        (
            "wrong password",
            mysql.0.url("cron", "hunter2", "cronlock"),
            "refused the login",
        ),
        (
            "missing database",
            mysql.0.url("cron", "s3cret:@/pw", "nope"),
            "does not exist",
        ),
        (
            "no CREATE privilege",
            mysql.0.url("nocreate", "hunter2", "cronlock"),
            "README",
        ),
        (
            "not MySQL",
            format!("mysql://cron:hunter2@127.0.0.1:{garbage}/cronlock"),
            "MySQL",
        ),
        (
            "redis",
            format!("mysql://cron:hunter2@127.0.0.1:{}/cronlock", redis.port),
            "MySQL",
        ),
        (
            "unreachable",
            format!("mysql://cron:hunter2@127.0.0.1:{closed}/cronlock"),
            "cannot reach",
        ),
        (
            "TLS required, the server has none",
            format!("{}?ssl-mode=required", mysql.0.url("cron", "hunter2", "cronlock")),
            "offers no TLS",
        ),
    ];
    let dir = TempDir::new("bad");
    let marker = dir.join("ran");
    for (what, url, expected) in cases {
        let env = vec![
            ("CRONLOCK_URL".to_string(), url),
            ("CRONLOCK_RECONNECT_ATTEMPTS".to_string(), "0".to_string()),
            ("CRONLOCK_REDIS_TIMEOUT".to_string(), "1".to_string()),
        ];
        let result = run(&env, &["sh", "-c", &format!("echo x >> {}", marker.display())]);
        let (stdout, stderr) = (result.stdout(), result.stderr());
        assert_eq!(result.code(), 201, "{what}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        for secret in ["hunter2", "s3cret"] {
            assert!(!stderr.contains(secret) && !stdout.contains(secret), "{what}: {stderr}");
        }
    }
    assert!(!marker.exists(), "no command may run");
}

#[test]
fn a_user_who_logs_in_with_ed25519_takes_the_lock() {
    // MariaDB's ed25519 login: the client library used to panic on it.
    let mysql = Mysql::start();
    mysql.0.sql(
        "INSTALL SONAME 'auth_ed25519'; \
         CREATE USER 'edu'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-s3cret'); \
         GRANT ALL ON cronlock.* TO 'edu'@'%';",
    );
    let dir = TempDir::new("ed25519");
    let marker = dir.join("ran");
    let job = [
        "sh".to_string(),
        "-c".to_string(),
        format!("echo x >> {}", marker.display()),
    ];
    let env = |password: &str| {
        vec![
            ("CRONLOCK_URL".to_string(), mysql.0.url("edu", password, "cronlock")),
            ("CRONLOCK_RECONNECT_ATTEMPTS".to_string(), "0".to_string()),
        ]
    };
    run(&env("ed-s3cret"), &job).expect(0);
    assert!(marker.exists());
    // One login in 256 met a nonce ending in 0, which the client library
    // cut short, and was refused: 300 logins in a row met one 69 times in
    // 100 (see REFUSED_LOGIN_RETRIES in src/store/mysql/mod.rs).
    let quick = with(&env("ed-s3cret"), &[("CRONLOCK_GRACE", "-1")]);
    for _ in 0..300 {
        run(&quick, &["true"]).expect(0);
    }
    let wrong = run(&env("not-it"), &job);
    assert_eq!(wrong.code(), 201, "{}", wrong.stderr());
    assert_eq!(wrong.stderr().trim_end().lines().count(), 1, "{}", wrong.stderr());
    assert!(wrong.stderr().contains("refused the login"), "{}", wrong.stderr());
    assert!(!wrong.stderr().contains("not-it"));
}

#[test]
fn the_first_run_on_a_database_without_the_table_takes_the_lock() {
    // The first try fails on the missing table after its GET_LOCK; the
    // retry must not find that GET_LOCK still taken (it used to, now and
    // then, when the retry came on a new connection).
    let mysql = Mysql::start();
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "first")]);
    for round in 0..30 {
        mysql.0.sql("DROP TABLE IF EXISTS cronlock.cronlock_locks");
        let result = run(&with(&env, &[("CRONLOCK_GRACE", "-1")]), &["true"]);
        assert_eq!(result.code(), 0, "round {round}: {}", result.stderr());
    }
}

/// The password of the TLS tests' users.
const TLS_PASSWORD: &str = "tls-s3cret";

/// A TLS server with a `cronlock` database and two users allowed everything
/// in it: `tls` may log in over TLS only (`REQUIRE SSL`), `x509` only with
/// a client certificate of the test CA (`REQUIRE X509`).
fn tls_server(pki: &Pki) -> MariaDb {
    let server = MariaDb::start_tls(pki);
    server.sql("CREATE DATABASE cronlock");
    for (user, require) in [("tls", "SSL"), ("x509", "X509")] {
        server.create_user(user, TLS_PASSWORD, &["ALL ON cronlock.*"]);
        server.sql(&format!("ALTER USER '{user}'@'%' REQUIRE {require}"));
    }
    server
}

/// cronlock as `user` on `server` with `?ssl-mode=MODE` (none when empty),
/// a fresh key per call, and `more` settings.
fn tls_env(server: &MariaDb, user: &str, mode: &str, more: &[(&str, &str)]) -> Vec<(String, String)> {
    sql_tls_env(server.url(user, TLS_PASSWORD, "cronlock"), "ssl-mode", mode, more)
}

#[test]
fn tls_modes_take_the_lock_as_a_user_that_may_log_in_over_tls_only() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let ca = pki.file("ca.crt");
    sql_tls_modes_take_the_lock(
        |mode, more| tls_env(&server, "tls", mode, more),
        SqlTlsModes {
            verified: "verify_identity",
            others: &["verify_ca", "required", "preferred"],
            disabled: "disabled",
        },
        &ca,
        "refused the login",
        TLS_PASSWORD,
        |key| {
            server.sql(&format!(
                "SELECT state FROM cronlock.cronlock_locks WHERE name = 'cronlock.{key}'"
            )) == "done"
        },
    );
    // Without an ssl-mode the client does not use TLS either.
    expect_refusal(&tls_env(&server, "tls", "", &[]), "refused the login", &[TLS_PASSWORD]);
    // The hold checks (every 250 ms, reading the idle TLS connection
    // without a round trip) see nothing from a server that stays.
    let verbose = tls_env(
        &server,
        "tls",
        "verify_identity",
        &[("CRONLOCK_TLS_CA_FILE", ca.as_str()), ("CRONLOCK_VERBOSE", "yes")],
    );
    let held = run(&verbose, &["sleep", "1.2"]);
    held.expect(0);
    assert!(!held.stderr().contains("back"), "{}", held.stderr());
}

#[test]
fn a_client_certificate_logs_in_a_user_that_requires_x509() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let ca = pki.file("ca.crt");
    let (cert, key) = (pki.file("client.crt"), pki.file("client.key"));
    let client = [
        ("CRONLOCK_TLS_CA_FILE", ca.as_str()),
        ("CRONLOCK_TLS_CERT_FILE", cert.as_str()),
        ("CRONLOCK_TLS_KEY_FILE", key.as_str()),
    ];
    run(&tls_env(&server, "x509", "verify_identity", &client), &["true"]).expect(0);
    expect_refusal(
        &tls_env(&server, "x509", "verify_identity", &client[..1]),
        "refused the login",
        &[TLS_PASSWORD],
    );
}

#[test]
fn tls_refuses_a_server_it_cannot_verify_with_one_line() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let ca = pki.file("ca.crt");
    let other = pki.file("other-ca.crt");
    let refused = |mode: &str, ca: &str, expected: &str| {
        expect_refusal(
            &tls_env(&server, "tls", mode, &[("CRONLOCK_TLS_CA_FILE", ca)]),
            expected,
            &[TLS_PASSWORD],
        );
    };
    let taken = |mode: &str, ca: &str| {
        run(
            &tls_env(&server, "tls", mode, &[("CRONLOCK_TLS_CA_FILE", ca)]),
            &["true"],
        )
        .expect(0);
    };
    // A certificate from a CA we were not told to trust.
    refused("verify_identity", &other, "unknown CA");
    refused("verify_ca", &other, "unknown CA");
    taken("required", &other);
    // Issued for another name: only verify_identity looks at it.
    server.use_certificate(&pki, "wrong-name");
    refused("verify_identity", &ca, "ssl-mode=verify_ca");
    taken("verify_ca", &ca);
    // Expired.
    server.use_certificate(&pki, "expired");
    refused("verify_identity", &ca, "has expired");
    refused("verify_ca", &ca, "has expired");
    taken("required", &ca);
}

/// The connection that holds `GET_LOCK(name)`, as the client prints it
/// ("NULL": nobody).
fn get_lock_holder(server: &MariaDb, name: &str) -> String {
    server.sql(&format!("SELECT IS_USED_LOCK('{name}')"))
}

/// The server ends a holder's connection while its command runs (an
/// operator's KILL, a restart, a proxy): the holder takes its `GET_LOCK`
/// back on a new connection, moves its row there, and runs on.
#[test]
fn a_holder_whose_connection_the_server_ends_takes_its_get_lock_back() {
    let mysql = Mysql::start();
    let dir = TempDir::new("my-retake");
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "retake"), ("CRONLOCK_RELEASE", "600")]);
    let gated = Gated::new(&dir, "job");
    let holder = spawn_gated(&env, &gated, "");
    gated.wait_started();
    let first = get_lock_holder(&mysql.0, "cronlock.retake");
    assert_ne!(first, "NULL", "the holder holds no GET_LOCK");
    mysql.0.sql(&format!("KILL {first}"));
    wait_until(Duration::from_secs(10), "the holder to take its GET_LOCK back", || {
        let now = get_lock_holder(&mysql.0, "cronlock.retake");
        now != "NULL" && now != first
    });
    let row_holder = mysql
        .0
        .sql("SELECT holder FROM cronlock.cronlock_locks WHERE name = 'cronlock.retake'");
    assert_eq!(row_holder, get_lock_holder(&mysql.0, "cronlock.retake"));
    run(&env, &["true"]).expect(200);
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The same, but another session takes the name first (a run taking the
/// job over, or sera): the holder cannot take it back and kills its
/// command before a takeover could start it, exit 201.
#[test]
fn a_holder_whose_get_lock_another_session_takes_kills_its_command() {
    let mysql = Mysql::start();
    let dir = TempDir::new("my-lost-hold");
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "lost"), ("CRONLOCK_RELEASE", "600")]);
    let holder = DoomedHolder::start(&env, &dir);
    let first = get_lock_holder(&mysql.0, "cronlock.lost");
    assert_ne!(first, "NULL", "the holder holds no GET_LOCK");
    // One session ends the holder's connection and waits for the name,
    // then keeps it a while.
    let mut taker = mysql.0.session(&format!(
        "KILL {first}; SELECT GET_LOCK('cronlock.lost', 10); SELECT SLEEP(5)"
    ));
    holder.expect_hold_lost("cronlock.lost", "another session has taken the name");
    let _ = taker.kill();
    let _ = taker.wait();
}

/// A crashed holder's row is taken over only after the contender has held
/// the name a while (time for a holder that still runs to stop), and then
/// exactly once.
#[test]
fn a_takeover_holds_the_get_lock_before_it_touches_the_row() {
    let mysql = Mysql::start();
    let dir = TempDir::new("my-pause");
    let env = with(&mysql.env(), &[("CRONLOCK_KEY", "pause"), ("CRONLOCK_RELEASE", "600")]);
    let gated = Gated::new(&dir, "job");
    let mut crashed = spawn_gated(&env, &gated, "");
    gated.wait_started();
    let dead = get_lock_holder(&mysql.0, "cronlock.pause");
    kill(Pid::from_raw(crashed.id() as i32), Signal::SIGKILL).unwrap();
    crashed.wait().unwrap();
    wait_until(Duration::from_secs(10), "the crashed run's GET_LOCK to go", || {
        get_lock_holder(&mysql.0, "cronlock.pause") == "NULL"
    });
    let contender = cronlock(&env)
        .args(marker(&dir))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the contender to take the name", || {
        get_lock_holder(&mysql.0, "cronlock.pause") != "NULL"
    });
    let holder = || {
        mysql
            .0
            .sql("SELECT holder FROM cronlock.cronlock_locks WHERE name = 'cronlock.pause'")
    };
    assert_eq!(holder(), dead, "the row was taken over without a pause");
    let output = contender.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(runs(&dir), 1);
}
