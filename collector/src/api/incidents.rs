//! `GET /api/incidents`: area-wide incidents, open and recently ended (newest first), and their
//! metrics `oqs_incident_active{area,prefecture,kind}` and `oqs_incident_sites{…}`.
//!
//! Must never decide anything: what an incident is and when it opens is `crate::incidents`; this
//! only shows what the committer published.

use super::error::{ApiError, Query};
use super::{when, ApiState};
use crate::incidents::{Incident, IncidentBook};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct IncidentView {
    id: u64,
    kind: &'static str,
    kind_ja: &'static str,
    /// The site flag that shows it (the overview filters on it).
    flag: &'static str,
    area: String,
    prefecture: String,
    /// "NTT東日本 東京都: 37拠点でIPv6未取得（10:06から）".
    title_ja: String,
    open: bool,
    opened_at: Option<String>,
    /// The first failure among the sites that opened it.
    since: Option<String>,
    closed_at: Option<String>,
    /// The sites failing that way now (ended: the last ones).
    sites: Vec<String>,
    site_count: usize,
    peak_sites: u32,
    /// The group's sites not in maintenance.
    group_sites: u32,
    /// The per-site alert Alertmanager holds back in this area and prefecture while it is open.
    inhibits_alert: &'static str,
}

impl From<&Incident> for IncidentView {
    fn from(i: &Incident) -> Self {
        IncidentView {
            id: i.id,
            kind: i.kind.as_str(),
            kind_ja: i.kind.label_ja(),
            flag: i.kind.flag().0.as_str(),
            area: i.area.clone(),
            prefecture: i.prefecture.clone(),
            title_ja: i.title_ja(),
            open: i.is_open(),
            opened_at: when(i.opened_ms),
            since: when(i.since_ms),
            closed_at: i.closed_ms.and_then(when),
            sites: i.sites.clone(),
            site_count: i.sites.len(),
            peak_sites: i.peak_sites,
            group_sites: i.group_sites,
            inhibits_alert: i.kind.explains_alert(),
        }
    }
}

#[derive(Serialize)]
pub struct IncidentsResponse {
    /// Open incidents (before `state` and paging).
    open: usize,
    incidents: Vec<IncidentView>,
}

/// `GET /api/incidents` filters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IncidentsQuery {
    /// open, ended or all (the default).
    state: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn incidents(
    State(s): State<ApiState>,
    Query(q): Query<IncidentsQuery>,
) -> Result<Json<IncidentsResponse>, ApiError> {
    let limit = super::error::page_limit(q.limit, 100, 1000)?;
    let want: fn(&Incident) -> bool = match q.state.as_deref() {
        None | Some("all") => |_| true,
        Some("open") => Incident::is_open,
        Some("ended") => |i| !i.is_open(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?}: one of open, ended, all"
            )))
        }
    };
    let all = s.incidents.all();
    Ok(Json(IncidentsResponse {
        open: all.iter().filter(|i| i.is_open()).count(),
        incidents: all
            .iter()
            .rev()
            .filter(|i| want(i))
            .take(limit)
            .map(IncidentView::from)
            .collect(),
    }))
}

/// `oqs_incident_active` (1 per open incident; the series goes when it ends) and
/// `oqs_incident_sites` (how many sites it lists): one series per area, prefecture and kind.
pub(super) fn render(book: &IncidentBook, out: &mut String) {
    use crate::fleet_metrics::escape;
    use std::fmt::Write;
    let all = book.all();
    let _ = writeln!(out, "# HELP oqs_incident_active 1 while an area-wide incident is open: many sites of one area and prefecture failing the same way within minutes (kind: ipv6_lost, nwbase_dns_unreachable, agents_silent). The shipped AreaIncident alert pages once for it and Alertmanager holds back the per-site alerts it explains.");
    let _ = writeln!(out, "# TYPE oqs_incident_active gauge");
    for i in all.iter().filter(|i| i.is_open()) {
        let _ = writeln!(
            out,
            "oqs_incident_active{{area=\"{}\",kind=\"{}\",prefecture=\"{}\"}} 1",
            i.area,
            i.kind.as_str(),
            escape(&i.prefecture)
        );
    }
    let _ = writeln!(
        out,
        "# HELP oqs_incident_sites Sites an open area-wide incident lists (failing that way now)."
    );
    let _ = writeln!(out, "# TYPE oqs_incident_sites gauge");
    for i in all.iter().filter(|i| i.is_open()) {
        let _ = writeln!(
            out,
            "oqs_incident_sites{{area=\"{}\",kind=\"{}\",prefecture=\"{}\"}} {}",
            i.area,
            i.kind.as_str(),
            escape(&i.prefecture),
            i.sites.len()
        );
    }
}
