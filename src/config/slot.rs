//! `CRONLOCK_SLOT`: one run per scheduled slot. The lock's name gets the
//! job's scheduled fire time, read as this host's clock rounded to the
//! nearest multiple of the slot, and the lock is kept until that slot ends.
//! Hosts whose clocks differ by less than half a slot agree on the fire
//! time, so a host that starts late (clock skew, a slow cron) finds the
//! lock of the run that already happened instead of running the job again.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};

/// The longest slot: a week.
const MAX_SLOT: u64 = 7 * 86_400;

/// `N`, `Ns`, `Nm`, `Nh` or `Nd` as seconds (1 s to a week); `None` when unset.
pub fn parse(value: Option<&str>) -> Result<Option<u64>> {
    let Some(value) = value else { return Ok(None) };
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("CRONLOCK_SLOT={value:?}: expected a period such as 300, 5m, 1h or 1d"),
    };
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (1..=MAX_SLOT).contains(s))
        .ok_or_else(|| anyhow!("CRONLOCK_SLOT={value:?}: a period from 1 s to 7 d, such as 5m"))?;
    Ok(Some(seconds))
}

/// The scheduled fire time of a run started at `now` (unix seconds): the
/// nearest multiple of `slot`.
pub fn scheduled(now: i64, slot: u64) -> i64 {
    let slot = slot as i64;
    (now + slot / 2).div_euclid(slot) * slot
}

/// This host's clock, in unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_in_several_units() {
        assert_eq!(parse(None).unwrap(), None);
        assert_eq!(parse(Some("300")).unwrap(), Some(300));
        assert_eq!(parse(Some("5m")).unwrap(), Some(300));
        assert_eq!(parse(Some("1h")).unwrap(), Some(3600));
        assert_eq!(parse(Some("1d")).unwrap(), Some(86_400));
        for bad in [
            "0",
            "0m",
            "8d",
            "5 m",
            "m",
            "-5",
            "1.5h",
            "auto",
            "99999999999999999999h",
        ] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fire_time_is_the_nearest_slot_boundary() {
        // 12:00:00 UTC on a day, in unix seconds.
        let noon = 1_764_849_600;
        assert_eq!(scheduled(noon, 300), noon);
        assert_eq!(scheduled(noon + 149, 300), noon, "a late start");
        assert_eq!(scheduled(noon - 150, 300), noon, "a host whose clock is behind");
        assert_eq!(scheduled(noon + 150, 300), noon + 300);
        assert_eq!(scheduled(noon - 151, 300), noon - 300);
    }
}
