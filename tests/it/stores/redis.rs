//! The store conformance suite and cronlockctl's suite against a private
//! redis-server, and SCAN pagination over a thousand locks.

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
crate::ctl_suite::suite!(Redis);

#[test]
fn list_pages_through_a_thousand_locks_with_scan() {
    let redis = RedisServer::start();
    // 1000 locks as cronlock writes them, 1000 owner records beside them,
    // and keys under another prefix that only --all-prefixes shows.
    redis.query(&[
        "EVAL",
        "for i = 1, 1000 do redis.call('SET', 'cronlock.job' .. i, '4000000000') \
         redis.call('SET', 'cronlock.job' .. i .. ':owner', '{\"node\":\"n\",\"pid\":1,\"start\":1,\"command\":\"c\"}') \
         redis.call('SET', 'other.job' .. i, '4000000000') end",
        "0",
    ]);
    let listed = ctl(&redis.env(), &["--json", "list"]);
    listed.expect(0);
    let lines = listed.json_lines();
    assert_eq!(lines.len(), 1000);
    assert!(lines.iter().all(|l| l["state"] == "held" && l["owner"]["node"] == "n"));
    let all = ctl(&redis.env(), &["list", "--all-prefixes"]);
    assert_eq!(all.stdout().lines().count(), 2000);
}

#[test]
fn help_and_version() {
    let help = ctl(&[], &["--help"]);
    help.expect(0);
    for command in [
        "key",
        "status",
        "list",
        "unlock",
        "why",
        "--json",
        "--force",
        "--all-prefixes",
    ] {
        assert!(help.stdout().contains(command), "{command}");
    }
    let version = ctl(&[], &["--version"]);
    version.expect(0);
    assert_eq!(version.stdout(), format!("cronlockctl {}\n", env!("CARGO_PKG_VERSION")));
    ctl(&[], &["frobnicate", "--key", "x"]).expect(2);
}
