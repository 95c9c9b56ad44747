//! The collector's HTTP side: `/healthz`, `/metrics`, the JSON query API under `/api`, and the
//! dashboard mounted at `/`. Built by one function, [`router`], that tests call without a socket.
//!
//! Must never write to the store: it reads, and its only actions are commands to connected agents
//! (`RunNow`, `ConfigUpdate`) through [`Presence`]. Customer IDs leave here masked.

use crate::config::HistorySettings;
use crate::flags::{self, Event, Flag, SiteState};
use crate::history::HistoryPoint;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::samples::{self, Check};
use crate::store::{Store, TerminalKey, TerminalRecord};
use crate::view::FleetView;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use oqs_proto::ident::{CustomerId, SiteId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub presence: Presence,
    pub view: FleetView,
    pub history: HistorySettings,
    pub auth: crate::config::HttpAuth,
    pub enrollment: crate::enrollment::Enrollment,
    /// Whether ingest can still store reports (`/healthz`).
    pub committer: crate::committer::CommitterWatch,
}

/// The whole HTTP surface.
pub fn router(state: ApiState) -> Router {
    let guard = crate::http_auth::Guard::new(state.auth.clone(), state.metrics.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/catalog", get(catalog))
        .route("/api/sites", get(sites))
        .route("/api/sites/{site_id}", get(site))
        .route("/api/sites/{site_id}/history", get(history))
        .route("/api/events", get(events))
        .route("/api/sites/{site_id}/run-now", post(run_now))
        .route("/api/sites/{site_id}/config", post(config_update))
        .route("/api/admin/enrollments", get(enrollments))
        .route(
            "/api/admin/enrollments/{site_id}",
            post(enroll).delete(revoke),
        )
        .with_state(state)
        .merge(oqs_dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::http_auth::guard,
        ))
}

/// A JSON error body: `{"error": "..."}` with a status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// 200 while reports can be stored; 503 once the store's writer stopped (the process then exits
/// non-zero so its supervisor restarts it).
async fn healthz(State(s): State<ApiState>) -> (StatusCode, &'static str) {
    if s.committer.is_running() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest stopped: the store's writer is not running\n",
        )
    }
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&s.view),
    )
}

/// Every check kind and flag with its labels, severity and guide page: the dashboard's only list.
async fn catalog() -> Json<crate::catalog::CatalogView> {
    Json(crate::catalog::view())
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn when(ms: i64) -> Option<String> {
    (ms > 0).then(|| crate::clock::rfc3339_ms(ms))
}

fn area_name(a: i32) -> Option<&'static str> {
    oqs_proto::v1::Area::try_from(a)
        .ok()
        .and_then(oqs_proto::ident::Area::from_wire)
        .map(|a| a.as_str())
}

async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A site's raised flags, most severe first.
fn flag_names(st: Option<&SiteState>) -> Vec<&'static str> {
    let mut v: Vec<Flag> = st
        .map(|s| s.flags.keys().copied().collect())
        .unwrap_or_default();
    v.sort_by_key(|f| f.severity_rank());
    v.into_iter().map(Flag::as_str).collect()
}

fn diagnosis_step(st: Option<&SiteState>) -> Option<u8> {
    st.and_then(flags::site_finding)
        .and_then(|(_, f, _)| oqs_guide::diagnosis::verdict(f).step)
}

#[derive(Serialize)]
struct SiteSummary {
    site_id: String,
    site_name: Option<String>,
    prefecture: Option<String>,
    area: Option<&'static str>,
    terminal_count: usize,
    connected_terminals: usize,
    last_report_at: Option<String>,
    /// Raised flags, most severe first.
    flags: Vec<&'static str>,
    /// The guide's step the site fails first (null: healthy).
    diagnosis_step: Option<u8>,
    prefix: Option<String>,
}

#[derive(Serialize)]
struct SitesResponse {
    /// Sites matching the filters (before paging).
    total: usize,
    offset: usize,
    sites: Vec<SiteSummary>,
    /// How many sites have each flag raised (all sites, before filters).
    flag_counts: BTreeMap<&'static str, usize>,
    /// All sites by state, before filters: `flagged` (any flag raised) and `healthy`.
    state_counts: BTreeMap<&'static str, usize>,
}

