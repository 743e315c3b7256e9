//! `CRONLOCK_SLOT=auto`: the slot read from the job's crontab schedule
//! (`CRONLOCK_SCHEDULE`, the line's five time fields). cron does not tell
//! its command which line started it, so the schedule is given, once, in
//! the crontab line or the config file.
//!
//! Only a schedule that fires at even intervals within a week has a period
//! (`*/5 * * * *`, `30 * * * *`, `0 3 * * *`, `0 6 * * 1`, `0 */6 * * *`);
//! the slot is that period, and the fire times are the schedule's own, so
//! a job at `:30` past the hour is keyed by its own fire time, not by the
//! rounding boundary that a plain `CRONLOCK_SLOT=1h` would put there.

use anyhow::{anyhow, bail, Result};

/// Minutes in a week: the span over which a schedule must repeat evenly.
const WEEK_MINUTES: usize = 7 * 24 * 60;

/// A schedule's period and where its fire times fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Seconds between two fire times.
    pub seconds: u64,
    /// The first fire time of the week, in minutes after Sunday 00:00 of
    /// the time zone cron reads the schedule in.
    pub first_minute: u64,
}

/// The period of `schedule`, a crontab line's five time fields or one of
/// `@hourly`, `@daily`, `@midnight` and `@weekly`.
pub fn period(schedule: &str) -> Result<Period> {
    let fields: Vec<&str> = match schedule.trim() {
        "@hourly" => vec!["0", "*", "*", "*", "*"],
        "@daily" | "@midnight" => vec!["0", "0", "*", "*", "*"],
        "@weekly" => vec!["0", "0", "*", "*", "0"],
        other if other.starts_with('@') => {
            bail!("CRONLOCK_SCHEDULE={schedule:?}: {other} does not repeat within a week; give CRONLOCK_SLOT instead")
        }
        other => other.split_whitespace().collect(),
    };
    let [minute, hour, day, month, weekday] = fields[..] else {
        bail!("CRONLOCK_SCHEDULE={schedule:?}: expected five fields (minute hour day month weekday)");
    };
    let minutes = set(minute, 0, 59, &[]).map_err(|why| field_error(schedule, "minute", &why))?;
    let hours = set(hour, 0, 23, &[]).map_err(|why| field_error(schedule, "hour", &why))?;
    let days = set(day, 1, 31, &[]).map_err(|why| field_error(schedule, "day", &why))?;
    let months = set(month, 1, 12, &MONTHS).map_err(|why| field_error(schedule, "month", &why))?;
    let mut weekdays = set(weekday, 0, 7, &WEEKDAYS).map_err(|why| field_error(schedule, "weekday", &why))?;
    if days[1..].iter().any(|d| !d) || months[1..].iter().any(|m| !m) {
        bail!(
            "CRONLOCK_SCHEDULE={schedule:?}: a schedule that names days of the month or months does not repeat evenly; give CRONLOCK_SLOT instead"
        );
    }
    // 7 is Sunday too.
    weekdays[0] |= weekdays[7];
    let fires: Vec<usize> = (0..WEEK_MINUTES)
        .filter(|&m| weekdays[m / 1440] && hours[m % 1440 / 60] && minutes[m % 60])
        .collect();
    let gap = |i: usize| {
        let next = fires.get(i + 1).copied().unwrap_or(fires[0] + WEEK_MINUTES);
        next - fires[i]
    };
    let first = gap(0);
    if let Some(other) = (1..fires.len()).map(gap).find(|&g| g != first) {
        bail!(
            "CRONLOCK_SCHEDULE={schedule:?}: it fires at uneven intervals ({} and {}); give CRONLOCK_SLOT instead",
            minutes_text(first),
            minutes_text(other)
        );
    }
    Ok(Period {
        seconds: first as u64 * 60,
        first_minute: fires[0] as u64,
    })
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field_error(schedule: &str, field: &str, why: &str) -> anyhow::Error {
    anyhow!("CRONLOCK_SCHEDULE={schedule:?}: its {field} field {why}")
}

fn minutes_text(minutes: usize) -> String {
    match minutes {
        m if m % 1440 == 0 => format!("{}d", m / 1440),
        m if m % 60 == 0 => format!("{}h", m / 60),
        m => format!("{m}m"),
    }
}

/// One field as the values it allows, indexed from 0 up to `high`: `*`,
/// `N`, `N-M`, each with an optional `/STEP`, separated by commas; `names`
/// (three letters, any case) stand for `low`, `low + 1`...
fn set(field: &str, low: usize, high: usize, names: &[&str]) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; high + 1];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<usize>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("has the step {step:?}"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let value = |text: &str| -> Result<usize, String> {
            let named = names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(text))
                .map(|i| i + low);
            named
                .or_else(|| text.parse().ok())
                .filter(|v| (low..=high).contains(v))
                .ok_or_else(|| format!("has {text:?}, not a value from {low} to {high}"))
        };
        let (from, to) = match range {
            "*" => (low, high),
            _ => match range.split_once('-') {
                Some((from, to)) => (value(from)?, value(to)?),
                // `N/STEP` runs from N to the end, as in Vixie cron.
                None if step > 1 => (value(range)?, high),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("has the range {range:?}, which runs backwards"));
        }
        for v in (from..=to).step_by(step) {
            allowed[v] = true;
        }
    }
    // `*` for the weekday allows 7 as well, which the caller folds into 0.
    Ok(allowed)
}

