//! Group commit: the single writer of the store. Streams hand it reports; it writes whatever has
//! queued up as one atomic batch, flushes once, and only then answers each request — so an `Ack`
//! always means "on disk", and one fsync serves hundreds of reports under load.
//!
//! Being the only writer is what makes duplicate and order checks race-free: the per-terminal
//! `last_seq` it keeps in memory is the truth. Must never answer before the flush returns, and
//! never write a report whose (site, terminal, seq) is already stored.

use crate::config::{FlagSettings, HistorySettings};
use crate::derived::{Derived, Staged};
use crate::metrics::Metrics;
use crate::store::{CommitBatch, Store, StoreError, TerminalKey, TerminalRecord};
use crate::validate::AgentIdentity;
use crate::view::FleetView;
use oqs_proto::v1::Report;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What happened to one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written and flushed.
    Stored,
    /// Already stored before; nothing written.
    Duplicate,
    /// The seq is further above the stored one than `limits.max_seq_jump`: a damaged counter.
    /// Nothing written; the agent renumbers from the stored seq.
    SeqJump { last_seq: u64 },
    /// The terminal (or its site) stored its day's budget of bytes
    /// (`limits.max_stored_bytes_per_*_per_day`): nothing written, refused until `until_ms`
    /// (the agent keeps the report); the site is flagged `reports_refused`.
    OverBudget {
        setting: &'static str,
        until_ms: i64,
    },
    /// The data directory's filesystem is down to its reserve (`store.reserve_*`): nothing
    /// written, refused for now (the agent keeps the report).
    NoRoom { available: u64, reserve: u64 },
    /// A different report is stored under this seq, or the seq was never stored while a higher
    /// one is (another writer jumped ahead): another machine reports with the same site and
    /// terminal ids. Nothing written; the site is flagged `terminal_id_conflict`; the agent keeps
    /// its report (and sends it again above the other's seqs).
    Conflict,
}

/// Why a commit failed: the store could not write. Nothing of the batch was acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the store could not write: {0}")]
pub struct CommitError(String);

/// A report to store.
pub struct ReportCommit {
    pub key: TerminalKey,
    pub seq: u64,
    pub finished_at_ms: i64,
    pub spool_dropped_total: u64,
    /// The report exactly as received, protobuf-encoded.
    pub encoded: Vec<u8>,
    /// The same, decoded (the flag engine and the history read it).
    pub report: Report,
    /// With a stream's first report: its Hello's identity, for a terminal the Hello did not
    /// record (a Hello alone writes nothing for a terminal that never stored a report).
    pub ident: Option<Box<AgentIdentity>>,
    /// How far the report's own time was ahead of the collector's when it arrived, when more than
    /// `limits.max_clock_ahead_secs`: `report` and `encoded` then carry the receive time, and the
    /// terminal's clock is flagged.
    pub clock_ahead_ms: Option<i64>,
    /// How far the terminal's clock was behind the collector's at the stream's Hello, when more
    /// than `limits.max_clock_behind_secs`: the report keeps its times (they may be a replay's),
    /// and the terminal's clock is flagged.
    pub clock_behind_ms: Option<i64>,
}

impl ReportCommit {
    /// A report as received for `key`, its bytes encoded once; `ident` with a stream's first
    /// report (see the field). No clock skew: the ingest sets that when it sees one.
    pub fn new(
        key: &TerminalKey,
        report: Report,
        ident: Option<Box<AgentIdentity>>,
    ) -> ReportCommit {
        ReportCommit {
            key: key.clone(),
            seq: report.seq,
            finished_at_ms: report.finished_at_ms,
            spool_dropped_total: report.spool_dropped_total,
            encoded: prost::Message::encode_to_vec(&report),
            report,
            ident,
            clock_ahead_ms: None,
            clock_behind_ms: None,
        }
    }
}

/// What a Hello says about the terminal, onto its record.
fn apply_identity(rec: &mut TerminalRecord, ident: &AgentIdentity, now: i64) {
    if rec.first_seen_ms == 0 {
        rec.first_seen_ms = now;
    }
    rec.last_hello_ms = now;
    rec.hostname = ident.hostname.clone();
    rec.agent_version = ident.agent_version.clone();
    rec.os = ident.os.clone();
    rec.boot_id = ident.boot_id.clone();
    rec.prefecture = ident.prefecture.clone().unwrap_or_default();
    rec.site_name = ident.site_name.clone().unwrap_or_default();
    rec.area = ident.area.to_wire() as i32;
    rec.customer_id = ident.customer_id.as_ref().map(|c| c.reveal().to_owned());
    rec.boot_time_ms = ident.boot_time_ms;
    rec.clock_offset_ms =
        (ident.agent_time_ms > 0).then(|| ident.agent_time_ms.saturating_sub(now));
}

