//! `GET /api/sites/{id}/history` (one check's points over a window, every terminal of the site)
//! and `GET /api/events` (flag events): what the site page's charts and event log draw.
//!
//! Must never answer more than `history.max_points_per_query` points or events.

use super::error::{ApiError, Query, SitePath};
use super::{read, when, ApiState};
use crate::flags::Event;
use crate::history::{HistoryPoint, PointKind, Rollup};
use crate::samples::Check;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

/// `GET /api/sites/{id}/history` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    check: Option<String>,
    from: Option<String>,
    to: Option<String>,
    terminal: Option<String>,
}

#[derive(Serialize)]
pub struct HistoryPage {
    site_id: String,
    check: &'static str,
    from: Option<String>,
    to: Option<String>,
    /// Whether older points of the window were left out (`max_points_per_query`, or the answer's
    /// bytes, `max_answer_bytes`).
    truncated: bool,
    /// From here on the points are complete; anything older in the window was left out.
    complete_from: Option<String>,
    points: Vec<ChartPoint>,
}

/// One point as the site page's chart draws it: small whatever the report was. Its `state` is
/// the check's state in force at it (carried from the last change: a keyframe alone says only
/// what varies); the whole point is `GET …/history/point`.
#[derive(Serialize)]
struct ChartPoint {
    terminal_id: String,
    at: Option<String>,
    at_ms: i64,
    /// When the collector received the report (retention goes by it).
    received_ms: i64,
    seq: u64,
    /// `first`, `change`, `keyframe`; `carried`: the state in force when the window starts (the
    /// terminal's last point before it), drawn from the window's start.
    kind: &'static str,
    ok: bool,
    outcome: String,
    latency_ms: u32,
    rollup: Rollup,
    /// What the chart draws (`ipv6`: prefix; `lineauth`: state, code; `dns`: series of
    /// [server name, ms]); null when nothing is known.
    state: serde_json::Value,
}

fn kind_name(k: PointKind) -> &'static str {
    match k {
        PointKind::First => "first",
        PointKind::Change => "change",
        PointKind::Keyframe => "keyframe",
    }
}

/// The chart's point of a stored point, given the point in force before it.
fn chart_point(
    check: Check,
    terminal: &str,
    seq: u64,
    p: &HistoryPoint,
    in_force: Option<&HistoryPoint>,
) -> ChartPoint {
    let full = if p.kind == PointKind::Keyframe {
        in_force
    } else {
        Some(p)
    };
    ChartPoint {
        terminal_id: terminal.to_owned(),
        at: when(p.at_ms),
        at_ms: p.at_ms,
        received_ms: p.received_ms(),
        seq,
        kind: kind_name(p.kind),
        ok: p.ok,
        outcome: p.outcome.clone(),
        latency_ms: p.latency_ms,
        rollup: p.rollup.clone(),
        state: crate::checks::chart_state(check, full.map(|f| &f.detail), &p.detail),
    }
}

/// Keeps the newest points whose JSON fits in `budget` bytes; the time from which the answer
/// is then complete, if any were left out.
fn newest_within<T: Serialize>(
    points: &mut Vec<T>,
    budget: usize,
    at: impl Fn(&T) -> i64,
) -> Option<i64> {
    let mut used = 0usize;
    let mut keep_from = 0;
    for (i, p) in points.iter().enumerate().rev() {
        // The separator and the point; a point that does not serialise is not sent.
        used += 1 + serde_json::to_vec(p).map_or(usize::MAX / 2, |v| v.len());
        if used > budget {
            keep_from = i + 1;
            break;
        }
    }
    if keep_from == 0 {
        return None;
    }
    points.drain(..keep_from);
    points.first().map(&at)
}

/// Merges terminals' newest points (each at most `limit`, `true` when older ones were left out)
/// into the newest `limit` of them all, oldest first, and the time from which the answer is
/// complete for every terminal (`None`: nothing left out). Points older than that would show one
/// terminal's past while hiding another's, so they are dropped.
fn newest_complete<T>(
    per_terminal: Vec<(Vec<T>, bool)>,
    limit: usize,
    at: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<i64>) {
    let mut cut: Option<i64> = None;
    let mut out = Vec::new();
    for (points, more) in per_terminal {
        if more {
            if let Some(first) = points.first() {
                cut = Some(cut.map_or(at(first), |c| c.max(at(first))));
            }
        }
        out.extend(points);
    }
    out.sort_by_key(|p| at(p));
    if out.len() > limit {
        let c = at(&out[out.len() - limit]);
        cut = Some(cut.map_or(c, |x| x.max(c)));
    }
    if let Some(c) = cut {
        out.retain(|p| at(p) >= c);
    }
    (out, cut)
}

