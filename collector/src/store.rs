//! The durable store: one sled tree holding every stored report and one record per terminal.
//!
//! Keys are built for range scans (ids cannot contain NUL, the separator; numbers big-endian):
//! - `R` site NUL terminal NUL seq → kind byte, the report's `finished_at_ms`, for kinds 2 and 3
//!   the collector's receive time (what retention goes by), then for kinds 0 and 2 the `Report`
//!   protobuf-encoded as received; kinds 1 and 3 ("elided") say the report matched the previous
//!   one in everything but latencies, which went into the history rollup. Kinds 0 and 1 (written
//!   before receive times were kept) count as received at their report's time;
//! - `T` site NUL terminal → [`TerminalRecord`];
//! - `S` site → the flag engine's [`SiteState`] (JSON);
//! - `H` site NUL check NUL terminal NUL at_ms seq → a [`HistoryPoint`] (JSON);
//! - `E` event id → an [`Event`] (JSON), and `F` site NUL event id → the same, per site;
//! - `M` name → counters (the next event id);
//! - `N` site → the site's enrollment token hash, `K` site NUL terminal → a terminal secret's hash
//!   (`enrollment.rs`);
//! - `W` site → the site's closed days and maintenance windows (JSON, `api/maintenance.rs`);
//! - `I` incident id → an area-wide [`Incident`] (JSON, `incidents.rs`).
//!
//! Everything lives in one tree so that one `apply_batch` writes a report, its terminal record,
//! the site's state and its events atomically: a crash never leaves one without the others.
//!
//! Must never acknowledge anything itself: [`Store::commit`] returns once the batch is durable —
//! flushed, then `fdatasync`ed ([`Durability`]) — and only then may a caller send `Ack`. Reads here
//! are for the query side and tests.

use crate::flags::{Event, SiteState};
use crate::history::HistoryPoint;
use crate::incidents::Incident;
use crate::samples::Check;
use oqs_proto::v1::Report;
use prost::Message;
use std::path::Path;

/// What the store could not do. Messages name the data directory or the key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store in {dir} is in use by another oqs-collector (it holds the directory's lock): \
         stop that one, or give this collector its own --data-dir"
    )]
    Locked { dir: String },
    #[error(
        "the store in {dir} lost acknowledged writes: its log {dir}/db holds commit \
         {db_generation}, but {dir}/{WITNESS_FILE} says commit {witness_generation} was made \
         durable — the log is damaged (a disk fault, a restore of only some files, a copy taken \
         while running). To recover: stop the collector, move {dir} aside (keep it for analysis) \
         and restore the latest backup; or, to continue with what is left, start once with \
         store.accept_lost_writes = true (agents send again what they still hold)"
    )]
    LostWrites {
        dir: String,
        db_generation: u64,
        witness_generation: u64,
    },
    #[error("the store's witness file {path} is unreadable: {reason}; move it aside only if the store itself is known to be whole")]
    Witness { path: String, reason: String },
    #[error("cannot open the store in {dir}: {source}. {recovery}")]
    Open {
        dir: String,
        source: sled::Error,
        recovery: String,
    },
    #[error("store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("cannot make the store's writes durable in {dir} (fdatasync failed): {source}; nothing was acknowledged")]
    Sync { dir: String, source: std::io::Error },
    #[error("stored record under key {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        source: prost::DecodeError,
    },
    #[error("stored record under key {key} is corrupt: {reason}")]
    CorruptValue { key: String, reason: String },
}

impl StoreError {
    /// Whether [`Store::commit`] failed after sled took the batch (only making it durable
    /// failed): the tree holds it, and a later flush writes it out.
    pub fn left_written(&self) -> bool {
        matches!(self, StoreError::Sync { .. })
    }

    /// Whether this store handle can never write again: sled 0.34 keeps the first I/O error of
    /// its log writer (a full disk while it wrote a buffer) and returns it from every later call
    /// until the store is reopened, when it recovers to its last durable commit. Our own
    /// fdatasync failing is not such an error: the next commit tries again.
    pub fn is_unrecoverable(&self) -> bool {
        matches!(
            self,
            StoreError::Io(
                sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
            )
        )
    }
}

/// A stored report: whole, or elided because it matched the one before (latencies aside).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, read one at a time
pub enum StoredReport {
    Full(Report),
    Elided { finished_at_ms: i64 },
}

impl StoredReport {
    pub fn finished_at_ms(&self) -> i64 {
        match self {
            StoredReport::Full(r) => r.finished_at_ms,
            StoredReport::Elided { finished_at_ms } => *finished_at_ms,
        }
    }
    /// The report when stored whole.
    pub fn full(&self) -> Option<&Report> {
        match self {
            StoredReport::Full(r) => Some(r),
            StoredReport::Elided { .. } => None,
        }
    }
}

const KIND_FULL: u8 = 0;
const KIND_ELIDED: u8 = 1;
const KIND_FULL_RECEIVED: u8 = 2;
const KIND_ELIDED_RECEIVED: u8 = 3;

/// What the first bytes of a stored report say.
struct ReportHeader {
    full: bool,
    finished_at_ms: i64,
    received_ms: i64,
    /// Where the protobuf starts (full reports).
    body: usize,
}

fn report_header(v: &[u8]) -> Option<ReportHeader> {
    let int = |at: usize| {
        v.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
    };
    let finished_at_ms = int(1)?;
    let (full, received_ms, body) = match *v.first()? {
        KIND_FULL => (true, finished_at_ms, 9),
        KIND_ELIDED => (false, finished_at_ms, 9),
        KIND_FULL_RECEIVED => (true, int(9)?, 17),
        KIND_ELIDED_RECEIVED => (false, int(9)?, 17),
        _ => return None,
    };
    Some(ReportHeader {
        full,
        finished_at_ms,
        received_ms,
        body,
    })
}

/// Per check, what the last history point said and what happened since (for the rollup).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRollup {
    /// The check's name (`samples::Check::as_str`).
    #[prost(string, tag = "1")]
    pub check: String,
    /// The signature of the last point written.
    #[prost(uint64, tag = "2")]
    pub signature: u64,
    /// When the last point was written (report time, Unix ms).
    #[prost(int64, tag = "3")]
    pub last_point_ms: i64,
    /// Samples since the last point.
    #[prost(uint32, tag = "4")]
    pub samples: u32,
    #[prost(uint32, tag = "5")]
    pub failures: u32,
    #[prost(uint64, tag = "6")]
    pub latency_sum_ms: u64,
    #[prost(uint32, tag = "7")]
    pub latency_max_ms: u32,
}

