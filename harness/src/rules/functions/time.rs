//! Calendar functions of Unix seconds, in UTC: `minute`, `hour`, `day_of_week`, ...

/// A UTC calendar date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1-12.
    pub month: i64,
    /// Day of month, 1-31.
    pub day: i64,
    /// Hour, 0-23.
    pub hour: i64,
    /// Minute, 0-59.
    pub minute: i64,
    /// Day of week, 0 = Sunday.
    pub weekday: i64,
    /// Day of year, 1-366.
    pub yday: i64,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in `month` of `year`.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The UTC calendar of Unix time `secs` (Howard Hinnant's days-to-civil algorithm).
pub fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(month - 1) as usize] + day + i64::from(month > 2 && is_leap(year));
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: (sod % 3600) / 60,
        weekday: (days + 4).rem_euclid(7),
        yday,
    }
}

/// The calendar function `name` of Unix seconds `v`, if `name` is one.
pub fn date_fn(name: &str, v: f64) -> Option<f64> {
    // Go converts with int64(f); NaN and out-of-range values have no date.
    if !v.is_finite() || v.abs() > 1e15 {
        return Some(f64::NAN);
    }
    let c = civil(v as i64);
    Some(match name {
        "minute" => c.minute,
        "hour" => c.hour,
        "day_of_week" => c.weekday,
        "day_of_month" => c.day,
        "day_of_year" => c.yday,
        "days_in_month" => days_in_month(c.year, c.month),
        "month" => c.month,
        "year" => c.year,
        _ => return None,
    } as f64)
}

/// Whether `name` is a calendar function.
pub fn is_date_fn(name: &str) -> bool {
    matches!(
        name,
        "minute"
            | "hour"
            | "day_of_week"
            | "day_of_month"
            | "day_of_year"
            | "days_in_month"
            | "month"
            | "year"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        // 2024-02-29T13:45:00Z, a Thursday, day 60.
        let c = civil(1_709_214_300);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (2024, 2, 29, 13, 45)
        );
        assert_eq!((c.weekday, c.yday), (4, 60));
        assert_eq!(date_fn("days_in_month", 1_709_214_300.0), Some(29.0));
        let e = civil(0);
        assert_eq!(
            (e.year, e.month, e.day, e.weekday, e.yday),
            (1970, 1, 1, 4, 1)
        );
    }
}
