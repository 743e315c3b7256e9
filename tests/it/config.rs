//! Configuration through the real binary: files, precedence and bad input.

use std::os::unix::ffi::OsStrExt;

use crate::util::*;

#[test]
fn config_file_values_override_the_environment() {
    let redis = RedisServer::start();
    let dir = TempDir::new("conf");
    let conf = dir.join("cronlock.conf");
    std::fs::write(
        &conf,
        format!(
            "# shared settings\nexport CRONLOCK_PORT={}\nCRONLOCK_PREFIX='from file.'\n",
            redis.port
        ),
    )
    .unwrap();
    let env = vec![
        ("CRONLOCK_HOST".to_string(), "127.0.0.1".to_string()),
        ("CRONLOCK_PORT".to_string(), "1".to_string()),
        ("CRONLOCK_CONFIG".to_string(), conf.display().to_string()),
        ("CRONLOCK_KEY".to_string(), "k".to_string()),
    ];
    // The exported assignment reaches the command's environment too.
    run(
        &env,
        &["sh", "-c", &format!("test \"$CRONLOCK_PORT\" = {}", redis.port)],
    )
    .expect(0);
    assert_eq!(redis.query(&["EXISTS", "from file.k"]), "1");
}

#[test]
fn a_bad_config_line_is_named_by_file_and_line() {
    let dir = TempDir::new("badconf");
    let conf = dir.join("bad.conf");
    std::fs::write(&conf, "CRONLOCK_HOST=localhost\nCRONLOCK_PORT=$(echo 1)\n").unwrap();
    let result = run(&[("CRONLOCK_CONFIG".into(), conf.display().to_string())], &["true"]);
    result.expect(201);
    assert!(result.stderr().contains("bad.conf:2:"), "{}", result.stderr());
    assert_eq!(result.stderr().lines().count(), 1);
}

#[test]
fn a_config_file_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("permconf");
    let conf = dir.join("open.conf");
    std::fs::write(&conf, "CRONLOCK_HOST=localhost\n").unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
    let result = run(&[("CRONLOCK_CONFIG".into(), conf.display().to_string())], &["true"]);
    result.expect(201);
    assert!(result.stderr().contains("writable by everyone"), "{}", result.stderr());
}

#[test]
fn invalid_values_exit_201_with_one_line_naming_them() {
    for (name, value) in [
        ("CRONLOCK_PORT", "abc"),
        ("CRONLOCK_DB", "x"),
        ("CRONLOCK_TIMEOUT", "1.5"),
        ("CRONLOCK_GRACE", "ten"),
        ("CRONLOCK_VERBOSE", "perhaps"),
        ("CRONLOCK_URL", "ftp://x"),
    ] {
        let result = run(&[(name.to_string(), value.to_string())], &["true"]);
        result.expect(201);
        assert_eq!(result.stderr().lines().count(), 1, "{name}: {}", result.stderr());
        assert!(result.stderr().starts_with("cronlock: "), "{}", result.stderr());
    }
}

#[test]
fn non_utf8_arguments_and_values_never_panic() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let redis = RedisServer::start();
    let arg = OsString::from_vec(vec![b'a', 0xff, b'b']);
    let output = cronlock(&redis.env()).arg("echo").arg(&arg).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let output = cronlock(&[])
        .env("CRONLOCK_PREFIX", OsString::from_vec(vec![0xfe]))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(201));
}

#[test]
fn passwords_never_appear_in_messages() {
    let dir = TempDir::new("secrets");
    let cases: Vec<Vec<(String, String)>> = vec![
        // Unreachable, bad port, bad database, plain AUTH: no message quotes it.
        vec![(
            "CRONLOCK_URL".into(),
            format!("redis://u:hunter2@127.0.0.1:{}/0", free_port()),
        )],
        vec![("CRONLOCK_URL".into(), "redis://u:hunter2@127.0.0.1:99999/0".into())],
        vec![("CRONLOCK_URL".into(), "redis://u:hunter2@127.0.0.1/zero".into())],
        vec![
            ("CRONLOCK_AUTH".into(), "hunter2".into()),
            ("CRONLOCK_PORT".into(), free_port().to_string()),
        ],
    ];
    for env in cases {
        let mut env = env;
        env.push(("CRONLOCK_RECONNECT_ATTEMPTS".into(), "0".into()));
        env.push(("CRONLOCK_VERBOSE".into(), "yes".into()));
        let result = run(&env, &["true"]);
        result.expect(201);
        assert!(!result.stderr().contains("hunter2"), "{}", result.stderr());
    }
    // A config file line that cannot be read does not quote a password.
    let file = dir.join("cronlock.conf");
    std::fs::write(&file, "CRONLOCK_AUTH=hunter2 and more\n").unwrap();
    let result = run(&[("CRONLOCK_CONFIG".into(), file.display().to_string())], &["true"]);
    result.expect(201);
    assert!(!result.stderr().contains("hunter2"), "{}", result.stderr());
    assert!(!result.stderr().contains("and more"), "{}", result.stderr());
    // Not valid UTF-8.
    let output = cronlock(&[])
        .env("CRONLOCK_AUTH", std::ffi::OsStr::from_bytes(b"hunter2\xff"))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(201));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));
}