/// Everything the collector keeps about one terminal, updated in the same batch as its reports.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TerminalRecord {
    /// The highest seq stored.
    #[prost(uint64, tag = "1")]
    pub last_seq: u64,
    /// How many reports are stored (duplicates are not counted).
    #[prost(uint64, tag = "2")]
    pub reports_total: u64,
    /// The collector's clock when the newest report was stored (Unix ms).
    #[prost(int64, tag = "3")]
    pub last_report_at_ms: i64,
    /// The agent's `finished_at_ms` of the newest report.
    #[prost(int64, tag = "4")]
    pub last_round_at_ms: i64,
    #[prost(string, tag = "5")]
    pub hostname: String,
    #[prost(string, tag = "6")]
    pub agent_version: String,
    #[prost(string, tag = "7")]
    pub os: String,
    #[prost(string, tag = "8")]
    pub boot_id: String,
    /// `oqs.fleet.v1.Area` as a number.
    #[prost(int32, tag = "9")]
    pub area: i32,
    /// The full customer ID, as the agent sent it (shown only to authorised viewers).
    #[prost(string, optional, tag = "10")]
    pub customer_id: Option<String>,
    /// When the terminal first said Hello (Unix ms).
    #[prost(int64, tag = "11")]
    pub first_seen_ms: i64,
    /// When the terminal last said Hello (Unix ms).
    #[prost(int64, tag = "12")]
    pub last_hello_ms: i64,
    /// The agent's own count of reports its spool dropped.
    #[prost(uint64, tag = "13")]
    pub spool_dropped_total: u64,
    /// The history rollup per check.
    #[prost(message, repeated, tag = "14")]
    pub rollups: Vec<CheckRollup>,
    /// Reports up to this seq may have been deleted by retention: a replay of one is a duplicate.
    #[prost(uint64, tag = "15")]
    pub pruned_through_seq: u64,
    /// The terminal's reporting interval, from its last two reports' times (0: unknown).
    #[prost(int64, tag = "16")]
    pub interval_ms: i64,
    /// The site's prefecture and name as the agent's Hello said (empty: not given).
    #[prost(string, tag = "17")]
    pub prefecture: String,
    #[prost(string, tag = "18")]
    pub site_name: String,
    /// When the terminal's machine booted, by its clock, as its last Hello said (0: not said).
    #[prost(int64, tag = "19")]
    pub boot_time_ms: i64,
    /// The terminal's clock minus the collector's at its last Hello (ms; positive: ahead).
    #[prost(int64, optional, tag = "20")]
    pub clock_offset_ms: Option<i64>,
    /// The interface carrying the terminal's IPv6 address in use, from its newest report.
    #[prost(string, tag = "21")]
    pub interface: String,
    /// The earliest `finished_at_ms` among the terminal's stored reports (a spool replayed
    /// after its first Hello reaches back before it; 0: none yet, or stored before this was kept).
    #[prost(int64, tag = "22")]
    pub first_report_at_ms: i64,
    /// The soonest expiry (notAfter, Unix ms) among the certificates its newest report with a
    /// certificate check read (0: none known).
    #[prost(int64, tag = "23")]
    pub cert_not_after_ms: i64,
    /// What the agent could not do, as its newest report said (absent: nothing). Boxed: every
    /// record stays in memory and nearly every agent has nothing to say here.
    #[prost(message, optional, boxed, tag = "24")]
    pub agent: Option<Box<oqs_proto::v1::AgentState>>,
    /// The daily storage budget's window (`limits.max_stored_bytes_per_*_per_day`): when it
    /// began (collector clock, 0: none yet) and the bytes of reports and points stored in it.
    #[prost(int64, tag = "25")]
    pub budget_since_ms: i64,
    #[prost(uint64, tag = "26")]
    pub budget_bytes: u64,
}

/// A day, the budget's window.
pub const BUDGET_WINDOW_MS: i64 = 86_400_000;

impl TerminalRecord {
    /// Bytes stored in the budget's window as of `now_ms` (0 once the window is over).
    pub fn budget_used(&self, now_ms: i64) -> u64 {
        if self.budget_since_ms > 0 && now_ms - self.budget_since_ms < BUDGET_WINDOW_MS {
            self.budget_bytes
        } else {
            0
        }
    }

    /// Counts `bytes` stored now into the budget's window (a new window when the last is over).
    pub fn count_stored(&mut self, bytes: u64, now_ms: i64) {
        let open = self.budget_since_ms > 0 && now_ms - self.budget_since_ms < BUDGET_WINDOW_MS;
        if !open {
            self.budget_since_ms = now_ms;
            self.budget_bytes = 0;
        }
        self.budget_bytes = self.budget_bytes.saturating_add(bytes);
    }

    /// When the budget's window ends.
    pub fn budget_ends_ms(&self) -> i64 {
        self.budget_since_ms.saturating_add(BUDGET_WINDOW_MS)
    }
}

impl TerminalRecord {
    /// Since when the collector knows anything of this terminal: its earliest report, or its
    /// first Hello if that is earlier or the only one known (0: never).
    pub fn known_since_ms(&self) -> i64 {
        [self.first_report_at_ms, self.first_seen_ms]
            .into_iter()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0)
    }
}

/// Every terminal's record in memory (the committer's, authoritative once loaded). Boxed: the
/// map's table is sized in powers of two above its length, and holds a pointer per slot rather
/// than a whole record (issue "one home for each fact", item 7: ~2 MB at 10,000 terminals).
pub type Records = std::collections::HashMap<TerminalKey, Box<TerminalRecord>>;

/// A terminal's identity as stored (the key's two parts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalKey {
    pub site: String,
    pub terminal: String,
}

impl TerminalKey {
    pub fn new(site: &str, terminal: &str) -> Self {
        Self {
            site: site.to_owned(),
            terminal: terminal.to_owned(),
        }
    }

    fn record_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(2 + self.site.len() + self.terminal.len());
        k.push(b'T');
        k.extend_from_slice(self.site.as_bytes());
        k.push(0);
        k.extend_from_slice(self.terminal.as_bytes());
        k
    }

    /// The key of one report of this terminal.
    pub fn report_key(&self, seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(11 + self.site.len() + self.terminal.len());
        k.push(b'R');
        k.extend_from_slice(self.site.as_bytes());
        k.push(0);
        k.extend_from_slice(self.terminal.as_bytes());
        k.push(0);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The first key of a history series of this terminal.
    pub fn history_key(&self, check: Check, at_ms: i64, seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(32 + self.site.len() + self.terminal.len());
        k.push(b'H');
        k.extend_from_slice(self.site.as_bytes());
        k.push(0);
        k.extend_from_slice(check.as_str().as_bytes());
        k.push(0);
        k.extend_from_slice(self.terminal.as_bytes());
        k.push(0);
        k.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    fn from_record_key(k: &[u8]) -> Option<Self> {
        let rest = k.strip_prefix(b"T")?;
        let nul = rest.iter().position(|&b| b == 0)?;
        Some(Self {
            site: String::from_utf8(rest[..nul].to_vec()).ok()?,
            terminal: String::from_utf8(rest[nul + 1..].to_vec()).ok()?,
        })
    }
}

/// One write of the group committer: reports and terminal records to store together.
#[derive(Default)]
pub struct CommitBatch {
    batch: sled::Batch,
    pub reports: usize,
    writes: usize,
    /// Bytes of the reports and history points staged (keys and values): what a terminal's
    /// daily storage budget counts.
    stored_bytes: usize,
}

fn site_key(site: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + site.len());
    k.push(b'S');
    k.extend_from_slice(site.as_bytes());
    k
}

