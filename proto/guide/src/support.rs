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

/// The weekday of a date (days since the epoch): 0 Sunday … 6 Saturday.
pub fn weekday(days: i64) -> u32 {
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

/// Whether the FLET'S contract desk answers at `unix_ms`: 9:00–17:00 Japan time, every day but
/// over the New Year (the guide says 年末年始を除く without dates; 12/29–1/3 as the network desk).
pub fn flets_desk_open(unix_ms: i64) -> bool {
    let jst = unix_ms + JST_OFFSET_MS;
    let minute = jst.rem_euclid(86_400_000) / 60_000;
    flets_desk_hours_today(unix_ms).is_some() && (9 * 60..17 * 60).contains(&minute)
}

/// Today's hours of the FLET'S contract desk, or `None` over the New Year.
pub fn flets_desk_hours_today(unix_ms: i64) -> Option<&'static str> {
    let (_, m, d) = civil((unix_ms + JST_OFFSET_MS).div_euclid(86_400_000));
    let new_year = (m == 12 && d >= 29) || (m == 1 && d <= 3);
    (!new_year).then_some("9:00–17:00")
}

/// A desk the guide sends people to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Desk {
    /// ネットワークサポートデスク (P28, FAQ Q20): the portal, OQS, everything but the line itself.
    Network,
    /// NTT East/West's FLET'S contract desk (P4 手順1, Q6): the line's type and the v6 option.
    Flets,
}

impl Desk {
    pub fn number(self) -> &'static str {
        match self {
            Desk::Network => NETWORK_DESK,
            Desk::Flets => FLETS_DESK,
        }
    }

    pub fn name_ja(self) -> &'static str {
        match self {
            Desk::Network => "ネットワークサポートデスク",
            Desk::Flets => "フレッツ光の契約情報の確認窓口（NTT東日本/西日本）",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Desk::Network => "Network support desk",
            Desk::Flets => "FLET'S contract desk (NTT East/West)",
        }
    }

    /// What to call it about, in both languages.
    pub fn purpose(self) -> (&'static str, &'static str) {
        match self {
            Desk::Network => (
                "回線認証・オンライン資格確認の接続（お客さまIDとIPv6アドレスをご用意ください）",
                "line authentication and the OQS connection (have the customer ID and IPv6 address ready)",
            ),
            Desk::Flets => (
                "回線のタイプ、フレッツ・v6オプションの契約有無（コラボ光は光コラボレーション事業者へ）",
                "the line's type and the FLET'S v6 option contract (Hikari Collabo lines: their provider)",
            ),
        }
    }

    pub fn open(self, unix_ms: i64) -> bool {
        match self {
            Desk::Network => network_desk_open(unix_ms),
            Desk::Flets => flets_desk_open(unix_ms),
        }
    }

    pub fn hours_today(self, unix_ms: i64) -> Option<&'static str> {
        match self {
            Desk::Network => network_desk_hours_today(unix_ms),
            Desk::Flets => flets_desk_hours_today(unix_ms),
        }
    }
}

/// A desk as people are shown it at one moment: the site page's contact bundle
/// (`contact.desks`) and `oqs-agent check` carry exactly this.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeskNow {
    pub desk: Desk,
    pub number: &'static str,
    pub name_ja: &'static str,
    pub name_en: &'static str,
    pub for_ja: &'static str,
    pub for_en: &'static str,
    pub open_now: bool,
    /// Today's hours in Japan time, `None` when closed all day.
    pub hours_today: Option<&'static str>,
}

/// The desks to call for `finding` ([`desks_for`]), each as it stands at `unix_ms`.
pub fn desks_now(finding: Option<crate::diagnosis::Finding>, unix_ms: i64) -> Vec<DeskNow> {
    desks_for(finding)
        .iter()
        .map(|&desk| {
            let (for_ja, for_en) = desk.purpose();
            DeskNow {
                desk,
                number: desk.number(),
                name_ja: desk.name_ja(),
                name_en: desk.name_en(),
                for_ja,
                for_en,
                open_now: desk.open(unix_ms),
                hours_today: desk.hours_today(unix_ms),
            }
        })
        .collect()
}

/// The desks to call for a finding, first the one that can act on it: the line's own problems
/// (its type, the v6 option) are the FLET'S desk's, the rest the network support desk's.
pub fn desks_for(finding: Option<crate::diagnosis::Finding>) -> &'static [Desk] {
    use crate::diagnosis::Finding::*;
    match finding {
        Some(IneligibleLine) => &[Desk::Flets, Desk::Network],
        Some(Ipv6Missing | NwBaseUnreachable) => &[Desk::Flets, Desk::Network],
        // Another connection method: the guide's desks serve its method; the closed-network or
        // VPN provider answers for the rest (the remedy says so).
        Some(OffGuideDns | OffGuideOqsWeb) => &[],
        _ => &[Desk::Network],
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
    fn the_flets_desk_answers_nine_to_five_every_day_but_new_year() {
        // A Sunday and a holiday are open days for it (the network desk is closed on them).
        assert!(flets_desk_open(jst(2026, 11, 29, 10, 0)));
        assert!(!network_desk_open(jst(2026, 11, 29, 10, 0)));
        assert!(flets_desk_open(jst(2026, 11, 3, 16, 59)));
        assert!(!flets_desk_open(jst(2026, 11, 3, 17, 0)));
        assert!(!flets_desk_open(jst(2026, 11, 3, 8, 59)));
        assert!(!flets_desk_open(jst(2026, 12, 30, 10, 0)));
        assert_eq!(flets_desk_hours_today(jst(2027, 1, 3, 10, 0)), None);
        assert_eq!(
            flets_desk_hours_today(jst(2027, 1, 4, 10, 0)),
            Some("9:00–17:00")
        );
    }

    #[test]
    fn the_line_goes_to_the_flets_desk_the_rest_to_the_network_desk() {
        use crate::diagnosis::Finding;
        assert_eq!(desks_for(Some(Finding::IneligibleLine))[0], Desk::Flets);
        assert_eq!(desks_for(Some(Finding::Ipv6Missing))[0], Desk::Flets);
        assert_eq!(desks_for(Some(Finding::AuthFailed)), &[Desk::Network]);
        assert_eq!(desks_for(None), &[Desk::Network]);
        assert_eq!(Desk::Flets.number(), "0120-116-116");
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
