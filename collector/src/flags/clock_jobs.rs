//! What the engine does on the collector's clock rather than on a report: silence, the holds of
//! `prefix_changed`, `terminal_id_conflict` and `store_lost_reports`, and their expiry.
//!
//! Pure: the time is an argument, never read here.

use super::*;

impl Engine {
    /// Whether [`Engine::on_tick`] would change anything: a cheap look, so that a tick over
    /// thousands of quiet sites copies none of them.
    pub fn tick_due(
        &self,
        st: &SiteState,
        now_ms: i64,
        last_seen: &dyn Fn(&str) -> Option<(i64, i64)>,
    ) -> bool {
        let window = self.settings.flapping_window_ms();
        st.terminals.iter().any(|(id, ts)| {
            let silent = last_seen(id).map(|(seen_ms, interval_ms)| {
                self.is_silent(ts.silent, seen_ms, interval_ms, now_ms)
            });
            silent.is_some_and(|s| s != ts.silent)
                || ts.transitions_ms.iter().any(|t| now_ms - *t > window)
        }) || st
            .flags
            .get(&Flag::PrefixChanged)
            .is_some_and(|f| now_ms - f.raised_at_ms >= self.settings.prefix_changed_hold_ms())
            || self.held().iter().any(|(flag, hold)| {
                *flag != Flag::PrefixChanged
                    && st
                        .flags
                        .get(flag)
                        .is_some_and(|f| now_ms - f.raised_at_ms >= *hold)
            })
    }

    /// Whether a terminal last heard at `seen_ms` (a report or a Hello, by the collector's clock)
    /// is silent at `now_ms`: nothing for `silent_intervals` of its interval, counted from when it
    /// was last heard or from when this collector could first hear it again
    /// ([`Engine::heard_from_ms`], its start), whichever is later — a terminal cannot be heard by
    /// a collector that is down or starting, and its agent needs a moment to reconnect. One
    /// already silent stays silent until it is heard: a restart is not a recovery.
    pub fn is_silent(&self, was_silent: bool, seen_ms: i64, interval_ms: i64, now_ms: i64) -> bool {
        let intervals = i64::from(self.settings.silent_intervals.max(1));
        let interval = if interval_ms > 0 {
            interval_ms
        } else {
            self.settings.default_interval_ms()
        };
        let from = if was_silent {
            seen_ms
        } else {
            seen_ms.max(self.heard_from_ms)
        };
        now_ms - from > intervals.saturating_mul(interval)
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
        for (id, ts) in st.terminals.iter_mut() {
            if let Some((seen_ms, interval_ms)) = last_seen(id) {
                ts.silent = self.is_silent(ts.silent, seen_ms, interval_ms, now_ms);
            }
        }
        self.expire(st, now_ms, now_ms, &mut events);
        self.aggregate(st, now_ms, now_ms, None, &mut events);
        events
    }

    /// A different report arrived under `terminal`'s stored `seq`, or (`above`) a seq never
    /// stored arrived below the stored `above`: another machine uses its ids.
    pub fn on_conflict(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        seq: u64,
        above: Option<u64>,
        now_ms: i64,
    ) -> Vec<Event> {
        let detail = match above {
            None => format!(
                "{terminal}: seq {seq} arrived with another report than the one stored: two \
                 machines report as this terminal"
            ),
            Some(last) => format!(
                "{terminal}: seq {seq} arrived below seq {last}, which another writer stored: \
                 two machines report as this terminal"
            ),
        };
        self.hold(st, Flag::TerminalIdConflict, terminal, detail, now_ms)
    }

    /// The collector refused `terminal`'s report as invalid for `reason`. Renewed without an
    /// event while the reason stays the same (an agent tries a refused report again later, and
    /// the same refusal must not fill the event log).
    pub fn on_refused(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        reason: &str,
        now_ms: i64,
    ) -> Vec<Event> {
        let detail = verdicts::bounded(&format!("{terminal}: {reason}"), 160);
        if let Some(f) = st.flags.get_mut(&Flag::ReportsRefused) {
            if f.detail.as_deref() == Some(detail.as_str()) {
                f.raised_at_ms = now_ms;
                return Vec::new();
            }
        }
        self.hold(st, Flag::ReportsRefused, terminal, detail, now_ms)
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

    /// `terminal`'s report arrived `late_ms` after it was made: `reports_late`, held
    /// `late_hold_secs` after the last late report. Renewed without an event while raised: a
    /// replay of hours brings hundreds of late reports, and one event says it.
    pub fn on_late(
        &mut self,
        st: &mut SiteState,
        terminal: &str,
        late_ms: i64,
        now_ms: i64,
    ) -> Vec<Event> {
        if let Some(f) = st.flags.get_mut(&Flag::ReportsLate) {
            f.raised_at_ms = now_ms;
            return Vec::new();
        }
        let detail = format!(
            "{terminal}: reports arrive up to {} after they were made: the terminal's way to the \
             collector (proxy, relay PC, network) was cut or is slow; the agent kept them",
            verdicts::duration_text(late_ms)
        );
        self.hold(st, Flag::ReportsLate, terminal, detail, now_ms)
    }

    /// The flags held for a time after they were last raised, and for how long.
    fn held(&self) -> [(Flag, i64); 5] {
        [
            (Flag::PrefixChanged, self.settings.prefix_changed_hold_ms()),
            (Flag::TerminalIdConflict, self.settings.conflict_hold_ms()),
            (Flag::StoreLostReports, self.settings.conflict_hold_ms()),
            (Flag::ReportsRefused, self.settings.conflict_hold_ms()),
            (Flag::ReportsLate, self.settings.late_hold_ms()),
        ]
    }

    /// Raises (or renews) a flag held on the collector's clock.
    pub(super) fn hold(
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
    pub(super) fn expire(
        &mut self,
        st: &mut SiteState,
        at: i64,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) {
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
        for (flag, hold) in self.held() {
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
}
