//! The MariaDB and PostgreSQL fixtures themselves: each private server
//! starts, answers, keeps its data across a crash and a restart, and
//! refuses a wrong password over TCP.

use crate::util::mariadb::MariaDb;
use crate::util::postgres::Postgres;

#[test]
fn mariadb_answers_as_root_on_its_own_port() {
    let server = MariaDb::start();
    assert_eq!(server.sql("SELECT 1"), "1");
    assert_eq!(server.sql("SELECT @@port"), server.port.to_string());
    assert_ne!(server.port, 3306);
}

#[test]
fn mariadb_user_logs_in_with_its_password_only() {
    let server = MariaDb::start();
    server.sql("CREATE DATABASE cronlock");
    server.create_user("locker", "s3cret'pw", &["ALL ON cronlock.*"]);
    assert_eq!(
        server.query_as("locker", "s3cret'pw", "SELECT GET_LOCK('job', 0)"),
        Ok("1".into())
    );
    let refused = server.query_as("locker", "wrong", "SELECT 1").unwrap_err();
    assert!(refused.contains("Access denied"), "{refused}");
    assert_eq!(
        server.url("locker", "s3cret'pw", "cronlock"),
        format!("mysql://locker:s3cret%27pw@127.0.0.1:{}/cronlock", server.port)
    );
}

#[test]
fn mariadb_keeps_its_data_across_kill_and_restart() {
    let mut server = MariaDb::start();
    let port = server.port;
    server.sql("CREATE DATABASE t; CREATE TABLE t.kept (n INT) ENGINE=InnoDB; INSERT INTO t.kept VALUES (42)");
    server.kill();
    assert!(server.try_sql("SELECT 1").is_err());
    server.restart();
    assert_eq!(server.port, port);
    assert_eq!(server.sql("SELECT n FROM t.kept"), "42");
}

#[test]
fn postgres_answers_as_superuser_on_its_own_port() {
    let server = Postgres::start();
    assert_eq!(server.sql("SELECT 1"), "1");
    assert_eq!(server.sql("SHOW port"), server.port.to_string());
    assert_ne!(server.port, 5432);
}

#[test]
fn postgres_user_logs_in_with_its_password_only() {
    let server = Postgres::start();
    server.create_user("locker", "s3cret'pw", &["CREATE ON DATABASE postgres"]);
    assert_eq!(
        server.query_as("locker", "s3cret'pw", "SELECT pg_try_advisory_lock(1)"),
        Ok("t".into())
    );
    let refused = server.query_as("locker", "wrong", "SELECT 1").unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");
    assert_eq!(
        server.url("locker", "s3cret'pw", "postgres"),
        format!("postgres://locker:s3cret%27pw@127.0.0.1:{}/postgres", server.port)
    );
}

#[test]
fn durable_postgres_keeps_its_data_across_kill_and_restart() {
    let mut server = Postgres::start_durable();
    let port = server.port;
    server.sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)");
    server.kill();
    assert!(server.try_sql("SELECT 1").is_err());
    server.restart();
    assert_eq!(server.port, port);
    assert_eq!(server.sql("SELECT n FROM kept"), "42");
}
