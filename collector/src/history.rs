//! History that stays cheap in steady state: per terminal and check, a point is written when what
//! the check found changes (its signature) and as a keyframe every `keyframe_secs`; each point
//! carries the rollup (samples, failures, latency average and maximum) since the previous one.
//! A report none of whose checks needs a point is stored as an "elided" marker, not whole.
//!
//! Pure: the terminal record's rollups and a report's samples in, points out. Must never lose a
//! sample from the rollup: every sample is counted in exactly one point's rollup.

use crate::samples::{Check, Sample};
use crate::store::{CheckRollup, TerminalRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a point was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// The terminal's first sample of this check.
    First,
    /// What the check found changed.
    Change,
    /// Nothing changed for `keyframe_secs`.
    Keyframe,
}

/// What happened since the previous point, this sample included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub samples: u32,
    pub failures: u32,
    pub latency_avg_ms: u32,
    pub latency_max_ms: u32,
}

/// One point of a check's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The report's time (Unix ms); for a terminal whose clock its Hello showed far behind,
    /// corrected by that offset; never after `received_ms`.
    pub at_ms: i64,
    /// When the collector received the report (retention goes by it, not by the terminal's
    /// clock); 0 in points stored before it was kept, which count as received at `at_ms`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub received_ms: i64,
    pub kind: PointKind,
    pub ok: bool,
    pub outcome: String,
    pub latency_ms: u32,
    pub rollup: Rollup,
    /// First and change points: everything the check found. Keyframes: only what varies from
    /// sample to sample (latencies, offsets, error texts); the rest is as at the previous point.
    pub detail: Value,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl HistoryPoint {
    /// When the collector received it, for retention.
    pub fn received_ms(&self) -> i64 {
        if self.received_ms > 0 {
            self.received_ms
        } else {
            self.at_ms
        }
    }
}

/// Folds a report's samples, timed `at_ms` and received at `received_ms`, into the terminal's
/// rollups; returns the points to write.
pub fn record(
    rec: &mut TerminalRecord,
    samples: Vec<Sample>,
    at_ms: i64,
    received_ms: i64,
    keyframe_ms: i64,
) -> Vec<(Check, HistoryPoint)> {
    let mut points = Vec::new();
    for s in samples {
        let name = s.check.as_str();
        let idx = match rec.rollups.iter().position(|r| r.check == name) {
            Some(i) => i,
            None => {
                // Every terminal keeps one per check kind, and every record stays in memory.
                crate::small_map::room_for_first(&mut rec.rollups, Check::ALL.len());
                rec.rollups.push(CheckRollup {
                    check: name.to_owned(),
                    ..Default::default()
                });
                rec.rollups.len() - 1
            }
        };
        let r = &mut rec.rollups[idx];
        r.samples = r.samples.saturating_add(1);
        r.failures = r.failures.saturating_add(u32::from(!s.ok));
        r.latency_sum_ms = r.latency_sum_ms.saturating_add(u64::from(s.latency_ms));
        r.latency_max_ms = r.latency_max_ms.max(s.latency_ms);
        let kind = if r.last_point_ms == 0 {
            Some(PointKind::First)
        } else if r.signature != s.signature {
            Some(PointKind::Change)
        } else if at_ms - r.last_point_ms >= keyframe_ms {
            Some(PointKind::Keyframe)
        } else {
            None
        };
        let Some(kind) = kind else { continue };
        let rollup = Rollup {
            samples: r.samples,
            failures: r.failures,
            latency_avg_ms: u32::try_from(r.latency_sum_ms / u64::from(r.samples.max(1)))
                .unwrap_or(u32::MAX),
            latency_max_ms: r.latency_max_ms,
        };
        *r = CheckRollup {
            // The name is kept, not allocated again for every point.
            check: std::mem::take(&mut r.check),
            signature: s.signature,
            last_point_ms: at_ms.max(1),
            ..Default::default()
        };
        points.push((
            s.check,
            HistoryPoint {
                at_ms,
                received_ms,
                kind,
                ok: s.ok,
                outcome: s.outcome,
                latency_ms: s.latency_ms,
                rollup,
                detail: if kind == PointKind::Keyframe {
                    s.volatile
                } else {
                    s.detail
                },
            },
        ));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::samples;
    use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};

    #[test]
    fn steady_state_writes_keyframes_only_and_counts_every_sample() {
        let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let mut rec = TerminalRecord::default();
        let mut points = Vec::new();
        // A day at one report a minute.
        for round in 0..1440u64 {
            let t = 1_000 + round as i64 * 60_000;
            let r = report(&site, 0, round, round + 1, t);
            points.extend(record(&mut rec, samples(&r), t, t, 3_600_000));
        }
        let ipv6: Vec<_> = points.iter().filter(|(c, _)| *c == Check::Ipv6).collect();
        // The first point, then one an hour.
        assert_eq!(ipv6[0].1.kind, PointKind::First);
        assert!(ipv6[1..].iter().all(|(_, p)| p.kind == PointKind::Keyframe));
        assert_eq!(ipv6.len(), 24, "{}", ipv6.len());
        let counted: u32 = ipv6.iter().map(|(_, p)| p.rollup.samples).sum();
        let pending = rec
            .rollups
            .iter()
            .find(|r| r.check == "ipv6")
            .unwrap()
            .samples;
        assert_eq!(counted + pending, 1440);
    }

    /// A record's rollups are made with room for every check kind once (every record stays in
    /// the committer's memory; README "Memory per terminal").
    #[test]
    fn a_records_rollups_take_room_for_the_check_kinds_once() {
        let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let mut rec = TerminalRecord::default();
        for round in 0..3u64 {
            let t = 1_000 + round as i64 * 60_000;
            let r = report(&site, 0, round, round + 1, t);
            record(&mut rec, samples(&r), t, t, 3_600_000);
        }
        assert!(!rec.rollups.is_empty());
        assert_eq!(rec.rollups.capacity(), Check::ALL.len());
    }

    #[test]
    fn a_change_is_written_at_once_with_the_rollup_since_the_last_point() {
        let site = SiteProfile::new(0, "s", Scenario::PrefixChange, 1);
        let mut rec = TerminalRecord::default();
        let mut all = Vec::new();
        for round in 0..4u64 {
            let t = 1_000 + round as i64 * 60_000;
            let r = report(&site, 0, round, round + 1, t);
            all.push(record(&mut rec, samples(&r), t, t, 3_600_000));
        }
        assert_eq!(all[0].len(), Check::ALL.len(), "first point of every check");
        assert!(all[1].is_empty(), "round 1 is identical");
        let changed: Vec<_> = all[2].iter().map(|(c, p)| (*c, p.kind)).collect();
        assert!(changed.contains(&(Check::Ipv6, PointKind::Change)));
        assert!(changed.contains(&(Check::Lineauth, PointKind::Change)));
        let ipv6 = &all[2].iter().find(|(c, _)| *c == Check::Ipv6).unwrap().1;
        assert_eq!(ipv6.rollup.samples, 2, "rounds 1 and 2");
    }
}
