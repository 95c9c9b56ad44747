//! The committer's second half: for each stored report, the history points, whether the raw report
//! is kept whole, the flag engine's state and events — staged into the same batch as the report —
//! and after the flush, the fleet view and the metrics. Also the periodic jobs that run on the
//! single writer: silence/expiry evaluation and retention.
//!
//! Must never publish or count anything before the batch is durable, and must restore its state
//! when a batch fails (the committer then answers every request of the batch with an error).

use crate::config::{FlagSettings, HistorySettings};
use crate::flags::{Action, Engine, Event, SiteState};
use crate::history;
use crate::incidents::{IncidentBook, IncidentSettings, Incidents, SiteFacts};
use crate::metrics::Metrics;
use crate::samples::{self, Check};
use crate::store::{CommitBatch, Store, StoreError, TerminalKey, TerminalRecord};
use crate::view::FleetView;
use oqs_proto::v1::Report;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One stored report's check results, for the metrics after the flush.
struct CheckMetrics {
    key: TerminalKey,
    checks: Vec<(Check, bool, u32)>,
    code_label: Option<String>,
}

/// What one batch changed, applied after the flush (or undone).
#[derive(Default)]
pub struct Staged {
    sites_before: HashMap<String, Option<Arc<SiteState>>>,
    next_event_id_before: Option<u64>,
    stored: Vec<CheckMetrics>,
    events: Vec<Event>,
    /// The incidents as they were, when this batch changed them.
    incidents_before: Option<Incidents>,
}

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.sites_before.is_empty()
            && self.stored.is_empty()
            && self.events.is_empty()
            && self.incidents_before.is_none()
    }
}

/// When the collector last heard a terminal: its last stored report or its last Hello (a
/// reconnected agent is heard before its next round).
fn last_heard(r: &TerminalRecord) -> i64 {
    r.last_report_at_ms.max(r.last_hello_ms)
}

/// The derived state the single writer owns.
pub struct Derived {
    engine: Engine,
    history: HistorySettings,
    /// Shared with the view: a site's state is one allocation, copied only when it changes.
    sites: HashMap<String, Arc<SiteState>>,
    view: FleetView,
    metrics: Arc<Metrics>,
    maintenance: crate::maintenance::MaintenanceBook,
    incident_settings: IncidentSettings,
    incidents: Incidents,
    incident_book: IncidentBook,
}

impl Derived {
    /// The stored incidents, the rules that open more, and where to publish them. Blocking.
    pub fn with_incidents(
        mut self,
        store: &Store,
        settings: IncidentSettings,
        book: IncidentBook,
    ) -> Result<Self, StoreError> {
        self.incidents = Incidents::new(store.incidents()?);
        self.incident_settings = settings;
        book.publish(self.incidents.list.clone());
        self.incident_book = book;
        Ok(self)
    }

    /// From now on this collector can hear agents (it is about to listen): silence before it is
    /// not the agents' (`Engine::is_silent`), and opens no area-wide incident.
    pub fn listening_from(&mut self, now_ms: i64) {
        self.engine.heard_from_ms = now_ms;
    }

    /// Closed days and windows for the silence check.
    pub fn with_maintenance(mut self, book: crate::maintenance::MaintenanceBook) -> Self {
        self.maintenance = book;
        self
    }

    /// Loads every site's state; fills the view and the state metrics. Blocking.
    pub fn load(
        store: &Store,
        flags: FlagSettings,
        history: HistorySettings,
        view: FleetView,
        metrics: Arc<Metrics>,
        records: &crate::store::Records,
    ) -> Result<Self, StoreError> {
        let engine = Engine::new(flags, store.next_event_id()?);
        let mut sites = HashMap::new();
        for st in store.sites()? {
            sites.insert(st.site.clone(), Arc::new(st));
        }
        let d = Self {
            engine,
            history,
            sites,
            view,
            metrics,
            maintenance: Default::default(),
            incident_settings: IncidentSettings {
                enabled: false,
                ..Default::default()
            },
            incidents: Incidents::default(),
            incident_book: IncidentBook::default(),
        };
        d.metrics
            .fleet
            .set_known_codes(d.engine.settings.known_codes.clone());
        for st in d.sites.values() {
            d.view.publish(st.clone());
        }
        for (k, r) in records {
            if r.last_report_at_ms > 0 {
                d.metrics
                    .fleet
                    .set_last_report(&k.site, &k.terminal, r.last_report_at_ms);
            }
            d.agent_info(k, r);
        }
        Ok(d)
    }

