//! cronlockctl against a store, written once and run for each store (like
//! the conformance suite): `Fixture` comes from there. Every JSON answer is
//! parsed here, so the documented fields are checked.
#![allow(dead_code)]

mod migrate;

use serde_json::Value;

use crate::conformance::Fixture;
use crate::util::*;

/// Makes one `#[test]` per behaviour for the fixture type `$fixture`.
macro_rules! suite {
    ($fixture:ty) => {
        $crate::ctl_suite::suite!(@tests $fixture:
            key_prints_what_cronlock_uses,
            status_shows_a_running_owner_then_its_grace,
            a_lock_without_owner_record_is_the_original_scripts,
            a_semaphore_shows_every_slot,
            unlock_refuses_a_live_holder_unless_forced,
            why_tells_what_a_run_would_do,
        );
    };
    (@tests $fixture:ty: $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let mut fixture = <$fixture as $crate::conformance::Fixture>::start();
                $crate::ctl_suite::$name(&mut fixture);
            }
        )*
    };
}
pub(crate) use suite;

fn json(run: &Run) -> Value {
    serde_json::from_str(run.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

pub fn key_prints_what_cronlock_uses(fixture: &mut dyn Fixture) {
    let env = fixture.env();
    let shown = ctl(&env, &["key", "--", "echo", "hi"]);
    shown.expect(0);
    assert_eq!(shown.stdout().trim(), key_for("cronlock.", &["echo", "hi"]));
    let golock = ctl(
        &with(&env, &[("CRONLOCK_KEY_STYLE", "golock")]),
        &["--json", "key", "--", "echo", "hi"],
    );
    let answer = json(&golock);
    assert_eq!(answer["key"], "cronlock.d28b1973427f736bce1d09e6babe5ec8");
    assert_eq!(answer["style"], "golock");
    ctl(&env, &["key"]).expect(2);
}

pub fn status_shows_a_running_owner_then_its_grace(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("ctl-status");
    let env = with(&fixture.env(), &[("CRONLOCK_NODE", "web-7"), ("CRONLOCK_GRACE", "30")]);
    let free = ctl(&env, &["--json", "status", "--", "sh", "-c", "job"]);
    free.expect(0);
    assert_eq!(json(&free)["state"], "free");
    let gated = Gated::new(&dir, "job");
    let mut child = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let held = ctl(&env, &["--json", "status", "--", "sh", "-c", &gated.script]);
    held.expect(1);
    let answer = json(&held);
    assert_eq!(answer["state"], "held", "{answer}");
    assert_eq!(answer["original"], false);
    assert_eq!(answer["owner"]["node"], "web-7");
    assert_eq!(answer["owner"]["pid"], child.id());
    assert_eq!(answer["owner"]["command"], format!("sh -c {}", gated.script));
    assert!(answer["expires_in"].as_i64().unwrap() > 80_000, "{answer}");
    let text = ctl(&env, &["status", "--", "sh", "-c", &gated.script]);
    assert!(text.stdout().contains("held by web-7"), "{}", text.stdout());
    gated.open();
    assert!(child.wait().unwrap().success());
    let kept = ctl(&env, &["--json", "status", "--", "sh", "-c", &gated.script]);
    kept.expect(1);
    let answer = json(&kept);
    assert_eq!(answer["state"], "kept", "{answer}");
    assert!(answer["owner"]["ended"].as_i64().is_some(), "{answer}");
    assert!((28..=31).contains(&answer["expires_in"].as_i64().unwrap()), "{answer}");
    // Listed under the prefix, one JSON object a line.
    let listed = ctl(&env, &["--json", "list"]);
    listed.expect(0);
    let lines: Vec<Value> = listed
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", listed.stdout());
    assert_eq!(lines[0]["key"], key_for("cronlock.", &["sh", "-c", &gated.script]));
}

pub fn a_lock_without_owner_record_is_the_original_scripts(fixture: &mut dyn Fixture) {
    let env = fixture.env();
    // Written as the original script writes it (prefix + key, the expiry),
    // through a store-specific door: the fixture's own cronlock run with the
    // record removed is not the same thing, so each store says how.
    let Some(put) = original_lock(fixture, "cronlock.orig") else {
        return;
    };
    put();
    let held = ctl(&env, &["--json", "status", "--key", "orig"]);
    held.expect(1);
    let answer = json(&held);
    assert_eq!(answer["original"], true, "{answer}");
    assert_eq!(answer["owner"], Value::Null);
    let text = ctl(&env, &["status", "--key", "orig"]);
    assert!(text.stdout().contains("no owner record"), "{}", text.stdout());
}

/// A way to write a lock as the original script does, where the store has
/// one (Redis); `None` elsewhere.
fn original_lock(fixture: &dyn Fixture, key: &str) -> Option<Box<dyn Fn()>> {
    let port = fixture
        .env()
        .iter()
        .find(|(k, _)| k == "CRONLOCK_PORT")
        .map(|(_, v)| v.clone())?;
    let key = key.to_string();
    Some(Box::new(move || {
        let value = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600)
            .to_string();
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &port, "SET", &key, &value])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }))
}

