//! `GET /api/sites/{id}/history` (one check's points over a window, every terminal of the site)
//! and `GET /api/events` (flag events): what the site page's charts and event log draw.
//!
//! Must never answer more than `history.max_points_per_query` points or events.

use super::error::{ApiError, Query, SitePath};
use super::{read, when, ApiState};
use crate::flags::Event;
use crate::history::HistoryPoint;
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
    /// Whether older points of the window were left out (`max_points_per_query`).
    truncated: bool,
    /// From here on the points are complete; anything older in the window was left out.
    complete_from: Option<String>,
    points: Vec<HistoryEntry>,
}

#[derive(Serialize)]
struct HistoryEntry {
    terminal_id: String,
    at: Option<String>,
    seq: u64,
    #[serde(flatten)]
    point: HistoryPoint,
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
            let (points, more) = store.history(&k, check, from, to, limit)?;
            let entries: Vec<HistoryEntry> = points
                .into_iter()
                .map(|(seq, p)| HistoryEntry {
                    terminal_id: k.terminal.clone(),
                    at: when(p.at_ms),
                    seq,
                    point: p,
                })
                .collect();
            per_terminal.push((entries, more));
        }
        let (out, complete_from) = newest_complete(per_terminal, limit, |e| e.point.at_ms);
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
    let (events, truncated) =
        read(move || store.events(site_name.as_deref(), since, limit)).await?;
    Ok(Json(EventsPage {
        since: when(since),
        site: site.map(|s| s.to_string()),
        truncated,
        events: events
            .into_iter()
            .map(|e| EventView {
                at: when(e.at_ms),
                recorded_at: when(e.recorded_ms),
                event: e,
            })
            .collect(),
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