    /// A terminal's agent version and OS for `/metrics`, after its record was stored.
    pub fn agent_info(&self, key: &TerminalKey, rec: &TerminalRecord) {
        if !rec.agent_version.is_empty() || !rec.os.is_empty() {
            self.metrics
                .fleet
                .set_agent(&key.site, &key.terminal, &rec.agent_version, &rec.os);
        }
        if rec.last_hello_ms > 0 {
            let area = crate::api::area_name(rec.area).unwrap_or("");
            self.metrics
                .fleet
                .set_site(&key.site, &rec.site_name, &rec.prefecture, area);
        }
    }

    fn site_mut(&mut self, staged: &mut Staged, site: &str) -> &mut Arc<SiteState> {
        if !staged.sites_before.contains_key(site) {
            staged
                .sites_before
                .insert(site.to_owned(), self.sites.get(site).cloned());
        }
        staged
            .next_event_id_before
            .get_or_insert(self.engine.next_event_id);
        self.sites.entry(site.to_owned()).or_insert_with(|| {
            Arc::new(SiteState {
                site: site.to_owned(),
                ..Default::default()
            })
        })
    }

    /// Stages a newly stored report: raw (whole or elided), history points, site state, events.
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        key: &TerminalKey,
        rec: &mut TerminalRecord,
        seq: u64,
        report: &Report,
        encoded: &[u8],
        now_ms: i64,
        skew: Option<crate::flags::ClockSkew>,
    ) {
        let at = if report.finished_at_ms > 0 {
            report.finished_at_ms
        } else {
            now_ms
        };
        let samples = samples::samples(report);
        let checks: Vec<(Check, bool, u32)> = samples
            .iter()
            .map(|s| (s.check, s.ok, s.latency_ms))
            .collect();
        // A chart drawn by a clock days behind would hide the points from every recent view: the
        // offset the Hello showed puts them back where they happened, and nothing is drawn after
        // it arrived (which also keeps every point's key at or before its receive time, what the
        // retention sweep relies on).
        let point_at = match skew {
            Some(crate::flags::ClockSkew::Behind(behind)) => at.saturating_add(behind),
            _ => at,
        }
        .min(now_ms);
        let points = history::record(rec, samples, point_at, now_ms, self.history.keyframe_ms());
        if points.is_empty() {
            batch.put_elided(key, seq, at, now_ms);
        } else {
            batch.put_report(key, seq, at, now_ms, encoded);
        }
        for (check, p) in &points {
            batch.put_point(key, *check, seq, p);
        }

        let code_label = report
            .lineauth
            .as_ref()
            .filter(|l| !l.error_code.is_empty())
            .map(|l| self.engine.code_label(&l.error_code).to_owned());
        self.apply_to_site(staged, batch, &key.site, |engine, st| {
            engine.on_report_with(st, &key.terminal, report, now_ms, skew)
        });
        staged.stored.push(CheckMetrics {
            key: key.clone(),
            checks,
            code_label,
        });
    }

    /// Stages a terminal-id conflict seen on `key`'s report `seq` (another machine's report under
    /// a stored seq; or, with `above`, a seq never stored below one that is).
    pub fn conflict(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        key: &TerminalKey,
        seq: u64,
        above: Option<u64>,
        now_ms: i64,
    ) {
        self.apply_to_site(staged, batch, &key.site, |engine, st| {
            engine.on_conflict(st, &key.terminal, seq, above, now_ms)
        });
    }

    /// The terminals a site's derived state knows.
    pub fn terminals_of(&self, site: &str) -> impl Iterator<Item = &str> {
        self.sites
            .get(site)
            .into_iter()
            .flat_map(|st| st.terminals.iter().map(|(id, _)| id.as_str()))
    }

    /// Stages that `key`'s report was refused as invalid for `reason`: a terminal the store
    /// knows gets `reports_refused`; one it does not (made-up ids) gets nothing stored.
    pub fn refused(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        key: &TerminalKey,
        reason: &str,
        now_ms: i64,
    ) {
        if !self.sites.contains_key(&key.site) {
            return;
        }
        self.apply_to_site(staged, batch, &key.site, |engine, st| {
            engine.on_refused(st, &key.terminal, reason, now_ms)
        });
    }

    /// Stages that `key`'s agent was acknowledged up to `acked` while the store holds `stored`.
    pub fn lost_reports(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        key: &TerminalKey,
        stored: u64,
        acked: u64,
        now_ms: i64,
    ) {
        self.metrics.store_lost_acked.inc_by(acked - stored);
        // A site the store does not know gets no state from a Hello (made-up ids must not grow
        // it): counted and logged only.
        if !self.sites.contains_key(&key.site) {
            return;
        }
        self.apply_to_site(staged, batch, &key.site, |engine, st| {
            engine.on_lost_reports(st, &key.terminal, stored, acked, now_ms)
        });
    }

    /// Runs `change` (an engine step) on `site`'s state and stages the state and its events.
    fn apply_to_site(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        site: &str,
        change: impl FnOnce(&mut Engine, &mut SiteState) -> Vec<Event>,
    ) {
        let before = self.sites.get(site).cloned();
        let slot = self.site_mut(staged, site);
        // The engine is borrowed mutably alongside one site: take the site out meanwhile (a copy,
        // since the view and `before` still hold the published state).
        let mut st = Arc::unwrap_or_clone(std::mem::take(slot));
        let events = change(&mut self.engine, &mut st);
        if before.as_deref() != Some(&st) {
            batch.put_site(&st);
        }
        self.sites.insert(site.to_owned(), Arc::new(st));
        for e in &events {
            batch.put_event(e);
        }
        if !events.is_empty() {
            batch.put_next_event_id(self.engine.next_event_id);
        }
        staged.events.extend(events);
    }

    /// Stages the time-driven changes of every site.
    pub fn tick(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        records: &crate::store::Records,
        now_ms: i64,
    ) {
        let ids: Vec<String> = self.sites.keys().cloned().collect();
        for site in ids {
            let Some(current) = self.sites.get(&site) else {
                continue;
            };
            // A closed clinic's terminals are off: while it is closed they count as seen now, and
            // after it they get their intervals from the opening.
            let schedule = self.maintenance.get(&site);
            let closed = schedule
                .as_ref()
                .is_some_and(|s| s.in_effect(now_ms).is_some());
            let opened = schedule.as_ref().and_then(|s| s.last_end_before(now_ms));
            let last_seen = |terminal: &str| {
                records
                    .get(&TerminalKey::new(&site, terminal))
                    .filter(|r| r.last_report_at_ms > 0)
                    .map(|r| {
                        let seen = if closed {
                            now_ms
                        } else {
                            last_heard(r).max(opened.unwrap_or(0))
                        };
                        (seen, r.interval_ms)
                    })
            };
            if !self.engine.tick_due(current, now_ms, &last_seen) {
                continue;
            }
            let mut st = SiteState::clone(current);
            let events = self.engine.on_tick(&mut st, now_ms, &last_seen);
            if &st == current.as_ref() {
                continue;
            }
            let slot = self.site_mut(staged, &site);
            *slot = Arc::new(st);
            batch.put_site(slot);
            for e in &events {
                batch.put_event(e);
            }
            if !events.is_empty() {
                batch.put_next_event_id(self.engine.next_event_id);
            }
            staged.events.extend(events);
        }
        self.evaluate_incidents(staged, batch, records, now_ms);
    }

    /// Opens, updates and ends area-wide incidents from the sites' flags as staged so far.
    fn evaluate_incidents(
        &mut self,
        staged: &mut Staged,
        batch: &mut CommitBatch,
        records: &crate::store::Records,
        now_ms: i64,
    ) {
        if !self.incident_settings.enabled && self.incidents.open().next().is_none() {
            return;
        }
        let places = crate::incidents::site_places(records);
        let heard_from = self.engine.heard_from_ms;
        let facts: Vec<SiteFacts> = self
            .sites
            .values()
            .map(|st| {
                let (area, prefecture) = places
                    .get(st.site.as_str())
                    .map_or(("", ""), |(_, place)| *place);
                // Silence that began before this collector could hear anyone (it was down or
                // starting) is the collector's outage, not the area's: CollectorDown pages for it.
                let silence_while_listening = st.terminals.iter().any(|(id, ts)| {
                    ts.silent
                        && records
                            .get(&TerminalKey::new(&st.site, id))
                            .is_some_and(|r| last_heard(r) >= heard_from)
                });
                SiteFacts {
                    site: &st.site,
                    area,
                    prefecture,
                    in_maintenance: self
                        .maintenance
                        .get(&st.site)
                        .is_some_and(|s| s.in_effect(now_ms).is_some()),
                    flags: &st.flags,
                    silence_while_listening,
                }
            })
            .collect();
        let before = self.incidents.clone();
        let changes = self
            .incidents
            .evaluate(&self.incident_settings, &facts, now_ms);
        if changes.is_empty() {
            return;
        }
        staged.incidents_before.get_or_insert(before);
        for i in &changes.put {
            batch.put_incident(i);
        }
        for id in &changes.removed {
            batch.remove_incident(*id);
        }
    }

    /// The batch is durable: publish and count.
    pub fn committed(&mut self, staged: Staged) {
        let m = &self.metrics;
        let now = crate::clock::now_ms();
        for s in &staged.stored {
            let (site, term) = (s.key.site.as_str(), s.key.terminal.as_str());
            m.fleet.record(site, term, &s.checks, now);
            if let Some(code) = &s.code_label {
                m.fleet.count_code(site, code);
            }
        }
        for e in &staged.events {
            let action = match e.action {
                Action::Raised => "raised",
                Action::Cleared => "cleared",
                Action::Updated => "updated",
            };
            m.events.with_label_values(&[e.flag.as_str(), action]).inc();
            tracing::info!(
                site = %e.site,
                flag = e.flag.as_str(),
                action,
                event_id = e.id,
                "flag event"
            );
        }
        for site in staged.sites_before.keys() {
            if let Some(st) = self.sites.get(site) {
                self.view.publish(st.clone());
            }
        }
        if let Some(before) = &staged.incidents_before {
            for i in &self.incidents.list {
                if before.list.iter().all(|b| b != i) {
                    tracing::warn!(
                        incident = i.id,
                        kind = i.kind.as_str(),
                        area = %i.area,
                        prefecture = %i.prefecture,
                        sites = i.sites.len(),
                        open = i.is_open(),
                        "area-wide incident"
                    );
                }
            }
            self.incident_book.publish(self.incidents.list.clone());
        }
    }

    /// The batch failed: forget what it changed.
    pub fn failed(&mut self, staged: Staged) {
        for (site, before) in staged.sites_before {
            match before {
                Some(st) => {
                    self.sites.insert(site, st);
                }
                None => {
                    self.sites.remove(&site);
                }
            }
        }
        if let Some(id) = staged.next_event_id_before {
            self.engine.next_event_id = id;
        }
        if let Some(before) = staged.incidents_before {
            self.incidents = before;
        }
    }

    /// Stages retention: raw reports, history points and events received (by the collector's
    /// clock, never the terminal's) longer ago than their retention, at most `sweep_max_deletes`
    /// keys. Returns how many keys it deletes.
    pub fn sweep(
        &mut self,
        store: &Store,
        batch: &mut CommitBatch,
        records: &mut crate::store::Records,
        dirty: &mut HashSet<TerminalKey>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut budget = self.history.sweep_max_deletes;
        let raw_cutoff = now_ms - self.history.raw_retention_ms();
        let hist_cutoff = now_ms - self.history.history_retention_ms();
        let mut deleted = 0;
        for (key, rec) in records.iter_mut() {
            if budget == 0 {
                break;
            }
            let mut newest_pruned = None;
            store.report_times(key, |seq, at| {
                // Never delete the newest report: it answers "what did this terminal last say".
                if budget == 0 || at >= raw_cutoff || seq >= rec.last_seq {
                    return false;
                }
                batch.remove(&key.report_key(seq));
                newest_pruned = Some(seq);
                budget -= 1;
                deleted += 1;
                true
            })?;
            if let Some(seq) = newest_pruned {
                rec.pruned_through_seq = rec.pruned_through_seq.max(seq);
                dirty.insert(key.clone());
            }
            for check in Check::ALL {
                if budget == 0 {
                    break;
                }
                for k in store.history_keys_before(key, check, hist_cutoff, budget)? {
                    batch.remove(&k);
                    budget -= 1;
                    deleted += 1;
                }
            }
        }
        if budget > 0 {
            let cutoff = now_ms - self.history.event_retention_ms();
            for k in store.event_keys_before(cutoff, budget.div_ceil(2))? {
                batch.remove(&k);
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