fn incident_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'I'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn event_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'E'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn site_event_prefix(site: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + site.len());
    k.push(b'F');
    k.extend_from_slice(site.as_bytes());
    k.push(0);
    k
}

fn site_event_key(site: &str, id: u64) -> Vec<u8> {
    let mut k = site_event_prefix(site);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

const NEXT_EVENT_ID: &[u8] = b"Mnext_event_id";

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

/// How far back [`Store::history_each`] looks for the state in force when a window starts.
const IN_FORCE_SCAN: usize = 10_000;

/// The seq at the end of a history key.
fn seq_of(k: &[u8]) -> u64 {
    k.len()
        .checked_sub(8)
        .and_then(|i| k[i..].try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn from_json<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::CorruptValue {
        key: String::from_utf8_lossy(k).replace('\0', "/"),
        reason: e.to_string(),
    })
}

impl CommitBatch {
    /// Whether nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    /// Stores a report whole, received at `received_ms` by the collector's clock.
    pub fn put_report(
        &mut self,
        key: &TerminalKey,
        seq: u64,
        finished_at_ms: i64,
        received_ms: i64,
        encoded: &[u8],
    ) {
        let mut v = Vec::with_capacity(17 + encoded.len());
        v.push(KIND_FULL_RECEIVED);
        v.extend_from_slice(&finished_at_ms.to_be_bytes());
        v.extend_from_slice(&received_ms.to_be_bytes());
        v.extend_from_slice(encoded);
        self.writes += 1;
        let k = key.report_key(seq);
        self.stored_bytes += k.len() + v.len();
        self.batch.insert(k, v);
        self.reports += 1;
    }
    /// Stores that a report arrived and matched the previous one (latencies aside).
    pub fn put_elided(
        &mut self,
        key: &TerminalKey,
        seq: u64,
        finished_at_ms: i64,
        received_ms: i64,
    ) {
        let mut v = Vec::with_capacity(17);
        v.push(KIND_ELIDED_RECEIVED);
        v.extend_from_slice(&finished_at_ms.to_be_bytes());
        v.extend_from_slice(&received_ms.to_be_bytes());
        self.writes += 1;
        let k = key.report_key(seq);
        self.stored_bytes += k.len() + v.len();
        self.batch.insert(k, v);
        self.reports += 1;
    }
    /// Bytes of reports and history points staged so far.
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }
    pub fn put_site(&mut self, st: &SiteState) {
        self.writes += 1;
        self.batch.insert(site_key(&st.site), json(st));
    }
    pub fn put_point(&mut self, key: &TerminalKey, check: Check, seq: u64, p: &HistoryPoint) {
        self.writes += 1;
        let (k, v) = (key.history_key(check, p.at_ms, seq), json(p));
        self.stored_bytes += k.len() + v.len();
        self.batch.insert(k, v);
    }
    pub fn put_event(&mut self, e: &Event) {
        let v = json(e);
        self.writes += 1;
        self.batch.insert(event_key(e.id), v.clone());
        self.writes += 1;
        self.batch.insert(site_event_key(&e.site, e.id), v);
    }
    pub fn put_incident(&mut self, i: &Incident) {
        self.writes += 1;
        self.batch.insert(incident_key(i.id), json(i));
    }
    pub fn remove_incident(&mut self, id: u64) {
        self.remove(&incident_key(id));
    }
    pub fn put_next_event_id(&mut self, id: u64) {
        self.writes += 1;
        self.batch.insert(NEXT_EVENT_ID, id.to_be_bytes().to_vec());
    }
    pub fn remove(&mut self, key: &[u8]) {
        self.writes += 1;
        self.batch.remove(key);
    }
    pub fn put_terminal(&mut self, key: &TerminalKey, rec: &TerminalRecord) {
        self.writes += 1;
        self.batch.insert(key.record_key(), rec.encode_to_vec());
    }
}

/// How long an open waits for the data directory's lock. sled 0.34 releases it from a background
/// thread some moments after the last handle is dropped (spacejam/sled#1234), so a collector
/// restarted in the same process, or started while the previous process is still exiting, would
/// otherwise fail; a lock held longer than this is another collector's, and the error says so.
/// The zstd level a compressed store is reopened with when the configuration asks for none
/// (reading needs no level; sled wants one that is valid for what it writes from then on).
const REOPEN_ZSTD_LEVEL: i32 = 3;

pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled reports a held lock as an `Other` I/O error whose text names the lock.
fn is_lock_contention(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// What went wrong opening the store in `dir`, with what to do about it.
fn open_error(dir: &Path, source: sled::Error) -> StoreError {
    let d = dir.display().to_string();
    if is_lock_contention(&source) {
        return StoreError::Locked { dir: d };
    }
    let recovery = match &source {
        sled::Error::Corruption { .. } => format!(
            "{d}/db (the store's log) is damaged. To recover: stop the collector, move {d} aside \
             (keep it for analysis), then restore the latest backup into {d} or start with an \
             empty directory; agents send again every report they still hold"
        ),
        // A compression mismatch is not among these: the store reopens as it was made.
        sled::Error::Unsupported(m) => format!(
            "The store in {d} was created by another sled version or with other storage \
             settings ({m}): open it with the collector version that made it"
        ),
        sled::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("The collector's user cannot read or write {d}: check its owner and mode")
        }
        _ => format!(
            "Check that {d} is a directory on a writable disk with free space; if its files are \
             damaged, move it aside and restore the latest backup"
        ),
    };
    StoreError::Open {
        dir: d,
        source,
        recovery,
    }
}

/// sled 0.34 writes a snapshot of its page table at every open that finds the log grown, to
/// `snap.N.generating`, renamed to `snap.N` once synced. It then takes the newest file named
/// `snap.*` as the snapshot to start from without skipping `.generating` (it skips
/// `.in___motion`, a name it no longer writes; spacejam/sled#1527), so one left behind by a
/// write that failed — a collector started on a full disk — makes every later open fail as
/// corrupt, even once the disk has room. Such a file is unfinished by construction (sled renames
/// it only after it is whole and synced), and the log and the previous snapshot hold everything
/// it was made from. Removes them from `dir`, saying which; returns how many.
///
/// Called only after an open failed as corrupt: a collector holding the store's lock may be
/// writing one at that moment otherwise.
fn remove_unfinished_snapshots(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let unfinished = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"));
        if unfinished {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path)?;
            tracing::warn!(
                file = %path.display(),
                bytes,
                "removed an unfinished snapshot sled left behind (a write that failed, as on a \
                 full disk); the store opens from its log and previous snapshot"
            );
            removed += 1;
        }
    }
    Ok(removed)
}

