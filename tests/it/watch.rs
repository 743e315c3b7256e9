//! What a run tells the systems that watch cron: pings to a ping server
//! the test runs (plain and TLS, one that answers and one that never
//! does), the metrics files read back with a Prometheus text-format parser
//! (and promtool where it is installed), and the JSON events of every kind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::util::pki::Pki;
use crate::util::*;

/// The part of the ping URL that is its secret, as a check's UUID is.
const SECRET: &str = "6b1e7c1a-secret-uuid";

/// How a [`PingServer`] treats a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// `200 OK`.
    Ok,
    /// Reads the request and never answers, keeping the connection open.
    Never,
}

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Request {
    /// `POST /path HTTP/1.1`.
    line: String,
    /// The headers, one `Name: value` each.
    headers: Vec<String>,
    body: String,
}

/// A ping receiver on a free loopback port, plain or TLS, that records
/// every request; stopped when dropped.
struct PingServer {
    port: u16,
    tls: bool,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PingServer {
    fn start(answer: Answer) -> PingServer {
        PingServer::spawn(answer, None)
    }

    /// A TLS server showing the test CA's `server` certificate.
    fn start_tls(pki: &Pki) -> PingServer {
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(pki.path("server.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        PingServer::spawn(Answer::Ok, Some(Arc::new(config)))
    }

    fn spawn(answer: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> PingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let is_tls = tls.is_some();
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                // Connections left unanswered stay open until the server stops.
                let mut kept = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = stream else { continue };
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    let served = match &tls {
                        None => serve(tcp.try_clone().unwrap(), answer),
                        Some(config) => {
                            let session = rustls::ServerConnection::new(config.clone()).unwrap();
                            serve(rustls::StreamOwned::new(session, tcp.try_clone().unwrap()), answer)
                        }
                    };
                    if let Some(request) = served {
                        requests.lock().unwrap().push(request);
                    }
                    kept.push(tcp);
                }
            })
        };
        PingServer {
            port,
            tls: is_tls,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The ping URL, with a user and password and the secret in its path.
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://cron:hunter2@127.0.0.1:{}/ping/{SECRET}", self.port)
    }

    /// What the server shows in messages: scheme, host and port.
    fn shown(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The one request received, which must have gone to `suffix`.
    fn only(&self, suffix: &str) -> Request {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0].line, ping_line(suffix));
        requests[0].clone()
    }

    /// The request lines received so far.
    fn lines(&self) -> Vec<String> {
        self.requests().into_iter().map(|request| request.line).collect()
    }
}

