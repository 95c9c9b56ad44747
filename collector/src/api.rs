//! The collector's HTTP side: `/healthz`, `/metrics`, the JSON query API under `/api`, and the
//! dashboard mounted at `/`. Built by one function, [`router`], that tests call without a socket.
//!
//! Must never write to the store or reach back into ingest: it only reads. Customer IDs leave
//! here masked.

use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::store::{Store, TerminalKey, TerminalRecord};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oqs_proto::ident::{CustomerId, SiteId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub presence: Presence,
}

/// The whole HTTP surface.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/sites", get(sites))
        .route("/api/sites/{site_id}", get(site))
        .with_state(state)
        .merge(oqs_dashboard::router())
}

/// A JSON error body: `{"error": "..."}` with a status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

#[derive(Serialize)]
struct SiteSummary {
    site_id: String,
    area: Option<&'static str>,
    terminal_count: usize,
    connected_terminals: usize,
    last_report_at: Option<String>,
    flags: Vec<String>,
}

#[derive(Serialize)]
struct SitesResponse {
    total: usize,
    sites: Vec<SiteSummary>,
}

#[derive(Serialize)]
struct TerminalView {
    terminal_id: String,
    last_seq: u64,
    reports_total: u64,
    last_report_at: Option<String>,
    last_round_finished_at: Option<String>,
    connected: bool,
    hostname: String,
    agent_version: String,
    os: String,
    first_seen_at: Option<String>,
    last_hello_at: Option<String>,
    spool_dropped_total: u64,
}

#[derive(Serialize)]
struct SiteDetail {
    site_id: String,
    area: Option<&'static str>,
    /// Masked (`CAF*******789`).
    customer_id: Option<String>,
    last_report_at: Option<String>,
    flags: Vec<String>,
    terminals: Vec<TerminalView>,
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

async fn sites(State(s): State<ApiState>) -> Result<Json<SitesResponse>, ApiError> {
    let store = s.store.clone();
    let all = read(move || store.terminals()).await?;
    let mut by_site: BTreeMap<String, Vec<(TerminalKey, TerminalRecord)>> = BTreeMap::new();
    for (k, r) in all {
        by_site.entry(k.site.clone()).or_default().push((k, r));
    }
    let sites: Vec<SiteSummary> = by_site
        .into_iter()
        .map(|(site_id, terms)| SiteSummary {
            area: terms.first().and_then(|(_, r)| area_name(r.area)),
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
            flags: Vec::new(),
            site_id,
        })
        .collect();
    Ok(Json(SitesResponse {
        total: sites.len(),
        sites,
    }))
}

async fn site(
    State(s): State<ApiState>,
    Path(site_id): Path<String>,
) -> Result<Json<SiteDetail>, ApiError> {
    let site_id =
        SiteId::parse(&site_id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let store = s.store.clone();
    let id = site_id.clone();
    let terms = read(move || store.site_terminals(id.as_str())).await?;
    if terms.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("site {site_id} has never reported"),
        ));
    }
    let area = terms.first().and_then(|(_, r)| area_name(r.area));
    let customer_id = terms
        .iter()
        .find_map(|(_, r)| r.customer_id.as_deref())
        .map(|c| {
            CustomerId::parse(c, None)
                .map(|c| c.masked())
                .unwrap_or_else(|_| "(invalid)".into())
        });
    let last = terms
        .iter()
        .map(|(_, r)| r.last_report_at_ms)
        .max()
        .unwrap_or(0);
    let terminals = terms
        .into_iter()
        .map(|(k, r)| TerminalView {
            connected: s.presence.is_connected(&k),
            terminal_id: k.terminal,
            last_seq: r.last_seq,
            reports_total: r.reports_total,
            last_report_at: when(r.last_report_at_ms),
            last_round_finished_at: when(r.last_round_at_ms),
            hostname: r.hostname,
            agent_version: r.agent_version,
            os: r.os,
            first_seen_at: when(r.first_seen_ms),
            last_hello_at: when(r.last_hello_ms),
            spool_dropped_total: r.spool_dropped_total,
        })
        .collect();
    Ok(Json(SiteDetail {
        site_id: site_id.to_string(),
        area,
        customer_id,
        last_report_at: when(last),
        flags: Vec::new(),
        terminals,
    }))
}