fn time_param(name: &str, v: Option<&str>, default: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(t) => {
            crate::clock::parse_time(t).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
        }
    }
}

pub(super) async fn history(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let check = Check::parse(q.check.as_deref().ok_or_else(|| {
        ApiError::bad_request(format!("check is required: one of {}", Check::names()))
    })?)
    .map_err(ApiError::BadRequest)?;
    let now = crate::clock::now_ms();
    let to = time_param("to", q.to.as_deref(), now)?;
    let from = time_param("from", q.from.as_deref(), to - 24 * 3_600_000)?;
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    let limit = s.history.max_points_per_query;
    let budget = s.history.max_answer_bytes.saturating_sub(ENVELOPE_BYTES);
    let store = s.store.clone();
    let id = site_id.clone();
    let only = q.terminal.clone();
    let (entries, complete_from, known) = read(move || {
        let terms = store.site_terminals(id.as_str())?;
        let known = !terms.is_empty();
        let mut per_terminal = Vec::new();
        for (k, _) in terms {
            if only.as_deref().is_some_and(|t| t != k.terminal) {
                continue;
            }
            let mut entries = Vec::new();
            // What held when the window starts, drawn from its start.
            if let Some((seq, p, before)) = store.history_at(&k, check, from)? {
                let mut carried = chart_point(check, &k.terminal, seq, &p, before.as_ref());
                carried.kind = "carried";
                carried.at = when(from);
                carried.at_ms = from;
                carried.rollup = Rollup {
                    samples: 0,
                    failures: 0,
                    latency_avg_ms: 0,
                    latency_max_ms: 0,
                };
                entries.push(carried);
            }
            let (points, more) = store.history_each(&k, check, from, to, limit, |seq, p, f| {
                chart_point(check, &k.terminal, seq, p, f)
            })?;
            entries.extend(points);
            per_terminal.push((entries, more));
        }
        let (mut out, mut complete_from) = newest_complete(per_terminal, limit, |e| e.at_ms);
        if let Some(c) = newest_within(&mut out, budget, |e| e.at_ms) {
            complete_from = Some(complete_from.map_or(c, |x| x.max(c)));
            out.retain(|e| e.at_ms >= c);
        }
        Ok((out, complete_from, known))
    })
    .await?;
    if !known {
        return Err(ApiError::UnknownSite(site_id));
    }
    Ok(Json(HistoryPage {
        site_id: site_id.to_string(),
        check: check.as_str(),
        from: when(from),
        to: when(to),
        truncated: complete_from.is_some(),
        complete_from: complete_from.map_or_else(|| when(from), when),
        points: entries,
    }))
}

/// What an answer's envelope (everything but its points or events) may take of
/// `history.max_answer_bytes`.
const ENVELOPE_BYTES: usize = 4096;

/// `GET /api/sites/{id}/history/point` parameters: a point of the history answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointQuery {
    check: Option<String>,
    terminal: Option<String>,
    at_ms: Option<i64>,
    seq: Option<u64>,
}

#[derive(Serialize)]
pub struct PointPage {
    site_id: String,
    terminal_id: String,
    check: &'static str,
    at: Option<String>,
    at_ms: i64,
    seq: u64,
    /// The point, its `detail` everything the check found in force at it (a keyframe's own
    /// values over the last change's detail).
    #[serde(flatten)]
    point: HistoryPoint,
}

