//! The collector's HTTP side: `/healthz`, `/metrics`, the JSON query API under `/api`, and the
//! dashboard mounted at `/`. Built by one function, [`router`], that tests call without a socket.
//!
//! One module per part of the API: [`sites`] (the overview), [`site`] (a site's page),
//! [`history`] (charts and events), [`inventory`] (agent versions and machines), [`commands`] (run now, config), [`admin`] (enrollment);
//! [`error`] is the one error type every refusal goes through.
//!
//! Must never write to the store: it reads, and its only actions are commands to connected agents
//! (`RunNow`, `ConfigUpdate`) through [`Presence`]. Customer IDs leave here masked.

pub mod admin;
pub mod availability;
pub mod commands;
pub mod error;
pub mod history;
pub mod incidents;
pub mod inventory;
pub mod maintenance;
pub mod site;
pub mod site_diagnosis;
pub mod sites;

pub use error::ApiError;

use crate::config::HistorySettings;
use crate::flags::{self, Flag, SiteState};
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::store::Store;
use crate::view::FleetView;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
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
    /// Closed days and windows (`oqs_site_in_maintenance`, the site page, the overview).
    pub maintenance: crate::maintenance::MaintenanceBook,
    pub maintenance_limits: crate::maintenance::MaintenanceLimits,
    /// Area-wide incidents as the committer published them.
    pub incidents: crate::incidents::IncidentBook,
}

/// The whole HTTP surface.
pub fn router(state: ApiState) -> Router {
    let guard = crate::http_auth::Guard::new(state.auth.clone(), state.metrics.clone());
    let answer_limit = state.history.max_answer_bytes;
    Router::new()
        .route("/api/catalog", get(catalog))
        .route("/api/sites", get(sites::sites))
        .route("/api/sites/{site_id}", get(site::site))
        .route("/api/sites/{site_id}/history", get(history::history))
        .route("/api/sites/{site_id}/history/point", get(history::point))
        .route("/api/events", get(history::events))
        .route("/api/inventory", get(inventory::inventory))
        .route("/api/incidents", get(incidents::incidents))
        .route("/api/sites/{site_id}/availability", get(availability::site))
        .route("/api/availability.csv", get(availability::fleet_csv))
        .route(
            "/api/sites/{site_id}/maintenance",
            get(maintenance::get_schedule).put(maintenance::put_schedule),
        )
        .route(
            "/api/sites/{site_id}/maintenance/windows",
            post(maintenance::add_window),
        )
        .route(
            "/api/sites/{site_id}/maintenance/windows/{window_id}",
            axum::routing::delete(maintenance::delete_window),
        )
        .route("/api/sites/{site_id}/run-now", post(commands::run_now))
        .route("/api/sites/{site_id}/config", post(commands::config_update))
        .route("/api/admin/enrollments", get(admin::enrollments))
        .route(
            "/api/admin/enrollments/{site_id}",
            post(admin::enroll).delete(admin::revoke),
        )
        // Every API answer is bounded (history and events keep their newest within it; this
        // refuses anything else that would exceed it). `/metrics` is Prometheus' and scales with
        // the fleet.
        .route_layer(axum::middleware::map_response_with_state(
            answer_limit,
            refuse_oversized,
        ))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(oqs_dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::http_auth::guard,
        ))
}

/// An API answer larger than `history.max_answer_bytes` is not sent: a 500 naming the setting
/// (the handlers keep their answers within it; this is the bound for any that would not).
async fn refuse_oversized(
    State(limit): State<usize>,
    res: axum::response::Response,
) -> axum::response::Response {
    use axum::body::HttpBody;
    match res.body().size_hint().upper() {
        Some(n) if n > limit as u64 => ApiError::Internal(format!(
            "the answer ({n} bytes) is larger than history.max_answer_bytes = {limit}: ask for \
             less (a shorter window, a smaller limit, one terminal)"
        ))
        .into_response(),
        None if res.body().size_hint().lower() > limit as u64 => ApiError::Internal(format!(
            "the answer is larger than history.max_answer_bytes = {limit}"
        ))
        .into_response(),
        _ => res,
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
    let store = s.store.clone();
    let space = match tokio::task::spawn_blocking(move || store.filesystem_space()).await {
        Ok(Ok(space)) => Some(space),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the store's filesystem space");
            None
        }
        Err(_) => None,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut out = s.metrics.render(&s.view);
            s.presence.uplinks.render(crate::clock::now_ms(), &mut out);
            render_maintenance(&s.maintenance, crate::clock::now_ms(), &mut out);
            incidents::render(&s.incidents, &mut out);
            if let Some(space) = space {
                render_store_filesystem(space, &mut out);
            }
            out
        },
    )
}