/// `GET /api/sites` filters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SitesQuery {
    /// Only sites with this flag raised.
    flag: Option<String>,
    /// `east` or `west`.
    area: Option<String>,
    /// A prefecture's full name (e.g. 東京都).
    prefecture: Option<String>,
    /// Part of the site id or name, or a full customer ID.
    q: Option<String>,
    /// `flagged` (only sites with a flag).
    state: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

const SITES_PAGE_MAX: usize = 1000;

async fn sites(
    State(s): State<ApiState>,
    viewer: Option<axum::Extension<crate::http_auth::Viewer>>,
    query: Result<Query<SitesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SitesResponse>, ApiError> {
    // Finding a site by its customer ID is seeing the ID: only a viewer who may see full IDs can
    // (otherwise a masked ID could be recovered by trying the hidden digits).
    let reveal = viewer.is_some_and(|v| v.reveal);
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let flag = q
        .flag
        .as_deref()
        .map(Flag::parse)
        .transpose()
        .map_err(bad_request)?;
    let area = q
        .area
        .as_deref()
        .map(|a| {
            a.parse::<oqs_proto::ident::Area>()
                .map_err(|e| bad_request(e.to_string()))
        })
        .transpose()?;
    let flagged_only = match q.state.as_deref() {
        None | Some("all") => false,
        Some("flagged") => true,
        Some(other) => return Err(bad_request(format!("state {other:?}: one of all, flagged"))),
    };
    let limit = q.limit.unwrap_or(SITES_PAGE_MAX);
    if limit == 0 || limit > SITES_PAGE_MAX {
        return Err(bad_request(format!("limit must be 1..={SITES_PAGE_MAX}")));
    }
    let offset = q.offset.unwrap_or(0);
    let store = s.store.clone();
    let all = read(move || store.terminals()).await?;
    let mut by_site: BTreeMap<String, Vec<(TerminalKey, TerminalRecord)>> = BTreeMap::new();
    for (k, r) in all {
        by_site.entry(k.site.clone()).or_default().push((k, r));
    }
    let mut flag_counts: BTreeMap<&'static str, usize> =
        Flag::ALL.iter().map(|f| (f.as_str(), 0)).collect();
    let mut state_counts: BTreeMap<&'static str, usize> =
        [("flagged", 0), ("healthy", 0)].into_iter().collect();
    let mut rows: Vec<(usize, SiteSummary)> = Vec::new();
    for (site_id, terms) in by_site {
        let st = s.view.get(&site_id);
        for f in st.iter().flat_map(|st| st.flags.keys()) {
            *flag_counts.entry(f.as_str()).or_default() += 1;
        }
        let flagged = st.as_ref().is_some_and(|st| !st.flags.is_empty());
        *state_counts
            .entry(if flagged { "flagged" } else { "healthy" })
            .or_default() += 1;
        let site_area = terms.first().and_then(|(_, r)| area_name(r.area));
        let pick = |f: fn(&TerminalRecord) -> &String| {
            terms
                .iter()
                .map(|(_, r)| f(r))
                .find(|v| !v.is_empty())
                .cloned()
        };
        let site_name = pick(|r| &r.site_name);
        let prefecture = pick(|r| &r.prefecture);
        let matches_query = |needle: &str| {
            let needle = needle.trim();
            let lower = needle.to_lowercase();
            site_id.to_lowercase().contains(&lower)
                || site_name.as_deref().is_some_and(|n| n.contains(needle))
                || (reveal
                    && terms
                        .iter()
                        .any(|(_, r)| r.customer_id.as_deref() == Some(needle)))
        };
        if flag.is_some_and(|f| !st.as_ref().is_some_and(|st| st.flags.contains_key(&f)))
            || area.is_some_and(|a| site_area != Some(a.as_str()))
            || q.prefecture
                .as_deref()
                .is_some_and(|p| prefecture.as_deref() != Some(p))
            || q.q
                .as_deref()
                .is_some_and(|needle| !needle.trim().is_empty() && !matches_query(needle))
            || (flagged_only && st.as_ref().is_none_or(|st| st.flags.is_empty()))
        {
            continue;
        }
        let rank = st
            .as_ref()
            .and_then(|st| st.flags.keys().map(|f| f.severity_rank()).min())
            .unwrap_or(usize::MAX);
        rows.push((
            rank,
            SiteSummary {
                area: site_area,
                site_name,
                prefecture,
                terminal_count: terms.len(),
                connected_terminals: terms
                    .iter()
                    .filter(|(k, _)| s.presence.is_connected(k))
                    .count(),
                last_report_at: when(
                    terms
                        .iter()
                        .map(|(_, r)| r.last_report_at_ms)
                        .max()
                        .unwrap_or(0),
                ),
                flags: flag_names(st.as_deref()),
                diagnosis_step: diagnosis_step(st.as_deref()),
                prefix: st.as_ref().and_then(|st| st.prefix.clone()),
                site_id,
            },
        ));
    }
    // Flagged sites first, most severe first; then by id (the sort is stable).
    rows.sort_by_key(|(rank, _)| *rank);
    let total = rows.len();
    let sites = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, r)| r)
        .collect();
    Ok(Json(SitesResponse {
        total,
        offset,
        sites,
        flag_counts,
        state_counts,
    }))
}

