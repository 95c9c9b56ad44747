//! `GET /api/sites`: the fleet overview — every site with its flags, most severe first, filtered
//! and paged, and the counts per flag and state over the whole fleet.
//!
//! Must never match a customer ID for a viewer who may not see full IDs.

use super::error::{ApiError, Query};
use super::{
    area_name, diagnosis_step, first_non_empty, flag_names, last_report_at, read, ApiState,
};
use crate::flags::Flag;
use crate::store::{TerminalKey, TerminalRecord};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Closed or in a maintenance window now: its flags show, its alerts stay quiet.
    in_maintenance: bool,
    /// Whole days until the soonest certificate expiry its terminals reported (negative:
    /// expired; null: none reported).
    cert_days_left: Option<i64>,
}

#[derive(Serialize)]
pub struct SitesResponse {
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
pub struct SitesQuery {
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

pub(super) async fn sites(
    State(s): State<ApiState>,
    viewer: Option<axum::Extension<crate::http_auth::Viewer>>,
    Query(q): Query<SitesQuery>,
) -> Result<Json<SitesResponse>, ApiError> {
    // Finding a site by its customer ID is seeing the ID: only a viewer who may see full IDs can
    // (otherwise a masked ID could be recovered by trying the hidden digits).
    let reveal = viewer.is_some_and(|v| v.reveal);
    let flag = q
        .flag
        .as_deref()
        .map(Flag::parse)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let area = q
        .area
        .as_deref()
        .map(|a| {
            a.parse::<oqs_proto::ident::Area>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let flagged_only = match q.state.as_deref() {
        None | Some("all") => false,
        Some("flagged") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?}: one of all, flagged"
            )))
        }
    };
    let limit = super::error::page_limit(q.limit, SITES_PAGE_MAX, SITES_PAGE_MAX)?;
    let offset = q.offset.unwrap_or(0);
    let now_ms = crate::clock::now_ms();
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
        let site_name = first_non_empty(&terms, |r| &r.site_name);
        let prefecture = first_non_empty(&terms, |r| &r.prefecture);
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
                cert_days_left: terms
                    .iter()
                    .map(|(_, r)| r.cert_not_after_ms)
                    .filter(|t| *t > 0)
                    .min()
                    .map(|t| (t - now_ms).div_euclid(86_400_000)),
                in_maintenance: s
                    .maintenance
                    .get(&site_id)
                    .is_some_and(|m| m.in_effect(now_ms).is_some()),
                area: site_area,
                site_name,
                prefecture,
                terminal_count: terms.len(),
                connected_terminals: terms
                    .iter()
                    .filter(|(k, _)| s.presence.is_connected(k))
                    .count(),
                last_report_at: last_report_at(&terms),
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
