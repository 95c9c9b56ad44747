//! `GET /api/inventory`: the fleet's terminals with what their agents run (version, OS and build,
//! hostname, boot time, clock offset, last seen, the interface in use), the versions with their
//! counts, the newest version seen and who lags behind it.
//!
//! Must never show a customer ID (the inventory is about machines, not clinics' contracts).

use super::error::{ApiError, Query};
use super::{area_name, read, when, ApiState};
use crate::flags::Connection;
use crate::inventory::{lags, newest, os_family};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize)]
struct TerminalRow {
    site_id: String,
    site_name: Option<String>,
    terminal_id: String,
    area: Option<&'static str>,
    prefecture: Option<String>,
    agent_version: String,
    /// Older than the newest version any terminal runs.
    outdated: bool,
    /// The OS with its version and build, as the agent says it.
    os: String,
    os_family: &'static str,
    hostname: String,
    boot_time: Option<String>,
    /// The terminal's clock minus the collector's at its last Hello (ms; positive: ahead).
    clock_offset_ms: Option<i64>,
    last_hello_at: Option<String>,
    last_report_at: Option<String>,
    connected: bool,
    /// The interface carrying the IPv6 address in use (newest report).
    interface: Option<String>,
    /// How the clinic reaches the OQS network, as its latest report says (`flets_ipoe`,
    /// `ipv4_pppoe`, `ipsec`); null before a report was judged.
    connection: Option<Connection>,
}

#[derive(Serialize)]
struct VersionCount {
    version: String,
    terminals: usize,
    newest: bool,
}

#[derive(Serialize)]
pub struct InventoryResponse {
    newest_version: Option<String>,
    /// All terminals, and those on an older version than the newest (before filters).
    terminals_total: usize,
    outdated_total: usize,
    /// Every version in use, newest first, with how many terminals run it (before filters).
    versions: Vec<VersionCount>,
    /// Terminals per OS family (before filters).
    os_families: BTreeMap<&'static str, usize>,
    /// Terminals matching the filters (before paging).
    matched: usize,
    offset: usize,
    terminals: Vec<TerminalRow>,
}

/// `GET /api/inventory` filters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    /// Only this agent version.
    version: Option<String>,
    /// Only this OS family (windows, linux, other).
    os: Option<String>,
    /// `true`: only terminals on an older version than the newest.
    outdated: Option<bool>,
    /// Only this connection method (flets_ipoe, ipv4_pppoe, ipsec).
    connection: Option<String>,
    /// Part of the site id or name, or of the hostname.
    q: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

const PAGE_MAX: usize = 5000;

pub(super) async fn inventory(
    State(s): State<ApiState>,
    Query(q): Query<InventoryQuery>,
) -> Result<Json<InventoryResponse>, ApiError> {
    let limit = super::error::page_limit(q.limit, 1000, PAGE_MAX)?;
    if let Some(os) = q.os.as_deref() {
        if !["windows", "linux", "macos", "other", "unknown"].contains(&os) {
            return Err(ApiError::bad_request(format!(
                "os {os:?}: one of windows, linux, macos, other, unknown"
            )));
        }
    }
    let connection = match q.connection.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<Connection>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let store = s.store.clone();
    let all = read(move || store.terminals()).await?;
    let newest_version =
        newest(all.iter().map(|(_, r)| r.agent_version.as_str())).map(str::to_owned);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut os_families: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut outdated_total = 0;
    let needle = q.q.as_deref().map(str::to_lowercase);
    let mut rows = Vec::new();
    for (k, r) in &all {
        let outdated = lags(&r.agent_version, newest_version.as_deref());
        outdated_total += usize::from(outdated);
        *counts.entry(r.agent_version.clone()).or_default() += 1;
        let family = os_family(&r.os);
        *os_families.entry(family).or_default() += 1;
        let method = s
            .view
            .get(&k.site)
            .and_then(|st| st.terminals.get(&k.terminal).map(|t| t.connection));
        let keep = q.version.as_deref().is_none_or(|v| v == r.agent_version)
            && connection.is_none_or(|c| method == Some(c))
            && q.os.as_deref().is_none_or(|o| o == family)
            && q.outdated.is_none_or(|o| o == outdated)
            && needle.as_deref().is_none_or(|n| {
                k.site.to_lowercase().contains(n)
                    || r.site_name.to_lowercase().contains(n)
                    || r.hostname.to_lowercase().contains(n)
            });
        if !keep {
            continue;
        }
        let text = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        rows.push(TerminalRow {
            site_id: k.site.clone(),
            site_name: text(&r.site_name),
            terminal_id: k.terminal.clone(),
            area: area_name(r.area),
            prefecture: text(&r.prefecture),
            agent_version: r.agent_version.clone(),
            outdated,
            os: r.os.clone(),
            os_family: family,
            hostname: r.hostname.clone(),
            boot_time: when(r.boot_time_ms),
            clock_offset_ms: r.clock_offset_ms,
            last_hello_at: when(r.last_hello_ms),
            last_report_at: when(r.last_report_at_ms),
            connected: s.presence.is_connected(k),
            interface: text(&r.interface),
            connection: method,
        });
    }
    let mut versions: Vec<VersionCount> = counts
        .into_iter()
        .map(|(version, terminals)| VersionCount {
            newest: newest_version.as_deref() == Some(version.as_str()),
            version,
            terminals,
        })
        .collect();
    versions.sort_by(|a, b| crate::inventory::compare_versions(&b.version, &a.version));
    let matched = rows.len();
    let offset = q.offset.unwrap_or(0);
    let terminals = rows.into_iter().skip(offset).take(limit).collect();
    Ok(Json(InventoryResponse {
        newest_version,
        terminals_total: all.len(),
        outdated_total,
        versions,
        os_families,
        matched,
        offset,
        terminals,
    }))
}
