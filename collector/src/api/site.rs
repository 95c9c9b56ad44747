//! `GET /api/sites/{id}`: one site's page — its flags, the guide's diagnosis, what the support
//! desk asks for on a call, the prefix history and each terminal's latest checks.
//!
//! The answer's shape is a contract (`tests/fixtures/api_shapes.json`): the structs below are it.
//! Must never show a full customer ID to a viewer who may not see one.

use super::error::{ApiError, SitePath};
use super::{area_name, first_non_empty, flag_names, last_report_at, read, when, ApiState};
use crate::flags::{SiteState, TerminalState};
use crate::samples;
use axum::extract::State;
use axum::Json;
use oqs_guide::diagnosis::Finding;
use oqs_guide::support::DeskNow;
use oqs_proto::ident::CustomerId;
use serde::Serialize;

#[derive(Serialize)]
pub struct SitePage {
    site_id: String,
    site_name: Option<String>,
    prefecture: Option<String>,
    area: Option<&'static str>,
    /// Masked unless the viewer may see it.
    customer_id: Option<String>,
    last_report_at: Option<String>,
    /// Raised flags, most severe first.
    flags: Vec<&'static str>,
    /// Why the site is closed or in a maintenance window now (null: it is not): its flags still
    /// show, its alerts stay quiet.
    maintenance: Option<crate::maintenance::Why>,
    active_flags: Vec<ActiveFlagView>,
    /// The open area-wide incident that lists this site (the page's banner), if any.
    incident: Option<super::incidents::IncidentView>,
    diagnosis: super::site_diagnosis::DiagnosisView,
    contact: Contact,
    prefix: Option<String>,
    prefix_changes_total: u64,
    prefix_history: Vec<PrefixChangeView>,
    /// Other sites whose terminals are on the same /64.
    shares_line_with: Vec<String>,
    terminals: Vec<TerminalView>,
}

#[derive(Serialize)]
struct ActiveFlagView {
    flag: &'static str,
    raised_at: Option<String>,
    detail: Option<String>,
    event_id: u64,
}

/// What the support desk asks for on a call (FAQ Q11, Q20): customer ID, the IPv6 address and
/// prefix, since when, the last portal code; and whom to call.
#[derive(Serialize)]
struct Contact {
    customer_id: Option<String>,
    terminal_id: Option<String>,
    ipv6_address: Option<String>,
    prefix: Option<String>,
    failing_since: Option<String>,
    last_lineauth_code: Option<CodeView>,
    support_desk: &'static str,
    support_desk_open_now: bool,
    support_desk_hours_today: Option<&'static str>,
    flets_desk: &'static str,
    /// Whom to call for this problem, the desk that can act on it first, each with whether it
    /// answers now (Japan time).
    desks: Vec<DeskNow>,
}

#[derive(Serialize)]
struct CodeView {
    code: String,
    first_seen_at: Option<String>,
}

#[derive(Serialize)]
struct PrefixChangeView {
    at: Option<String>,
    from: Option<String>,
    to: String,
    terminal_id: String,
    event_id: u64,
}

#[derive(Serialize)]
struct TerminalView {
    connected: bool,
    terminal_id: String,
    last_seq: u64,
    reports_total: u64,
    last_report_at: Option<String>,
    last_round_finished_at: Option<String>,
    hostname: String,
    agent_version: String,
    os: String,
    first_seen_at: Option<String>,
    last_hello_at: Option<String>,
    spool_dropped_total: u64,
    /// Reports the agent set aside unsent (a spooled file that no longer decoded, a report
    /// refused again and again): kept on the terminal, counted here.
    quarantined_total: u64,
    /// The last configuration update the agent refused, and why (null: none).
    config_refused: Option<String>,
    /// The last reason the collector refused one of its reports, as the agent says (null: none).
    last_refusal: Option<String>,
    interval_seconds: Option<i64>,
    prefix: Option<String>,
    ipv6_addresses: Vec<String>,
    lineauth_state: Option<String>,
    /// How the clinic reaches the OQS network, as the latest report says: on a method other than
    /// the guide's (`flets_ipoe`) the IPv6 and portal checks are not run.
    connection: Option<crate::flags::Connection>,
    finding: Option<Finding>,
    /// No report for `flags.silent_intervals` of its interval: its checks below are its last.
    silent: bool,
    checks_as_of: Option<String>,
    /// How old the checks are (seconds since the round they come from).
    checks_age_seconds: Option<i64>,
    checks: Vec<CheckView>,
    /// How its reports come (its agent's last `Uplink`): the way, what waits behind it, the ways
    /// that failed. Null when not known (not connected since the collector started).
    uplink: Option<UplinkView>,
}

