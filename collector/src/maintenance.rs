//! Closed days and maintenance windows per site (休診日, NTT works, a PC replacement): when a
//! site's alerts stay quiet and `agent_silent` does not fire, while its flags still show.
//!
//! A [`Schedule`] holds recurring closed hours in Japan time (a weekday and a span of the day;
//! public holidays optionally, from the holiday table of `oqs-guide`) and ad-hoc windows (start,
//! end, reason, who). Pure: a schedule and a time in, an answer out; validation names what is
//! wrong. Must never read the clock or touch the store ([`MaintenanceBook`] holds the schedules
//! the collector serves; the API persists them).

use oqs_guide::support;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const DAY_MS: i64 = 86_400_000;
/// Ended windows are kept this long (a year and a month: last year's same month's report).
pub const ENDED_KEPT_DAYS: i64 = 400;
const JST_MS: i64 = 9 * 3_600_000;
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Limits on what a schedule may hold (`[maintenance]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceLimits {
    /// The longest ad-hoc window, in days.
    pub max_window_days: u32,
    /// How far ahead a window may start, in days.
    pub max_ahead_days: u32,
    /// Ad-hoc windows per site, ended ones included (kept for the monthly availability for
    /// `ENDED_KEPT_DAYS`; the oldest ended ones make room when a new one is added).
    pub max_windows: usize,
    /// Recurring closed spans per site.
    pub max_closed: usize,
}

impl Default for MaintenanceLimits {
    fn default() -> Self {
        Self {
            max_window_days: 31,
            max_ahead_days: 366,
            max_windows: 32,
            max_closed: 21,
        }
    }
}

/// A recurring closed span: every `day` from `from` to `to` (Japan time, "HH:MM"; "24:00" ends
/// the day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closed {
    /// sun, mon, tue, wed, thu, fri, sat.
    pub day: String,
    #[serde(default = "day_start")]
    pub from: String,
    #[serde(default = "day_end")]
    pub to: String,
}

fn day_start() -> String {
    "00:00".into()
}
fn day_end() -> String {
    "24:00".into()
}

/// An ad-hoc window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Given by the collector when the window is added.
    #[serde(default)]
    pub id: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: String,
    /// Who set it (a name or a ticket).
    pub by: String,
}

/// A site's closed days and windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub closed: Vec<Closed>,
    /// Closed on Japanese public holidays (all day).
    #[serde(default)]
    pub holidays: bool,
    #[serde(default)]
    pub windows: Vec<Window>,
}

/// Why a site is in maintenance now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// A recurring closed span (休診).
    Closed {
        day: String,
        from: String,
        to: String,
    },
    /// A public holiday.
    Holiday,
    /// An ad-hoc window.
    Window {
        id: u64,
        reason: String,
        by: String,
        end_ms: i64,
    },
}

/// "HH:MM" → minutes of the day (0..=1440).
fn minutes(t: &str) -> Result<u32, String> {
    let bad = || format!("{t:?} is not a time of day: use HH:MM (00:00 to 24:00)");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn day_index(d: &str) -> Result<u32, String> {
    WEEKDAYS
        .iter()
        .position(|w| *w == d)
        .map(|i| i as u32)
        .ok_or_else(|| format!("{d:?} is not a weekday: one of {}", WEEKDAYS.join(", ")))
}

fn text(field: &str, v: &str, max: usize) -> Result<(), String> {
    let n = v.trim().chars().count();
    if n == 0 || n > max || v.contains('\n') {
        return Err(format!("{field} must be one line of 1..{max} characters"));
    }
    Ok(())
}

impl Closed {
    fn span(&self) -> Result<(u32, u32, u32), String> {
        let day = day_index(&self.day)?;
        let (from, to) = (minutes(&self.from)?, minutes(&self.to)?);
        if from >= to {
            return Err(format!(
                "closed {} {}–{}: the end must be after the start (a span past midnight is two: \
                 one to 24:00, one from 00:00 the next day)",
                self.day, self.from, self.to
            ));
        }
        Ok((day, from, to))
    }
}

impl Window {
    /// Checks one window against the limits, at `now_ms`.
    pub fn validate(&self, now_ms: i64, limits: &MaintenanceLimits) -> Result<(), String> {
        text("reason", &self.reason, 200)?;
        text("by", &self.by, 64)?;
        if self.end_ms <= self.start_ms {
            return Err("the window ends before it starts".into());
        }
        if self.end_ms - self.start_ms > i64::from(limits.max_window_days) * DAY_MS {
            return Err(format!(
                "the window is longer than {} days (maintenance.max_window_days)",
                limits.max_window_days
            ));
        }
        if self.start_ms > now_ms + i64::from(limits.max_ahead_days) * DAY_MS {
            return Err(format!(
                "the window starts more than {} days ahead (maintenance.max_ahead_days)",
                limits.max_ahead_days
            ));
        }
        if self.end_ms <= now_ms {
            return Err("the window is over already".into());
        }
        Ok(())
    }
}

impl Schedule {
    /// Checks the whole schedule: its closed spans, and that its windows do not overlap.
    pub fn validate(&self, limits: &MaintenanceLimits) -> Result<(), String> {
        if self.closed.len() > limits.max_closed {
            return Err(format!(
                "{} closed spans: at most {} (maintenance.max_closed)",
                self.closed.len(),
                limits.max_closed
            ));
        }
        let mut spans = Vec::new();
        for c in &self.closed {
            spans.push(c.span()?);
        }
        spans.sort();
        for w in spans.windows(2) {
            if w[0].0 == w[1].0 && w[1].1 < w[0].2 {
                return Err(format!(
                    "closed spans overlap on {}",
                    WEEKDAYS[w[0].0 as usize]
                ));
            }
        }
        if self.windows.len() > limits.max_windows {
            return Err(format!(
                "{} windows: at most {} (maintenance.max_windows)",
                self.windows.len(),
                limits.max_windows
            ));
        }
        let mut ws: Vec<&Window> = self.windows.iter().collect();
        ws.sort_by_key(|w| w.start_ms);
        for pair in ws.windows(2) {
            if pair[1].start_ms < pair[0].end_ms {
                return Err(format!(
                    "window {} overlaps window {}",
                    pair[1].id, pair[0].id
                ));
            }
        }
        Ok(())
    }

    /// Why the site is in maintenance at `now_ms`, if it is.
    pub fn in_effect(&self, now_ms: i64) -> Option<Why> {
        if let Some(w) = self
            .windows
            .iter()
            .find(|w| w.start_ms <= now_ms && now_ms < w.end_ms)
        {
            return Some(Why::Window {
                id: w.id,
                reason: w.reason.clone(),
                by: w.by.clone(),
                end_ms: w.end_ms,
            });
        }
        let local = now_ms + JST_MS;
        let days = local.div_euclid(DAY_MS);
        let minute = (local.rem_euclid(DAY_MS) / 60_000) as u32;
        if self.holidays && support::is_holiday(days) {
            return Some(Why::Holiday);
        }
        let wd = support::weekday(days);
        self.closed.iter().find_map(|c| {
            let (day, from, to) = c.span().ok()?;
            (day == wd && from <= minute && minute < to).then(|| Why::Closed {
                day: c.day.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
            })
        })
    }

    /// The spans of `[from_ms, to_ms)` the site was in maintenance by this schedule (closed
    /// hours, holidays if so set, windows), sorted and merged: what the monthly availability
    /// leaves out.
    pub fn spans(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = self
            .windows
            .iter()
            .map(|w| (w.start_ms.max(from_ms), w.end_ms.min(to_ms)))
            .collect();
        let first = (from_ms + JST_MS).div_euclid(DAY_MS);
        let last = (to_ms - 1 + JST_MS).div_euclid(DAY_MS);
        for days in first..=last {
            let midnight = days * DAY_MS - JST_MS;
            if self.holidays && support::is_holiday(days) {
                v.push((midnight, midnight + DAY_MS));
            }
            let wd = support::weekday(days);
            for c in &self.closed {
                if let Ok((day, from, to)) = c.span() {
                    if day == wd {
                        v.push((
                            midnight + i64::from(from) * 60_000,
                            midnight + i64::from(to) * 60_000,
                        ));
                    }
                }
            }
        }
        let mut v: Vec<(i64, i64)> = v
            .into_iter()
            .map(|(a, b)| (a.max(from_ms), b.min(to_ms)))
            .filter(|(a, b)| a < b)
            .collect();
        v.sort();
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(l) if a <= l.1 => l.1 = l.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// When the latest maintenance before `now_ms` ended (within the last eight days), for the
    /// silence check: an agent switched off while the clinic was closed is given its intervals
    /// from the opening, not from its last report.
    pub fn last_end_before(&self, now_ms: i64) -> Option<i64> {
        let mut best = self
            .windows
            .iter()
            .filter(|w| w.end_ms <= now_ms)
            .map(|w| w.end_ms)
            .max();
        let today = (now_ms + JST_MS).div_euclid(DAY_MS);
        for days in (today - 7)..=today {
            let midnight = days * DAY_MS - JST_MS;
            let mut ends: Vec<i64> = Vec::new();
            if self.holidays && support::is_holiday(days) {
                ends.push(midnight + DAY_MS);
            }
            let wd = support::weekday(days);
            for c in &self.closed {
                if let Ok((day, _, to)) = c.span() {
                    if day == wd {
                        ends.push(midnight + i64::from(to) * 60_000);
                    }
                }
            }
            for e in ends {
                // A span that runs on into the next day's closure ends later.
                if e <= now_ms && self.in_effect(e).is_none() {
                    best = Some(best.map_or(e, |b| b.max(e)));
                }
            }
        }
        best
    }
}

/// Every site's schedule, shared by the API (which changes it), the committer (agent_silent) and
/// `/metrics` (`oqs_site_in_maintenance`).
#[derive(Clone, Default)]
pub struct MaintenanceBook {
    inner: Arc<RwLock<HashMap<String, Arc<Schedule>>>>,
}

impl MaintenanceBook {
    pub fn get(&self, site: &str) -> Option<Arc<Schedule>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .cloned()
    }

    pub fn set(&self, site: &str, s: Schedule) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if s == Schedule::default() {
            g.remove(site);
        } else {
            g.insert(site.to_owned(), Arc::new(s));
        }
    }

    /// Sites with a schedule, and whether each is in maintenance at `now_ms`.
    pub fn states(&self, now_ms: i64) -> Vec<(String, bool)> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, bool)> = g
            .iter()
            .map(|(k, s)| (k.clone(), s.in_effect(now_ms).is_some()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03 (a Thursday) at `hh:mm` Japan time, in Unix ms.
    fn thu(hh: i64, mm: i64) -> i64 {
        // 2026-12-03T00:00+09:00
        let midnight = 1_796_223_600_000;
        midnight + (hh * 60 + mm) * 60_000
    }

    fn closed(day: &str, from: &str, to: &str) -> Closed {
        Closed {
            day: day.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn thursday_afternoons_sundays_and_holidays_are_closed_in_japan_time() {
        assert_eq!(support::weekday((thu(0, 0) + JST_MS).div_euclid(DAY_MS)), 4);
        let s = Schedule {
            closed: vec![
                closed("thu", "13:00", "24:00"),
                closed("sun", "00:00", "24:00"),
            ],
            holidays: true,
            windows: vec![],
        };
        s.validate(&MaintenanceLimits::default()).unwrap();
        assert_eq!(s.in_effect(thu(12, 59)), None);
        assert!(matches!(s.in_effect(thu(13, 0)), Some(Why::Closed { .. })));
        assert!(matches!(s.in_effect(thu(23, 59)), Some(Why::Closed { .. })));
        assert_eq!(s.in_effect(thu(24 + 8, 0)), None, "Friday morning");
        assert!(
            matches!(s.in_effect(thu(72 + 10, 0)), Some(Why::Closed { .. })),
            "Sunday"
        );
        // 2027-01-11 is 成人の日 (a Monday).
        let seijin = 1_799_593_200_000 + 10 * 3_600_000;
        assert_eq!(s.in_effect(seijin), Some(Why::Holiday));
        // The silence check counts from Thursday's closing end (midnight), not the last report.
        assert_eq!(s.last_end_before(thu(24 + 9, 0)), Some(thu(24, 0)));
    }

    #[test]
    fn an_adhoc_window_counts_and_bad_ones_are_refused_with_a_reason() {
        let now = thu(9, 0);
        let l = MaintenanceLimits::default();
        let w = |start: i64, end: i64| Window {
            id: 1,
            start_ms: start,
            end_ms: end,
            reason: "NTT工事".into(),
            by: "noc-tanaka".into(),
        };
        let ok = w(thu(10, 0), thu(12, 0));
        ok.validate(now, &l).unwrap();
        let s = Schedule {
            windows: vec![ok.clone()],
            ..Default::default()
        };
        assert!(matches!(
            s.in_effect(thu(11, 0)),
            Some(Why::Window { id: 1, .. })
        ));
        assert_eq!(s.in_effect(thu(12, 0)), None);
        assert_eq!(s.last_end_before(thu(13, 0)), Some(thu(12, 0)));
        for (bad, says) in [
            (w(thu(12, 0), thu(10, 0)), "ends before it starts"),
            (
                w(thu(10, 0), thu(10, 0) + 40 * DAY_MS),
                "longer than 31 days",
            ),
            (
                w(now + 30 * 365 * DAY_MS, now + 30 * 365 * DAY_MS + 1),
                "more than 366 days ahead",
            ),
            (w(thu(1, 0), thu(2, 0)), "over already"),
            (
                Window {
                    reason: String::new(),
                    ..ok.clone()
                },
                "reason",
            ),
        ] {
            let e = bad.validate(now, &l).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let overlapping = Schedule {
            windows: vec![
                ok.clone(),
                Window {
                    id: 2,
                    ..w(thu(11, 0), thu(13, 0))
                },
            ],
            ..Default::default()
        };
        assert!(overlapping.validate(&l).unwrap_err().contains("overlaps"));
        for (c, says) in [
            (closed("thu", "13:00", "12:00"), "end must be after"),
            (closed("thursday", "13:00", "14:00"), "not a weekday"),
            (closed("thu", "25:00", "26:00"), "not a time of day"),
        ] {
            let s = Schedule {
                closed: vec![c],
                ..Default::default()
            };
            assert!(s.validate(&l).unwrap_err().contains(says));
        }
        let s = Schedule {
            closed: vec![
                closed("thu", "09:00", "13:00"),
                closed("thu", "12:00", "18:00"),
            ],
            ..Default::default()
        };
        assert!(s.validate(&l).unwrap_err().contains("overlap"));
    }
}
