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