fn site_id_param(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(raw).map_err(|e| bad_request(e.to_string()))
}

async fn site(
    State(s): State<ApiState>,
    viewer: Option<axum::Extension<crate::http_auth::Viewer>>,
    Path(site_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let reveal = viewer.is_some_and(|v| v.reveal);
    let site_id = site_id_param(&site_id)?;
    let store = s.store.clone();
    let id = site_id.clone();
    let (terms, latest) = read(move || {
        let terms = store.site_terminals(id.as_str())?;
        let mut latest = Vec::new();
        for (k, _) in &terms {
            latest.push(store.latest_full_report(k)?);
        }
        Ok((terms, latest))
    })
    .await?;
    if terms.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("site {site_id} has never reported"),
        ));
    }
    let st = s.view.get(site_id.as_str());
    let st = st.as_deref();
    let area = terms.first().and_then(|(_, r)| area_name(r.area));
    let customer_id = terms
        .iter()
        .find_map(|(_, r)| r.customer_id.as_deref())
        .map(|c| match CustomerId::parse(c, None) {
            Ok(id) if reveal => id.reveal().to_owned(),
            Ok(id) => id.masked(),
            Err(_) => "(invalid)".into(),
        });
    let last = terms
        .iter()
        .map(|(_, r)| r.last_report_at_ms)
        .max()
        .unwrap_or(0);
    let finding = st.and_then(flags::site_finding);
    let raw_customer_id = terms.iter().find_map(|(_, r)| r.customer_id.as_deref());
    let diagnosis = match finding {
        Some((terminal, f, since)) => {
            let d = oqs_guide::diagnosis::verdict(f);
            let hint = raw_customer_id.and_then(|c| oqs_guide::diagnosis::customer_id_hint(f, c));
            json!({
                "step": d.step,
                "finding": d.finding,
                "remedy_ja": d.remedy_ja,
                "remedy_en": d.remedy_en,
                "guide_page": d.guide_page,
                "terminal_id": terminal,
                "failing_since": since.and_then(when),
                "hint_ja": hint.map(|h| h.0),
                "hint_en": hint.map(|h| h.1),
            })
        }
        None => {
            let d = oqs_guide::diagnosis::HEALTHY;
            json!({
                "step": null, "finding": null, "remedy_ja": d.remedy_ja, "remedy_en": d.remedy_en,
                "guide_page": d.guide_page, "terminal_id": null, "failing_since": null,
                "hint_ja": null, "hint_en": null,
            })
        }
    };
    // What the support desk asks for on a call (FAQ Q11, Q20): customer ID, the IPv6 address and
    // prefix, since when, and the last portal code.
    let contact_terminal = finding
        .map(|(t, _, _)| t.to_owned())
        .or_else(|| terms.first().map(|(k, _)| k.terminal.clone()));
    let ts = st.and_then(|st| {
        contact_terminal
            .as_deref()
            .and_then(|t| st.terminals.get(t))
    });
    let contact = json!({
        "customer_id": customer_id,
        "terminal_id": contact_terminal,
        "ipv6_address": ts.and_then(|t| t.global_addresses.first()),
        "prefix": st.and_then(|s| s.prefix.clone()),
        "failing_since": finding.and_then(|(_, _, since)| since).and_then(when),
        "last_lineauth_code": st.and_then(|s| s.last_code.as_ref()).map(|c| json!({
            "code": c.code, "first_seen_at": when(c.at_ms),
        })),
        "support_desk": oqs_guide::support::NETWORK_DESK,
        "support_desk_open_now": oqs_guide::support::network_desk_open(crate::clock::now_ms()),
        "support_desk_hours_today": oqs_guide::support::network_desk_hours_today(crate::clock::now_ms()),
        "flets_desk": oqs_guide::support::FLETS_DESK,
        // Whom to call for this problem, the desk that can act on it first, each with whether it
        // answers now (Japan time).
        "desks": oqs_guide::support::desks_now(finding.map(|(_, f, _)| f), crate::clock::now_ms()),
    });
    let first_non_empty = |f: fn(&TerminalRecord) -> &String| {
        terms
            .iter()
            .map(|(_, r)| f(r))
            .find(|v| !v.is_empty())
            .cloned()
    };
    let site_name = first_non_empty(|r| &r.site_name);
    let prefecture = first_non_empty(|r| &r.prefecture);
    let flags_json: Vec<Value> = {
        let mut v: Vec<_> = st.map(|s| s.flags.iter().collect()).unwrap_or_default();
        v.sort_by_key(|(f, _)| f.severity_rank());
        v.into_iter()
            .map(|(f, a)| {
                json!({
                    "flag": f.as_str(),
                    "raised_at": when(a.raised_at_ms),
                    "detail": a.detail,
                    "event_id": a.event_id,
                })
            })
            .collect()
    };
    let terminals: Vec<Value> = terms
        .into_iter()
        .zip(latest)
        .map(|((k, r), latest)| {
            let t = st.and_then(|st| st.terminals.get(&k.terminal));
            let checks: Vec<Value> = latest
                .as_ref()
                .map(samples::samples)
                .unwrap_or_default()
                .into_iter()
                .map(|smp| {
                    json!({
                        "check": smp.check.as_str(),
                        "ok": smp.ok,
                        "outcome": smp.outcome,
                        "latency_ms": smp.latency_ms,
                        "detail": smp.detail,
                    })
                })
                .collect();
            json!({
                "connected": s.presence.is_connected(&k),
                "terminal_id": k.terminal,
                "last_seq": r.last_seq,
                "reports_total": r.reports_total,
                "last_report_at": when(r.last_report_at_ms),
                "last_round_finished_at": when(r.last_round_at_ms),
                "hostname": r.hostname,
                "agent_version": r.agent_version,
                "os": r.os,
                "first_seen_at": when(r.first_seen_ms),
                "last_hello_at": when(r.last_hello_ms),
                "spool_dropped_total": r.spool_dropped_total,
                "interval_seconds": (r.interval_ms > 0).then_some(r.interval_ms / 1000),
                "prefix": t.and_then(|t| t.prefix.clone()),
                "ipv6_addresses": t.map(|t| t.global_addresses.clone()).unwrap_or_default(),
                "lineauth_state": t.map(|t| t.lineauth_state.clone()),
                "finding": t.and_then(|t| t.finding),
                "checks_as_of": latest.as_ref().and_then(|l| when(l.finished_at_ms)),
                "checks": checks,
            })
        })
        .collect();
    let prefix = st.and_then(|s| s.prefix.clone());
    Ok(Json(json!({
        "site_id": site_id.to_string(),
        "site_name": site_name,
        "prefecture": prefecture,
        "area": area,
        "customer_id": customer_id,
        "last_report_at": when(last),
        "flags": flag_names(st),
        "active_flags": flags_json,
        "diagnosis": diagnosis,
        "contact": contact,
        "prefix": prefix,
        "prefix_changes_total": st.map(|s| s.prefix_changes_total).unwrap_or(0),
        "prefix_history": st.map(|s| s.prefix_history.iter().map(|p| json!({
            "at": when(p.at_ms), "from": p.from, "to": p.to, "terminal_id": p.terminal,
            "event_id": p.event_id,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "shares_line_with": prefix.as_deref().map(|p| s.view.sharing_prefix(p, site_id.as_str())).unwrap_or_default(),
        "terminals": terminals,
    })))
}

/// `GET /api/sites/{id}/history` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    check: Option<String>,
    from: Option<String>,
    to: Option<String>,
    terminal: Option<String>,
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
        Some(t) => crate::clock::parse_time(t).map_err(|e| bad_request(format!("{name}: {e}"))),
    }
}

async fn history(
    State(s): State<ApiState>,
    Path(site_id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let site_id = site_id_param(&site_id)?;
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let check = Check::parse(
        q.check
            .as_deref()
            .ok_or_else(|| bad_request(format!("check is required: one of {}", Check::names())))?,
    )
    .map_err(bad_request)?;
    let now = crate::clock::now_ms();
    let to = time_param("to", q.to.as_deref(), now)?;
    let from = time_param("from", q.from.as_deref(), to - 24 * 3_600_000)?;
    if from > to {
        return Err(bad_request("from is after to"));
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
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("site {site_id} has never reported"),
        ));
    }
    Ok(Json(json!({
        "site_id": site_id.to_string(),
        "check": check.as_str(),
        "from": when(from),
        "to": when(to),
        "truncated": complete_from.is_some(),
        // From here on the points are complete; anything older in the window was left out.
        "complete_from": complete_from.map_or_else(|| when(from), when),
        "points": entries,
    })))
}

