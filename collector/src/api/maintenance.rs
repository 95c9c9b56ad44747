//! A site's closed days and maintenance windows: `GET`/`PUT /api/sites/{id}/maintenance` (the
//! recurring closed hours and whether public holidays are closed), `POST
//! /api/sites/{id}/maintenance/windows` (an ad-hoc window: start, end, reason, who) and `DELETE
//! /api/sites/{id}/maintenance/windows/{window_id}`.
//!
//! The one place the HTTP side writes: a schedule is validated whole, stored durably (key `W`
//! site), then served ([`MaintenanceBook`]). Must never accept a schedule that fails
//! [`Schedule::validate`].

use super::error::{site_id, ApiError, JsonBody, SitePath};
use super::{read, when, ApiState};
use crate::maintenance::{Closed, MaintenanceBook, Schedule, Why, Window};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use oqs_proto::ident::SiteId;
use serde::{Deserialize, Serialize};

/// The store key of a site's schedule.
pub fn key(site: &str) -> Vec<u8> {
    let mut k = b"W".to_vec();
    k.extend_from_slice(site.as_bytes());
    k
}

/// Loads every stored schedule into a book (at start). Blocking.
pub fn load(store: &crate::store::Store) -> Result<MaintenanceBook, crate::store::StoreError> {
    let book = MaintenanceBook::default();
    for (k, v) in store.raw_scan(b"W")? {
        let site = String::from_utf8_lossy(&k[1..]).into_owned();
        let s: Schedule =
            serde_json::from_slice(&v).map_err(|e| crate::store::StoreError::CorruptValue {
                key: format!("W{site}"),
                reason: e.to_string(),
            })?;
        book.set(&site, s);
    }
    Ok(book)
}

#[derive(Serialize)]
pub struct MaintenancePage {
    site_id: String,
    closed: Vec<Closed>,
    holidays: bool,
    windows: Vec<WindowView>,
    /// Why the site is in maintenance now (null: it is not).
    in_effect: Option<Why>,
}

#[derive(Serialize)]
struct WindowView {
    id: u64,
    start: Option<String>,
    end: Option<String>,
    reason: String,
    by: String,
    /// Over (kept for the monthly availability).
    ended: bool,
}

fn page(site: &SiteId, s: &Schedule) -> MaintenancePage {
    let now = crate::clock::now_ms();
    MaintenancePage {
        site_id: site.to_string(),
        closed: s.closed.clone(),
        holidays: s.holidays,
        windows: s
            .windows
            .iter()
            .map(|w| WindowView {
                id: w.id,
                start: when(w.start_ms),
                end: when(w.end_ms),
                reason: w.reason.clone(),
                by: w.by.clone(),
                ended: w.end_ms <= now,
            })
            .collect(),
        in_effect: s.in_effect(now),
    }
}

/// The site's schedule as it is (empty when it has none); an unknown site is refused.
fn current(s: &ApiState, site: &SiteId) -> Result<Schedule, ApiError> {
    if s.view.get(site.as_str()).is_none() {
        return Err(ApiError::UnknownSite(site.clone()));
    }
    Ok(s.maintenance
        .get(site.as_str())
        .map(|a| (*a).clone())
        .unwrap_or_default())
}

/// Validates, stores durably, then serves.
async fn save(s: &ApiState, site: &SiteId, schedule: Schedule) -> Result<(), ApiError> {
    schedule
        .validate(&s.maintenance_limits)
        .map_err(ApiError::BadRequest)?;
    let bytes = serde_json::to_vec(&schedule).map_err(|e| ApiError::Internal(e.to_string()))?;
    let store = s.store.clone();
    let k = key(site.as_str());
    read(move || store.raw_put_flush(&k, &bytes)).await?;
    tracing::info!(site = %site, closed = schedule.closed.len(), windows = schedule.windows.len(), "maintenance schedule changed");
    s.maintenance.set(site.as_str(), schedule);
    Ok(())
}

pub(super) async fn get_schedule(
    State(s): State<ApiState>,
    SitePath(site): SitePath,
) -> Result<Json<MaintenancePage>, ApiError> {
    let sched = current(&s, &site)?;
    Ok(Json(page(&site, &sched)))
}

/// `PUT` body: the recurring part (windows are added and removed on their own).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedBody {
    #[serde(default)]
    closed: Vec<Closed>,
    #[serde(default)]
    holidays: bool,
}

pub(super) async fn put_schedule(
    State(s): State<ApiState>,
    SitePath(site): SitePath,
    JsonBody(b): JsonBody<ClosedBody>,
) -> Result<Json<MaintenancePage>, ApiError> {
    let mut sched = current(&s, &site)?;
    sched.closed = b.closed;
    sched.holidays = b.holidays;
    save(&s, &site, sched.clone()).await?;
    Ok(Json(page(&site, &sched)))
}

/// `POST` body: one window; times in RFC 3339 or Unix ms.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowBody {
    start: String,
    end: String,
    reason: String,
    by: String,
}

pub(super) async fn add_window(
    State(s): State<ApiState>,
    SitePath(site): SitePath,
    JsonBody(b): JsonBody<WindowBody>,
) -> Result<(StatusCode, Json<MaintenancePage>), ApiError> {
    let mut sched = current(&s, &site)?;
    let t = |name: &str, v: &str| {
        crate::clock::parse_time(v).map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
    };
    let now = crate::clock::now_ms();
    // Ended windows stay for the monthly availability (a year and a month); the oldest ended
    // make room at the limit; ids keep growing.
    let id = sched.windows.iter().map(|w| w.id).max().unwrap_or(0) + 1;
    let horizon = now - crate::maintenance::ENDED_KEPT_DAYS * 86_400_000;
    sched.windows.retain(|w| w.end_ms > horizon);
    sched.windows.sort_by_key(|w| w.start_ms);
    while sched.windows.len() >= s.maintenance_limits.max_windows {
        match sched.windows.iter().position(|w| w.end_ms <= now) {
            Some(i) => {
                sched.windows.remove(i);
            }
            None => break,
        }
    }
    let w = Window {
        id,
        start_ms: t("start", &b.start)?,
        end_ms: t("end", &b.end)?,
        reason: b.reason.trim().to_owned(),
        by: b.by.trim().to_owned(),
    };
    w.validate(now, &s.maintenance_limits)
        .map_err(ApiError::BadRequest)?;
    sched.windows.push(w);
    save(&s, &site, sched.clone()).await?;
    Ok((StatusCode::CREATED, Json(page(&site, &sched))))
}

pub(super) async fn delete_window(
    State(s): State<ApiState>,
    Path((raw_site, id)): Path<(String, u64)>,
) -> Result<Json<MaintenancePage>, ApiError> {
    let site = site_id(&raw_site)?;
    let mut sched = current(&s, &site)?;
    let before = sched.windows.len();
    sched.windows.retain(|w| w.id != id);
    if sched.windows.len() == before {
        return Err(ApiError::BadRequest(format!(
            "site {site} has no maintenance window {id}"
        )));
    }
    save(&s, &site, sched.clone()).await?;
    Ok(Json(page(&site, &sched)))
}
