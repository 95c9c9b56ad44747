//! Monthly availability per site (月次稼働率): over one month in Japan time, the share of time the
//! OQS connection was usable, with the outages listed.
//!
//! "Usable" is the guide's tree passing: no flag whose catalogue entry says
//! [`Availability::Down`] was raised. Each moment of the month is one of, first match wins:
//! - **maintenance**: closed hours, holidays if so set, a window (the site's schedule) — left out;
//! - **no data**: before the site's first Hello, or older than the kept event log, or after now,
//!   or while `agent_silent` was raised ([`Availability::NoData`]) — left out, and said;
//! - **down**: a `Down` flag raised — an outage, with its causes (the flags, the guide's step);
//! - **up**: otherwise.
//!
//! Availability is up / (up + down); a month with neither is "no data", never 100%. Flags come
//! from the stored event log (report times, so a spool replayed after a cut lands where it
//! happened); a flag whose raise was purged by retention counts from the log's start.
//!
//! Pure: events, a schedule's spans and times in, the month's account out. Must never read the
//! clock or the store.

use crate::catalog::{Availability, Flag};
use crate::flags::{Action, Event};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What the account needs of a flag event (the store reads only these fields).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FlagChange {
    pub id: u64,
    /// When it happened (report time for report-driven events, the collector's for silence).
    pub at_ms: i64,
    /// When the collector recorded it.
    pub recorded_ms: i64,
    pub flag: Flag,
    pub action: Action,
}

impl From<&Event> for FlagChange {
    fn from(e: &Event) -> Self {
        FlagChange {
            id: e.id,
            at_ms: e.at_ms,
            recorded_ms: e.recorded_ms,
            flag: e.flag,
            action: e.action,
        }
    }
}

const DAY_MS: i64 = 86_400_000;
const JST_MS: i64 = 9 * 3_600_000;

/// A calendar month in Japan time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    /// 1–12.
    pub month: u32,
}

impl std::str::FromStr for Month {
    type Err = String;

    /// "2026-11".
    fn from_str(s: &str) -> Result<Month, String> {
        let bad = || format!("month {s:?}: use YYYY-MM, e.g. 2026-11");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let (year, month): (i32, u32) =
            (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(1..=12).contains(&month) || !(2000..=2200).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Month {
    /// The month holding `ms`, in Japan time.
    pub fn of(ms: i64) -> Month {
        let days = (ms + JST_MS).div_euclid(DAY_MS);
        // civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Month { year, month }
    }

    /// [start, end) in Unix ms: from 00:00 JST on the 1st to 00:00 JST on the next month's 1st.
    pub fn bounds(self) -> (i64, i64) {
        let (ny, nm) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        (
            days_from_civil(self.year, self.month, 1) * DAY_MS - JST_MS,
            days_from_civil(ny, nm, 1) * DAY_MS - JST_MS,
        )
    }
}

/// What is known of one site for the month.
pub struct SiteInput<'a> {
    /// The site's flag events, in any order.
    pub events: &'a [FlagChange],
    /// Flags raised now with when (for a raise the log no longer holds).
    pub active_now: &'a [(Flag, i64)],
    /// Nothing is known before this: the site's first Hello, or the kept log's start if later.
    pub known_from_ms: i64,
    /// Maintenance spans in the month, sorted and merged.
    pub maintenance: &'a [(i64, i64)],
}

/// One outage: the connection unusable from `start_ms` to `end_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Still going at the end of what the account covers (now, or the month's end).
    pub ongoing: bool,
    /// The flags that made it, in the order they were raised (the first is the cause).
    pub causes: Vec<Flag>,
}

/// The month's account of one site, in ms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Account {
    pub up_ms: i64,
    pub down_ms: i64,
    pub maintenance_ms: i64,
    pub no_data_ms: i64,
    pub outages: Vec<Outage>,
}

impl Account {
    /// up / (up + down), or None when neither happened (no data).
    pub fn availability(&self) -> Option<f64> {
        let measured = self.up_ms + self.down_ms;
        (measured > 0).then(|| self.up_ms as f64 / measured as f64)
    }
}