/// The interface of the address a report's IPv6 state says is in use: a preferred global address
/// in its prefix, else any global one (empty: none, or no IPv6 state in the report).
fn interface_in_use(r: &oqs_proto::v1::Report) -> Option<&str> {
    use oqs_proto::v1::AddressKind;
    let v6 = r.ipv6.as_ref()?;
    let global = |a: &&oqs_proto::v1::Ipv6Address| {
        a.kind == AddressKind::Global as i32 || a.kind == AddressKind::Temporary as i32
    };
    let net = v6.prefix.split("::/").next().unwrap_or("");
    v6.addresses
        .iter()
        .filter(global)
        .find(|a| {
            !a.deprecated
                && !net.is_empty()
                && a.address
                    .strip_prefix(net)
                    .is_some_and(|rest| rest.starts_with(':'))
        })
        .or_else(|| v6.addresses.iter().find(global))
        .map(|a| a.interface.as_str())
}

type ReportReply = oneshot::Sender<Result<CommitOutcome, CommitError>>;

enum Request {
    Hello {
        key: TerminalKey,
        ident: Box<AgentIdentity>,
        reply: oneshot::Sender<Result<u64, CommitError>>,
    },
    Report {
        commit: Box<ReportCommit>,
        reply: ReportReply,
    },
    /// A report of `key` refused as invalid (nothing to store but the site's flag).
    Refused { key: TerminalKey, reason: String },
    /// Evaluate silence and expiries (from the committer's own timer).
    Tick,
    /// Apply retention (from the committer's own timer).
    Sweep,
    /// Stop taking requests: what is queued before it is still committed, then the committer
    /// stops (shutdown, once the streams have finished their acks).
    Close,
}

/// A cheap, cloneable handle streams use to reach the committer. When every handle is dropped, or
/// after [`CommitterHandle::close`], the committer finishes what is queued and stops.
#[derive(Clone)]
pub struct CommitterHandle {
    tx: mpsc::Sender<Request>,
}

/// Tells whether the committer still runs, without keeping it alive (for `/healthz`).
#[derive(Clone)]
pub struct CommitterWatch {
    tx: mpsc::WeakSender<Request>,
}

impl CommitterWatch {
    /// False once the committer stopped (its writer failed, or the collector is shutting down).
    pub fn is_running(&self) -> bool {
        self.tx.upgrade().is_some_and(|tx| !tx.is_closed())
    }
}

impl CommitterHandle {
    /// Asks the committer to commit what is queued and stop, whoever still holds a handle (an
    /// HTTP/2 connection to a vanished agent can keep one alive for minutes).
    pub async fn close(&self) {
        let _ = self.tx.send(Request::Close).await;
    }

    /// A watch on this committer that does not count as a handle.
    pub fn watch(&self) -> CommitterWatch {
        CommitterWatch {
            tx: self.tx.downgrade(),
        }
    }

    /// Records a Hello; answers the highest seq stored for the terminal.
    pub async fn hello(&self, ident: &AgentIdentity) -> Result<u64, CommitError> {
        let (reply, rx) = oneshot::channel();
        let key = TerminalKey::new(ident.site.as_str(), ident.terminal.as_str());
        self.tx
            .send(Request::Hello {
                key,
                ident: Box::new(ident.clone()),
                reply,
            })
            .await
            .map_err(|_| CommitError("the collector is shutting down".into()))?;
        rx.await
            .map_err(|_| CommitError("the committer stopped".into()))?
    }

    /// Tells the writer a report of `key` was refused as invalid, for the site's
    /// `reports_refused`. Never waits: with the queue full the refusal is only counted (the agent
    /// sends the report again, and is refused again).
    pub fn refused(&self, key: &TerminalKey, reason: String) {
        let _ = self.tx.try_send(Request::Refused {
            key: key.clone(),
            reason,
        });
    }

    /// Queues a report and returns a future that resolves once it is durable (or refused).
    /// Queueing waits only when the committer's queue is full (back-pressure).
    pub async fn report(
        &self,
        commit: impl Into<Box<ReportCommit>>,
    ) -> Result<oneshot::Receiver<Result<CommitOutcome, CommitError>>, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Report {
                commit: commit.into(),
                reply,
            })
            .await
            .map_err(|_| CommitError("the collector is shutting down".into()))?;
        Ok(rx)
    }
}

