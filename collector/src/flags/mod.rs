//! The flag engine: per-site state derived from stored reports — the flags a NOC acts on, their
//! raise/clear events, the line's prefix history and the guide's diagnosis per terminal.
//!
//! Pure and deterministic: state + report (or the clock, for silence and expiry) in, events out;
//! the committer persists the state and the events in the same batch as the report. Times of
//! report-driven changes are the report's own (`finished_at_ms`), so a spool replayed after an
//! outage tells what happened when, not when it arrived. Must never do I/O or read the clock.
//!
//! Here: the state types, hysteresis, prefix tracking and the site's aggregation; [`verdicts`]:
//! what one report says for each condition flag; [`clock_jobs`]: silence, holds and expiry.

use crate::config::FlagSettings;
use crate::samples;
use crate::small_map::SmallMap;
use oqs_guide::diagnosis::{self, Finding};
pub use oqs_proto::ident::Connection;
use oqs_proto::v1::{HttpTarget, LineAuthState, Outcome, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod clock_jobs;
pub mod verdicts;
use verdicts::page_state;

pub use crate::catalog::Flag;

impl Flag {
    /// Flags judged on each report with hysteresis (the others follow time or transitions).
    pub const CONDITIONS: [Flag; 14] = [
        Flag::LineauthError,
        Flag::LineauthFailed,
        Flag::LineauthSystemError,
        Flag::LineauthUnreachable,
        Flag::LineauthDeclined,
        Flag::LineauthRetryLater,
        Flag::LineauthUnknownPage,
        Flag::ReauthRequired,
        Flag::Ipv6Missing,
        Flag::DnsFailing,
        Flag::CertUntrusted,
        Flag::OqsWebUnreachable,
        Flag::NtpSkew,
        Flag::CertExpiring,
    ];
}

/// How far off a terminal's clock was when the ingest saw it beyond its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSkew {
    /// A report's time this far ahead (`limits.max_clock_ahead_secs`): stamped with the receive
    /// time.
    Ahead(i64),
    /// The stream's Hello this far behind (`limits.max_clock_behind_secs`).
    Behind(i64),
}

/// Hysteresis for one condition flag on one terminal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Consecutive bad reports (capped: steady state writes nothing).
    pub bad: u32,
    /// Consecutive good reports (capped).
    pub good: u32,
    pub raised: bool,
    pub detail: Option<String>,
}

/// What the engine keeps per terminal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminalState {
    pub conditions: SmallMap<Flag, Condition>,
    /// The /64 last seen from preferred global addresses.
    pub prefix: Option<String>,
    pub has_global: Option<bool>,
    /// Preferred global addresses last seen (what a support call asks for).
    pub global_addresses: Vec<String>,
    /// Report times of global-address appearances/disappearances/prefix changes in the window.
    pub transitions_ms: Vec<i64>,
    pub flapping: bool,
    pub silent: bool,
    /// The guide's verdict on the latest report (None: healthy).
    pub finding: Option<Finding>,
    /// When the current failing diagnosis started (report time).
    pub failing_since_ms: Option<i64>,
    /// The portal's state on the latest report (`consent`, `already_authenticated`, …).
    pub lineauth_state: String,
    /// The connection method the latest report was made for (older states: the guide's).
    #[serde(default)]
    pub connection: Connection,
}

/// An entry of the line's prefix history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixChange {
    pub at_ms: i64,
    pub from: Option<String>,
    pub to: String,
    pub terminal: String,
    pub event_id: u64,
}

/// A raised flag of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFlag {
    pub raised_at_ms: i64,
    pub detail: Option<String>,
    /// The event that raised it.
    pub event_id: u64,
}

/// A portal error code seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeSeen {
    pub code: String,
    pub at_ms: i64,
}

/// Everything derived about one site; persisted as JSON under its `S` key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    pub site: String,
    pub terminals: SmallMap<String, TerminalState>,
    pub flags: SmallMap<Flag, ActiveFlag>,
    /// The line's current /64.
    pub prefix: Option<String>,
    /// Newest last, bounded.
    pub prefix_history: Vec<PrefixChange>,
    pub prefix_changes_total: u64,
    /// The portal has shown "authenticated" for this site at least once.
    pub authenticated_seen: bool,
    pub last_code: Option<CodeSeen>,
}

