//! The flag engine: per-site state derived from stored reports — the flags a NOC acts on, their
//! raise/clear events, the line's prefix history and the guide's diagnosis per terminal.
//!
//! Pure and deterministic: state + report (or the clock, for silence and expiry) in, events out;
//! the committer persists the state and the events in the same batch as the report. Times of
//! report-driven changes are the report's own (`finished_at_ms`), so a spool replayed after an
//! outage tells what happened when, not when it arrived. Must never do I/O or read the clock.

use crate::config::FlagSettings;
use crate::samples;
use crate::small_map::SmallMap;
use oqs_guide::diagnosis::{self, Finding};
use oqs_proto::v1::{HttpTarget, LineAuthState, Outcome, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::catalog::Flag;

impl Flag {
    /// Flags judged on each report with hysteresis (the others follow time or transitions).
    const CONDITIONS: [Flag; 13] = [
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
    ];
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
}

/// The details `dns_failing` can carry, in the guide's order (the bounded `detail` label of
/// `oqs_site_flag_detail`): the terminal's own setting, a router that truncates large answers, the
/// router's table, else upstream of the router.
pub const DNS_CAUSES: [&str; 4] = ["terminal_settings", "truncated", "router_table", "upstream"];

/// At most this many characters of a page excerpt or probe error go into a flag's detail.
const DETAIL_CHARS: usize = 160;

/// `text` cut to `max` characters (never inside one), with an ellipsis when cut.
fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A condition flag's verdict on one report: `Some(detail)` when bad.
type Verdicts = BTreeMap<Flag, Option<String>>;

fn ok(o: i32) -> bool {
    o == Outcome::Ok as i32
}

/// The page state the portal showed: the verified one, or when the certificate is untrusted, the
/// one read without verification.
fn page_state(la: &oqs_proto::v1::LineAuthProbe) -> LineAuthState {
    let s = LineAuthState::try_from(la.state).unwrap_or(LineAuthState::Unspecified);
    if s == LineAuthState::CertUntrusted {
        LineAuthState::try_from(la.unverified_page_state).unwrap_or(LineAuthState::Unspecified)
    } else {
        s
    }
}

impl Engine {
    pub fn new(settings: FlagSettings, next_event_id: u64) -> Self {
        Self {
            settings,
            next_event_id: next_event_id.max(1),
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

    /// Each condition flag's verdict on one report.
    fn verdicts(&self, st: &SiteState, r: &Report) -> Verdicts {
        let mut v: Verdicts = Flag::CONDITIONS.iter().map(|f| (*f, None)).collect();
        let ipv6_ok = r.ipv6.as_ref().is_none_or(|s| ok(s.outcome));
        if let Some(s) = r.ipv6.as_ref().filter(|s| !ok(s.outcome)) {
            let why = if s.error.is_empty() {
                "no global IPv6 address or default route".to_owned()
            } else {
                s.error.clone()
            };
            v.insert(Flag::Ipv6Missing, Some(why));
        }
        // DNS follows IPv6: without it every query fails, and that is one problem, not two. Every
        // name counts, the NGN one too (a router table without the flets-* entry).
        let system: Vec<_> = r
            .dns
            .iter()
            .filter(|p| {
                p.record_type == oqs_proto::v1::RecordType::Aaaa as i32 && samples::is_system(p)
            })
            .collect();
        let dns_bad = ipv6_ok && system.iter().any(|p| !ok(p.outcome));
        let ipv6_up = r.ipv6.as_ref().is_some_and(|s| ok(s.outcome));
        let system_resolves = !system.is_empty() && system.iter().all(|p| ok(p.outcome));
        if dns_bad {
            // The guide's own order (oqs_guide::diagnosis::dns_verdict): the terminal's setting,
            // then the router's table, else upstream of the router.
            let cause = match diagnosis::dns_verdict(r, true) {
                Some(Finding::DnsSettings) => DNS_CAUSES[0],
                Some(Finding::DnsTruncated) => DNS_CAUSES[1],
                Some(Finding::RouterDnsTable) => DNS_CAUSES[2],
                _ => DNS_CAUSES[3],
            };
            v.insert(Flag::DnsFailing, Some(cause.to_owned()));
        }
        if let Some(la) = &r.lineauth {
            let page = page_state(la);
            let code = if !la.error_code.is_empty() {
                Some(la.error_code.clone())
            } else {
                match page {
                    LineAuthState::IneligibleLine => Some("P11019".to_owned()),
                    LineAuthState::NoResponse => Some("P32031".to_owned()),
                    _ => None,
                }
            };
            let portal_flag = match page {
                LineAuthState::Failed => {
                    Some((Flag::LineauthFailed, "回線認証に失敗しました".into()))
                }
                LineAuthState::SystemError => Some((
                    Flag::LineauthSystemError,
                    "システムエラーが発生しました".into(),
                )),
                LineAuthState::Declined => Some((Flag::LineauthDeclined, "declined".into())),
                LineAuthState::NotFromPortal => {
                    Some((Flag::LineauthDeclined, "not_from_portal".into()))
                }
                LineAuthState::RetryLater => Some((
                    Flag::LineauthRetryLater,
                    "時間を置いて再度試してください".into(),
                )),
                LineAuthState::UnknownPage if code.is_none() => Some((
                    Flag::LineauthUnknownPage,
                    bounded(&la.excerpt, DETAIL_CHARS),
                )),
                // No page: the portal's own problem only when the way to it works (IPv6 up, the
                // OQS names resolving); otherwise that is the flag, not this one.
                LineAuthState::Unreachable if ipv6_up && system_resolves && !dns_bad => {
                    Some((Flag::LineauthUnreachable, bounded(&la.error, DETAIL_CHARS)))
                }
                _ => None,
            };
            if let Some((flag, detail)) = portal_flag {
                v.insert(flag, Some(detail));
            }
            if code.is_some() {
                v.insert(Flag::LineauthError, code);
            }
            if la.state == LineAuthState::CertUntrusted as i32 {
                let problem = oqs_proto::v1::CertProblem::try_from(la.cert_problem)
                    .unwrap_or(oqs_proto::v1::CertProblem::Unspecified);
                let detail = oqs_guide::diagnosis::cert_problem_text(problem);
                v.insert(Flag::CertUntrusted, Some(detail.to_owned()));
            }
            if page == LineAuthState::Consent && st.authenticated_seen {
                v.insert(
                    Flag::ReauthRequired,
                    Some("the consent page is shown".into()),
                );
            }
        }
        if ipv6_ok && !dns_bad {
            let down: Vec<String> = r
                .http
                .iter()
                .filter(|h| {
                    h.target == HttpTarget::OqsWebProduction as i32
                        || h.target == HttpTarget::OqsWebVerification as i32
                })
                .filter(|h| !ok(h.outcome))
                .map(|h| oqs_proto::wire_name!(HttpTarget, h.target))
                .collect();
            if !down.is_empty() {
                v.insert(Flag::OqsWebUnreachable, Some(down.join(",")));
            }
        }
        let limit_us = i64::try_from(self.settings.ntp_skew_ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        if let Some(n) = r
            .ntp
            .iter()
            .find(|n| ok(n.outcome) && n.offset_us.saturating_abs() > limit_us)
        {
            v.insert(
                Flag::NtpSkew,
                Some(format!("offset {:+} ms", n.offset_us / 1000)),
            );
        }
        v
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

    /// [`Engine::on_report`] for a report that arrived `clock_ahead_ms` ahead of the collector's
    /// clock (and was stamped with the receive time): `ntp_skew` says so.
    pub fn on_report_with(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        r: &Report,
        now_ms: i64,
        clock_ahead_ms: Option<i64>,
    ) -> Vec<Event> {
        let at = if r.finished_at_ms > 0 {
            r.finished_at_ms
        } else {
            now_ms
        };
        let site = st.site.clone();
        let mut events = Vec::new();
        let mut verdicts = self.verdicts(st, r);
        if let Some(ahead) = clock_ahead_ms {
            verdicts.insert(
                Flag::NtpSkew,
                Some(format!(
                    "the terminal's clock is {:.1} h ahead of the collector's: its reports are \
                     stamped with the time they arrived",
                    ahead as f64 / 3_600_000.0
                )),
            );
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
        if ts.silent {
            ts.silent = false;
        }
        st.terminals.insert(terminal.to_owned(), ts);

        self.expire(st, at, now_ms, &mut events);
        self.aggregate(st, at, now_ms, Some(terminal), &mut events);
        events
    }

    /// Whether [`Engine::on_tick`] would change anything: a cheap look, so that a tick over
    /// thousands of quiet sites copies none of them.
    pub fn tick_due(
        &self,
        st: &SiteState,
        now_ms: i64,
        last_seen: &dyn Fn(&str) -> Option<(i64, i64)>,
    ) -> bool {
        let intervals = i64::from(self.settings.silent_intervals.max(1));
        let default_ms = self.settings.default_interval_ms();
        let window = self.settings.flapping_window_ms();
        st.terminals.iter().any(|(id, ts)| {
            let silent = last_seen(id).map(|(seen_ms, interval_ms)| {
                let interval = if interval_ms > 0 {
                    interval_ms
                } else {
                    default_ms
                };
                now_ms - seen_ms > intervals * interval
            });
            silent.is_some_and(|s| s != ts.silent)
                || ts.transitions_ms.iter().any(|t| now_ms - *t > window)
        }) || st
            .flags
            .get(&Flag::PrefixChanged)
            .is_some_and(|f| now_ms - f.raised_at_ms >= self.settings.prefix_changed_hold_ms())
            || [Flag::TerminalIdConflict, Flag::StoreLostReports]
                .iter()
                .any(|flag| {
                    st.flags.get(flag).is_some_and(|f| {
                        now_ms - f.raised_at_ms >= self.settings.conflict_hold_ms()
                    })
                })
    }

    /// Time-driven changes: silence (the collector's clock against each terminal's last report),
    /// prefix-change hold and flapping windows. `last_seen` gives each terminal's last stored
    /// report (collector time) and its interval estimate.
    pub fn on_tick(
        &mut self,
        st: &mut SiteState,
        now_ms: i64,
        last_seen: &dyn Fn(&str) -> Option<(i64, i64)>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let intervals = i64::from(self.settings.silent_intervals.max(1));
        let default_ms = self.settings.default_interval_ms();
        for (id, ts) in st.terminals.iter_mut() {
            if let Some((seen_ms, interval_ms)) = last_seen(id) {
                let interval = if interval_ms > 0 {
                    interval_ms
                } else {
                    default_ms
                };
                ts.silent = now_ms - seen_ms > intervals * interval;
            }
        }
        self.expire(st, now_ms, now_ms, &mut events);
        self.aggregate(st, now_ms, now_ms, None, &mut events);
        events
    }

    /// A different report arrived under `terminal`'s stored `seq`: another machine uses its ids.
    pub fn on_conflict(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        seq: u64,
        now_ms: i64,
    ) -> Vec<Event> {
        let detail = format!(
            "{terminal}: seq {seq} arrived with another report than the one stored: two machines \
             report as this terminal"
        );
        self.hold(st, Flag::TerminalIdConflict, terminal, detail, now_ms)
    }

    /// `terminal`'s agent was acknowledged up to `acked` but the store holds up to `stored`.
    pub fn on_lost_reports(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        stored: u64,
        acked: u64,
        now_ms: i64,
    ) -> Vec<Event> {
        let detail = format!(
            "{terminal}: the agent was acknowledged up to seq {acked}, the store holds up to \
             {stored}: {} acknowledged reports lost",
            acked - stored
        );
        self.hold(st, Flag::StoreLostReports, terminal, detail, now_ms)
    }

    /// Raises (or renews) a flag held for `conflict_hold_secs` on the collector's clock.
    fn hold(
        &mut self,
        st: &mut SiteState,
        flag: Flag,
        terminal: &str,
        detail: String,
        now_ms: i64,
    ) -> Vec<Event> {
        let action = if st.flags.contains_key(&flag) {
            Action::Updated
        } else {
            Action::Raised
        };
        let site = st.site.clone();
        let ev = self.event(
            &site,
            now_ms,
            now_ms,
            flag,
            action,
            Some(terminal),
            Some(detail.clone()),
        );
        st.flags.insert(
            flag,
            ActiveFlag {
                raised_at_ms: now_ms,
                detail: Some(detail),
                event_id: ev.id,
            },
        );
        vec![ev]
    }

    /// Ages out prefix-change and id-conflict holds and flapping windows.
    fn expire(&mut self, st: &mut SiteState, at: i64, now_ms: i64, events: &mut Vec<Event>) {
        let window = self.settings.flapping_window_ms();
        for ts in st.terminals.values_mut() {
            ts.transitions_ms.retain(|t| at - *t <= window);
            let n = ts.transitions_ms.len();
            if n >= self.settings.flapping_transitions.max(1) as usize {
                ts.flapping = true;
            } else if n == 0 {
                ts.flapping = false;
            }
        }
        for (flag, hold) in [
            (Flag::PrefixChanged, self.settings.prefix_changed_hold_ms()),
            (Flag::TerminalIdConflict, self.settings.conflict_hold_ms()),
            (Flag::StoreLostReports, self.settings.conflict_hold_ms()),
        ] {
            if let Some(f) = st.flags.get(&flag) {
                // Held flags are timed by the collector's clock (they have no report time).
                let t = if flag != Flag::PrefixChanged {
                    now_ms
                } else {
                    at
                };
                if t - f.raised_at_ms >= hold {
                    let detail = f.detail.clone();
                    st.flags.remove(&flag);
                    let site = st.site.clone();
                    events.push(self.event(&site, t, now_ms, flag, Action::Cleared, None, detail));
                }
            }
        }
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
mod tests {
    use super::*;
    use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};

    fn engine() -> Engine {
        Engine::new(FlagSettings::default(), 1)
    }

    /// Runs `rounds` reports of a scenario through the engine, one minute apart.
    fn run(sc: Scenario, rounds: u64) -> (SiteState, Vec<Event>) {
        let site = SiteProfile::new(0, "s", sc, 1);
        let mut e = engine();
        let mut st = SiteState {
            site: site.site_id.clone(),
            ..Default::default()
        };
        let mut events = Vec::new();
        for round in 0..rounds {
            let t = 1_000_000 + round as i64 * 60_000;
            let r = report(&site, 0, round, round + 1, t);
            events.extend(e.on_report(&mut st, "pc-1", &r, t));
        }
        (st, events)
    }

    fn flags(st: &SiteState) -> Vec<Flag> {
        st.flags.keys().copied().collect()
    }

    #[test]
    fn an_id_conflict_is_held_then_clears_on_the_collectors_clock() {
        let mut e = engine();
        let mut st = SiteState {
            site: "s".into(),
            ..Default::default()
        };
        let t0 = 10_000_000;
        let ev = e.on_conflict(&mut st, "pc-1", 42, t0);
        assert_eq!(ev[0].action, Action::Raised);
        assert!(ev[0].detail.as_deref().unwrap().contains("seq 42"));
        assert_eq!(flags(&st), [Flag::TerminalIdConflict]);
        let hold = e.settings.conflict_hold_ms();
        let none = |_: &str| None;
        assert!(!e.tick_due(&st, t0 + hold - 1, &none));
        assert!(e.on_tick(&mut st, t0 + hold - 1, &none).is_empty());
        assert!(e.tick_due(&st, t0 + hold, &none));
        let ev = e.on_tick(&mut st, t0 + hold, &none);
        assert_eq!(ev[0].action, Action::Cleared);
        assert!(st.flags.is_empty());
    }

    #[test]
    fn healthy_raises_nothing() {
        let (st, events) = run(Scenario::Healthy, 6);
        assert!(events.is_empty(), "{events:?}");
        assert!(st.flags.is_empty());
        assert!(st.authenticated_seen);
        assert_eq!(site_finding(&st), None);
    }

    #[test]
    fn p11019_raises_lineauth_error_with_its_code_after_two_reports() {
        let (st, _) = run(Scenario::P11019, 1);
        assert!(st.flags.is_empty(), "one report is not enough (hysteresis)");
        let (st, events) = run(Scenario::P11019, 3);
        assert_eq!(
            flags(&st),
            vec![Flag::LineauthError, Flag::OqsWebUnreachable]
        );
        assert_eq!(
            st.flags[&Flag::LineauthError].detail.as_deref(),
            Some("P11019")
        );
        assert_eq!(events.len(), 2);
        assert_eq!(site_finding(&st).unwrap().1, Finding::IneligibleLine);
        assert_eq!(st.last_code.as_ref().unwrap().code, "P11019");
    }

    #[test]
    fn dns_table_is_told_apart_from_upstream() {
        let (st, _) = run(Scenario::DnsTable, 3);
        assert_eq!(flags(&st), vec![Flag::DnsFailing]);
        assert_eq!(
            st.flags[&Flag::DnsFailing].detail.as_deref(),
            Some("router_table")
        );
        assert_eq!(site_finding(&st).unwrap().1, Finding::RouterDnsTable);
    }

    #[test]
    fn ipv6_missing_is_one_flag_not_a_cascade() {
        let (st, _) = run(Scenario::Ipv6Missing, 3);
        assert_eq!(flags(&st), vec![Flag::Ipv6Missing]);
        assert_eq!(site_finding(&st).unwrap().1, Finding::Ipv6Missing);
    }

    #[test]
    fn prefix_change_then_reauth_linked_to_it() {
        let (st, events) = run(Scenario::PrefixChange, 4);
        assert_eq!(flags(&st), vec![Flag::ReauthRequired, Flag::PrefixChanged]);
        assert_eq!(st.prefix_history.len(), 1);
        assert_eq!(st.prefix_changes_total, 1);
        let change = events
            .iter()
            .find(|e| e.flag == Flag::PrefixChanged)
            .unwrap();
        let reauth = events
            .iter()
            .find(|e| e.flag == Flag::ReauthRequired)
            .unwrap();
        assert_eq!(reauth.related_event_id, Some(change.id));
        assert!(reauth.at_ms > change.at_ms);
        assert_eq!(site_finding(&st).unwrap().1, Finding::ReauthRequired);
    }

    #[test]
    fn consent_without_prior_authentication_is_not_reauth() {
        // A site whose first ever page is the consent page is a new installation.
        let site = SiteProfile::new(0, "s", Scenario::Consent, 1);
        let mut e = engine();
        let mut st = SiteState::default();
        for round in 1..5 {
            let r = report(&site, 0, round, round, round as i64 * 60_000);
            e.on_report(&mut st, "pc-1", &r, 0);
        }
        assert!(!st.flags.contains_key(&Flag::ReauthRequired));
        let (st, _) = run(Scenario::Consent, 4);
        assert!(st.flags.contains_key(&Flag::ReauthRequired));
    }

    #[test]
    fn flapping_raises_flapping_and_not_ipv6_missing() {
        let (st, _) = run(Scenario::Flapping, 4);
        assert_eq!(flags(&st), vec![Flag::Flapping]);
    }

    #[test]
    fn flags_clear_when_the_condition_ends_and_prefix_hold_expires() {
        let sick = SiteProfile::new(0, "s", Scenario::P11019, 1);
        let well = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let mut e = engine();
        let mut st = SiteState::default();
        let mut t = 0;
        let mut all = Vec::new();
        for round in 0..3 {
            t += 60_000;
            all.extend(e.on_report(&mut st, "pc", &report(&sick, 0, round, round + 1, t), t));
        }
        assert!(st.flags.contains_key(&Flag::LineauthError));
        t += 60_000;
        all.extend(e.on_report(&mut st, "pc", &report(&well, 0, 3, 4, t), t));
        assert!(
            st.flags.contains_key(&Flag::LineauthError),
            "one good report is not enough (hysteresis)"
        );
        t += 60_000;
        all.extend(e.on_report(&mut st, "pc", &report(&well, 0, 4, 5, t), t));
        assert!(st.flags.is_empty(), "{:?}", st.flags);
        assert_eq!(
            all.iter()
                .filter(|e| e.action == Action::Cleared)
                .map(|e| e.flag)
                .collect::<Vec<_>>(),
            vec![Flag::LineauthError, Flag::OqsWebUnreachable]
        );
        assert_eq!(site_finding(&st), None);

        let (mut st, _) = run(Scenario::PrefixChange, 4);
        let raised = st.flags[&Flag::PrefixChanged].raised_at_ms;
        let hold = e.settings.prefix_changed_hold_ms();
        let evs = e.on_tick(&mut st, raised + hold - 1, &|_| None);
        assert!(evs.is_empty());
        let evs = e.on_tick(&mut st, raised + hold, &|_| None);
        assert_eq!(evs.len(), 1);
        assert_eq!(
            (evs[0].flag, evs[0].action),
            (Flag::PrefixChanged, Action::Cleared)
        );
    }

    #[test]
    fn silence_is_judged_on_the_interval_and_cleared_by_a_report() {
        let (mut st, _) = run(Scenario::Healthy, 2);
        let mut e = engine();
        // Last seen at 0, reporting every 60 s: silent after 3 intervals.
        let seen = |_: &str| Some((0_i64, 60_000_i64));
        assert!(e.on_tick(&mut st, 180_000, &seen).is_empty());
        let evs = e.on_tick(&mut st, 180_001, &seen);
        assert_eq!(
            (evs[0].flag, evs[0].action),
            (Flag::AgentSilent, Action::Raised)
        );
        let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let evs = e.on_report(&mut st, "pc-1", &report(&site, 0, 9, 9, 200_000), 200_000);
        assert_eq!(
            (evs[0].flag, evs[0].action),
            (Flag::AgentSilent, Action::Cleared)
        );
    }

    #[test]
    fn a_second_terminal_following_the_change_is_not_a_second_change() {
        let site = SiteProfile::new(0, "s", Scenario::PrefixChange, 2);
        let mut e = engine();
        let mut st = SiteState::default();
        for round in 0..4 {
            for term in 0..2 {
                let t = 1_000 + round as i64 * 60_000 + term as i64;
                let r = report(&site, term, round, round + 1, t);
                e.on_report(&mut st, &format!("pc-{term}"), &r, t);
            }
        }
        assert_eq!(st.prefix_changes_total, 1);
    }

    #[test]
    fn steady_state_does_not_change_the_state() {
        let (mut st, _) = run(Scenario::Healthy, 5);
        let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let before = st.clone();
        let mut e = engine();
        e.on_report(&mut st, "pc-1", &report(&site, 0, 6, 7, 10_000_000), 0);
        assert_eq!(st, before);
        let (mut st, _) = run(Scenario::P11019, 5);
        let before = st.clone();
        let sick = SiteProfile::new(0, "s", Scenario::P11019, 1);
        e.on_report(&mut st, "pc-1", &report(&sick, 0, 6, 7, 10_000_000), 0);
        assert_eq!(
            st.flags, before.flags,
            "a persisting condition writes nothing new"
        );
    }
}
