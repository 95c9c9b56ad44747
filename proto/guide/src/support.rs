//! Who to call and whether they answer now (guide P28, FAQ Q20; DOMAIN.md §10): the network support
//! desk 0120-220-571, in Japan time.
//!
//! - days 1–4 and 11–end of month: 9:00–17:00, not on Saturdays, Sundays or public holidays;
//! - days 5–7: 8:00–21:00 and days 8–10: 8:00–24:00, holidays included;
//! - closed 12/29–1/3.
//!
//! Japanese public holidays are computed (fixed days, Happy Mondays, the equinoxes by the usual
//! approximation, substitute holidays and in-between "citizens' holidays"); one-off holidays
//! (imperial events) are not known. Pure: a time in, an answer out. Must never read the clock.

/// The network support desk's number.
pub const NETWORK_DESK: &str = "0120-220-571";

/// The FLET'S contract desk (line type, v6 option), 9:00–17:00.
pub const FLETS_DESK: &str = "0120-116-116";

const JST_OFFSET_MS: i64 = 9 * 3_600_000;

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// 0 = Sunday … 6 = Saturday.
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

/// The day of the month of the `n`th Monday of (y, m).
fn nth_monday(y: i64, m: u32, n: u32) -> u32 {
    let first = weekday(days_from_civil(y, m, 1));
    let first_monday = 1 + (8 - first) % 7;
    first_monday + 7 * (n - 1)
}

fn equinox(y: i64, base: f64) -> u32 {
    let k = (y - 1980) as f64;
    (base + 0.242_194 * k - ((y - 1980) / 4) as f64).floor() as u32
}

/// Holidays by law, before substitute and in-between days.
fn statutory(y: i64, m: u32, d: u32) -> bool {
    match (m, d) {
        (1, 1)
        | (2, 11)
        | (2, 23)
        | (4, 29)
        | (5, 3)
        | (5, 4)
        | (5, 5)
        | (8, 11)
        | (11, 3)
        | (11, 23) => true,
        (1, _) => d == nth_monday(y, 1, 2),
        (3, _) => d == equinox(y, 20.8431),
        (7, _) => d == nth_monday(y, 7, 3),
        (9, _) => d == nth_monday(y, 9, 3) || d == equinox(y, 23.2488),
        (10, _) => d == nth_monday(y, 10, 2),
        _ => false,
    }
}

fn is_statutory_days(days: i64) -> bool {
    let (y, m, d) = civil(days);
    statutory(y, m, d)
}

/// Whether a date (days since the epoch) is a Japanese public holiday.
pub fn is_holiday(days: i64) -> bool {
    if is_statutory_days(days) {
        return true;
    }
    // A weekday between two holidays is a holiday (国民の休日).
    if weekday(days) != 0 && is_statutory_days(days - 1) && is_statutory_days(days + 1) {
        return true;
    }
    // Substitute holiday: the first non-holiday after a holiday that fell on a Sunday.
    let mut back = days - 1;
    while is_statutory_days(back) {
        if weekday(back) == 0 {
            return true;
        }
        back -= 1;
    }
    false
}

/// Whether the network support desk answers at `unix_ms`.
pub fn network_desk_open(unix_ms: i64) -> bool {
    let jst = unix_ms + JST_OFFSET_MS;
    let days = jst.div_euclid(86_400_000);
    let minute = jst.rem_euclid(86_400_000) / 60_000;
    let (_, m, d) = civil(days);
    if (m == 12 && d >= 29) || (m == 1 && d <= 3) {
        return false;
    }
    let hours = |from: i64, to: i64| minute >= from * 60 && minute < to * 60;
    match d {
        5..=7 => hours(8, 21),
        8..=10 => hours(8, 24),
        _ => {
            let wd = weekday(days);
            wd != 0 && wd != 6 && !is_holiday(days) && hours(9, 17)
        }
    }
}

