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