/// A flag raised, cleared, or its detail changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Raised,
    Cleared,
    Updated,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    /// When it happened (report time for report-driven events, the collector's for silence).
    pub at_ms: i64,
    /// When the collector recorded it.
    pub recorded_ms: i64,
    pub site: String,
    pub terminal: Option<String>,
    pub flag: Flag,
    pub action: Action,
    pub detail: Option<String>,
    /// An earlier event this one follows from (re-authentication after a prefix change).
    pub related_event_id: Option<u64>,
}

/// The engine: settings and the next event id (persisted by the committer).
pub struct Engine {
    pub settings: FlagSettings,
    pub next_event_id: u64,
    /// From when this collector could hear agents (its start): no terminal's silence counts from
    /// before it ([`Engine::is_silent`]). 0 in pure uses that know of no start.
    pub heard_from_ms: i64,
}

/// The bounded `detail` label of `cert_expiring` in `oqs_site_flag_detail`, from the days left
/// (the flag's own detail): "7" (a week or less, or expired), "30" (a month or less), "90".
pub fn cert_bucket(days_left: i64) -> &'static str {
    match days_left {
        ..=7 => "7",
        8..=30 => "30",
        _ => "90",
    }
}

/// The details `dns_failing` can carry, in the guide's order (the bounded `detail` label of
/// `oqs_site_flag_detail`): the terminal's own setting, a router that truncates large answers, the
/// router's table, else upstream of the router.
/// `resolver`: a site off the guide's method (`connection` ipv4_pppoe, ipsec) whose terminal's
/// resolver answers an OQS name with no record type; the guide's causes are not told apart there.
pub const DNS_CAUSES: [&str; 5] = [
    "terminal_settings",
    "truncated",
    "router_table",
    "upstream",
    "resolver",
];

impl Engine {
    pub fn new(settings: FlagSettings, next_event_id: u64) -> Self {
        Self {
            settings,
            next_event_id: next_event_id.max(1),
            heard_from_ms: 0,
        }
    }

