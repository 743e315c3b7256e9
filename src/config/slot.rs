//! `CRONLOCK_SLOT`: one run per scheduled slot. The lock's name gets the
//! job's scheduled fire time, read as this host's clock rounded to the
//! nearest multiple of the slot, and the lock is kept until that slot ends.
//! Hosts whose clocks differ by less than half a slot agree on the fire
//! time, so a host that starts late (clock skew, a slow cron) finds the
//! lock of the run that already happened instead of running the job again.

//!
//! `auto` reads the slot from the job's schedule instead (`CRONLOCK_SCHEDULE`,
//! see [`super::schedule`]), and the fire times are then the schedule's own.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};

use super::schedule::{self, Period};

/// The longest slot: a week.
const MAX_SLOT: u64 = 7 * 86_400;

/// One run per slot of this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The slot's length.
    pub seconds: u64,
    /// `auto`: the schedule whose fire times key the runs.
    pub schedule: Option<Period>,
}

impl Slot {
    /// The scheduled fire time of a run started at `now` (unix seconds).
    pub fn fire_time(self, now: i64) -> i64 {
        match self.schedule {
            // cron reads a schedule in the host's local time.
            Some(period) => schedule::nearest_fire(now, period, crate::report::clock::local_offset(now)),
            None => scheduled(now, self.seconds),
        }
    }
}

/// `CRONLOCK_SLOT` (and, for `auto`, `CRONLOCK_SCHEDULE`); `None` when unset.
pub fn read(value: Option<&str>, schedule_text: Option<&str>) -> Result<Option<Slot>> {
    match (value, schedule_text) {
        (Some("auto"), Some(text)) => {
            let period = schedule::period(text)?;
            Ok(Some(Slot {
                seconds: period.seconds,
                schedule: Some(period),
            }))
        }
        (Some("auto"), None) => bail!(
            "CRONLOCK_SLOT=auto needs CRONLOCK_SCHEDULE, the job's five crontab time fields (cron does not tell its command its schedule)"
        ),
        (_, Some(_)) => bail!("CRONLOCK_SCHEDULE is read only with CRONLOCK_SLOT=auto"),
        (value, None) => Ok(parse(value)?.map(|seconds| Slot {
            seconds,
            schedule: None,
        })),
    }
}

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
        _ => bail!("CRONLOCK_SLOT={value:?}: expected a period such as 300, 5m, 1h or 1d, or auto"),
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
    fn auto_takes_the_schedule_and_nothing_else_does() {
        let auto = read(Some("auto"), Some("*/5 * * * *")).unwrap().unwrap();
        assert_eq!(auto.seconds, 300);
        assert!(auto.schedule.is_some());
        assert_eq!(read(Some("5m"), None).unwrap().unwrap().seconds, 300);
        assert_eq!(read(None, None).unwrap(), None);
        for (value, schedule, why) in [
            (Some("auto"), None, "needs CRONLOCK_SCHEDULE"),
            (Some("5m"), Some("*/5 * * * *"), "only with CRONLOCK_SLOT=auto"),
            (None, Some("*/5 * * * *"), "only with CRONLOCK_SLOT=auto"),
            (Some("auto"), Some("0 3 * * 1-5"), "uneven"),
        ] {
            let err = format!("{:#}", read(value, schedule).unwrap_err());
            assert!(err.contains(why), "{err}");
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