#[derive(Serialize)]
struct UplinkView {
    #[serde(flatten)]
    seen: crate::uplinks::UplinkSeen,
    /// How long the oldest waiting report has waited, by the collector's clock now.
    oldest_unsent_age_seconds: i64,
}

#[derive(Serialize)]
struct CheckView {
    check: &'static str,
    ok: bool,
    outcome: String,
    latency_ms: u32,
    detail: serde_json::Value,
}

pub(super) async fn site(
    State(s): State<ApiState>,
    viewer: Option<axum::Extension<crate::http_auth::Viewer>>,
    SitePath(site_id): SitePath,
) -> Result<Json<SitePage>, ApiError> {
    let reveal = viewer.is_some_and(|v| v.reveal);
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
        return Err(ApiError::UnknownSite(site_id));
    }
    let st = s.view.get(site_id.as_str());
    let st: Option<&SiteState> = st.as_deref();
    let raw_customer_id = terms.iter().find_map(|(_, r)| r.customer_id.as_deref());
    let customer_id = raw_customer_id.map(|c| match CustomerId::parse(c, None) {
        Ok(id) if reveal => id.reveal().to_owned(),
        Ok(id) => id.masked(),
        Err(_) => "(invalid)".into(),
    });
    let now = crate::clock::now_ms();
    let incident = s
        .incidents
        .all()
        .iter()
        .find(|i| i.is_open() && i.sites.iter().any(|x| x == site_id.as_str()))
        .cloned();
    let heard: std::collections::HashMap<&str, i64> = terms
        .iter()
        .map(|(k, r)| {
            (
                k.terminal.as_str(),
                r.last_report_at_ms.max(r.last_hello_ms),
            )
        })
        .collect();
    let (diagnosis, failing) =
        super::site_diagnosis::diagnose(st, incident.as_ref(), raw_customer_id, |t| {
            heard.get(t).copied().filter(|at| *at > 0)
        });
    let finding = failing.as_ref().and_then(|(t, f)| {
        st.and_then(|st| st.terminals.get(t))
            .map(|ts| (t.as_str(), *f, ts.failing_since_ms))
    });

    // The terminal the contact is about: the failing one, else the first.
    let contact_terminal = finding
        .map(|(t, _, _)| t.to_owned())
        .or_else(|| terms.first().map(|(k, _)| k.terminal.clone()));
    let ts: Option<&TerminalState> = st.and_then(|st| {
        contact_terminal
            .as_deref()
            .and_then(|t| st.terminals.get(t))
    });
    let prefix = st.and_then(|s| s.prefix.clone());
    let contact = Contact {
        customer_id: customer_id.clone(),
        terminal_id: contact_terminal,
        ipv6_address: ts.and_then(|t| t.global_addresses.first().cloned()),
        prefix: prefix.clone(),
        failing_since: finding.and_then(|(_, _, since)| since).and_then(when),
        last_lineauth_code: st.and_then(|s| s.last_code.as_ref()).map(|c| CodeView {
            code: c.code.clone(),
            first_seen_at: when(c.at_ms),
        }),
        support_desk: oqs_guide::support::NETWORK_DESK,
        support_desk_open_now: oqs_guide::support::network_desk_open(now),
        support_desk_hours_today: oqs_guide::support::network_desk_hours_today(now),
        flets_desk: oqs_guide::support::FLETS_DESK,
        // Inside an area-wide incident the line's desk is not whom to call about one clinic.
        desks: oqs_guide::support::desks_now(
            finding.filter(|_| incident.is_none()).map(|(_, f, _)| f),
            now,
        ),
    };

    let active_flags = {
        let mut v: Vec<_> = st.map(|s| s.flags.iter().collect()).unwrap_or_default();
        v.sort_by_key(|(f, _)| f.severity_rank());
        v.into_iter()
            .map(|(f, a)| ActiveFlagView {
                flag: f.as_str(),
                raised_at: when(a.raised_at_ms),
                detail: a.detail.clone(),
                event_id: a.event_id,
            })
            .collect()
    };
    // Half the answer's bytes for the terminals' check details, shared out: a detail larger than
    // its share (a terminal with hundreds of DNS answers) says so instead of being sent.
    let details = latest.iter().flatten().count().max(1) * crate::catalog::Check::ALL.len();
    let detail_share = s.history.max_answer_bytes / 2 / details;
    let page = SitePage {
        incident: incident.as_ref().map(super::incidents::IncidentView::from),
        maintenance: s
            .maintenance
            .get(site_id.as_str())
            .and_then(|m| m.in_effect(crate::clock::now_ms())),
        site_name: first_non_empty(&terms, |r| &r.site_name),
        prefecture: first_non_empty(&terms, |r| &r.prefecture),
        area: terms.first().and_then(|(_, r)| area_name(r.area)),
        customer_id,
        last_report_at: last_report_at(&terms),
        flags: flag_names(st),
        active_flags,
        diagnosis,
        contact,
        prefix_changes_total: st.map(|s| s.prefix_changes_total).unwrap_or(0),
        prefix_history: st
            .map(|s| {
                s.prefix_history
                    .iter()
                    .map(|p| PrefixChangeView {
                        at: when(p.at_ms),
                        from: p.from.clone(),
                        to: p.to.clone(),
                        terminal_id: p.terminal.clone(),
                        event_id: p.event_id,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        shares_line_with: prefix
            .as_deref()
            .map(|p| s.view.sharing_prefix(p, site_id.as_str()))
            .unwrap_or_default(),
        prefix,
        terminals: terms
            .into_iter()
            .zip(latest)
            .map(|((k, r), latest)| {
                let t = st.and_then(|st| st.terminals.get(&k.terminal));
                let connected = s.presence.is_connected(&k);
                // No entry: direct by its first way with nothing waiting — if it is connected
                // now; otherwise nothing is known since this collector started.
                let uplink = s
                    .presence
                    .uplinks
                    .get(&k)
                    .or_else(|| connected.then(crate::uplinks::UplinkSeen::direct))
                    .map(|seen| UplinkView {
                        oldest_unsent_age_seconds: seen.oldest_unsent_secs(now),
                        seen,
                    });
                TerminalView {
                    connected,
                    uplink,
                    last_seq: r.last_seq,
                    reports_total: r.reports_total,
                    last_report_at: when(r.last_report_at_ms),
                    last_round_finished_at: when(r.last_round_at_ms),
                    first_seen_at: when(r.first_seen_ms),
                    last_hello_at: when(r.last_hello_ms),
                    spool_dropped_total: r.spool_dropped_total,
                    quarantined_total: r.agent.as_ref().map_or(0, |a| a.quarantined_total),
                    config_refused: r
                        .agent
                        .as_ref()
                        .map(|a| a.config_refused.clone())
                        .filter(|c| !c.is_empty()),
                    last_refusal: r
                        .agent
                        .as_ref()
                        .map(|a| a.last_refusal.clone())
                        .filter(|c| !c.is_empty()),
                    interval_seconds: (r.interval_ms > 0).then_some(r.interval_ms / 1000),
                    prefix: t.and_then(|t| t.prefix.clone()),
                    ipv6_addresses: t.map(|t| t.global_addresses.clone()).unwrap_or_default(),
                    lineauth_state: t.map(|t| t.lineauth_state.clone()),
                    connection: t.map(|t| t.connection),
                    finding: t.and_then(|t| t.finding),
                    silent: t.is_some_and(|t| t.silent),
                    checks_as_of: latest.as_ref().and_then(|l| when(l.finished_at_ms)),
                    checks_age_seconds: latest
                        .as_ref()
                        .filter(|l| l.finished_at_ms > 0)
                        .map(|l| (now - l.finished_at_ms).max(0) / 1000),
                    checks: latest
                        .as_ref()
                        .map(samples::samples)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|smp| CheckView {
                            check: smp.check.as_str(),
                            ok: smp.ok,
                            outcome: smp.outcome,
                            latency_ms: smp.latency_ms,
                            detail: within(smp.detail, detail_share),
                        })
                        .collect(),
                    terminal_id: k.terminal,
                    hostname: r.hostname,
                    agent_version: r.agent_version,
                    os: r.os,
                }
            })
            .collect(),
        site_id: site_id.to_string(),
    };
    Ok(Json(page))
}

/// `detail` if its JSON fits in `max` bytes, else what says it was left out.
fn within(detail: serde_json::Value, max: usize) -> serde_json::Value {
    let bytes = serde_json::to_vec(&detail).map_or(usize::MAX, |v| v.len());
    if bytes <= max {
        detail
    } else {
        serde_json::json!({ "omitted_bytes": bytes, "why": "larger than its share of history.max_answer_bytes" })
    }
}
