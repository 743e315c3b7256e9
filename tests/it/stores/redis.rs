//! The store conformance suite against a private redis-server.

use crate::util::*;

struct Redis(RedisServer);

impl crate::conformance::Fixture for Redis {
    fn start() -> Redis {
        Redis(RedisServer::start())
    }

    fn env(&self) -> Vec<(String, String)> {
        self.0.env()
    }

    fn stop(&mut self) -> bool {
        self.0.kill();
        true
    }
}

crate::conformance::suite!(Redis);