/// The spans each flag was raised, from the events (sorted by when they happened).
fn flag_spans(
    events: &[FlagChange],
    active_now: &[(Flag, i64)],
) -> BTreeMap<Flag, Vec<(i64, i64)>> {
    let mut ev: Vec<&FlagChange> = events.iter().collect();
    ev.sort_by_key(|e| (e.at_ms, e.id));
    let mut open: BTreeMap<Flag, i64> = BTreeMap::new();
    let mut spans: BTreeMap<Flag, Vec<(i64, i64)>> = BTreeMap::new();
    let mut seen: std::collections::BTreeSet<Flag> = Default::default();
    for e in ev {
        let first = seen.insert(e.flag);
        match e.action {
            Action::Raised => {
                open.entry(e.flag).or_insert(e.at_ms);
            }
            // Its first event a clear or an update: raised before the log begins.
            Action::Cleared => {
                let from = open.remove(&e.flag).or(first.then_some(i64::MIN));
                if let Some(from) = from {
                    spans.entry(e.flag).or_default().push((from, e.at_ms));
                }
            }
            Action::Updated => {
                if first {
                    open.entry(e.flag).or_insert(i64::MIN);
                }
            }
        }
    }
    for (f, since) in active_now {
        // Open in the log, or raised at `since` (the state keeps when, the log may not).
        let from = open.remove(f).unwrap_or(*since);
        spans.entry(*f).or_default().push((from, i64::MAX));
    }
    // Raised and never cleared, yet not raised now: it ended when the log says nothing more;
    // the safest reading is "until now" (the state says otherwise only after a clear).
    for (f, from) in open {
        spans.entry(f).or_default().push((from, i64::MAX));
    }
    spans
}