/// The committer's state, moved into the blocking thread for each batch and back.
struct Writer {
    store: Store,
    /// Every terminal record, loaded at start, then authoritative (only this writes them).
    records: crate::store::Records,
    derived: Derived,
    /// A commit failed in a way this store handle never recovers from (`is_unrecoverable`).
    broken: bool,
    /// Batches sled holds but could not make durable (`StoreError::left_written`): what they
    /// changed is kept (the memory matches the tree), published and acked only once a later
    /// commit is durable; until then every batch commits, duplicates included.
    unflushed: Vec<Staged>,
    limits: crate::config::Limits,
    reserve: crate::config::StoreTuning,
}

/// What the committer needs besides the store.
pub struct CommitterSettings {
    pub batch_max: usize,
    pub queue: usize,
    pub flags: FlagSettings,
    pub history: HistorySettings,
    /// Closed days and windows: no `agent_silent` while a site is closed.
    pub maintenance: crate::maintenance::MaintenanceBook,
    /// When sites failing alike make an area-wide incident.
    pub incidents: crate::incidents::IncidentSettings,
    /// Where the committer publishes the incidents (the API and `/metrics` read it).
    pub incident_book: crate::incidents::IncidentBook,
    /// `[limits]`: how far a seq may jump, the daily storage budgets.
    pub limits: crate::config::Limits,
    /// `[store]`: the reserve kept on the data directory's filesystem.
    pub store: crate::config::StoreTuning,
}

/// Why the committer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An incident rule the stored fleet cannot meet.
    #[error("config: {0}")]
    Incidents(#[from] crate::incidents::RuleError),
}

/// Loads the derived state and starts the committer. It runs until every [`CommitterHandle`] is
/// dropped, then drains.
pub async fn spawn(
    store: Store,
    settings: CommitterSettings,
    metrics: Arc<Metrics>,
    view: FleetView,
) -> Result<(CommitterHandle, JoinHandle<()>), SpawnError> {
    let CommitterSettings {
        batch_max,
        queue,
        flags,
        history,
        maintenance,
        incidents,
        incident_book,
        limits,
        store: store_tuning,
    } = settings;
    let tick_every = std::time::Duration::from_millis(flags.evaluate_every_ms.max(1));
    let sweep_every = std::time::Duration::from_secs(history.sweep_every_secs.max(1));
    let m = metrics.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<Writer, SpawnError> {
        let records: crate::store::Records = store
            .terminals()?
            .into_iter()
            .map(|(k, r)| (k, Box::new(r)))
            .collect();
        let places = crate::incidents::site_places(&records);
        incidents.validate_for_fleet(places.values().map(|(_, (a, p))| (*a, *p)))?;
        let mut derived = Derived::load(&store, flags, history, view, m, &records)?
            .with_maintenance(maintenance)
            .with_incidents(&store, incidents, incident_book)?;
        // Loading took what it took; the listeners open right after this returns.
        derived.listening_from(now_ms());
        Ok(Writer {
            store,
            records,
            derived,
            broken: false,
            unflushed: Vec::new(),
            limits,
            reserve: store_tuning,
        })
    })
    .await
    .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
    let (tx, mut rx) = mpsc::channel::<Request>(queue.max(1));
    let task = tokio::spawn(async move {
        let mut writer = Some(writer);
        let mut batch = Vec::with_capacity(batch_max);
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = tick.tick() => Request::Tick,
                _ = sweep.tick() => Request::Sweep,
            };
            batch.push(first);
            while batch.len() < batch_max {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.iter().any(|r| matches!(r, Request::Close)) {
                // No new requests; those already queued are still received, then recv() ends.
                rx.close();
            }
            let Some(w) = writer.take() else { break };
            let reqs = std::mem::take(&mut batch);
            let started = Instant::now();
            let n = reqs.len();
            match tokio::task::spawn_blocking(move || {
                let mut w = w;
                w.process(reqs);
                w
            })
            .await
            {
                Ok(w) if w.broken => {
                    // Every later commit would fail the same way: stop, so the collector exits
                    // and its supervisor restarts it on the store as last made durable.
                    tracing::error!(
                        "the store can no longer write until it is reopened; stopping ingest \
                         (nothing unacknowledged is lost: agents keep what was not acked)"
                    );
                    w.store.never_flush_on_drop();
                    break;
                }
                Ok(w) => writer = Some(w),
                Err(e) => {
                    // A panic in the writer loses its cache; every queued reply is dropped, so
                    // streams see an error and agents resend (nothing was acked).
                    tracing::error!(error = %e, "committer writer failed; stopping ingest");
                    break;
                }
            }
            metrics.commit_batch_size.observe(n as f64);
            metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        tracing::debug!("committer drained and stopped");
    });
    Ok((CommitterHandle { tx }, task))
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