/// The fire time nearest to `now` (unix seconds) of a schedule with
/// `period`, read in a time zone `offset` seconds east of UTC.
pub fn nearest_fire(now: i64, period: Period, offset: i64) -> i64 {
    let seconds = period.seconds as i64;
    // The unix epoch was a Thursday: the first Sunday began 3 days later.
    let first = 3 * 86_400 + period.first_minute as i64 * 60 - offset;
    let phase = first.rem_euclid(seconds);
    phase + (now - phase + seconds / 2).div_euclid(seconds) * seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(schedule: &str) -> u64 {
        period(schedule).unwrap().seconds
    }

    #[test]
    fn even_schedules_have_their_period() {
        assert_eq!(seconds("*/5 * * * *"), 300);
        assert_eq!(seconds("* * * * *"), 60);
        assert_eq!(seconds("30 * * * *"), 3600);
        assert_eq!(seconds("0,30 * * * *"), 1800);
        assert_eq!(seconds("0 */6 * * *"), 6 * 3600);
        assert_eq!(seconds("0 3 * * *"), 86_400);
        assert_eq!(seconds("0 6 * * 1"), 7 * 86_400);
        assert_eq!(seconds("0 6 * * MON"), 7 * 86_400);
        assert_eq!(seconds("0 0 * * 7"), 7 * 86_400);
        assert_eq!(seconds("0 0 * * 0,7"), 7 * 86_400);
        assert_eq!(seconds("@hourly"), 3600);
        assert_eq!(seconds("@daily"), 86_400);
        assert_eq!(seconds("@weekly"), 7 * 86_400);
        assert_eq!(seconds("5/15 * * * *"), 900);
        assert_eq!(seconds("0 0-23/2 * * *"), 7200);
        assert_eq!(seconds("0 0 * jan-dec *"), 86_400);
    }

    #[test]
    fn uneven_or_unreadable_schedules_are_refused_with_the_reason() {
        for (bad, why) in [
            ("0 3 * * 1-5", "uneven intervals (1d and 3d)"),
            ("0 3,15,18 * * *", "uneven"),
            ("*/7 * * * *", "uneven"),
            ("0 3 1 * *", "days of the month or months"),
            ("0 3 * 6 *", "days of the month or months"),
            ("@monthly", "does not repeat within a week"),
            ("@reboot", "does not repeat within a week"),
            ("60 * * * *", "minute field has \"60\""),
            ("* * * *", "five fields"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("0 3 * * funday", "weekday field"),
        ] {
            let err = format!("{:#}", period(bad).unwrap_err());
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.starts_with("CRONLOCK_SCHEDULE="), "{err}");
        }
    }

    #[test]
    fn fire_times_are_the_schedules_own() {
        // Friday 2026-12-04 12:00:00 UTC.
        let noon = 1_796_385_600;
        let hourly_at_half = period("30 * * * *").unwrap();
        // A start just before or after :30 is the :30 run, never split.
        assert_eq!(nearest_fire(noon + 1799, hourly_at_half, 0), noon + 1800);
        assert_eq!(nearest_fire(noon + 1801, hourly_at_half, 0), noon + 1800);
        assert_eq!(nearest_fire(noon + 1800 + 1799, hourly_at_half, 0), noon + 1800);
        // 03:00 in a zone 2 h east of UTC is 01:00 UTC.
        let daily = period("0 3 * * *").unwrap();
        let midnight = noon - 12 * 3600;
        assert_eq!(nearest_fire(midnight + 3600 + 5, daily, 7200), midnight + 3600);
        // Mondays 06:00 UTC: 2026-12-07 06:00.
        let weekly = period("0 6 * * 1").unwrap();
        let monday = noon + 2 * 86_400 + 18 * 3600;
        assert_eq!(nearest_fire(monday - 60, weekly, 0), monday);
        assert_eq!(nearest_fire(monday + 3 * 86_400, weekly, 0), monday);
    }
}