/// Today's hours of the network desk in Japan time, for people: `"9:00–17:00"`, or `None` when
/// it is closed all day.
pub fn network_desk_hours_today(unix_ms: i64) -> Option<&'static str> {
    let jst = unix_ms + JST_OFFSET_MS;
    let days = jst.div_euclid(86_400_000);
    let (_, m, d) = civil(days);
    if (m == 12 && d >= 29) || (m == 1 && d <= 3) {
        return None;
    }
    match d {
        5..=7 => Some("8:00–21:00"),
        8..=10 => Some("8:00–24:00"),
        _ => {
            let wd = weekday(days);
            (wd != 0 && wd != 6 && !is_holiday(days)).then_some("9:00–17:00")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a Japan-time wall clock.
    fn jst(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        (days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60) * 1000 - JST_OFFSET_MS
    }

    fn holiday(y: i64, m: u32, d: u32) -> bool {
        is_holiday(days_from_civil(y, m, d))
    }

    #[test]
    fn the_calendar_knows_japans_holidays() {
        // 2026: 成人の日 1/12, 春分 3/20, 振替 5/6 (5/3 is a Sunday), 海の日 7/20, 敬老 9/21,
        // 国民の休日 9/22, 秋分 9/23, スポーツ 10/12, 勤労感謝 11/23.
        for (m, d) in [
            (1, 1),
            (1, 12),
            (2, 11),
            (2, 23),
            (3, 20),
            (4, 29),
            (5, 3),
            (5, 4),
            (5, 5),
            (5, 6),
            (7, 20),
            (8, 11),
            (9, 21),
            (9, 22),
            (9, 23),
            (10, 12),
            (11, 3),
            (11, 23),
        ] {
            assert!(holiday(2026, m, d), "2026-{m}-{d}");
        }
        for (m, d) in [(1, 13), (3, 19), (5, 7), (9, 24), (11, 24), (11, 25)] {
            assert!(!holiday(2026, m, d), "2026-{m}-{d}");
        }
        // 2025: 春分 3/20, 秋分 9/23; 振替 11/24 (11/23 is a Sunday).
        assert!(holiday(2025, 3, 20) && holiday(2025, 9, 23) && holiday(2025, 11, 24));
    }

    #[test]
    fn the_desk_keeps_the_guides_hours() {
        // Wed 2026-11-25: an ordinary weekday of the 11th–end window.
        assert!(!network_desk_open(jst(2026, 11, 25, 8, 59)));
        assert!(network_desk_open(jst(2026, 11, 25, 9, 0)));
        assert!(network_desk_open(jst(2026, 11, 25, 16, 59)));
        assert!(!network_desk_open(jst(2026, 11, 25, 17, 0)));
        // Saturday 2026-11-28 and the holiday 2026-11-23 (Monday): closed.
        assert!(!network_desk_open(jst(2026, 11, 28, 10, 0)));
        assert!(!network_desk_open(jst(2026, 11, 23, 10, 0)));
        // Days 5–7, even on a Saturday (2026-12-05): 8:00–21:00.
        assert!(network_desk_open(jst(2026, 12, 5, 8, 0)));
        assert!(network_desk_open(jst(2026, 12, 5, 20, 59)));
        assert!(!network_desk_open(jst(2026, 12, 5, 21, 0)));
        // Days 8–10: until midnight.
        assert!(network_desk_open(jst(2026, 12, 10, 23, 59)));
        assert!(!network_desk_open(jst(2026, 12, 10, 7, 59)));
        // New Year: closed 12/29–1/3, even on days that would be open.
        assert!(!network_desk_open(jst(2026, 12, 29, 10, 0)));
        assert!(!network_desk_open(jst(2027, 1, 3, 10, 0)));
        assert!(network_desk_open(jst(2027, 1, 5, 10, 0)));
        assert_eq!(
            network_desk_hours_today(jst(2026, 12, 9, 3, 0)),
            Some("8:00–24:00")
        );
        assert_eq!(network_desk_hours_today(jst(2026, 11, 28, 12, 0)), None);
        // 00:30 JST on the 26th is still the 25th in UTC: Japan time decides.
        assert_eq!(
            network_desk_hours_today(jst(2026, 11, 26, 0, 30)),
            Some("9:00–17:00")
        );
    }
}