/// Opens `config` in `dir` like [`open_waiting_for_lock`], once more after removing the
/// unfinished snapshots a corrupt open may be caused by ([`remove_unfinished_snapshots`]).
fn open_sled(dir: &Path, config: &sled::Config) -> Result<sled::Db, sled::Error> {
    match open_waiting_for_lock(config, LOCK_WAIT) {
        Err(e @ sled::Error::Corruption { .. }) => match remove_unfinished_snapshots(dir) {
            Ok(0) => Err(e),
            Ok(_) => open_waiting_for_lock(config, LOCK_WAIT),
            Err(io) => {
                tracing::warn!(dir = %dir.display(), error = %io, "cannot look for unfinished snapshots");
                Err(e)
            }
        },
        other => other,
    }
}

/// Opens `config`, retrying while its lock is held, for at most `wait`. Blocking.
fn open_waiting_for_lock(
    config: &sled::Config,
    wait: std::time::Duration,
) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match config.open() {
            Err(e) if is_lock_contention(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// What makes a flushed batch survive a power cut. sled 0.34's `flush` ends in
/// `sync_file_range` on Linux, which persists neither the growing file's size nor the disk's
/// write cache (spacejam/sled#1351, #1452), and writes its large values ("blobs", over 128 KiB)
/// without any sync. So after each flush the log file `db` is `fdatasync`ed, and so is every blob
/// file not synced yet (with its directory, whose entry is new): once per group commit.
struct Durability {
    dir: std::path::PathBuf,
    log: std::fs::File,
    /// Blob files already synced (pruned to what still exists).
    synced_blobs: std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>,
    /// The last commit's number, stored with it under [`GENERATION`].
    generation: std::sync::atomic::AtomicU64,
    /// When [`WITNESS_FILE`] was last written.
    witness_at: std::sync::Mutex<std::time::Instant>,
}

/// Beside sled's files: the highest commit number known durable, written at most every
/// [`WITNESS_EVERY`] and at every explicit flush (shutdown). A log that holds less on open lost
/// acknowledged writes — sled itself recovers a damaged log silently to an earlier point.
pub const WITNESS_FILE: &str = "oqs-witness";
const WITNESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
const GENERATION: &[u8] = b"Mgeneration";

fn read_witness(dir: &Path) -> Result<u64, StoreError> {
    let path = dir.join(WITNESS_FILE);
    let bad = |reason: String| StoreError::Witness {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .strip_prefix("generation ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                bad(format!(
                    "expected \"generation N\", found {:?}",
                    text.trim()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(bad(e.to_string())),
    }
}

impl Durability {
    fn open(dir: &Path) -> std::io::Result<Self> {
        let log = std::fs::File::open(dir.join("db"))?;
        // The files sled just created are only durable once their directory entries are.
        sync_dir(dir)?;
        // A full fsync at open (the file's metadata too); each commit then needs only fdatasync.
        log.sync_all()?;
        let mut synced = std::collections::HashSet::new();
        if let Ok(entries) = std::fs::read_dir(dir.join("blobs")) {
            for entry in entries {
                let entry = entry?;
                std::fs::File::open(entry.path())?.sync_all()?;
                synced.insert(entry.file_name());
            }
            sync_dir(&dir.join("blobs"))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            log,
            synced_blobs: std::sync::Mutex::new(synced),
            generation: Default::default(),
            witness_at: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    /// Records that every commit up to the current one is durable (call after a sync).
    fn write_witness(&self, force: bool) -> std::io::Result<()> {
        let mut at = self.witness_at.lock().unwrap_or_else(|p| p.into_inner());
        if !force && at.elapsed() < WITNESS_EVERY {
            return Ok(());
        }
        let g = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.join(WITNESS_FILE);
        let tmp = self.dir.join(format!("{WITNESS_FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "generation {g}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        *at = std::time::Instant::now();
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        self.log.sync_data()?;
        let blobs = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = std::collections::HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                std::fs::File::open(entry.path())?.sync_data()?;
                new = true;
            }
            present.insert(name);
        }
        if new {
            sync_dir(&blobs)?;
        }
        *synced = present;
        Ok(())
    }
}

/// fsync of a directory (its entries); a no-op where directories cannot be opened (Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The store's filesystem: what is left for the collector's writes, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesystemSpace {
    pub available_bytes: u64,
    pub size_bytes: u64,
}

/// The sled database and the tree the collector uses.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    durability: std::sync::Arc<Durability>,
}

impl Store {
    /// After a write error sled never recovers from (a full disk), its handles must not flush
    /// when the last one drops: sled's `Drop` then waits for ever for a write that cannot happen,
    /// on whatever thread drops it (an async worker: the runtime's timers stop with it), and the
    /// collector could never exit for its supervisor. One handle is leaked, so no drop ever
    /// flushes; the process ends soon after, and everything acknowledged is already durable.
    pub fn never_flush_on_drop(&self) {
        std::mem::forget(self.db.clone());
        std::mem::forget(self.tree.clone());
    }

    /// Opens (or creates) the store in `dir` with a 64 MiB cache and compression (tests and tools).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, 64 * 1024 * 1024, Some(3))
    }

    /// Opens (or creates) the store in `dir`, caching at most `cache_bytes` in memory, compressing
    /// what it writes with zstd at `compression` (1–22; None: uncompressed). A store keeps the
    /// setting it was created with: sled refuses to open it with another one.
    pub fn open_with(
        dir: &Path,
        cache_bytes: u64,
        compression: Option<i32>,
    ) -> Result<Self, StoreError> {
        Self::open_checked(dir, cache_bytes, compression, false)
    }

    /// [`Store::open_with`], refusing a store whose log holds fewer commits than its witness file
    /// says were durable ([`StoreError::LostWrites`]) unless `accept_lost_writes`, which starts on
    /// what is left and records that as the new baseline.
    pub fn open_checked(
        dir: &Path,
        cache_bytes: u64,
        compression: Option<i32>,
        accept_lost_writes: bool,
    ) -> Result<Self, StoreError> {
        let config = |compression: Option<i32>| {
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                // The collector flushes explicitly before each ack; no background timer is needed
                // for durability, and one would only add write amplification.
                .flush_every_ms(None)
                .use_compression(compression.is_some())
                .compression_factor(compression.unwrap_or(REOPEN_ZSTD_LEVEL))
        };
        let db = match open_sled(dir, &config(compression)) {
            // sled fixes compression when a store is created and refuses the other setting: a
            // store made before the default changed (or with another store.compression_level)
            // opens as it was made.
            Err(sled::Error::Unsupported(m)) if m.contains("use_compression") => {
                let kept = match compression {
                    Some(_) => None,
                    None => Some(REOPEN_ZSTD_LEVEL),
                };
                tracing::warn!(
                    dir = %dir.display(),
                    compressed = kept.is_some(),
                    "the store keeps the compression it was created with; \
                     store.compression_level applies to new stores"
                );
                open_sled(dir, &config(kept))
            }
            other => other,
        }
        .map_err(|e| open_error(dir, e))?;
        let tree = db.open_tree("ingest")?;
        let durability = Durability::open(dir).map_err(|source| StoreError::Sync {
            dir: dir.display().to_string(),
            source,
        })?;
        let db_generation =
            match tree.get(GENERATION)? {
                Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                    StoreError::CorruptValue {
                        key: "Mgeneration".into(),
                        reason: format!("{} bytes, expected 8", v.len()),
                    }
                })?),
                None => 0,
            };
        let witness_generation = read_witness(dir)?;
        if db_generation < witness_generation {
            if !accept_lost_writes {
                return Err(StoreError::LostWrites {
                    dir: dir.display().to_string(),
                    db_generation,
                    witness_generation,
                });
            }
            tracing::error!(
                db_generation,
                witness_generation,
                "the store lost acknowledged writes; continuing on what is left as \
                 store.accept_lost_writes asks"
            );
        }
        durability
            .generation
            .store(db_generation, std::sync::atomic::Ordering::SeqCst);
        durability
            .write_witness(true)
            .map_err(|source| StoreError::Sync {
                dir: dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            db,
            tree,
            durability: std::sync::Arc::new(durability),
        })
    }

    /// The filesystem holding the store, as the collector's user sees it (statvfs). Blocking.
    pub fn filesystem_space(&self) -> std::io::Result<FilesystemSpace> {
        Ok(FilesystemSpace {
            available_bytes: fs2::available_space(&self.durability.dir)?,
            size_bytes: fs2::total_space(&self.durability.dir)?,
        })
    }

    /// The number the next commit carries (stored in its own batch, so the log and the number
    /// cannot disagree).
    fn next_generation(&self) -> Vec<u8> {
        let g = self
            .durability
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        g.to_be_bytes().to_vec()
    }

    fn witness(&self, force: bool) -> Result<(), StoreError> {
        self.durability
            .write_witness(force)
            .map_err(|source| StoreError::Sync {
                dir: self.durability.dir.display().to_string(),
                source,
            })
    }

    /// `flush`, then what sled's flush leaves out: the data reaches the disk (see [`Durability`]).
    fn flush_durably(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.durability.sync().map_err(|source| StoreError::Sync {
            dir: self.durability.dir.display().to_string(),
            source,
        })
    }

    /// Writes a batch atomically and flushes it to disk. Blocking: call from a blocking thread.
    pub fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        let mut b = batch.batch;
        b.insert(GENERATION, self.next_generation());
        self.tree.apply_batch(b)?;
        self.flush_durably()?;
        self.witness(false)?;
        Ok(())
    }

    /// Every (key, value) under a key prefix (for the small credential tables). Blocking.
    pub fn raw_scan(&self, prefix: &[u8]) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix) {
            out.push(kv?);
        }
        Ok(out)
    }

    /// Writes one key and flushes (credentials: durable before anyone is told). Blocking.
    pub fn raw_put_flush(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.insert(key, value);
        b.insert(GENERATION, self.next_generation());
        self.tree.apply_batch(b)?;
        self.flush_durably()?;
        Ok(())
    }

    /// Writes several keys as one atomic batch and flushes. Blocking.
    pub fn raw_put_all_flush(&self, kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in kvs {
            b.insert(k.as_slice(), v.as_slice());
        }
        b.insert(GENERATION, self.next_generation());
        self.tree.apply_batch(b)?;
        self.flush_durably()?;
        Ok(())
    }

    /// Removes keys and flushes. Blocking.
    pub fn raw_remove_flush(&self, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for k in keys {
            b.remove(k.as_slice());
        }
        b.insert(GENERATION, self.next_generation());
        self.tree.apply_batch(b)?;
        self.flush_durably()?;
        Ok(())
    }

    /// Flushes everything written so far to disk, and records it in the witness file. Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_durably()?;
        self.witness(true)?;
        Ok(())
    }

    /// Bytes of keys and values stored (what is live, before sled's own overhead), by key kind.
    pub fn live_bytes(&self) -> Result<std::collections::BTreeMap<char, u64>, StoreError> {
        let mut by_kind = std::collections::BTreeMap::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let kind = k.first().map(|b| *b as char).unwrap_or('?');
            *by_kind.entry(kind).or_insert(0) += (k.len() + v.len()) as u64;
        }
        Ok(by_kind)
    }

    /// Whether a report is stored.
    pub fn has_report(&self, key: &TerminalKey, seq: u64) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key.report_key(seq))?)
    }

    /// Whether the stored report `seq` is this one, byte for byte (an elided one: the same round,
    /// by its time); `None` when nothing is stored under it.
    pub fn same_report(
        &self,
        key: &TerminalKey,
        seq: u64,
        encoded: &[u8],
        finished_at_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let k = key.report_key(seq);
        let Some(v) = self.tree.get(&k)? else {
            return Ok(None);
        };
        match report_header(&v) {
            Some(h) if h.full => Ok(Some(&v[h.body..] == encoded)),
            Some(h) => Ok(Some(h.finished_at_ms == finished_at_ms)),
            None => Err(StoreError::CorruptValue {
                key: String::from_utf8_lossy(&k).replace('\0', "/"),
                reason: "unknown stored report kind".into(),
            }),
        }
    }

    /// One stored report.
    pub fn report(&self, key: &TerminalKey, seq: u64) -> Result<Option<StoredReport>, StoreError> {
        let k = key.report_key(seq);
        match self.tree.get(&k)? {
            None => Ok(None),
            Some(v) => decode_report(&k, &v).map(Some),
        }
    }

    /// The newest report of a terminal stored whole (the latest change or keyframe).
    pub fn latest_full_report(&self, key: &TerminalKey) -> Result<Option<Report>, StoreError> {
        let start = key.report_key(0);
        let end = key.report_key(u64::MAX);
        for kv in self.tree.range(start..=end).rev() {
            let (k, v) = kv?;
            if report_header(&v).is_some_and(|h| h.full) {
                if let StoredReport::Full(r) = decode_report(&k, &v)? {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// Reports of a terminal from the oldest, as (seq, the time the collector received it), while
    /// `keep_going` says so.
    pub fn report_times(
        &self,
        key: &TerminalKey,
        mut keep_going: impl FnMut(u64, i64) -> bool,
    ) -> Result<(), StoreError> {
        let start = key.report_key(0);
        let end = key.report_key(u64::MAX);
        for kv in self.tree.range(start..=end) {
            let (k, v) = kv?;
            let seq = k
                .len()
                .checked_sub(8)
                .and_then(|i| k[i..].try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let at = report_header(&v).map(|h| h.received_ms).unwrap_or(0);
            if !keep_going(seq, at) {
                break;
            }
        }
        Ok(())
    }

    /// Every site's derived state.
    pub fn sites(&self) -> Result<Vec<SiteState>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(b"S") {
            let (k, v) = kv?;
            out.push(from_json(&k, &v)?);
        }
        Ok(out)
    }

    /// Every kept area-wide incident, oldest first.
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(b"I") {
            let (k, v) = kv?;
            out.push(from_json(&k, &v)?);
        }
        Ok(out)
    }

    /// One site's derived state.
    pub fn site(&self, site: &str) -> Result<Option<SiteState>, StoreError> {
        let k = site_key(site);
        self.tree.get(&k)?.map(|v| from_json(&k, &v)).transpose()
    }

    /// The id the next event gets.
    pub fn next_event_id(&self) -> Result<u64, StoreError> {
        Ok(self
            .tree
            .get(NEXT_EVENT_ID)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1))
    }

    /// History points of one terminal's check in `[from_ms, to_ms]`, oldest first: the newest
    /// `limit` of them (a long window shows its recent end whole). Returns the points and whether
    /// older ones matched too.
    pub fn history(
        &self,
        key: &TerminalKey,
        check: Check,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<(Vec<(u64, HistoryPoint)>, bool), StoreError> {
        let start = key.history_key(check, from_ms, 0);
        let end = key.history_key(check, to_ms, u64::MAX);
        let mut out = Vec::new();
        let mut more = false;
        for kv in self.tree.range(start..=end).rev() {
            let (k, v) = kv?;
            if out.len() == limit {
                more = true;
                break;
            }
            out.push((seq_of(&k), from_json(&k, &v)?));
        }
        out.reverse();
        Ok((out, more))
    }

    /// One terminal's points of `check` in `[from_ms, to_ms]`, oldest first, each handed to `f`
    /// as it is read (with the point in force before it: the last first/change point, whose
    /// detail is the full state) — at most the newest `limit`; `true` when older ones of the
    /// window were left out. Only one point's detail is held at a time: `f` keeps what it needs.
    pub fn history_each<T>(
        &self,
        key: &TerminalKey,
        check: Check,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        mut f: impl FnMut(u64, &HistoryPoint, Option<&HistoryPoint>) -> T,
    ) -> Result<(Vec<T>, bool), StoreError> {
        let lo = key.history_key(check, from_ms, 0);
        let hi = key.history_key(check, to_ms, u64::MAX);
        // The newest `limit` points: where they start (keys only, nothing parsed).
        let mut start = lo.clone();
        let mut more = false;
        for (n, kv) in self.tree.range(lo.clone()..=hi.clone()).rev().enumerate() {
            let (k, _) = kv?;
            if n == limit {
                more = true;
                break;
            }
            start = k.to_vec();
        }
        let mut in_force = self.history_full_before(key, check, &start)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok((out, more));
        }
        for kv in self.tree.range(start..=hi) {
            let (k, v) = kv?;
            let p: HistoryPoint = from_json(&k, &v)?;
            out.push(f(seq_of(&k), &p, in_force.as_ref()));
            if p.kind != crate::history::PointKind::Keyframe {
                in_force = Some(p);
            }
        }
        Ok((out, more))
    }

    /// The last first/change point of a series keyed before `before` (its full state), looking
    /// back over at most [`IN_FORCE_SCAN`] points (hourly keyframes: over a year).
    fn history_full_before(
        &self,
        key: &TerminalKey,
        check: Check,
        before: &[u8],
    ) -> Result<Option<HistoryPoint>, StoreError> {
        let lo = key.history_key(check, 0, 0);
        for kv in self
            .tree
            .range(lo.as_slice()..before)
            .rev()
            .take(IN_FORCE_SCAN)
        {
            let (k, v) = kv?;
            let p: HistoryPoint = from_json(&k, &v)?;
            if p.kind != crate::history::PointKind::Keyframe {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// The point of a series at (`at_ms`, `seq`), and the point in force before it.
    #[allow(clippy::type_complexity)]
    pub fn history_point(
        &self,
        key: &TerminalKey,
        check: Check,
        at_ms: i64,
        seq: u64,
    ) -> Result<Option<(HistoryPoint, Option<HistoryPoint>)>, StoreError> {
        let k = key.history_key(check, at_ms, seq);
        let Some(v) = self.tree.get(&k)? else {
            return Ok(None);
        };
        let p: HistoryPoint = from_json(&k, &v)?;
        let before = self.history_full_before(key, check, &k)?;
        Ok(Some((p, before)))
    }

    /// The latest point of a series keyed before `before_ms`, with the point in force before it:
    /// what held when a window starts.
    #[allow(clippy::type_complexity)]
    pub fn history_at(
        &self,
        key: &TerminalKey,
        check: Check,
        before_ms: i64,
    ) -> Result<Option<(u64, HistoryPoint, Option<HistoryPoint>)>, StoreError> {
        let lo = key.history_key(check, 0, 0);
        let hi = key.history_key(check, before_ms, 0);
        let Some(kv) = self.tree.range(lo..hi).next_back() else {
            return Ok(None);
        };
        let (k, v) = kv?;
        let p: HistoryPoint = from_json(&k, &v)?;
        let before = if p.kind == crate::history::PointKind::Keyframe {
            self.history_full_before(key, check, &k)?
        } else {
            None
        };
        Ok(Some((seq_of(&k), p, before)))
    }

    /// Keys of one terminal's history series received before `before_ms`, at most `limit`.
    ///
    /// A point is never drawn after it was received, so every such point is keyed before
    /// `before_ms`; those keyed before but received since (a spool replayed after an outage) are
    /// passed over, at most `4 * limit` of them per call, so one long outage cannot make a sweep
    /// read a whole series.
    pub fn history_keys_before(
        &self,
        key: &TerminalKey,
        check: Check,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        let start = key.history_key(check, 0, 0);
        let end = key.history_key(check, before_ms, 0);
        let mut out = Vec::new();
        for kv in self.tree.range(start..end).take(limit.saturating_mul(4)) {
            let (k, v) = kv?;
            let p: HistoryPoint = from_json(&k, &v)?;
            if p.received_ms() < before_ms {
                out.push(k);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Events, newest first, for one site or all, recorded at or after `since_ms`, at most
    /// `limit`; and whether more matched.
    pub fn events(
        &self,
        site: Option<&str>,
        since_ms: i64,
        limit: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let prefix = match site {
            Some(s) => site_event_prefix(s),
            None => b"E".to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix).rev() {
            let (k, v) = kv?;
            let e: Event = from_json(&k, &v)?;
            // The window goes by the collector's clock (a terminal's days behind must not hide
            // what it just said); ids grow with it, so nothing older can match.
            if e.recorded_ms < since_ms {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(e);
        }
        Ok((out, false))
    }

    /// One site's flag changes recorded since `since_ms`, newest first: only what the monthly
    /// availability needs of each event (cheaper to decode than whole events).
    pub fn flag_changes(
        &self,
        site: &str,
        since_ms: i64,
    ) -> Result<Vec<crate::availability::FlagChange>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(site_event_prefix(site)).rev() {
            let (k, v) = kv?;
            let e: crate::availability::FlagChange = from_json(&k, &v)?;
            if e.recorded_ms < since_ms {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Event keys (both indexes) of events recorded before `before_ms`, at most `limit` events.
    pub fn event_keys_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(b"E").take(limit) {
            let (k, v) = kv?;
            let e: Event = from_json(&k, &v)?;
            if e.recorded_ms >= before_ms {
                break;
            }
            out.push(k.to_vec());
            out.push(site_event_key(&e.site, e.id));
        }
        Ok(out)
    }

    /// How many reports of a terminal are stored (a range scan over its keys).
    pub fn count_reports(&self, key: &TerminalKey) -> Result<u64, StoreError> {
        let start = key.report_key(0);
        let end = key.report_key(u64::MAX);
        let mut n = 0;
        for kv in self.tree.range(start..=end) {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    /// One terminal's record.
    pub fn terminal(&self, key: &TerminalKey) -> Result<Option<TerminalRecord>, StoreError> {
        let k = key.record_key();
        match self.tree.get(&k)? {
            None => Ok(None),
            Some(v) => decode_record(key, &v).map(Some),
        }
    }

    /// Every terminal, in (site, terminal) order.
    pub fn terminals(&self) -> Result<Vec<(TerminalKey, TerminalRecord)>, StoreError> {
        self.scan_terminals(b"T".to_vec())
    }

    /// The terminals of one site, in terminal order.
    pub fn site_terminals(
        &self,
        site: &str,
    ) -> Result<Vec<(TerminalKey, TerminalRecord)>, StoreError> {
        let mut prefix = b"T".to_vec();
        prefix.extend_from_slice(site.as_bytes());
        prefix.push(0);
        self.scan_terminals(prefix)
    }

    fn scan_terminals(
        &self,
        prefix: Vec<u8>,
    ) -> Result<Vec<(TerminalKey, TerminalRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            // Keys that do not parse cannot have been written by this code; skip rather than fail
            // the whole listing.
            let Some(key) = TerminalKey::from_record_key(&k) else {
                continue;
            };
            let rec = decode_record(&key, &v)?;
            out.push((key, rec));
        }
        Ok(out)
    }
}

fn decode_report(k: &[u8], v: &[u8]) -> Result<StoredReport, StoreError> {
    let corrupt = |reason: String| StoreError::CorruptValue {
        key: String::from_utf8_lossy(k).replace('\0', "/"),
        reason,
    };
    match report_header(v) {
        Some(h) if h.full => Report::decode(&v[h.body..])
            .map(StoredReport::Full)
            .map_err(|e| corrupt(e.to_string())),
        Some(h) => Ok(StoredReport::Elided {
            finished_at_ms: h.finished_at_ms,
        }),
        None => Err(corrupt("unknown stored report kind".into())),
    }
}

fn decode_record(key: &TerminalKey, v: &[u8]) -> Result<TerminalRecord, StoreError> {
    let mut rec = TerminalRecord::decode(v).map_err(|source| StoreError::Corrupt {
        key: format!("{}/{}", key.site, key.terminal),
        source,
    })?;
    // Decoding grows the rollups by doubling (8 slots for 6); the committer keeps every record.
    rec.rollups.shrink_to_fit();
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled fixes compression when a store is created: a store made compressed (the default
    /// of earlier releases) opens, whole, under the uncompressed default, and the other way round.
    #[test]
    fn a_store_keeps_the_compression_it_was_created_with() {
        for (made, asked) in [(Some(3), None), (None, Some(3))] {
            let dir = tempfile::tempdir().unwrap();
            {
                let s = Store::open_checked(dir.path(), 1 << 20, made, false).unwrap();
                s.raw_put_flush(b"xk", b"kept").unwrap();
                s.flush().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            let s = Store::open_checked(dir.path(), 1 << 20, asked, false)
                .unwrap_or_else(|e| panic!("made {made:?}, opened {asked:?}: {e}"));
            let kv = s.raw_scan(b"x").unwrap();
            assert_eq!(kv.len(), 1, "made {made:?}, opened {asked:?}");
            assert_eq!(kv[0].1.as_ref(), b"kept");
        }
    }

    /// A closed store holding keys `x0`..`x4`, one commit each, its witness saying 5 (as after a
    /// shutdown).
    fn store_of_five_commits() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for i in 0..5u8 {
            s.raw_put_flush(&[b'x', i], b"v").unwrap();
        }
        s.flush().unwrap();
        dir
    }

    #[test]
    fn a_log_that_lost_acknowledged_writes_stops_the_open_and_says_how_to_recover() {
        let dir = store_of_five_commits();
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Reopened as it is: fine, and the count goes on.
        drop(Store::open(dir.path()).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The log overwritten: sled may notice (corruption), naming the file and the recovery.
        let saved = tempfile::tempdir().unwrap();
        for f in ["db", "conf", WITNESS_FILE] {
            std::fs::copy(dir.path().join(f), saved.path().join(f)).unwrap();
        }
        let log = dir.path().join("db");
        let len = std::fs::metadata(&log).unwrap().len() as usize;
        std::fs::write(&log, vec![0x5a; len]).unwrap();
        if let Err(e) = Store::open(dir.path()) {
            let text = e.to_string();
            for needle in ["/db", "move", "backup"] {
                assert!(text.contains(needle), "{needle}: {text}");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The log cut short: sled silently recovers it to an earlier point (here, empty); the
        // witness tells.
        for f in ["db", "conf", WITNESS_FILE] {
            std::fs::copy(saved.path().join(f), dir.path().join(f)).unwrap();
        }
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(10).unwrap();
        drop(f);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        let e = match Store::open(dir.path()) {
            Err(e) => e,
            Ok(_) => panic!("a store that lost acknowledged writes opened"),
        };
        assert!(
            matches!(
                e,
                StoreError::LostWrites {
                    witness_generation: 5,
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        for needle in ["/db", "oqs-witness", "move", "backup", "accept_lost_writes"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        // Accepted once: it opens on what is left, and the next open is clean again.
        drop(Store::open_checked(dir.path(), 1 << 20, Some(3), true).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(Store::open(dir.path()).unwrap());
        // A witness file that is not ours is an error naming it, never ignored.
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::write(dir.path().join(WITNESS_FILE), "junk").unwrap();
        let e = Store::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("oqs-witness"), "{e}");
    }

    #[test]
    fn an_unfinished_snapshot_left_by_a_full_disk_does_not_stop_the_next_open() {
        let dir = store_of_five_commits();
        std::thread::sleep(std::time::Duration::from_millis(100));
        // What sled leaves when its start-up snapshot cannot be written: the file created, its
        // bytes not (or only some), never renamed. Named newer than any snapshot it made.
        let empty = dir.path().join("snap.FFFFFFFFFFFFFFF0.generating");
        let partial = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&partial, [0x5a; 100]).unwrap();
        let config = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .use_compression(true)
            .compression_factor(3);
        // sled alone refuses the store for it (what this guards against).
        let e = open_waiting_for_lock(&config, LOCK_WAIT).unwrap_err();
        assert!(matches!(e, sled::Error::Corruption { .. }), "{e}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let s = Store::open(dir.path()).unwrap();
        for i in 0..5u8 {
            assert_eq!(s.raw_scan(&[b'x', i]).unwrap().len(), 1, "entry {i}");
        }
        assert!(!empty.exists() && !partial.exists());
        drop(s);
        std::thread::sleep(std::time::Duration::from_millis(100));
        // A log damaged itself, an unfinished snapshot beside it: the snapshot goes, and the
        // open still fails naming the log (sled's corruption, or the witness's lost writes).
        let log = dir.path().join("db");
        let len = std::fs::metadata(&log).unwrap().len() as usize;
        std::fs::write(&log, vec![0x5a; len]).unwrap();
        std::fs::write(&partial, [0x5a; 100]).unwrap();
        let e = match Store::open(dir.path()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a store whose log was overwritten opened"),
        };
        assert!(e.contains("/db"), "{e}");
        assert!(!partial.exists());
    }

    #[test]
    fn an_open_waits_for_a_released_lock_and_names_a_held_one() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        let config = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .use_compression(true)
            .compression_factor(3);
        // Held for longer than the wait: the error is the lock's, and says another collector.
        let e = open_waiting_for_lock(&config, std::time::Duration::from_millis(100)).unwrap_err();
        assert!(is_lock_contention(&e), "{e}");
        let e = open_error(dir.path(), e);
        assert!(e.to_string().contains("another oqs-collector"), "{e}");
        // Released while waiting: the open succeeds.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        let db = open_waiting_for_lock(&config, LOCK_WAIT).unwrap();
        releaser.join().unwrap();
        drop(db);
        // Another error is not retried.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let started = std::time::Instant::now();
        let e = open_waiting_for_lock(&sled::Config::new().path(&file), LOCK_WAIT).unwrap_err();
        assert!(!is_lock_contention(&e), "{e}");
        assert!(started.elapsed() < LOCK_WAIT);
    }

    #[test]
    fn report_keys_sort_by_seq_within_a_terminal() {
        let k = TerminalKey::new("s", "t");
        assert!(k.report_key(2) < k.report_key(256));
        assert!(k.report_key(u64::MAX) > k.report_key(1 << 40));
        // A terminal whose id is a prefix of another's never interleaves with it.
        let k2 = TerminalKey::new("s", "t2");
        assert!(k.report_key(u64::MAX) < k2.report_key(0));
    }

    /// A record read back holds its rollups in exactly the room they need (decoding grows by
    /// doubling), by either way it is read: the committer keeps every record in memory.
    #[test]
    fn a_record_read_back_keeps_its_rollups_in_the_room_they_need() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = TerminalKey::new("site-a", "pc-1");
        let rec = TerminalRecord {
            rollups: (0..6)
                .map(|i| CheckRollup {
                    check: format!("check-{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut b = CommitBatch::default();
        b.put_terminal(&key, &rec);
        store.commit(b).unwrap();
        let one = store.terminal(&key).unwrap().unwrap();
        assert_eq!(one, rec);
        assert_eq!(one.rollups.capacity(), 6);
        let all = store.terminals().unwrap();
        assert_eq!(all[0].1.rollups.capacity(), 6);
    }

    #[test]
    fn batch_writes_reports_and_records_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = TerminalKey::new("site-a", "pc-1");
        let report = Report {
            seq: 7,
            ..Default::default()
        };
        let mut b = CommitBatch::default();
        b.put_report(&key, 7, 99, 1_099, &report.encode_to_vec());
        b.put_elided(&key, 8, 100, 1_100);
        b.put_terminal(
            &key,
            &TerminalRecord {
                last_seq: 7,
                reports_total: 1,
                ..Default::default()
            },
        );
        store.commit(b).unwrap();
        assert_eq!(
            store.report(&key, 7).unwrap(),
            Some(StoredReport::Full(report.clone()))
        );
        assert_eq!(
            store.report(&key, 8).unwrap(),
            Some(StoredReport::Elided {
                finished_at_ms: 100
            })
        );
        assert_eq!(
            store.latest_full_report(&key).unwrap(),
            Some(report.clone())
        );
        assert!(store.has_report(&key, 7).unwrap());
        assert!(!store.has_report(&key, 6).unwrap());
        assert_eq!(store.count_reports(&key).unwrap(), 2);
        let times = |store: &Store| {
            let mut v = Vec::new();
            store
                .report_times(&key, |seq, at| {
                    v.push((seq, at));
                    true
                })
                .unwrap();
            v
        };
        assert_eq!(
            times(&store),
            vec![(7, 1_099), (8, 1_100)],
            "retention's receive times"
        );
        // Reports stored before receive times were kept count as received at their own time.
        let mut legacy = vec![KIND_FULL];
        legacy.extend_from_slice(&55i64.to_be_bytes());
        legacy.extend_from_slice(&report.encode_to_vec());
        store.tree.insert(key.report_key(5), legacy).unwrap();
        let mut legacy = vec![KIND_ELIDED];
        legacy.extend_from_slice(&66i64.to_be_bytes());
        store.tree.insert(key.report_key(6), legacy).unwrap();
        assert_eq!(
            store.report(&key, 5).unwrap(),
            Some(StoredReport::Full(report.clone()))
        );
        assert_eq!(
            store.report(&key, 6).unwrap(),
            Some(StoredReport::Elided { finished_at_ms: 66 })
        );
        assert_eq!(
            store
                .same_report(&key, 5, &report.encode_to_vec(), 0)
                .unwrap(),
            Some(true)
        );
        assert_eq!(store.same_report(&key, 6, &[], 66).unwrap(), Some(true));
        assert_eq!(store.same_report(&key, 8, &[], 100).unwrap(), Some(true));
        assert_eq!(store.same_report(&key, 8, &[], 101).unwrap(), Some(false));
        assert_eq!(
            times(&store),
            vec![(5, 55), (6, 66), (7, 1_099), (8, 1_100)]
        );
        store.tree.insert(key.report_key(9), vec![9u8; 17]).unwrap();
        assert!(matches!(
            store.report(&key, 9),
            Err(StoreError::CorruptValue { .. })
        ));
        let all = store.terminals().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, key);
        assert_eq!(all[0].1.last_seq, 7);
        assert_eq!(store.site_terminals("site-a").unwrap().len(), 1);
        assert_eq!(store.site_terminals("site").unwrap().len(), 0);
    }
}