impl Writer {
    /// Whether `key` (or its site) stored its day's budget: the setting and when it ends.
    fn over_budget(&self, key: &TerminalKey, now: i64) -> Option<(&'static str, i64)> {
        let l = &self.limits;
        let rec = self.records.get(key)?;
        if rec.budget_used(now) >= l.max_stored_bytes_per_terminal_per_day {
            return Some((
                "limits.max_stored_bytes_per_terminal_per_day",
                rec.budget_ends_ms(),
            ));
        }
        let mut used = 0u64;
        let mut ends = i64::MAX;
        for t in self.derived.terminals_of(&key.site) {
            if let Some(r) = self.records.get(&TerminalKey::new(&key.site, t)) {
                let u = r.budget_used(now);
                if u > 0 {
                    used = used.saturating_add(u);
                    ends = ends.min(r.budget_ends_ms());
                }
            }
        }
        (used >= l.max_stored_bytes_per_site_per_day)
            .then_some(("limits.max_stored_bytes_per_site_per_day", ends))
    }

    /// The data directory's free bytes and the reserve, when it is down to the reserve.
    fn below_reserve(&self) -> Option<(u64, u64)> {
        let space = self.store.filesystem_space().ok()?;
        let reserve = self.reserve.reserve_of(space.size_bytes);
        (space.available_bytes < reserve).then_some((space.available_bytes, reserve))
    }

    fn record(&mut self, key: &TerminalKey) -> Result<&mut TerminalRecord, StoreError> {
        if !self.records.contains_key(key) {
            let rec = self.store.terminal(key)?.unwrap_or_default();
            self.records.insert(key.clone(), Box::new(rec));
        }
        Ok(self.records.get_mut(key).expect("inserted above"))
    }