pub fn a_semaphore_shows_every_slot(fixture: &mut dyn Fixture) {
    let env = with(
        &fixture.env(),
        &[("CRONLOCK_CONCURRENCY", "3"), ("CRONLOCK_KEY", "sem")],
    );
    run(&env, &["true"]).expect(0);
    run(&env, &["true"]).expect(0);
    let some = ctl(&env, &["--json", "status", "--key", "sem"]);
    some.expect(0);
    let answer = json(&some);
    assert_eq!(answer["state"], "free");
    let slots = answer["slots"].as_array().unwrap();
    let keys: Vec<&str> = slots.iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["cronlock.sem", "cronlock.sem:2", "cronlock.sem:3"]);
    let states: Vec<&str> = slots.iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["kept", "kept", "free"]);
    run(&env, &["true"]).expect(0);
    ctl(&env, &["status", "--key", "sem"]).expect(1);
    // unlock removes every slot (they are in their grace: no --force needed).
    let removed = ctl(&env, &["--json", "unlock", "--key", "sem"]);
    removed.expect(0);
    assert_eq!(json(&removed)["removed"].as_array().unwrap().len(), 3);
    ctl(&env, &["unlock", "--key", "sem"]).expect(1);
}

pub fn unlock_refuses_a_live_holder_unless_forced(fixture: &mut dyn Fixture) {
    let dir = TempDir::new("ctl-unlock");
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "live")]);
    let gated = Gated::new(&dir, "job");
    let mut child = cronlock(&env).args(["sh", "-c", &gated.script]).spawn().unwrap();
    gated.wait_started();
    let refused = ctl(&env, &["unlock", "--key", "live"]);
    refused.expect(2);
    assert!(
        refused.stderr().contains("refusing") && refused.stderr().contains("--force"),
        "{}",
        refused.stderr()
    );
    assert_eq!(refused.stderr().lines().count(), 1);
    run(&env, &["true"]).expect(200);
    let forced = ctl(&env, &["--force", "unlock", "--key", "live"]);
    forced.expect(0);
    assert!(forced.stdout().contains("removed cronlock.live"), "{}", forced.stdout());
    ctl(&env, &["status", "--key", "live"]).expect(0);
    gated.open();
    child.wait().unwrap();
}

pub fn why_tells_what_a_run_would_do(fixture: &mut dyn Fixture) {
    let env = with(&fixture.env(), &[("CRONLOCK_KEY", "why")]);
    let free = ctl(&env, &["why", "--key", "why"]);
    free.expect(0);
    assert!(free.stdout().contains("a run now would: run"), "{}", free.stdout());
    run(&env, &["true"]).expect(0);
    let held = ctl(&env, &["why", "--key", "why"]);
    held.expect(1);
    assert!(held.stdout().contains("exit 200 without running"), "{}", held.stdout());
    let waiting = ctl(
        &with(&env, &[("CRONLOCK_WAIT", "60")]),
        &["--json", "why", "--key", "why"],
    );
    let answer = json(&waiting);
    assert!(
        answer["a_run_now_would"]
            .as_str()
            .unwrap()
            .starts_with("wait up to 60 s"),
        "{answer}"
    );
    assert_eq!(answer["key"], "cronlock.why");
}