/// `GET /api/events` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    site: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct EventView {
    at: Option<String>,
    recorded_at: Option<String>,
    #[serde(flatten)]
    event: Event,
}

async fn events(
    State(s): State<ApiState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let site = q.site.as_deref().map(site_id_param).transpose()?;
    let now = crate::clock::now_ms();
    let since = time_param("since", q.since.as_deref(), now - 24 * 3_600_000)?;
    let max = s.history.max_points_per_query;
    let limit = q.limit.unwrap_or(max.min(1000));
    if limit == 0 || limit > max {
        return Err(bad_request(format!("limit must be 1..={max}")));
    }
    let store = s.store.clone();
    let site_name = site.as_ref().map(|s| s.as_str().to_owned());
    let (events, truncated) =
        read(move || store.events(site_name.as_deref(), since, limit)).await?;
    Ok(Json(json!({
        "since": when(since),
        "site": site.map(|s| s.to_string()),
        "truncated": truncated,
        "events": events.into_iter().map(|e| EventView {
            at: when(e.at_ms),
            recorded_at: when(e.recorded_ms),
            event: e,
        }).collect::<Vec<_>>(),
    })))
}

/// Whether the site has ever reported (404 otherwise).
async fn known_site(s: &ApiState, site: &SiteId) -> Result<(), ApiError> {
    let store = s.store.clone();
    let id = site.clone();
    if read(move || store.site_terminals(id.as_str()))
        .await?
        .is_empty()
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("site {site} has never reported"),
        ));
    }
    Ok(())
}

