//! The chaos loop (tests/it/chaos/) against Redis. `CHAOS_RUNS` (default 500)
//! sets the number of invocations, `CHAOS_SEED` replays a run.

use std::time::Duration;

use crate::util::*;

/// Redis that keeps every acknowledged write across a restart, as a lock
/// store must: without it a restart forgets held locks by design.
struct DurableRedis {
    server: RedisServer,
    data: TempDir,
}

impl DurableRedis {
    fn start(port: Option<u16>, data: &TempDir) -> RedisServer {
        let dir = data.path().to_str().unwrap().to_string();
        let args = ["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir];
        match port {
            Some(port) => RedisServer::start_on(port, &args),
            None => RedisServer::start_with(&args, None),
        }
    }
}

impl crate::chaos::ChaosStore for DurableRedis {
    fn env(&self) -> Vec<(String, String)> {
        self.server.env()
    }

    fn restart(&mut self, pause: Duration) {
        let port = self.server.port;
        self.server.kill();
        std::thread::sleep(pause);
        self.server = DurableRedis::start(Some(port), &self.data);
    }
}

#[test]
fn killing_wrappers_commands_and_redis_never_lets_two_copies_run() {
    let data = TempDir::new("chaos-data");
    let server = DurableRedis::start(None, &data);
    crate::chaos::chaos(&mut DurableRedis { server, data }, 500);
}