    /// The bounded label value of a portal code: itself when known, else `other`.
    pub fn code_label<'a>(&'a self, code: &'a str) -> &'a str {
        if self.settings.known_codes.iter().any(|c| c == code) {
            code
        } else {
            "other"
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        site: &str,
        at_ms: i64,
        now_ms: i64,
        flag: Flag,
        action: Action,
        terminal: Option<&str>,
        detail: Option<String>,
    ) -> Event {
        let id = self.next_event_id;
        self.next_event_id += 1;
        Event {
            id,
            at_ms,
            recorded_ms: now_ms,
            site: site.to_owned(),
            terminal: terminal.map(str::to_owned),
            flag,
            action,
            detail,
            related_event_id: None,
        }
    }

    /// Folds one stored report of `terminal` into the site's state.
    pub fn on_report(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        r: &Report,
        now_ms: i64,
    ) -> Vec<Event> {
        self.on_report_with(st, terminal, r, now_ms, None)
    }

    /// [`Engine::on_report`] for a report from a terminal whose clock the ingest saw far off:
    /// `ntp_skew` says how far and what it did about it.
    pub fn on_report_with(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        r: &Report,
        now_ms: i64,
        skew: Option<ClockSkew>,
    ) -> Vec<Event> {
        let at = if r.finished_at_ms > 0 {
            r.finished_at_ms
        } else {
            now_ms
        };
        let site = st.site.clone();
        let mut events = Vec::new();
        let mut verdicts = self.verdicts(st, r);
        match skew {
            Some(ClockSkew::Ahead(ahead)) => {
                verdicts.insert(
                    Flag::NtpSkew,
                    Some(format!(
                        "the terminal's clock is {:.1} h ahead of the collector's: its reports \
                         are stamped with the time they arrived",
                        ahead as f64 / 3_600_000.0
                    )),
                );
            }
            Some(ClockSkew::Behind(behind)) => {
                verdicts.insert(
                    Flag::NtpSkew,
                    Some(format!(
                        "the terminal's clock is {:.1} h behind the collector's (its Hello's \
                         time): its reports and events keep their own times, its history is \
                         drawn corrected by that offset, retention goes by receive time; set the \
                         terminal's time (NTP)",
                        behind as f64 / 3_600_000.0
                    )),
                );
            }
            None => {}
        }
        let cap = self.settings.raise_after.max(self.settings.clear_after);
        let mut ts = st.terminals.remove(terminal).unwrap_or_default();

        // Hysteresis per condition on this terminal.
        for (flag, verdict) in &verdicts {
            // An absent condition is a long-good one: only departures from it are stored.
            let c = ts.conditions.get_or_insert_with(*flag, || Condition {
                good: cap,
                ..Default::default()
            });
            match verdict {
                Some(detail) => {
                    c.bad = (c.bad + 1).min(cap);
                    c.good = 0;
                    if !c.raised && c.bad >= self.settings.raise_after {
                        c.raised = true;
                    }
                    if c.raised {
                        c.detail = Some(detail.clone());
                    }
                }
                None => {
                    c.good = (c.good + 1).min(cap);
                    c.bad = 0;
                    if c.raised && c.good >= self.settings.clear_after {
                        c.raised = false;
                        c.detail = None;
                    }
                }
            }
        }
        ts.conditions
            .retain(|_, c| c.raised || c.bad > 0 || c.good < cap);

        // The line's prefix: a change is a terminal's own prefix moving to one the site does not
        // have yet, so a second terminal following (FAQ Q14) is not a second change.
        let prefix = samples::line_prefix(r);
        let has_global = prefix.is_some();
        let mut changed_to: Option<(Option<String>, String)> = None;
        if let Some(p) = &prefix {
            if ts.prefix.as_ref().is_some_and(|old| old != p) && st.prefix.as_ref() != Some(p) {
                changed_to = Some((st.prefix.clone(), p.clone()));
            }
            if st.prefix.is_none() {
                st.prefix = Some(p.clone());
            }
        }
        let transition = ts.has_global.is_some_and(|g| g != has_global)
            || (prefix.is_some() && ts.prefix.is_some() && prefix != ts.prefix);
        if transition {
            ts.transitions_ms.push(at);
        }
        if let Some(p) = prefix {
            ts.prefix = Some(p);
            ts.global_addresses = samples::global_addresses(r);
        }
        ts.has_global = Some(has_global);

        if let Some((from, to)) = changed_to {
            let detail = format!("{} → {}", from.as_deref().unwrap_or("(none)"), to);
            let action = if st.flags.contains_key(&Flag::PrefixChanged) {
                Action::Updated
            } else {
                Action::Raised
            };
            let ev = self.event(
                &site,
                at,
                now_ms,
                Flag::PrefixChanged,
                action,
                Some(terminal),
                Some(detail.clone()),
            );
            st.prefix_history.push(PrefixChange {
                at_ms: at,
                from,
                to: to.clone(),
                terminal: terminal.to_owned(),
                event_id: ev.id,
            });
            let max = self.settings.prefix_history_max.max(1);
            if st.prefix_history.len() > max {
                let extra = st.prefix_history.len() - max;
                st.prefix_history.drain(..extra);
            }
            st.prefix_changes_total += 1;
            st.prefix = Some(to);
            st.flags.insert(
                Flag::PrefixChanged,
                ActiveFlag {
                    raised_at_ms: at,
                    detail: Some(detail),
                    event_id: ev.id,
                },
            );
            events.push(ev);
        }

        // The portal: remember authentication and the last code.
        if let Some(la) = &r.lineauth {
            let page = page_state(la);
            if matches!(
                page,
                LineAuthState::AlreadyAuthenticated | LineAuthState::Success
            ) {
                st.authenticated_seen = true;
            }
            ts.lineauth_state = oqs_proto::wire_name!(LineAuthState, la.state);
            // Only a new code is remembered (with when it first showed), so a persisting error
            // does not rewrite the state on every report.
            if let Some(Some(code)) = verdicts
                .get(&Flag::LineauthError)
                .filter(|c| c.as_ref() != st.last_code.as_ref().map(|l| &l.code))
            {
                st.last_code = Some(CodeSeen {
                    code: code.clone(),
                    at_ms: at,
                });
            }
        }

        // The guide's tree on this report.
        let url = r
            .lineauth
            .as_ref()
            .map(|l| l.url.as_str())
            .filter(|u| !u.is_empty())
            .unwrap_or(oqs_guide::targets::LINEAUTH_URL);
        let d = diagnosis::diagnose(r, url);
        if d.finding.is_none() {
            ts.failing_since_ms = None;
        } else if ts.finding.is_none() || ts.failing_since_ms.is_none() {
            ts.failing_since_ms = Some(at);
        }
        ts.finding = d.finding;
        ts.connection = d.connection;
        if ts.silent {
            ts.silent = false;
        }
        st.terminals.insert(terminal.to_owned(), ts);

        // How late this report came: from when it was made (by the terminal's clock, corrected
        // by the offset its Hello showed; its arrival when that clock ran ahead), or from when
        // this collector started listening if later — what waited for a collector that was down
        // is not late by its path.
        if self.settings.late_after_secs > 0 {
            let made = match skew {
                Some(ClockSkew::Behind(behind)) => at.saturating_add(behind),
                Some(ClockSkew::Ahead(_)) => now_ms,
                None => at,
            };
            let late_ms = now_ms - made.max(self.heard_from_ms);
            if late_ms > self.settings.late_after_ms() {
                events.extend(self.on_late(st, terminal, late_ms, now_ms));
            }
        }

        self.expire(st, at, now_ms, &mut events);
        self.aggregate(st, at, now_ms, Some(terminal), &mut events);
        events
    }

    /// Site flags from terminal states: raised when any terminal has it.
    fn aggregate(
        &mut self,
        st: &mut SiteState,
        at: i64,
        now_ms: i64,
        terminal: Option<&str>,
        events: &mut Vec<Event>,
    ) {
        let site = st.site.clone();
        let mut per_terminal = Flag::CONDITIONS.to_vec();
        per_terminal.extend([Flag::Flapping, Flag::AgentSilent]);
        for flag in per_terminal {
            // The first terminal that has it, preferring the one that just reported.
            let holder = st
                .terminals
                .iter()
                .filter(|(_, ts)| match flag {
                    Flag::Flapping => ts.flapping,
                    Flag::AgentSilent => ts.silent,
                    f => ts.conditions.get(&f).is_some_and(|c| c.raised),
                })
                .map(|(id, ts)| {
                    let detail = match flag {
                        Flag::Flapping => Some(format!(
                            "{} address changes within {} min",
                            ts.transitions_ms.len(),
                            self.settings.flapping_window_secs / 60
                        )),
                        Flag::AgentSilent => Some(format!("terminal {id} silent")),
                        f => ts.conditions.get(&f).and_then(|c| c.detail.clone()),
                    };
                    (id.clone(), detail)
                })
                .min_by_key(|(id, _)| Some(id.as_str()) != terminal);
            match (holder, st.flags.get(&flag).cloned()) {
                (Some((tid, detail)), None) => {
                    let mut ev = self.event(
                        &site,
                        at,
                        now_ms,
                        flag,
                        Action::Raised,
                        Some(&tid),
                        detail.clone(),
                    );
                    if flag == Flag::ReauthRequired {
                        ev.related_event_id = st
                            .prefix_history
                            .last()
                            .filter(|p| at - p.at_ms <= self.settings.reauth_link_ms())
                            .map(|p| p.event_id);
                        if let Some(p) = st.prefix_history.last() {
                            if ev.related_event_id.is_some() {
                                ev.detail = Some(format!(
                                    "the consent page is shown after the prefix changed to {}",
                                    p.to
                                ));
                            }
                        }
                    }
                    st.flags.insert(
                        flag,
                        ActiveFlag {
                            raised_at_ms: at,
                            detail: ev.detail.clone(),
                            event_id: ev.id,
                        },
                    );
                    events.push(ev);
                }
                (None, Some(active)) => {
                    st.flags.remove(&flag);
                    events.push(self.event(
                        &site,
                        at,
                        now_ms,
                        flag,
                        Action::Cleared,
                        None,
                        active.detail,
                    ));
                }
                (Some((tid, detail)), Some(active))
                    if detail != active.detail
                        && flag != Flag::ReauthRequired
                        && flag != Flag::Flapping =>
                {
                    if let Some(f) = st.flags.get_mut(&flag) {
                        f.detail = detail.clone();
                    }
                    // A measured detail (the NTP offset) moves every round: the flag shows the
                    // latest, but only a change of kind (another code, another cause) is an event.
                    if flag != Flag::NtpSkew {
                        events.push(self.event(
                            &site,
                            at,
                            now_ms,
                            flag,
                            Action::Updated,
                            Some(&tid),
                            detail,
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The site's diagnosis: the earliest failing step among its terminals, and which terminal.
pub fn site_finding(st: &SiteState) -> Option<(&str, Finding, Option<i64>)> {
    st.terminals
        .iter()
        .filter_map(|(id, ts)| ts.finding.map(|f| (id.as_str(), f, ts.failing_since_ms)))
        .min_by_key(|(_, f, _)| diagnosis::verdict(*f).step)
}

#[cfg(test)]
mod tests;