impl Drop for PingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream` and answers it as `answer` says; `None`
/// when no whole request came (a client that gave up on a TLS handshake).
fn serve(stream: impl Read + Write, answer: Answer) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end().to_string();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("Content-Length: ") {
            length = value.parse().ok()?;
        }
        headers.push(header);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    if answer == Answer::Ok {
        let stream = reader.get_mut();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            .ok()?;
        stream.flush().ok()?;
    }
    Some(Request {
        line: line.trim_end().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The directory store in a fresh directory, key `key`.
fn directory_env(dir: &TempDir, key: &str) -> Vec<(String, String)> {
    vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("file://{}", dir.join("locks").display()),
        ),
        ("CRONLOCK_KEY".to_string(), key.to_string()),
    ]
}

/// The directory store with key `key`, pinging `server`, and `more`.
fn pinged(dir: &TempDir, key: &str, server: &PingServer, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let env = with(&directory_env(dir, key), &[("CRONLOCK_PING_URL", &server.url())]);
    with(&env, more)
}

/// The path every ping of [`PingServer::url`] goes to, with `suffix`.
fn ping_line(suffix: &str) -> String {
    format!("POST /ping/{SECRET}/{suffix} HTTP/1.1")
}

/// Waits for `child` to exit, killing it and failing the test if it has
/// not after `limit`: a run must never hang on a ping or a metrics file.
fn finish_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cronlock did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A holder of `env`'s lock whose command runs until its gate opens.
fn holder(env: &[(String, String)], dir: &TempDir, name: &str) -> (Child, Gated) {
    let gated = Gated::new(dir, name);
    let child = cronlock(env)
        .args(["sh", "-c", &gated.script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    gated.wait_started();
    (child, gated)
}

/// Lets a [`holder`] finish, and checks that it ran its command.
fn release(mut child: Child, gated: Gated) {
    gated.open();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn pings_mark_the_start_and_the_exit_status() {
    let server = PingServer::start(Answer::Ok);
    let dir = TempDir::new("ping-exit");
    let env = pinged(&dir, "pinged", &server, &[("CRONLOCK_GRACE", "-1")]);
    run(&env, &["true"]).expect(0);
    run(&env, &["sh", "-c", "exit 3"]).expect(3);
    assert_eq!(
        server.lines(),
        [ping_line("start"), ping_line("0"), ping_line("start"), ping_line("3")]
    );
    let requests = server.requests();
    for request in &requests {
        assert!(
            request
                .headers
                .contains(&"Authorization: Basic Y3JvbjpodW50ZXIy".to_string()),
            "{request:?}"
        );
        assert!(request.body.contains("cronlock.pinged"), "{request:?}");
    }
    assert!(requests[3].body.contains("exit status 3"), "{:?}", requests[3]);
}

#[test]
fn a_timeout_pings_exit_status_202() {
    let server = PingServer::start(Answer::Ok);
    let dir = TempDir::new("ping-timeout");
    let env = pinged(&dir, "slow", &server, &[("CRONLOCK_TIMEOUT", "1")]);
    run(&env, &["sleep", "30"]).expect(202);
    assert_eq!(server.lines(), [ping_line("start"), ping_line("202")]);
}

#[test]
fn a_run_skipped_for_another_holder_pings_log_not_a_failure() {
    let server = PingServer::start(Answer::Ok);
    let dir = TempDir::new("ping-skip");
    let env = directory_env(&dir, "shared");
    let (child, gated) = holder(&env, &dir, "holder");
    let pinged = with(&env, &[("CRONLOCK_PING_URL", &server.url())]);
    run(&pinged, &["true"]).expect(200);
    release(child, gated);
    let skipped = server.only("log");
    assert!(skipped.body.contains("held by another run"), "{skipped:?}");
}

#[test]
fn an_error_of_cronlock_pings_201_with_its_message() {
    let server = PingServer::start(Answer::Ok);
    let env = vec![
        ("CRONLOCK_URL".to_string(), "file:///dev/null/locks".to_string()),
        ("CRONLOCK_KEY".to_string(), "broken".to_string()),
        ("CRONLOCK_PING_URL".to_string(), server.url()),
    ];
    let result = run(&env, &["true"]);
    result.expect(201);
    let failed = server.only("201");
    assert!(failed.body.contains("/dev/null/locks"), "{failed:?}");
}

#[test]
fn a_ping_server_that_never_answers_costs_one_warning_and_not_the_exit_status() {
    let server = PingServer::start(Answer::Never);
    let dir = TempDir::new("ping-silent");
    let env = pinged(&dir, "silent", &server, &[]);
    let child = cronlock(&env)
        .args(["sh", "-c", "echo ran; exit 4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish_within(child, Duration::from_secs(60));
    let run = Run { output };
    run.expect(4);
    assert_eq!(run.stdout(), "ran\n");
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("cronlock: warning: ping to {} failed: ", server.shown())),
        "{stderr}"
    );
    assert!(
        stderr.contains("/start: no answer") && stderr.contains("/4: no answer"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET) && !stderr.contains("hunter2"), "{stderr}");
    // Both pings were sent, each on a connection the server kept unanswered.
    assert_eq!(server.lines(), [ping_line("start"), ping_line("4")]);
}

#[test]
fn a_ping_server_that_is_not_there_costs_one_warning() {
    let port = free_port();
    let dir = TempDir::new("ping-refused");
    let url = format!("http://127.0.0.1:{port}/ping/{SECRET}");
    let env = with(&directory_env(&dir, "refused"), &[("CRONLOCK_PING_URL", &url)]);
    let result = run(&env, &["true"]);
    result.expect(0);
    let stderr = result.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "cronlock: warning: ping to http://127.0.0.1:{port} failed: /start: "
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[test]
fn https_pings_verify_the_server_against_the_system_trust_store() {
    let pki = Pki::new();
    let server = PingServer::start_tls(&pki);
    let dir = TempDir::new("ping-tls");
    let env = pinged(&dir, "tls", &server, &[("CRONLOCK_GRACE", "-1")]);
    // SSL_CERT_FILE names the trust store, as for OpenSSL's tools.
    let trusted = with(&env, &[("SSL_CERT_FILE", &pki.file("ca.crt"))]);
    let result = run(&trusted, &["true"]);
    result.expect(0);
    assert_eq!(result.stderr(), "");
    assert_eq!(server.lines(), [ping_line("start"), ping_line("0")]);

    let other = with(&env, &[("SSL_CERT_FILE", &pki.file("other-ca.crt"))]);
    let result = run(&other, &["true"]);
    result.expect(0);
    let stderr = result.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("ping to {} failed", server.shown())) && stderr.contains("certificate"),
        "{stderr}"
    );
    assert_eq!(
        server.lines().len(),
        2,
        "no request goes to a server that is not trusted"
    );
}

#[test]
fn a_bad_ping_url_is_refused_without_showing_it() {
    for url in [
        format!("ftp://h/{SECRET}"),
        format!("https://cron:hunter2@/{SECRET}"),
        format!("https://h:0/{SECRET}"),
    ] {
        let env = vec![
            ("CRONLOCK_URL".to_string(), "file:///tmp/cronlock-unused".to_string()),
            ("CRONLOCK_PING_URL".to_string(), url),
        ];
        expect_refusal(&env, "CRONLOCK_PING_URL", &[SECRET, "hunter2"]);
    }
}

/// A metrics file read with prometheus-parse: each sample's value by name,
/// checking that every sample carries `key`.
fn scrape(path: &Path, key: &str) -> std::collections::HashMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).unwrap();
    let mut values = std::collections::HashMap::new();
    for sample in scrape.samples {
        assert_eq!(sample.labels.get("key"), Some(key), "{text}");
        let value = match (sample.metric.ends_with("_total"), sample.value) {
            (true, prometheus_parse::Value::Counter(v)) | (false, prometheus_parse::Value::Gauge(v)) => v,
            (_, other) => panic!("{} is typed {other:?}\n{text}", sample.metric),
        };
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "no HELP for {}",
            sample.metric
        );
        values.insert(sample.metric, value);
    }
    values
}

/// `promtool check metrics` on the file, where promtool is installed
/// (scripts/test.sh installs Debian's prometheus package for it).
fn promtool_accepts(path: &Path) {
    let Some(promtool) = find_program("promtool", &[]) else {
        eprintln!(
            "promtool not installed: {} checked with prometheus-parse only",
            path.display()
        );
        return;
    };
    let output = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn metrics_file(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.prom"))
}

/// The directory store with key `key`, metrics in a directory of their
/// own (returned), and `more` settings.
fn metrics_env(dir: &TempDir, key: &str, more: &[(&str, &str)]) -> (PathBuf, Vec<(String, String)>) {
    let metrics = dir.join("textfile");
    std::fs::create_dir(&metrics).unwrap();
    let env = with(
        &directory_env(dir, key),
        &[("CRONLOCK_METRICS_DIR", metrics.to_str().unwrap())],
    );
    (metrics, with(&env, more))
}

#[test]
fn metrics_count_runs_skips_timeouts_and_errors_across_runs() {
    let dir = TempDir::new("metrics");
    let (metrics, env) = metrics_env(&dir, "job", &[("CRONLOCK_GRACE", "-1")]);
    let file = metrics_file(&metrics, "cronlock.job");
    let key = "cronlock.job";

    run(&env, &["true"]).expect(0);
    let first = scrape(&file, key);
    assert_eq!(first["cronlock_runs_total"], 1.0);
    assert_eq!(first["cronlock_last_exit_code"], 0.0);
    promtool_accepts(&file);
    // Held open, the first file must stay as it was: each run writes a new
    // file and renames it into place, never rewriting the one collected.
    let mut first_file = std::fs::File::open(&file).unwrap();
    let first_text = std::fs::read_to_string(&file).unwrap();

    run(&env, &["sh", "-c", "exit 5"]).expect(5);
    let (child, gated) = holder(&env, &dir, "holder");
    run(&env, &["true"]).expect(200);
    release(child, gated);
    run(&with(&env, &[("CRONLOCK_TIMEOUT", "1")]), &["sleep", "30"]).expect(202);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    run(&env, &["sh", "-c", "exit 7"]).expect(7);
    let broken = with(&env, &[("CRONLOCK_URL", "file:///dev/null/locks")]);
    run(&broken, &["true"]).expect(201);

    let values = scrape(&file, key);
    // true, exit 5, the holder, the skip, the timeout, exit 7, the error.
    assert_eq!(values["cronlock_runs_total"], 7.0, "{values:?}");
    assert_eq!(values["cronlock_skips_total"], 1.0, "{values:?}");
    assert_eq!(values["cronlock_timeouts_total"], 1.0, "{values:?}");
    assert_eq!(values["cronlock_errors_total"], 1.0, "{values:?}");
    // The last run that took the lock was `exit 7`; the error did not take it.
    assert_eq!(values["cronlock_last_exit_code"], 7.0, "{values:?}");
    let start = values["cronlock_last_start_timestamp_seconds"];
    let end = values["cronlock_last_end_timestamp_seconds"];
    assert!(start >= before.floor() && end >= start, "{values:?}");
    assert!(
        (values["cronlock_last_duration_seconds"] - (end - start)).abs() < 0.002,
        "{values:?}"
    );
    assert_eq!(values["cronlock_last_lock_wait_seconds"], 0.0, "{values:?}");
    promtool_accepts(&file);
    let mut still = String::new();
    first_file.read_to_string(&mut still).unwrap();
    assert_eq!(still, first_text);
    assert_ne!(
        first_file.metadata().unwrap().ino(),
        std::fs::metadata(&file).unwrap().ino()
    );
    // No temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".cronlock-metrics.lock", "cronlock.job.prom"]);
}

#[test]
fn metrics_record_the_lock_wait_and_keys_with_odd_bytes() {
    let dir = TempDir::new("metrics-wait");
    let (metrics, env) = metrics_env(&dir, "a \"quoted\" key\\", &[("CRONLOCK_GRACE", "-1")]);
    let (child, gated) = holder(&env, &dir, "holder");
    let waiting = with(&env, &[("CRONLOCK_WAIT", "30"), ("CRONLOCK_LOG_FORMAT", "json")]);
    let mut waiter = cronlock(&waiting)
        .arg("true")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = BufReader::new(waiter.stderr.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&events.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "waiting", "{first}");
    release(child, gated);
    let output = finish_within(waiter, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0));
    let kinds: Vec<String> = events
        .map(|line| serde_json::from_str::<Value>(&line.unwrap()).unwrap()["event"].to_string())
        .collect();
    assert_eq!(kinds, ["\"taken\"", "\"released\""]);
    let file = metrics_file(&metrics, "cronlock.a%20%22quoted%22%20key%5C");
    let values = scrape(&file, "cronlock.a \\\"quoted\\\" key\\\\");
    assert_eq!(values["cronlock_runs_total"], 2.0, "{values:?}");
    assert!(values["cronlock_last_lock_wait_seconds"] > 0.0, "{values:?}");
    promtool_accepts(&file);
}

/// The JSON events on a run's stderr, every line one, each checked for the
/// fields all events carry: `key` is `key` (null for none), `host` is
/// `CRONLOCK_NODE`'s `node-7`, `command` is `command`.
fn events(stderr: &str, key: Option<&str>, command: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let time = event["time"].as_str().unwrap_or_else(|| panic!("no time: {line}"));
            assert!(
                time.len() == 24 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
                "{line}"
            );
            assert_eq!(event["key"], key.map_or(Value::Null, Value::from), "{line}");
            assert_eq!(event["command"], command, "{line}");
            assert_eq!(event["host"], "node-7", "{line}");
            assert!(event["pid"].as_u64().is_some_and(|pid| pid > 0), "{line}");
            event
        })
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|event| event["event"].as_str().unwrap()).collect()
}

/// `env` with JSON events on and the node named `node-7`.
fn json(env: &[(String, String)]) -> Vec<(String, String)> {
    with(env, &[("CRONLOCK_LOG_FORMAT", "json"), ("CRONLOCK_NODE", "node-7")])
}

#[test]
fn json_events_tell_the_lock_taken_and_released() {
    let dir = TempDir::new("json-run");
    let env = json(&directory_env(&dir, "job"));
    let result = run(&env, &["sh", "-c", "exit 3"]);
    result.expect(3);
    let events = events(&result.stderr(), Some("cronlock.job"), "sh -c exit 3");
    assert_eq!(kinds(&events), ["taken", "released"]);
    assert_eq!(events[0]["wait_seconds"], 0.0);
    assert_eq!(events[1]["exit_code"], 3);
    assert_eq!(events[1]["release"], "kept", "the grace keeps it");
    assert!(events[1]["duration_seconds"].as_f64().is_some(), "{}", events[1]);
}

#[test]
fn json_events_tell_a_held_lock_and_a_wait() {
    let dir = TempDir::new("json-held");
    let env = with(&json(&directory_env(&dir, "shared")), &[("CRONLOCK_GRACE", "-1")]);
    let (child, gated) = holder(&env, &dir, "holder");
    let result = run(&env, &["true"]);
    result.expect(200);
    let held = events(&result.stderr(), Some("cronlock.shared"), "true");
    assert_eq!(kinds(&held), ["held"]);
    assert_eq!(held[0]["exit_code"], 200);
    assert!(held[0]["expires_in_seconds"].is_i64(), "{}", held[0]);

    let mut waiter = cronlock(&with(&env, &[("CRONLOCK_WAIT", "30")]))
        .arg("true")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(waiter.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    release(child, gated);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(finish_within(waiter, Duration::from_secs(60)).status.code(), Some(0));
    let waited = events(&(first + &rest), Some("cronlock.shared"), "true");
    assert_eq!(kinds(&waited), ["waiting", "taken", "released"]);
    assert!(waited[0]["expires_in_seconds"].is_i64(), "{}", waited[0]);
    assert!(
        waited[1]["wait_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{}",
        waited[1]
    );
}

#[test]
fn json_events_tell_a_timeout() {
    let dir = TempDir::new("json-timeout");
    let env = with(&json(&directory_env(&dir, "slow")), &[("CRONLOCK_TIMEOUT", "1")]);
    let result = run(&env, &["sleep", "30"]);
    result.expect(202);
    // The original's line on stdout stays.
    assert_eq!(result.stdout(), "emergency: had to kill 'sleep 30' after 1s timeout\n");
    let events = events(&result.stderr(), Some("cronlock.slow"), "sleep 30");
    assert_eq!(kinds(&events), ["taken", "timeout", "released"]);
    assert_eq!(events[1]["exit_code"], 202);
    assert_eq!(events[1]["timeout_seconds"], 1);
    assert!(
        events[1]["duration_seconds"].as_f64().is_some_and(|s| s >= 1.0),
        "{}",
        events[1]
    );
    assert_eq!(events[2]["exit_code"], 202);
}

#[test]
fn json_events_tell_a_lost_lock_once() {
    let redis = RedisServer::start();
    let dir = TempDir::new("json-lost");
    let env = with(
        &json(&redis.env()),
        &[("CRONLOCK_KEY", "leased"), ("CRONLOCK_LEASE", "3")],
    );
    let gated = Gated::new(&dir, "lease");
    let child = cronlock(&env)
        .args(["sh", "-c", &gated.script])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    redis.query(&["DEL", "cronlock.leased"]);
    let output = finish_within(child, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(201));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events = events(&stderr, Some("cronlock.leased"), &format!("sh -c {}", gated.script));
    assert_eq!(kinds(&events), ["taken", "lost"]);
    assert_eq!(events[1]["exit_code"], 201);
    assert!(events[1]["message"].as_str().unwrap().contains("lost"), "{}", events[1]);
}

#[test]
fn json_events_tell_errors_in_place_of_the_error_line() {
    let env = json(&[
        ("CRONLOCK_URL".to_string(), "file:///dev/null/locks".to_string()),
        ("CRONLOCK_KEY".to_string(), "broken".to_string()),
    ]);
    let result = run(&env, &["true"]);
    result.expect(201);
    let events = events(&result.stderr(), Some("cronlock.broken"), "true");
    assert_eq!(kinds(&events), ["error"]);
    assert_eq!(events[0]["exit_code"], 201);
    assert!(
        events[0]["message"].as_str().unwrap().contains("/dev/null/locks"),
        "{}",
        events[0]
    );

    // A setting that cannot be read: no key yet, and the host's own name.
    let early = with(&[], &[("CRONLOCK_LOG_FORMAT", "json"), ("CRONLOCK_PORT", "abc")]);
    let result = run(&early, &["true"]);
    result.expect(201);
    let line = result.stderr();
    assert_eq!(line.lines().count(), 1, "{line}");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((&event["event"], &event["key"]), (&Value::from("error"), &Value::Null));
    assert!(event["message"].as_str().unwrap().contains("CRONLOCK_PORT"), "{event}");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let env = vec![
        ("CRONLOCK_URL".to_string(), "file:///tmp/cronlock-unused".to_string()),
        ("CRONLOCK_LOG_FORMAT".to_string(), "xml".to_string()),
    ];
    expect_refusal(&env, "CRONLOCK_LOG_FORMAT=\"xml\": expected text or json", &[]);
}

#[test]
fn json_events_are_the_syslog_messages() {
    let dir = TempDir::new("json-syslog");
    let (socket_path, socket) = crate::syslog::daemon(&dir);
    let env = with(
        &json(&directory_env(&dir, "logged")),
        &[
            ("CRONLOCK_SYSLOG", "yes"),
            ("CRONLOCK_SYSLOG_SOCKET", socket_path.to_str().unwrap()),
        ],
    );
    let result = run(&env, &["true"]);
    result.expect(0);
    let printed = result.stderr();
    for line in printed.lines() {
        let datagram = crate::syslog::receive(&socket);
        // user (1) * 8 + info (6) = 14.
        assert!(datagram.starts_with("<14>"), "{datagram}");
        let message = datagram.split_once("]: ").expect("a tag and pid").1;
        assert_eq!(message, line);
    }
    assert_eq!(
        kinds(&events(&printed, Some("cronlock.logged"), "true")),
        ["taken", "released"]
    );
}

#[test]
fn runs_at_once_on_one_host_lose_no_count() {
    let dir = TempDir::new("metrics-herd");
    let (metrics, env) = metrics_env(&dir, "herd", &[("CRONLOCK_CONCURRENCY", "4")]);
    let runs: Vec<Child> = (0..8)
        .map(|_| {
            cronlock(&env)
                .arg("true")
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut skipped = 0;
    for child in runs {
        let output = finish_within(child, Duration::from_secs(60));
        assert_eq!(String::from_utf8_lossy(&output.stderr), "");
        match output.status.code() {
            Some(0) => {}
            Some(200) => skipped += 1,
            other => panic!("exit {other:?}"),
        }
    }
    let values = scrape(&metrics_file(&metrics, "cronlock.herd"), "cronlock.herd");
    assert_eq!(values["cronlock_runs_total"], 8.0, "{values:?}");
    assert_eq!(values["cronlock_skips_total"], f64::from(skipped), "{values:?}");
}

#[test]
fn a_metrics_dir_that_cannot_be_written_is_one_warning() {
    let dir = TempDir::new("metrics-missing");
    let env = with(
        &directory_env(&dir, "job"),
        &[("CRONLOCK_METRICS_DIR", "/nonexistent/cronlock-metrics")],
    );
    let result = run(&env, &["sh", "-c", "exit 6"]);
    result.expect(6);
    let stderr = result.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("cronlock: warning: metrics not written: /nonexistent/cronlock-metrics/"),
        "{stderr}"
    );
}
