//! `CRONLOCK_SLOT`: one run per scheduled slot, whatever the grace, and the
//! fire time passed to the command (on the directory store).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::*;

/// The slot a run started now is in, as cronlock rounds it.
fn slot_now(slot: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    (now + slot / 2).div_euclid(slot) * slot
}

#[test]
fn a_second_run_in_the_same_slot_is_held_though_the_grace_is_over() {
    let dir = TempDir::new("slot");
    let env = vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("file://{}", dir.join("locks").display()),
        ),
        ("CRONLOCK_KEY".to_string(), "job".to_string()),
        ("CRONLOCK_SLOT".to_string(), "1d".to_string()),
        // Without the slot, the lock would go as the command ends.
        ("CRONLOCK_GRACE".to_string(), "-1".to_string()),
        ("CRONLOCK_SHOW_KEY".to_string(), "yes".to_string()),
    ];
    let seen = dir.join("scheduled");
    loop {
        let before = slot_now(86_400);
        let first = run(
            &env,
            &[
                "sh",
                "-c",
                &format!("printf %s \"$CRONLOCK_SCHEDULED_TIME\" > {}", seen.display()),
            ],
        );
        first.expect(0);
        let second = run(&env, &["true"]);
        if slot_now(86_400) != before {
            // The day's slot turned between the runs (once a day, at noon
            // UTC): the second run was rightly in another slot. Again.
            let _ = std::fs::remove_dir_all(dir.join("locks"));
            continue;
        }
        second.expect(200);
        assert!(
            first
                .stderr()
                .contains(&format!("cronlock: key cronlock.job@{before}\n")),
            "{}",
            first.stderr()
        );
        break;
    }
    let scheduled = std::fs::read_to_string(&seen).unwrap();
    // RFC 3339 in UTC: a day's fire time is the nearest midnight (the
    // slot turns at noon).
    assert!(scheduled.ends_with("T00:00:00.000Z"), "{scheduled}");
}

#[test]
fn a_slot_with_another_tools_key_style_is_refused() {
    let dir = TempDir::new("slot-style");
    for (style, slot) in [("sera", "5m"), ("tooz", "5m")] {
        let env = vec![
            ("CRONLOCK_URL".to_string(), format!("file://{}", dir.path().display())),
            ("CRONLOCK_KEY_STYLE".to_string(), style.to_string()),
            ("CRONLOCK_SLOT".to_string(), slot.to_string()),
        ];
        let refused = run(&env, &["true"]);
        refused.expect(201);
        assert_eq!(refused.stderr().lines().count(), 1, "{}", refused.stderr());
    }
}

#[test]
fn auto_keys_each_run_by_its_schedules_own_fire_time() {
    let dir = TempDir::new("slot-auto");
    // Weekly, Mondays 06:00 in UTC (TZ set): the fire time nearest to now,
    // whatever day the test runs.
    let env = vec![
        (
            "CRONLOCK_URL".to_string(),
            format!("file://{}", dir.join("locks").display()),
        ),
        ("CRONLOCK_KEY".to_string(), "weekly".to_string()),
        ("CRONLOCK_SLOT".to_string(), "auto".to_string()),
        ("CRONLOCK_SCHEDULE".to_string(), "0 6 * * mon".to_string()),
        ("CRONLOCK_GRACE".to_string(), "-1".to_string()),
        ("CRONLOCK_SHOW_KEY".to_string(), "yes".to_string()),
        ("TZ".to_string(), "UTC".to_string()),
    ];
    let week = 7 * 86_400;
    // 1970-01-05, a Monday, 06:00 UTC.
    let monday = 4 * 86_400 + 6 * 3600;
    let fire = |now: i64| monday + (now - monday + week / 2).div_euclid(week) * week;
    loop {
        let before = fire(unix_now());
        let seen = dir.join("scheduled");
        let script = format!("printf %s \"$CRONLOCK_SCHEDULED_TIME\" > {}", seen.display());
        let first = run(&env, &["sh", "-c", &script]);
        first.expect(0);
        let second = run(&env, &["true"]);
        if fire(unix_now()) != before {
            // Thursday 18:00 UTC passed between the runs. Again.
            let _ = std::fs::remove_dir_all(dir.join("locks"));
            continue;
        }
        second.expect(200);
        assert!(
            first
                .stderr()
                .contains(&format!("cronlock: key cronlock.weekly@{before}\n")),
            "{}",
            first.stderr()
        );
        let scheduled = std::fs::read_to_string(&seen).unwrap();
        assert!(scheduled.ends_with("T06:00:00.000Z"), "{scheduled}");
        break;
    }
}

#[test]
fn auto_without_an_even_schedule_is_refused_with_one_line() {
    let dir = TempDir::new("slot-auto-bad");
    let store = format!("file://{}", dir.path().display());
    for (slot, schedule, why) in [
        (Some("auto"), None, "needs CRONLOCK_SCHEDULE"),
        (Some("auto"), Some("0 3 * * 1-5"), "uneven intervals (1d and 3d)"),
        (Some("auto"), Some("0 3 1 * *"), "days of the month"),
        (Some("10m"), Some("*/10 * * * *"), "only with CRONLOCK_SLOT=auto"),
        (None, Some("*/10 * * * *"), "only with CRONLOCK_SLOT=auto"),
    ] {
        let mut env = vec![("CRONLOCK_URL".to_string(), store.clone())];
        env.extend(slot.map(|s| ("CRONLOCK_SLOT".to_string(), s.to_string())));
        env.extend(schedule.map(|s| ("CRONLOCK_SCHEDULE".to_string(), s.to_string())));
        expect_refusal(&env, why, &[]);
    }
}
