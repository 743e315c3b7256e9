//! The store conformance suite against a private ZooKeeper server.

mod conformance;
mod util;

use util::zookeeper::ZooKeeper;

struct Zk(ZooKeeper);

impl conformance::Fixture for Zk {
    fn start() -> Zk {
        Zk(ZooKeeper::start())
    }

    fn env(&self) -> Vec<(String, String)> {
        self.0.env()
    }

    fn stop(&mut self) -> bool {
        self.0.kill();
        true
    }
}

conformance::suite!(Zk);

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
    let result = util::run(&[("CRONLOCK_URL".to_string(), url)], &["true"]);
    result.expect(201);
    assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
    drop(accepting);
}

#[test]
fn a_bad_url_exits_201_with_one_line() {
    for url in ["zookeeper://", "zookeeper://h:99999", "zookeeper://h/a//b"] {
        let result = util::run(&[("CRONLOCK_URL".to_string(), url.to_string())], &["true"]);
        result.expect(201);
        assert_eq!(result.stderr().lines().count(), 1, "{}", result.stderr());
    }
}