/// One history point whole: what the chart's point does not carry (the probes, answers, errors).
pub(super) async fn point(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
    Query(q): Query<PointQuery>,
) -> Result<Json<PointPage>, ApiError> {
    let need = |name: &str| ApiError::bad_request(format!("{name} is required"));
    let check = Check::parse(q.check.as_deref().ok_or_else(|| need("check"))?)
        .map_err(ApiError::BadRequest)?;
    let terminal = q.terminal.ok_or_else(|| need("terminal"))?;
    let terminal = oqs_proto::ident::TerminalId::parse(&terminal)
        .map_err(|e| ApiError::bad_request(format!("terminal: {e}")))?;
    let (at_ms, seq) = (
        q.at_ms.ok_or_else(|| need("at_ms"))?,
        q.seq.ok_or_else(|| need("seq"))?,
    );
    let store = s.store.clone();
    let key = crate::store::TerminalKey::new(site_id.as_str(), terminal.as_str());
    let found = read(move || store.history_point(&key, check, at_ms, seq)).await?;
    let Some((p, before)) = found else {
        return Err(ApiError::NotFound(format!(
            "no {} point of {site_id}/{terminal} at {at_ms} seq {seq}",
            check.as_str()
        )));
    };
    let mut p = p;
    if let (PointKind::Keyframe, Some(b)) = (p.kind, before) {
        let own = std::mem::take(&mut p.detail);
        p.detail = b.detail;
        if let (serde_json::Value::Object(base), serde_json::Value::Object(own)) =
            (&mut p.detail, own)
        {
            base.extend(own);
        }
    }
    Ok(Json(PointPage {
        site_id: site_id.to_string(),
        terminal_id: terminal.to_string(),
        check: check.as_str(),
        at: when(p.at_ms),
        at_ms: p.at_ms,
        seq,
        point: p,
    }))
}

/// `GET /api/events` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    site: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct EventsPage {
    since: Option<String>,
    site: Option<String>,
    /// Whether more events than `limit` matched (the oldest are left out).
    truncated: bool,
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct EventView {
    at: Option<String>,
    recorded_at: Option<String>,
    #[serde(flatten)]
    event: Event,
}

pub(super) async fn events(
    State(s): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    let site = q.site.as_deref().map(super::error::site_id).transpose()?;
    let now = crate::clock::now_ms();
    let since = time_param("since", q.since.as_deref(), now - 24 * 3_600_000)?;
    let max = s.history.max_points_per_query;
    let limit = super::error::page_limit(q.limit, max.min(1000), max)?;
    let store = s.store.clone();
    let site_name = site.as_ref().map(|s| s.as_str().to_owned());
    let (events, mut truncated) =
        read(move || store.events(site_name.as_deref(), since, limit)).await?;
    let mut events: Vec<EventView> = events
        .into_iter()
        .map(|e| EventView {
            at: when(e.at_ms),
            recorded_at: when(e.recorded_ms),
            event: e,
        })
        .collect();
    // Newest first: the newest that fit in the answer's bytes.
    let budget = s.history.max_answer_bytes.saturating_sub(ENVELOPE_BYTES);
    let mut used = 0usize;
    if let Some(cut) = events.iter().position(|e| {
        used += 1 + serde_json::to_vec(e).map_or(usize::MAX / 2, |v| v.len());
        used > budget
    }) {
        events.truncate(cut);
        truncated = true;
    }
    Ok(Json(EventsPage {
        since: when(since),
        site: site.map(|s| s.to_string()),
        truncated,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::newest_complete;

    #[test]
    fn a_busy_terminal_cut_short_cuts_the_sparse_one_at_the_same_time() {
        // Terminal A changes every hour and was cut at `limit` from hour 26 on; terminal B has
        // points at hours 20 and 30. Showing B's hour 20 would suggest A was quiet then.
        let a: Vec<(char, i64)> = (26..=30).map(|h| ('a', h)).collect();
        let b = vec![('b', 20), ('b', 30)];
        let (out, from) = newest_complete(vec![(a, true), (b, false)], 5, |p| p.1);
        assert_eq!(from, Some(27), "the newest five of all, and A's own cut");
        assert_eq!(
            out,
            vec![('a', 27), ('a', 28), ('a', 29), ('a', 30), ('b', 30)]
        );
        let (out, from) = newest_complete(vec![(vec![('a', 1), ('a', 2)], false)], 5, |p| p.1);
        assert_eq!((out.len(), from), (2, None), "nothing left out");
        let (out, from) = newest_complete(
            vec![(vec![('a', 26), ('a', 27)], true), (vec![('b', 20)], false)],
            5,
            |p| p.1,
        );
        assert_eq!(from, Some(26));
        assert_eq!(
            out,
            vec![('a', 26), ('a', 27)],
            "B's older point is dropped"
        );
    }
}
