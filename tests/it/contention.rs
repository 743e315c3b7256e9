//! 200 invocations on one key, started together on a 2-core machine:
//! exactly one runs the command, every other one exits 200, none 201.

use std::process::{Child, Stdio};
use std::time::Instant;

use crate::util::*;

#[test]
fn two_hundred_runs_at_once_run_the_job_exactly_once() {
    let redis = RedisServer::start();
    let dir = TempDir::new("contention");
    let ran = dir.join("ran");
    let script = format!("echo x >> {}", ran.display());
    let env = with(&redis.env(), &[("CRONLOCK_KEY", "contended")]);
    let started = Instant::now();
    let children: Vec<Child> = (0..200)
        .map(|_| {
            cronlock(&env)
                .args(["sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let code = output.status.code().unwrap_or(-1);
        assert_ne!(code, 201, "{}", String::from_utf8_lossy(&output.stderr));
        *codes.entry(code).or_insert(0) += 1;
    }
    eprintln!("200 runs finished in {:?}: {codes:?}", started.elapsed());
    assert_eq!(codes.get(&0), Some(&1), "{codes:?}");
    assert_eq!(codes.get(&200), Some(&199), "{codes:?}");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "x\n");
}