    fn process(&mut self, reqs: Vec<Request>) {
        let mut batch = CommitBatch::default();
        let mut staged = Staged::default();
        let mut dirty: HashSet<TerminalKey> = HashSet::new();
        // Report keys staged in this batch, with their reports' times.
        let mut pending: HashMap<Vec<u8>, i64> = HashMap::new();
        // Replies are held until the flush, then sent: nothing is answered before it is durable.
        let mut hello_replies: Vec<(oneshot::Sender<Result<u64, CommitError>>, u64)> = Vec::new();
        let mut report_replies: Vec<(ReportReply, Result<CommitOutcome, CommitError>)> = Vec::new();
        // Terminals whose identity (version, OS, site name) a Hello may have changed: their
        // `/metrics` info is refreshed after the commit, not on every report.
        let mut identified: Vec<TerminalKey> = Vec::new();
        let now = now_ms();
        // Undo list: records as they were before this batch, restored if the write fails.
        let mut before: crate::store::Records = HashMap::new();

        // (terminal, stored, acked) of Hellos that say the store lost acknowledged reports.
        let mut lost: Vec<(TerminalKey, u64, u64)> = Vec::new();
        // Down to the reserve: no report is stored (asked once a batch, and only of a batch
        // with reports in it: a statvfs).
        let no_room = reqs
            .iter()
            .any(|r| matches!(r, Request::Report { .. }))
            .then(|| self.below_reserve())
            .flatten();
        for req in reqs {
            match req {
                Request::Hello { key, ident, reply } => {
                    // An unknown terminal gets no record (nor memory) from a Hello: a peer sending
                    // Hellos for made-up ids must not grow the store; its first stored report
                    // brings the identity (`ReportCommit::ident`).
                    let known = if self.records.contains_key(&key) {
                        Ok(true)
                    } else {
                        self.store.terminal(&key).map(|r| r.is_some())
                    };
                    match known.and_then(|known| {
                        if known {
                            self.record(&key).map(Some)
                        } else {
                            Ok(None)
                        }
                    }) {
                        Ok(Some(rec)) => {
                            before
                                .entry(key.clone())
                                .or_insert_with(|| Box::new(rec.clone()));
                            apply_identity(rec, &ident, now);
                            identified.push(key.clone());
                            let last = rec.last_seq;
                            if ident.highest_acked_seq > last {
                                lost.push((key.clone(), last, ident.highest_acked_seq));
                            }
                            dirty.insert(key);
                            hello_replies.push((reply, last));
                        }
                        Ok(None) => {
                            if ident.highest_acked_seq > 0 {
                                lost.push((key.clone(), 0, ident.highest_acked_seq));
                            }
                            hello_replies.push((reply, 0));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(CommitError(e.to_string())));
                        }
                    }
                }
                Request::Report { commit, reply } if no_room.is_some() => {
                    let (available, reserve) = no_room.expect("matched");
                    report_replies.push((reply, Ok(CommitOutcome::NoRoom { available, reserve })));
                    drop(commit);
                }
                Request::Report { commit, reply } => {
                    let outcome = self.admit(
                        &commit,
                        &mut batch,
                        &mut staged,
                        &mut pending,
                        &mut before,
                        now,
                    );
                    if matches!(outcome, Ok(CommitOutcome::Stored)) {
                        if commit.ident.is_some() {
                            identified.push(commit.key.clone());
                        }
                        dirty.insert(commit.key);
                    }
                    report_replies.push((reply, outcome));
                }
                Request::Refused { key, reason } => {
                    if self.records.contains_key(&key) {
                        self.derived
                            .refused(&mut staged, &mut batch, &key, &reason, now);
                    }
                }
                Request::Tick => {
                    self.derived
                        .tick(&mut staged, &mut batch, &self.records, now);
                }
                Request::Close => {}
                Request::Sweep => {
                    for (k, r) in &self.records {
                        before.entry(k.clone()).or_insert_with(|| r.clone());
                    }
                    match self.derived.sweep(
                        &self.store,
                        &mut batch,
                        &mut self.records,
                        &mut dirty,
                        now,
                    ) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "retention pass"),
                        Err(e) => tracing::error!(error = %e, "retention pass failed"),
                    }
                }
            }
        }
        for (key, stored, acked) in lost {
            tracing::error!(
                site = %key.site,
                terminal = %key.terminal,
                stored,
                acked,
                "the store lost reports it had acknowledged: the agent says more was acknowledged \
                 than the store holds"
            );
            self.derived
                .lost_reports(&mut staged, &mut batch, &key, stored, acked, now);
        }
        for key in &dirty {
            if let Some(rec) = self.records.get(key) {
                batch.put_terminal(key, rec);
            }
        }
        // A duplicate is acked as stored: after a batch that was written but not made durable,
        // only once a commit is durable again.
        let result = if dirty.is_empty()
            && batch.is_empty()
            && staged.is_empty()
            && self.unflushed.is_empty()
        {
            Ok(())
        } else {
            self.store.commit(batch)
        };
        match result {
            Ok(()) => {
                for earlier in self.unflushed.drain(..) {
                    self.derived.committed(earlier);
                }
                self.derived.committed(staged);
                for key in &identified {
                    if let Some(rec) = self.records.get(key) {
                        self.derived.agent_info(key, rec);
                    }
                }
                for (reply, last) in hello_replies {
                    let _ = reply.send(Ok(last));
                }
                for (reply, outcome) in report_replies {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; nothing in the batch is acked");
                self.broken |= e.is_unrecoverable();
                if e.left_written() {
                    // sled holds the batch and writes it out with the next flush: forgetting
                    // it here would leave reports in the store that no record counts.
                    self.unflushed.push(staged);
                } else {
                    self.derived.failed(staged);
                    for (key, rec) in before {
                        self.records.insert(key, rec);
                    }
                }
                let err = CommitError(e.to_string());
                for (reply, _) in hello_replies {
                    let _ = reply.send(Err(err.clone()));
                }
                for (reply, _) in report_replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Decides what one report is, and stages it when it is new.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        c: &ReportCommit,
        batch: &mut CommitBatch,
        staged: &mut Staged,
        pending: &mut HashMap<Vec<u8>, i64>,
        before: &mut crate::store::Records,
        now: i64,
    ) -> Result<CommitOutcome, CommitError> {
        let err = |e: StoreError| CommitError(e.to_string());
        let max_jump = self.limits.max_seq_jump;
        let rec = self.record(&c.key).map_err(err)?;
        let (last_seq, pruned) = (rec.last_seq, rec.pruned_through_seq);
        // Beyond the protocol's ceiling, or further above the stored seq than any agent's counter
        // grows: a damaged counter. Storing it would leave the terminal no seq to go on with.
        if c.seq > oqs_proto::MAX_SEQ || c.seq.saturating_sub(last_seq) > max_jump {
            return Ok(CommitOutcome::SeqJump { last_seq });
        }
        if c.seq <= last_seq {
            let rk = c.key.report_key(c.seq);
            // "Duplicate" is the same report: a different one under a stored seq is another
            // machine with the same ids. (A report stamped with its receive time cannot be
            // compared with its first arrival; one deleted by retention cannot be compared.)
            let same = if let Some(at) = pending.get(&rk) {
                Some(*at == c.finished_at_ms)
            } else if c.seq <= pruned {
                Some(true)
            } else {
                self.store
                    .same_report(&c.key, c.seq, &c.encoded, c.finished_at_ms)
                    .map_err(err)?
            };
            return Ok(match same {
                Some(true) => CommitOutcome::Duplicate,
                Some(false) if c.clock_ahead_ms.is_some() => CommitOutcome::Duplicate,
                Some(false) => {
                    self.derived
                        .conflict(staged, batch, &c.key, c.seq, None, now);
                    CommitOutcome::Conflict
                }
                // Never stored, and a higher seq is: a real agent's seqs only grow, so another
                // writer jumped ahead under these ids. Its reports must not get this agent's
                // good ones refused (and dropped): a conflict, nothing deleted.
                None => {
                    self.derived
                        .conflict(staged, batch, &c.key, c.seq, Some(last_seq), now);
                    CommitOutcome::Conflict
                }
            });
        }
        if let Some((setting, until_ms)) = self.over_budget(&c.key, now) {
            let detail = format!(
                "over {setting} ({} bytes a day): its reports wait on the terminal until the \
                 day's window ends",
                if setting.ends_with("terminal_per_day") {
                    self.limits.max_stored_bytes_per_terminal_per_day
                } else {
                    self.limits.max_stored_bytes_per_site_per_day
                }
            );
            self.derived.refused(staged, batch, &c.key, &detail, now);
            return Ok(CommitOutcome::OverBudget { setting, until_ms });
        }
        let Self {
            records, derived, ..
        } = self;
        let rec = records.get_mut(&c.key).expect("loaded above");
        before.entry(c.key.clone()).or_insert_with(|| rec.clone());
        if let Some(ident) = &c.ident {
            if rec.last_hello_ms == 0 {
                apply_identity(rec, ident, now);
            }
        }
        if rec.last_round_at_ms > 0 && c.finished_at_ms > rec.last_round_at_ms {
            rec.interval_ms = (c.finished_at_ms - rec.last_round_at_ms).clamp(1000, 86_400_000);
        }
        rec.last_seq = c.seq;
        rec.reports_total += 1;
        rec.last_report_at_ms = now;
        rec.last_round_at_ms = c.finished_at_ms;
        if c.finished_at_ms > 0
            && (rec.first_report_at_ms == 0 || c.finished_at_ms < rec.first_report_at_ms)
        {
            rec.first_report_at_ms = c.finished_at_ms;
        }
        rec.spool_dropped_total = c.spool_dropped_total;
        if let Some(certs) = &c.report.certs {
            rec.cert_not_after_ms = certs
                .certs
                .iter()
                .map(|x| x.not_after_ms)
                .min()
                .unwrap_or(0);
        }
        // What the agent could not do: kept while it says so, gone once it says nothing.
        let agent = c
            .report
            .agent
            .as_ref()
            .filter(|a| **a != oqs_proto::v1::AgentState::default());
        if rec.agent.as_deref() != agent {
            rec.agent = agent.cloned().map(Box::new);
        }
        if let Some(i) = interface_in_use(&c.report).filter(|i| *i != rec.interface) {
            rec.interface = i.to_owned();
        }
        let bytes_before = batch.stored_bytes();
        derived.stored(
            staged,
            batch,
            &c.key,
            rec,
            c.seq,
            &c.report,
            &c.encoded,
            now,
            c.clock_ahead_ms
                .map(crate::flags::ClockSkew::Ahead)
                .or(c.clock_behind_ms.map(crate::flags::ClockSkew::Behind)),
        );
        rec.count_stored((batch.stored_bytes() - bytes_before) as u64, now);
        pending.insert(c.key.report_key(c.seq), c.finished_at_ms);
        Ok(CommitOutcome::Stored)
    }
}