/// `oqs_store_filesystem_avail_bytes` and `oqs_store_filesystem_size_bytes`: the data
/// directory's filesystem, read at scrape time. A full disk stops ingest (nothing is
/// acknowledged until there is room): the shipped alerts warn before it fills.
fn render_store_filesystem(space: crate::store::FilesystemSpace, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP oqs_store_filesystem_avail_bytes Bytes the collector may still write on the filesystem holding its data directory (at 0 nothing more is stored or acknowledged).");
    let _ = writeln!(out, "# TYPE oqs_store_filesystem_avail_bytes gauge");
    let _ = writeln!(
        out,
        "oqs_store_filesystem_avail_bytes {}",
        space.available_bytes
    );
    let _ = writeln!(out, "# HELP oqs_store_filesystem_size_bytes Size of the filesystem holding the collector's data directory.");
    let _ = writeln!(out, "# TYPE oqs_store_filesystem_size_bytes gauge");
    let _ = writeln!(out, "oqs_store_filesystem_size_bytes {}", space.size_bytes);
}

/// `oqs_site_in_maintenance{site}`: 1 while a site is closed or in a window (the shipped alert
/// rules stay quiet for it), 0 for a site with a schedule outside it.
fn render_maintenance(book: &crate::maintenance::MaintenanceBook, now_ms: i64, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP oqs_site_in_maintenance 1 while the site is closed (its recurring closed hours, a public holiday if so set) or in a maintenance window, else 0 (sites with a schedule only): the shipped alert rules stay quiet for it.");
    let _ = writeln!(out, "# TYPE oqs_site_in_maintenance gauge");
    for (site, active) in book.states(now_ms) {
        let _ = writeln!(
            out,
            "oqs_site_in_maintenance{{site=\"{site}\"}} {}",
            u8::from(active)
        );
    }
}

/// Every check kind and flag with its labels, severity and guide page: the dashboard's only list.
async fn catalog() -> Json<crate::catalog::CatalogView> {
    Json(crate::catalog::view())
}

pub(crate) fn when(ms: i64) -> Option<String> {
    (ms > 0).then(|| crate::clock::rfc3339_ms(ms))
}

pub(crate) fn area_name(a: i32) -> Option<&'static str> {
    oqs_proto::v1::Area::try_from(a)
        .ok()
        .and_then(oqs_proto::ident::Area::from_wire)
        .map(|a| a.as_str())
}

/// A store read, off the async threads.
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??)
}

/// A site's raised flags, most severe first.
pub(crate) fn flag_names(st: Option<&SiteState>) -> Vec<&'static str> {
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

/// The first non-empty value of a text field over a site's terminals (the site's name and
/// prefecture come from whichever terminal says them).
fn first_non_empty(
    terms: &[(crate::store::TerminalKey, crate::store::TerminalRecord)],
    f: fn(&crate::store::TerminalRecord) -> &String,
) -> Option<String> {
    terms
        .iter()
        .map(|(_, r)| f(r))
        .find(|v| !v.is_empty())
        .cloned()
}

/// When any terminal of the site last had a report stored.
fn last_report_at(
    terms: &[(crate::store::TerminalKey, crate::store::TerminalRecord)],
) -> Option<String> {
    when(
        terms
            .iter()
            .map(|(_, r)| r.last_report_at_ms)
            .max()
            .unwrap_or(0),
    )
}