fn not_connected(site: &SiteId) -> ApiError {
    ApiError(
        StatusCode::CONFLICT,
        format!("no agent of site {site} is connected now; it gets nothing until it reconnects"),
    )
}

/// `POST /api/sites/{id}/run-now`: every connected agent of the site runs a round now; its
/// report arrives like any other (poll the site, or its history).
async fn run_now(
    State(s): State<ApiState>,
    Path(site_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site_id = site_id_param(&site_id)?;
    known_site(&s, &site_id).await?;
    let request_id = format!("run-{}", crate::clock::now_ms());
    let sent = s.presence.send_to_site(
        site_id.as_str(),
        oqs_proto::v1::collector_message::Body::RunNow(oqs_proto::v1::RunNow {
            request_id: request_id.clone(),
        }),
    );
    if sent.is_empty() {
        return Err(not_connected(&site_id));
    }
    tracing::info!(site = %site_id, terminals = sent.len(), "run now sent");
    Ok(Json(json!({ "request_id": request_id, "sent_to": sent })))
}

/// `POST /api/sites/{id}/config` body: what to change on the site's connected agents (each field
/// optional; the agent validates again and keeps it until it restarts).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    interval_seconds: Option<u32>,
    probe_timeout_ms: Option<u32>,
    lineauth_url: Option<String>,
}