/// The month `[start, end)` of one site, accounted up to `now_ms`.
pub fn account(month: Month, now_ms: i64, site: &SiteInput<'_>) -> Account {
    let (start, month_end) = month.bounds();
    let end = month_end.min(now_ms.max(start));
    let mut acc = Account::default();
    if end <= start {
        acc.no_data_ms = month_end - start;
        return acc;
    }
    // A sweep over the moments anything changes: +1/-1 per flag span and maintenance span
    // (index `MAINT`), clipped to the month up to now.
    const MAINT: usize = usize::MAX;
    let index = |f: Flag| Flag::ALL.iter().position(|x| *x == f).unwrap_or(0);
    let mut edges: Vec<(i64, i32, usize, i64)> = Vec::new();
    for (f, v) in flag_spans(site.events, site.active_now) {
        for (a, b) in v {
            let (ca, cb) = (a.clamp(start, end), b.clamp(start, end));
            if ca < cb {
                edges.push((ca, 1, index(f), a));
                edges.push((cb, -1, index(f), a));
            }
        }
    }
    for (a, b) in site.maintenance {
        let (ca, cb) = ((*a).clamp(start, end), (*b).clamp(start, end));
        if ca < cb {
            edges.push((ca, 1, MAINT, ca));
            edges.push((cb, -1, MAINT, ca));
        }
    }
    let known = site.known_from_ms.clamp(start, end);
    // Closing edges first at the same moment: a span ending where another begins leaves no gap.
    edges.sort_unstable_by_key(|e| (e.0, e.1));
    let mut times: Vec<i64> = edges.iter().map(|e| e.0).collect();
    times.extend([start, end, known]);
    times.sort_unstable();
    times.dedup();
    let mut count = vec![0i32; Flag::ALL.len()];
    // When each flag's current span began (the order of causes).
    let mut since = vec![i64::MIN; Flag::ALL.len()];
    let mut maint = 0i32;
    let mut e = 0;
    let mut current: Option<Outage> = None;
    for w in times.windows(2) {
        let (a, b) = (w[0], w[1]);
        while e < edges.len() && edges[e].0 <= a {
            let (_, d, i, from) = edges[e];
            if i == MAINT {
                maint += d;
            } else {
                count[i] += d;
                if d > 0 {
                    since[i] = from;
                }
            }
            e += 1;
        }
        let len = b - a;
        let count = &count;
        let raised = |avail: Availability| {
            Flag::ALL
                .iter()
                .enumerate()
                .filter(move |(i, f)| count[*i] > 0 && f.info().availability == avail)
        };
        if maint > 0 {
            acc.maintenance_ms += len;
        } else if a < known || raised(Availability::NoData).next().is_some() {
            acc.no_data_ms += len;
        } else if raised(Availability::Down).next().is_some() {
            acc.down_ms += len;
            let o = current.get_or_insert_with(|| Outage {
                start_ms: a,
                end_ms: b,
                ongoing: false,
                causes: Vec::new(),
            });
            o.end_ms = b;
            // The order they were raised in: the earliest raise first.
            let mut by_raise: Vec<(i64, Flag)> = raised(Availability::Down)
                .map(|(i, f)| (since[i], *f))
                .collect();
            by_raise.sort();
            for (_, f) in by_raise {
                if !o.causes.contains(&f) {
                    o.causes.push(f);
                }
            }
            continue;
        } else {
            acc.up_ms += len;
        }
        if let Some(o) = current.take() {
            acc.outages.push(o);
        }
    }
    if let Some(mut o) = current.take() {
        o.ongoing = o.end_ms >= end;
        acc.outages.push(o);
    }
    // What lies after now is not known yet.
    acc.no_data_ms += month_end - end;
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn ev(id: u64, at: i64, flag: Flag, action: Action) -> FlagChange {
        FlagChange::from(&Event {
            id,
            at_ms: at,
            recorded_ms: at,
            site: "s".into(),
            terminal: None,
            flag,
            action,
            detail: Some("detail the account ignores".into()),
            related_event_id: None,
        })
    }

    #[test]
    fn months_are_japan_time_and_parse_strictly() {
        let m: Month = "2026-11".parse().unwrap();
        let (a, b) = m.bounds();
        // 2026-11-01T00:00+09:00 = 2026-10-31T15:00Z; 30 days.
        assert_eq!(crate::clock::rfc3339_ms(a), "2026-10-31T15:00:00.000Z");
        assert_eq!(b - a, 30 * DAY_MS);
        assert_eq!(
            "2026-12".parse::<Month>().unwrap().bounds().1
                - "2026-12".parse::<Month>().unwrap().bounds().0,
            31 * DAY_MS
        );
        assert_eq!(
            "2028-02".parse::<Month>().unwrap().bounds().1
                - "2028-02".parse::<Month>().unwrap().bounds().0,
            29 * DAY_MS
        );
        assert_eq!(Month::of(a), m);
        assert_eq!(Month::of(a - 1).to_string(), "2026-10");
        assert_eq!(Month::of(b - 1), m);
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "november", "2026-00",
        ] {
            assert!(
                bad.parse::<Month>().unwrap_err().contains("YYYY-MM"),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_outage_is_down_time_with_its_causes_and_silence_and_maintenance_are_left_out() {
        let m: Month = "2026-11".parse().unwrap();
        let (start, end) = m.bounds();
        let t = |h: i64| start + h * H;
        let events = vec![
            // 10:00–12:00 on the 1st: IPv6 lost, then DNS failing too; both clear at 12:00.
            ev(1, t(10), Flag::Ipv6Missing, Action::Raised),
            ev(2, t(11), Flag::DnsFailing, Action::Raised),
            ev(3, t(12), Flag::Ipv6Missing, Action::Cleared),
            ev(4, t(12), Flag::DnsFailing, Action::Cleared),
            // A warning that is not an outage.
            ev(5, t(20), Flag::NtpSkew, Action::Raised),
            ev(6, t(21), Flag::NtpSkew, Action::Cleared),
            // Silent 30:00–34:00, with a stale flag under it: no data.
            ev(7, t(30), Flag::AgentSilent, Action::Raised),
            ev(8, t(31), Flag::LineauthUnreachable, Action::Raised),
            ev(9, t(34), Flag::AgentSilent, Action::Cleared),
            ev(10, t(35), Flag::LineauthUnreachable, Action::Cleared),
        ];
        let maint = [(t(48), t(72))];
        let acc = account(
            m,
            end + DAY_MS,
            &SiteInput {
                events: &events,
                active_now: &[],
                known_from_ms: 0,
                maintenance: &maint,
            },
        );
        assert_eq!(acc.maintenance_ms, 24 * H);
        assert_eq!(acc.no_data_ms, 4 * H);
        assert_eq!(acc.down_ms, 2 * H + H, "10–12 and 34–35");
        assert_eq!(acc.up_ms, 30 * 24 * H - 24 * H - 4 * H - 3 * H);
        assert_eq!(acc.outages.len(), 2);
        assert_eq!(
            acc.outages[0],
            Outage {
                start_ms: t(10),
                end_ms: t(12),
                ongoing: false,
                causes: vec![Flag::Ipv6Missing, Flag::DnsFailing]
            }
        );
        assert_eq!(
            (acc.outages[1].start_ms, acc.outages[1].end_ms),
            (t(34), t(35))
        );
        let a = acc.availability().unwrap();
        assert!((a - acc.up_ms as f64 / (acc.up_ms + acc.down_ms) as f64).abs() < 1e-12);
        assert!(a < 1.0 && a > 0.99, "{a}");
    }

    #[test]
    fn a_month_without_data_says_so_and_the_future_is_not_counted() {
        let m: Month = "2026-11".parse().unwrap();
        let (start, end) = m.bounds();
        // A site first seen after the month: no data at all.
        let acc = account(
            m,
            end + DAY_MS,
            &SiteInput {
                events: &[],
                active_now: &[],
                known_from_ms: end + H,
                maintenance: &[],
            },
        );
        assert_eq!(acc.availability(), None);
        assert_eq!(acc.no_data_ms, end - start);
        // The current month: up to now, the rest no data.
        let now = start + 10 * DAY_MS;
        let acc = account(
            m,
            now,
            &SiteInput {
                events: &[],
                active_now: &[(Flag::ReauthRequired, start + 9 * DAY_MS)],
                known_from_ms: start - DAY_MS,
                maintenance: &[],
            },
        );
        assert_eq!(acc.up_ms, 9 * DAY_MS);
        assert_eq!(acc.down_ms, DAY_MS);
        assert_eq!(acc.no_data_ms, end - now);
        assert!(acc.outages[0].ongoing);
        // A month that has not begun.
        assert_eq!(
            account(
                m,
                start - 1,
                &SiteInput {
                    events: &[],
                    active_now: &[],
                    known_from_ms: 0,
                    maintenance: &[]
                }
            )
            .availability(),
            None
        );
    }

    #[test]
    fn a_raise_the_log_no_longer_holds_counts_from_the_start_and_replays_land_in_order() {
        let m: Month = "2026-11".parse().unwrap();
        let (start, _) = m.bounds();
        // The clear is kept, the raise was purged: down from the month's start until it.
        let events = vec![
            ev(20, start + 5 * H, Flag::CertUntrusted, Action::Cleared),
            // A replayed spool: recorded later (higher ids) but happened earlier.
            ev(30, start + 50 * H, Flag::Ipv6Missing, Action::Cleared),
            ev(29, start + 40 * H, Flag::Ipv6Missing, Action::Raised),
        ];
        let acc = account(
            m,
            start + 100 * H,
            &SiteInput {
                events: &events,
                active_now: &[],
                known_from_ms: 0,
                maintenance: &[],
            },
        );
        assert_eq!(acc.down_ms, 5 * H + 10 * H);
        assert_eq!(acc.outages[0].causes, vec![Flag::CertUntrusted]);
        assert_eq!(acc.outages[0].start_ms, start);
        assert_eq!(acc.outages[1].start_ms, start + 40 * H);
    }
}
