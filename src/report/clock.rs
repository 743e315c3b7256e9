//! Wall-clock times as people and programs read them: the civil date of a
//! unix time (UTC, the proleptic Gregorian calendar), and RFC 3339's form
//! for the JSON events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A moment in UTC, split into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// The year (1970 for the epoch).
    pub year: i64,
    /// The month, 1 to 12.
    pub month: i64,
    /// The day of the month, 1 to 31.
    pub day: i64,
    /// The hour, 0 to 23.
    pub hour: i64,
    /// The minute, 0 to 59.
    pub minute: i64,
    /// The second, 0 to 59.
    pub second: i64,
}

impl Civil {
    /// The calendar fields of `at`, seconds since the unix epoch.
    pub fn of(at: i64) -> Civil {
        let (days, seconds) = (at.div_euclid(86_400), at.rem_euclid(86_400));
        // Days to a civil date: eras of 400 years (146,097 days) counted
        // from 0000-03-01, so that the leap day ends each year.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: seconds / 3600,
            minute: seconds / 60 % 60,
            second: seconds % 60,
        }
    }
}

/// Seconds since the unix epoch, with their fraction; 0 for a clock set
/// before 1970.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339 in UTC with milliseconds: `2025-11-30T08:15:02.041Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let c = Civil::of(since.as_secs() as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        since.subsec_millis()
    )
}

/// How many seconds east of UTC this host's local time is at `at` (unix
/// seconds), from the C library's time zone (TZ, /etc/localtime); 0 when
/// it cannot say.
pub fn local_offset(at: i64) -> i64 {
    // time_t, inferred (naming the alias warns on musl, as in syslog.rs):
    // i64 on every target cronlock builds for, hence the allow.
    #[allow(clippy::useless_conversion)]
    let time = at.try_into().unwrap_or_default();
    // SAFETY: a zeroed `tm` is a valid value of this plain C struct.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; nothing in cronlock
    // changes TZ, which localtime_r reads.
    let converted = unsafe { nix::libc::localtime_r(&time, &mut tm) };
    if converted.is_null() {
        return 0;
    }
    tm.tm_gmtoff as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_split_into_civil_fields() {
        let epoch = Civil::of(0);
        assert_eq!((epoch.year, epoch.month, epoch.day, epoch.hour), (1970, 1, 1, 0));
        let leap = Civil::of(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let before = Civil::of(-1);
        assert_eq!(
            (
                before.year,
                before.month,
                before.day,
                before.hour,
                before.minute,
                before.second
            ),
            (1969, 12, 31, 23, 59, 59)
        );
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_490_502_041);
        assert_eq!(rfc3339(at), "2025-11-30T08:15:02.041Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)), 1.5);
    }
}