async fn config_update(
    State(s): State<ApiState>,
    Path(site_id): Path<String>,
    body: Result<Json<ConfigBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let site_id = site_id_param(&site_id)?;
    let Json(b) = body.map_err(|e| bad_request(e.body_text()))?;
    if let Some(i) = b.interval_seconds {
        if !(1..=86_400).contains(&i) {
            return Err(bad_request(format!(
                "interval_seconds {i}: must be 1..=86400"
            )));
        }
    }
    if let Some(t) = b.probe_timeout_ms {
        if !(100..=60_000).contains(&t) {
            return Err(bad_request(format!(
                "probe_timeout_ms {t}: must be 100..=60000"
            )));
        }
    }
    if let Some(u) = &b.lineauth_url {
        if !u.starts_with("https://") || u.len() > 2048 {
            return Err(bad_request(format!(
                "lineauth_url {u:?}: must be an https:// URL"
            )));
        }
    }
    if b.interval_seconds.is_none() && b.probe_timeout_ms.is_none() && b.lineauth_url.is_none() {
        return Err(bad_request(
            "nothing to change: give interval_seconds, probe_timeout_ms or lineauth_url",
        ));
    }
    known_site(&s, &site_id).await?;
    let update = oqs_proto::v1::ConfigUpdate {
        interval_seconds: b.interval_seconds.unwrap_or(0),
        probe_timeout_ms: b.probe_timeout_ms.unwrap_or(0),
        lineauth_url: b.lineauth_url.unwrap_or_default(),
        ..Default::default()
    };
    let sent = s.presence.send_to_site(
        site_id.as_str(),
        oqs_proto::v1::collector_message::Body::ConfigUpdate(update),
    );
    if sent.is_empty() {
        return Err(not_connected(&site_id));
    }
    tracing::info!(site = %site_id, terminals = sent.len(), "config update sent");
    Ok(Json(json!({ "sent_to": sent })))
}

/// `GET /api/admin/enrollments`: sites with an enrollment token or enrolled terminals.
async fn enrollments(State(s): State<ApiState>) -> Json<Value> {
    Json(json!({
        "required": s.enrollment.required(),
        "sites": s.enrollment.list().into_iter().map(|(site, token, terminals)| json!({
            "site_id": site, "token_active": token, "terminals_enrolled": terminals,
        })).collect::<Vec<_>>(),
    }))
}

/// `POST /api/admin/enrollments/{site}`: a new enrollment token for the site (replacing any
/// earlier one). The answer is the only place the token ever appears in clear.
async fn enroll(
    State(s): State<ApiState>,
    Path(site_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site_id = site_id_param(&site_id)?;
    let token = s
        .enrollment
        .create_token(site_id.as_str())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        json!({ "site_id": site_id.to_string(), "token": token }),
    ))
}

/// `DELETE /api/admin/enrollments/{site}`: revokes the site's token and every terminal secret;
/// the site's open streams are ended at once (UNAUTHENTICATED), and any later message refused.
async fn revoke(
    State(s): State<ApiState>,
    Path(site_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site_id = site_id_param(&site_id)?;
    let n = s
        .enrollment
        .revoke(site_id.as_str())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let revoked = crate::enrollment::AuthFailure::Revoked;
    let closed = s.presence.close_site(
        site_id.as_str(),
        &tonic::Status::unauthenticated(revoked.message()),
    );
    for _ in 0..closed {
        s.metrics.auth_failure(revoked.label());
    }
    Ok(Json(
        json!({ "site_id": site_id.to_string(), "revoked_terminals": n, "closed_streams": closed }),
    ))
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
