//! The agent's on-disk spool: every report stays here, one file per report, until the collector
//! acknowledges it, so nothing is lost across a network outage or an agent restart.
//!
//! Bounded in bytes: when a new report would exceed the bound the oldest are dropped, and the
//! count of dropped reports is kept (and reported in every Report). Files are written to a
//! temporary name, synced, renamed, and the directory synced, so a crash or a power cut never
//! leaves half a report nor loses a new one's name. Room is made in order of what matters least:
//! quarantined files, then acknowledged copies, then (counted) the oldest unsent reports — on the
//! byte bound and on a disk that is full alike; a round that still cannot be written is counted
//! with the dropped ones, never silently lost. A file that no longer decodes as the report its
//! name says (truncated by a disk error, a backup, an antivirus) is set aside as
//! `{seq}.quarantined`, counted, and never blocks the reports after it. Must never hold a report
//! the collector has acknowledged, and never reuse a seq.

use oqs_proto::v1::Report;
use oqs_proto::MAX_SEQ;
use prost::Message;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What the spool could not do.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("spool state file {path} is corrupt: {message}")]
    State { path: String, message: String },
    #[error("seq {0} is beyond the limit {max}: the spool's counter or the collector's last stored seq is damaged; nothing was dropped", max = MAX_SEQ)]
    SeqLimit(u64),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The spool directory and what it holds.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// seq → file size.
    held: BTreeMap<u64, u64>,
    bytes: u64,
    next_seq: u64,
    dropped_total: u64,
    /// The highest seq handed to a collector stream (persisted before it is sent): a report
    /// above it was never sent, so a collector claiming to store it stores someone else's.
    sent_through: u64,
    /// While unsent held reports are being renumbered above a collector's `last_stored_seq`: the
    /// first new seq. Persisted (the state file's fourth field) so a crash midway resumes instead
    /// of taking the reports not yet moved for delivered ones.
    renumbering_from: Option<u64>,
    /// Acknowledged reports still kept (`{seq}.acked`): seq → (size, when written). A collector
    /// restored from an older backup asks for them again ([`Spool::accept_welcome`]).
    kept: BTreeMap<u64, (u64, SystemTime)>,
    kept_bytes: u64,
    /// How long an acknowledged report is kept (zero: not at all).
    keep_acked: Duration,
    /// Reports set aside (`{seq}.quarantined`): seq → size. Kept for an engineer, within the
    /// spool's bytes, the first to go when room is needed.
    quarantine: BTreeMap<u64, u64>,
    quarantine_bytes: u64,
    /// How many reports were ever set aside (the file `quarantined`).
    quarantined_total: u64,
}

/// The marker of a renumbering decided ([`Spool::restart_from`]): "old new" per line.
const RENUMBER_DONE: &str = "renumber.done";

/// What a collector's `last_stored_seq` did to the spool ([`Spool::accept_welcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Welcomed {
    /// The reports up to it were delivered: this many were forgotten.
    Delivered(usize),
    /// It is at or above this agent's own counter (reinstalled, a restored disk image, another
    /// machine with the same ids): nothing held was delivered, and this many reports now carry
    /// seqs above it.
    Renumbered(usize),
    /// It is below what this collector had acknowledged (a store restored from a backup, a
    /// damaged disk): this many kept acknowledged reports above it are sent again.
    Resent(usize),
}

/// Deletes a file; one already gone is not an error (a crash between the two steps of a move).
fn remove_if_present(p: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(p)(e)),
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // A full disk leaves a partial file: it must not be taken for a report later.
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path)
}

/// Makes a rename in `path`'s directory durable: without it a power cut can lose the newest
/// reports' names although their contents were synced. (Windows has no directory handle to
/// sync; NTFS journals its metadata.)
fn sync_dir(path: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether an I/O error means the disk (or the user's quota) is full.
fn disk_full(e: &SpoolError) -> bool {
    match e {
        SpoolError::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::StorageFull
                || source.kind() == std::io::ErrorKind::QuotaExceeded
                // ENOSPC where the kind is not mapped.
                || source.raw_os_error() == Some(28)
        }
        _ => false,
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut held = BTreeMap::new();
        let mut bytes = 0;
        let mut kept = BTreeMap::new();
        let mut kept_bytes = 0;
        let mut quarantine = BTreeMap::new();
        let mut quarantine_bytes = 0;
        Self::finish_renumbering(dir)?;
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(seq) = name
                .strip_suffix(".report")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let len = entry.metadata().map_err(io(&entry.path()))?.len();
                held.insert(seq, len);
                bytes += len;
            } else if let Some(seq) = name
                .strip_suffix(".acked")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let meta = entry.metadata().map_err(io(&entry.path()))?;
                let written = meta.modified().unwrap_or_else(|_| SystemTime::now());
                kept.insert(seq, (meta.len(), written));
                kept_bytes += meta.len();
            } else if let Some(seq) = name
                .strip_suffix(".quarantined")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let len = entry.metadata().map_err(io(&entry.path()))?.len();
                quarantine.insert(seq, len);
                quarantine_bytes += len;
            } else if name.ends_with(".tmp") {
                // A write that never finished: it was never sent, so it is not lost data.
                let _ = fs::remove_file(entry.path());
            }
        }
        let state_path = dir.join("state");
        let (mut next_seq, dropped_total, sent_through, renumbering_from) =
            match fs::read_to_string(&state_path) {
                Ok(s) => {
                    let mut it = s.split_whitespace().map(str::parse::<u64>);
                    let ok = |v: u64| v <= MAX_SEQ + 1;
                    match (it.next(), it.next(), it.next(), it.next()) {
                        // Written before sends were recorded: everything below the counter may have
                        // been sent.
                        (Some(Ok(n)), Some(Ok(d)), None, None) if ok(n) => {
                            (n, d, n.saturating_sub(1), None)
                        }
                        (Some(Ok(n)), Some(Ok(d)), Some(Ok(t)), None) if ok(n) && t < n => {
                            (n, d, t, None)
                        }
                        (Some(Ok(n)), Some(Ok(d)), Some(Ok(t)), Some(Ok(r)))
                            if ok(n) && t < n && r <= MAX_SEQ =>
                        {
                            (n, d, t, Some(r))
                        }
                        _ => {
                            return Err(SpoolError::State {
                                path: state_path.display().to_string(),
                                message: format!(
                                    "expected \"next_seq dropped_total [sent_through \
                                 [renumbering_from]]\" with seqs at most {MAX_SEQ}, found {s:?}"
                                ),
                            })
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (1, 0, 0, None),
                Err(e) => return Err(io(&state_path)(e)),
            };
        if let Some((&last, _)) = held.iter().next_back() {
            next_seq = next_seq.max(last + 1);
        }
        let quarantined_total = fs::read_to_string(dir.join("quarantined"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0u64)
            .max(quarantine.len() as u64);
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            held,
            bytes,
            next_seq: next_seq.max(1),
            dropped_total,
            sent_through,
            renumbering_from,
            kept,
            kept_bytes,
            keep_acked: Duration::ZERO,
            quarantine,
            quarantine_bytes,
            quarantined_total,
        })
    }

    fn quarantine_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.quarantined"))
    }

    /// Sets a held report aside, unsent: its file kept as `{seq}.quarantined` for an engineer,
    /// counted in [`Spool::quarantined_total`], never sent again.
    pub fn quarantine(&mut self, seq: u64) -> Result<(), SpoolError> {
        let Some(size) = self.held.remove(&seq) else {
            return Ok(());
        };
        self.bytes -= size;
        let (from, to) = (self.path(seq), self.quarantine_path(seq));
        match fs::rename(&from, &to) {
            Ok(()) => {
                self.quarantine.insert(seq, size);
                self.quarantine_bytes += size;
                sync_dir(&to)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&from)(e)),
        }
        self.quarantined_total += 1;
        write_atomic(
            &self.dir.join("quarantined"),
            format!("{}\n", self.quarantined_total).as_bytes(),
        )
    }

    /// Reports set aside over the agent's lifetime.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined_total
    }

    /// Frees the oldest quarantined file; false when there is none.
    fn forget_quarantined(&mut self) -> Result<bool, SpoolError> {
        let Some((&seq, &size)) = self.quarantine.iter().next() else {
            return Ok(false);
        };
        remove_if_present(&self.quarantine_path(seq))?;
        self.quarantine.remove(&seq);
        self.quarantine_bytes -= size;
        Ok(true)
    }

    /// Frees what matters least first: a quarantined file, else the oldest acknowledged copy.
    /// False when neither is left.
    fn free_least_needed(&mut self) -> Result<bool, SpoolError> {
        if self.forget_quarantined()? {
            return Ok(true);
        }
        match self.kept.keys().next().copied() {
            Some(oldest) => {
                self.forget_kept(oldest)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Keeps acknowledged reports for `window` (within the spool's bytes) instead of deleting
    /// them at once, so a collector that lost them can be given them again.
    pub fn keeping_acked_for(mut self, window: Duration) -> Self {
        self.keep_acked = window;
        self
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.report"))
    }

    fn kept_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.acked"))
    }

    /// A report the collector acknowledged: kept for the window, else forgotten.
    pub fn acknowledge(&mut self, seq: u64) -> Result<(), SpoolError> {
        if self.keep_acked.is_zero() {
            return self.remove(seq);
        }
        if let Some(size) = self.held.remove(&seq) {
            let (from, to) = (self.path(seq), self.kept_path(seq));
            fs::rename(&from, &to).map_err(io(&from))?;
            self.bytes -= size;
            let written = fs::metadata(&to)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            self.kept.insert(seq, (size, written));
            self.kept_bytes += size;
        }
        self.expire_kept(SystemTime::now())
    }

    /// Forgets kept reports older than the window.
    pub fn expire_kept(&mut self, now: SystemTime) -> Result<(), SpoolError> {
        let old: Vec<u64> = self
            .kept
            .iter()
            .filter(|(_, (_, t))| now.duration_since(*t).unwrap_or_default() > self.keep_acked)
            .map(|(s, _)| *s)
            .collect();
        for s in old {
            self.forget_kept(s)?;
        }
        Ok(())
    }

    fn forget_kept(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some((size, _)) = self.kept.remove(&seq) {
            let p = self.kept_path(seq);
            remove_if_present(&p)?;
            self.kept_bytes -= size;
        }
        Ok(())
    }

    /// How many acknowledged reports are kept, and their bytes.
    pub fn kept(&self) -> (usize, u64) {
        (self.kept.len(), self.kept_bytes)
    }

    /// Puts the kept acknowledged reports above `stored` back in the queue (the collector lost
    /// them); returns how many.
    fn resend_kept_above(&mut self, stored: u64) -> Result<usize, SpoolError> {
        let back: Vec<u64> = self.kept.range(stored + 1..).map(|(s, _)| *s).collect();
        for &seq in &back {
            let (size, _) = self.kept.remove(&seq).expect("listed");
            self.kept_bytes -= size;
            let (from, to) = (self.kept_path(seq), self.path(seq));
            fs::rename(&from, &to).map_err(io(&from))?;
            self.held.insert(seq, size);
            self.bytes += size;
        }
        Ok(back.len())
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        let (n, d, t) = (self.next_seq, self.dropped_total, self.sent_through);
        let state = match self.renumbering_from {
            None => format!("{n} {d} {t}\n"),
            Some(r) => format!("{n} {d} {t} {r}\n"),
        };
        write_atomic(&self.dir.join("state"), state.as_bytes())
    }

    /// The seq the next report gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Reports dropped without reaching the collector (the spool was full, or a report was larger
    /// than the collector accepts), over the agent's lifetime.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// The highest seq held (0 when empty).
    pub fn highest_held(&self) -> u64 {
        self.held.keys().next_back().copied().unwrap_or(0)
    }

    /// How many reports are held, and their bytes.
    pub fn len(&self) -> usize {
        self.held.len()
    }
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves the seq counter above what the collector already stores (after the agent's state
    /// was lost, say), so no seq is reused.
    pub fn continue_above(&mut self, stored: u64) -> Result<(), SpoolError> {
        if stored > MAX_SEQ {
            return Err(SpoolError::SeqLimit(stored));
        }
        if self.next_seq <= stored {
            self.next_seq = stored + 1;
            self.save_state()?;
        }
        Ok(())
    }

    /// The highest seq a collector acknowledged to this spool (kept in the file `acked`).
    pub fn acked_through(&self) -> u64 {
        fs::read_to_string(self.dir.join("acked"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Records that the collector acknowledged `seq` (kept when it is the highest so far): the
    /// next Hello tells the collector, which can then see that its store lost acknowledged
    /// reports.
    pub fn mark_acked(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq > self.acked_through() {
            let p = self.dir.join("acked");
            loop {
                match write_atomic(&p, format!("{seq}\n").as_bytes()) {
                    Err(e) if disk_full(&e) && self.free_least_needed()? => continue,
                    r => return r,
                }
            }
        }
        Ok(())
    }

    /// Records, before they go out, that the reports up to `seq` are handed to a stream.
    pub fn mark_sent(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq > self.sent_through {
            self.sent_through = seq.min(self.next_seq.saturating_sub(1));
            self.persist_state()?;
        }
        Ok(())
    }

    /// Takes the reports after `acked` as never delivered (the collector said it holds another
    /// machine's reports under those seqs): the next Welcome renumbers them instead of taking
    /// them for delivered.
    pub fn unsend_after(&mut self, acked: u64) -> Result<(), SpoolError> {
        if self.sent_through > acked {
            self.sent_through = acked;
            self.save_state()?;
        }
        Ok(())
    }

    /// Takes a collector's `last_stored_seq`. What was sent up to it was delivered: it goes. But
    /// a held report up to it that was never sent cannot be the collector's (a reinstall, a
    /// restored disk image, another machine with the same ids, a seq that jumped): it and every
    /// unsent report after it are renumbered, in order, above the collector's seq, never dropped.
    /// Either way the counter continues above it. A crash while renumbering resumes on the next
    /// call (the state file says it was under way).
    pub fn accept_welcome(&mut self, stored: u64) -> Result<Welcomed, SpoolError> {
        if stored > MAX_SEQ {
            return Err(SpoolError::SeqLimit(stored));
        }
        // Below what it acknowledged: the collector lost reports; what is still kept goes again.
        let resent = if stored < self.acked_through() {
            self.resend_kept_above(stored)?
        } else {
            0
        };
        match self.welcome_held(stored)? {
            Welcomed::Delivered(_) if resent > 0 => Ok(Welcomed::Resent(resent)),
            w => Ok(w),
        }
    }

    fn welcome_held(&mut self, stored: u64) -> Result<Welcomed, SpoolError> {
        let delivered = stored.min(self.sent_through);
        let n = self.held.range(..=delivered).count();
        for seq in self
            .held
            .range(..=delivered)
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
        {
            self.acknowledge(seq)?;
        }
        let unsent_claimed = stored > self.sent_through
            && self
                .held
                .range(self.sent_through + 1..=stored)
                .next()
                .is_some();
        // Moved reports get seqs from `first_new` on, above everything held and the collector's.
        let first_new = match self.renumbering_from {
            Some(first_new) => first_new,
            None if unsent_claimed => {
                let top = self.held.keys().next_back().copied().unwrap_or(0);
                top.max(stored).saturating_add(1)
            }
            None => {
                self.continue_above(stored)?;
                return Ok(Welcomed::Delivered(n));
            }
        };
        if first_new > MAX_SEQ {
            return Err(SpoolError::SeqLimit(first_new));
        }
        self.renumbering_from = Some(first_new);
        self.save_state()?;
        // A resumed run: the reports already moved sit from `first_new` on; the rest follow them.
        let mut next = self
            .held
            .range(first_new..)
            .next_back()
            .map_or(first_new, |(s, _)| s + 1);
        let mut last_moved: Option<Vec<u8>> = match self.held.range(first_new..).next_back() {
            Some((&s, _)) => fs::read(self.path(s)).ok(),
            None => None,
        };
        let old: Vec<u64> = self
            .held
            .range(self.sent_through + 1..first_new)
            .map(|(s, _)| *s)
            .collect();
        let mut moved = 0;
        for seq in old {
            let p = self.path(seq);
            let data = fs::read(&p).map_err(io(&p))?;
            let Ok(mut report) = Report::decode(data.as_slice()) else {
                self.remove(seq)?;
                self.dropped_total += 1;
                continue;
            };
            // Written again but not yet removed before a crash: the copy is the newest moved one.
            let copy_exists = last_moved
                .as_deref()
                .and_then(|d| Report::decode(d).ok())
                .is_some_and(|mut m| {
                    m.seq = report.seq;
                    m == report
                });
            if !copy_exists {
                if next > MAX_SEQ {
                    return Err(SpoolError::SeqLimit(next));
                }
                report.seq = next;
                let bytes = report.encode_to_vec();
                let np = self.path(next);
                write_atomic(&np, &bytes)?;
                self.held.insert(next, bytes.len() as u64);
                self.bytes += bytes.len() as u64;
                last_moved = Some(bytes);
                next += 1;
                moved += 1;
            }
            self.remove(seq)?;
        }
        self.next_seq = self.next_seq.max(next);
        self.renumbering_from = None;
        self.save_state()?;
        Ok(Welcomed::Renumbered(moved))
    }

    fn renum_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.renum"))
    }

    /// Renumbers every held report above `stored` to `stored + 1`, `stored + 2`, … in order, and
    /// the counter after them: the collector said this agent's counter is damaged (a seq far
    /// above what it stores; `oqs_proto::SEQ_RESTART`), so nothing above `stored` was delivered.
    /// Returns how many were moved. Crash-safe in two phases: the new copies are written as
    /// `{new}.renum`, then [`RENUMBER_DONE`] lists the originals; only then are the originals
    /// removed and the copies renamed (an open finishes a renumbering its marker says was
    /// decided, and forgets copies no marker covers).
    pub fn restart_from(&mut self, stored: u64) -> Result<usize, SpoolError> {
        if stored >= MAX_SEQ {
            return Err(SpoolError::SeqLimit(stored));
        }
        // What is not a report any more is set aside first, so the new seqs have no holes.
        for seq in self
            .held
            .range(stored + 1..)
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
        {
            let p = self.path(seq);
            let ok = fs::read(&p)
                .ok()
                .and_then(|d| Report::decode(d.as_slice()).ok())
                .is_some_and(|r| r.seq == seq);
            if !ok {
                self.quarantine(seq)?;
            }
        }
        let olds: Vec<u64> = self.held.range(stored + 1..).map(|(s, _)| *s).collect();
        let mut marker = String::new();
        for (i, &old) in olds.iter().enumerate() {
            let new = stored + 1 + i as u64;
            let p = self.path(old);
            let data = fs::read(&p).map_err(io(&p))?;
            let mut r = Report::decode(data.as_slice()).map_err(|e| SpoolError::State {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            r.seq = new;
            write_atomic(&self.renum_path(new), &r.encode_to_vec())?;
            marker.push_str(&format!("{old} {new}\n"));
        }
        if olds.is_empty() {
            self.next_seq = stored + 1;
            self.sent_through = self.sent_through.min(stored);
            self.renumbering_from = None;
            self.save_state()?;
            return Ok(0);
        }
        write_atomic(&self.dir.join(RENUMBER_DONE), marker.as_bytes())?;
        Self::finish_renumbering(&self.dir)?;
        for &old in &olds {
            if let Some(size) = self.held.remove(&old) {
                self.bytes -= size;
            }
        }
        for i in 0..olds.len() as u64 {
            let new = stored + 1 + i;
            let p = self.path(new);
            let len = fs::metadata(&p).map_err(io(&p))?.len();
            self.held.insert(new, len);
            self.bytes += len;
        }
        self.next_seq = stored + 1 + olds.len() as u64;
        self.sent_through = stored;
        self.renumbering_from = None;
        self.save_state()?;
        Ok(olds.len())
    }

    /// Completes (or forgets) a renumbering of [`Spool::restart_from`] cut by a crash.
    fn finish_renumbering(dir: &Path) -> Result<(), SpoolError> {
        let marker = dir.join(RENUMBER_DONE);
        let path = |seq: u64, ext: &str| dir.join(format!("{seq:020}.{ext}"));
        match fs::read_to_string(&marker) {
            Ok(text) => {
                let moves: Vec<(u64, u64)> = text
                    .lines()
                    .filter_map(|l| {
                        let (a, b) = l.split_once(' ')?;
                        Some((a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect();
                for (old, _) in &moves {
                    remove_if_present(&path(*old, "report"))?;
                }
                for (_, new) in &moves {
                    let from = path(*new, "renum");
                    match fs::rename(&from, path(*new, "report")) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&from)(e)),
                    }
                }
                sync_dir(&marker)?;
                remove_if_present(&marker)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Copies of a renumbering never decided: the originals are all there.
                for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
                    if entry.file_name().to_string_lossy().ends_with(".renum") {
                        remove_if_present(&entry.path())?;
                    }
                }
            }
            Err(e) => return Err(io(&marker)(e)),
        }
        Ok(())
    }

    /// Stores a report under the next seq (set on the report) and returns it.
    pub fn push(&mut self, mut report: Report) -> Result<Report, SpoolError> {
        if self.next_seq > MAX_SEQ {
            return Err(SpoolError::SeqLimit(self.next_seq));
        }
        report.seq = self.next_seq;
        report.spool_dropped_total = self.dropped_total;
        if self.quarantined_total > 0 {
            report
                .agent
                .get_or_insert_with(Default::default)
                .quarantined_total = self.quarantined_total;
        }
        let data = report.encode_to_vec();
        let len = data.len() as u64;
        // Room is made from what matters least first: quarantined files, then acknowledged
        // copies (delivered already); an unsent report was not delivered.
        while self.bytes + self.kept_bytes + self.quarantine_bytes + len > self.max_bytes {
            if !self.free_least_needed()? {
                break;
            }
        }
        while !self.held.is_empty() && self.bytes + len > self.max_bytes {
            let (&oldest, &size) = self.held.iter().next().expect("not empty");
            let p = self.path(oldest);
            fs::remove_file(&p).map_err(io(&p))?;
            self.held.remove(&oldest);
            self.bytes -= size;
            self.dropped_total += 1;
            report.spool_dropped_total = self.dropped_total;
        }
        let data = report.encode_to_vec();
        let p = self.path(report.seq);
        // A full disk: what matters least makes room, then the write is tried again. A round that
        // still cannot be written is counted as dropped (the next report carries the count).
        let mut written = write_atomic(&p, &data);
        while written.as_ref().is_err_and(disk_full) && self.free_least_needed()? {
            written = write_atomic(&p, &data);
        }
        if let Err(e) = written {
            self.dropped_total += 1;
            // Kept in memory at least; on disk when there is room again.
            let _ = self.persist_state();
            return Err(e);
        }
        self.held.insert(report.seq, data.len() as u64);
        self.bytes += data.len() as u64;
        self.next_seq += 1;
        // The report is durable; a state that cannot be written now is rebuilt from the files at
        // the next open (the counter from the highest held seq).
        if let Err(e) = self.persist_state() {
            tracing::warn!(error = %e, "spool state not saved (the disk is full)");
        }
        Ok(report)
    }

    /// Saves the state, making room (quarantined files, acknowledged copies) on a full disk.
    fn persist_state(&mut self) -> Result<(), SpoolError> {
        loop {
            match self.save_state() {
                Err(e) if disk_full(&e) && self.free_least_needed()? => continue,
                r => return r,
            }
        }
    }

    /// Forgets every report up to and including `seq` (acknowledged, or refused for good).
    pub fn remove_through(&mut self, seq: u64) -> Result<(), SpoolError> {
        let gone: Vec<u64> = self.held.range(..=seq).map(|(s, _)| *s).collect();
        for s in gone {
            self.remove(s)?;
        }
        Ok(())
    }

    /// Forgets one report.
    pub fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(size) = self.held.remove(&seq) {
            let p = self.path(seq);
            remove_if_present(&p)?;
            self.bytes -= size;
        }
        Ok(())
    }

    /// Drops one report that can never be delivered (larger than the collector accepts), counted
    /// with the reports dropped for space.
    pub fn discard(&mut self, seq: u64) -> Result<(), SpoolError> {
        if self.held.contains_key(&seq) {
            self.remove(seq)?;
            self.dropped_total += 1;
            self.save_state()?;
        }
        Ok(())
    }

    /// The held reports with seq above `after`, in order. A file that is not the report its name
    /// says (it does not decode, or decodes as another seq: an empty file reads as seq 0) is set
    /// aside, counted, and does not block the reports after it.
    pub fn after(&mut self, after: u64) -> Result<Vec<Report>, SpoolError> {
        let seqs: Vec<u64> = self.held.range(after + 1..).map(|(s, _)| *s).collect();
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            let p = self.path(s);
            let data = match fs::read(&p) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Gone from under us (an antivirus, a hand): nothing to send.
                    if let Some(size) = self.held.remove(&s) {
                        self.bytes -= size;
                    }
                    continue;
                }
                Err(e) => return Err(io(&p)(e)),
            };
            match Report::decode(data.as_slice()) {
                Ok(r) if r.seq == s => out.push(r),
                _ => self.quarantine(s)?,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report told apart by its time.
    fn at(t: i64) -> Report {
        Report {
            started_at_ms: t,
            finished_at_ms: t + 1,
            ..Default::default()
        }
    }

    fn held(s: &mut Spool) -> Vec<(u64, i64)> {
        s.after(0)
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.started_at_ms))
            .collect()
    }

    #[test]
    fn a_welcome_below_the_counter_forgets_what_was_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in [10, 20, 30] {
            s.push(at(t)).unwrap();
        }
        s.mark_sent(3).unwrap();
        assert_eq!(s.accept_welcome(2).unwrap(), Welcomed::Delivered(2));
        assert_eq!(held(&mut s), [(3, 30)]);
        assert_eq!(s.next_seq(), 4);
    }

    #[test]
    fn a_welcome_at_or_above_the_counter_renumbers_instead_of_deleting() {
        // A reinstalled agent (fresh spool, seqs 1..3) meets a collector that stores up to 500.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in [10, 20, 30] {
            s.push(at(t)).unwrap();
        }
        assert_eq!(s.accept_welcome(500).unwrap(), Welcomed::Renumbered(3));
        assert_eq!(held(&mut s), [(501, 10), (502, 20), (503, 30)]);
        assert_eq!(s.next_seq(), 504);
        assert_eq!(s.push(at(40)).unwrap().seq, 504);
        // Survives a restart as it is.
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(held(&mut s).len(), 4);
        assert_eq!(s.accept_welcome(500).unwrap(), Welcomed::Delivered(0));
        assert_eq!(held(&mut s).len(), 4);
    }

    #[test]
    fn unsent_reports_the_collector_claims_are_renumbered_even_when_more_are_held() {
        // A restored disk image: five reports never sent, the collector stores up to 3.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in [10, 20, 30, 40, 50] {
            s.push(at(t)).unwrap();
        }
        assert_eq!(s.accept_welcome(3).unwrap(), Welcomed::Renumbered(5));
        assert_eq!(
            held(&mut s),
            [(6, 10), (7, 20), (8, 30), (9, 40), (10, 50)],
            "all kept, in their order"
        );
        // Sent ones the collector stores are delivered as before; unsent above it stay.
        s.mark_sent(7).unwrap();
        assert_eq!(s.accept_welcome(7).unwrap(), Welcomed::Delivered(2));
        assert_eq!(held(&mut s), [(8, 30), (9, 40), (10, 50)]);
    }

    #[test]
    fn reports_another_machine_holds_the_seqs_of_are_sent_again_above_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in [10, 20, 30] {
            s.push(at(t)).unwrap();
        }
        s.mark_sent(3).unwrap();
        // Seq 1 acked; 2 and 3 met the other machine's under the same seqs.
        s.remove(1).unwrap();
        s.unsend_after(1).unwrap();
        assert_eq!(s.accept_welcome(5).unwrap(), Welcomed::Renumbered(2));
        assert_eq!(held(&mut s), [(6, 20), (7, 30)]);
    }

    #[test]
    fn the_highest_acked_seq_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.acked_through(), 0);
        s.mark_acked(7).unwrap();
        s.mark_acked(5).unwrap();
        drop(s);
        assert_eq!(Spool::open(dir.path(), 1 << 20).unwrap().acked_through(), 7);
    }

    #[test]
    fn a_renumbering_cut_by_a_crash_resumes_without_loss_or_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in [10, 20, 30] {
            s.push(at(t)).unwrap();
        }
        // As if the agent died after writing the copy of seq 1 as 101, before removing seq 1.
        s.renumbering_from = Some(101);
        s.save_state().unwrap();
        let mut copy = at(10);
        copy.seq = 101;
        write_atomic(&s.path(101), &copy.encode_to_vec()).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        // The collector still says 100 (nothing was delivered meanwhile).
        assert_eq!(s.accept_welcome(100).unwrap(), Welcomed::Renumbered(2));
        assert_eq!(held(&mut s), [(101, 10), (102, 20), (103, 30)]);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.renumbering_from, None, "the state says it is done");
        assert_eq!(s.next_seq(), 104);
    }

    #[test]
    fn seqs_near_the_limit_are_refused_not_overflowed_and_nothing_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(at(10)).unwrap();
        for stored in [MAX_SEQ + 1, u64::MAX] {
            assert!(matches!(
                s.accept_welcome(stored),
                Err(SpoolError::SeqLimit(_))
            ));
        }
        assert_eq!(held(&mut s), [(1, 10)]);
        // Renumbering right up to the limit: the last seq fits, the next push is refused.
        assert_eq!(
            s.accept_welcome(MAX_SEQ - 1).unwrap(),
            Welcomed::Renumbered(1)
        );
        assert_eq!(held(&mut s), [(MAX_SEQ, 10)]);
        assert!(matches!(s.push(at(20)), Err(SpoolError::SeqLimit(_))));
        assert_eq!(held(&mut s), [(MAX_SEQ, 10)]);
        // A state file claiming a counter beyond the limit is refused when opened.
        std::fs::write(dir.path().join("state"), format!("{} 0\n", u64::MAX)).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(SpoolError::State { .. })
        ));
    }

    fn report(n: usize) -> Report {
        Report {
            started_at_ms: 1,
            finished_at_ms: 2,
            dns: (0..n)
                .map(|_| oqs_proto::v1::DnsProbe {
                    name: "www.lineauth.mnw".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reports_survive_reopening_in_order_with_fresh_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for _ in 0..5 {
            s.push(report(1)).unwrap();
        }
        s.remove_through(2).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let seqs: Vec<u64> = s.after(0).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(s.push(report(1)).unwrap().seq, 6, "seqs are never reused");
        s.remove_through(6).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.next_seq(), 7, "the counter survives an empty spool");
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let one = report(10).encode_to_vec().len() as u64 + 8;
        let mut s = Spool::open(dir.path(), one * 3).unwrap();
        let mut last = Report::default();
        for _ in 0..5 {
            last = s.push(report(10)).unwrap();
        }
        assert!(s.bytes() <= one * 3);
        assert_eq!(s.dropped_total(), 2);
        assert_eq!(
            last.spool_dropped_total, 2,
            "the count travels in the report"
        );
        let seqs: Vec<u64> = s.after(0).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        drop(s);
        assert_eq!(Spool::open(dir.path(), one * 3).unwrap().dropped_total(), 2);
    }

    #[test]
    fn continue_above_skips_seqs_the_collector_already_has() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.continue_above(41).unwrap();
        assert_eq!(s.push(report(1)).unwrap().seq, 42);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it_and_half_writes_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), "garbage").unwrap();
        let e = Spool::open(dir.path(), 1 << 20).err().unwrap().to_string();
        assert!(e.contains("state") && e.contains("garbage"), "{e}");
        std::fs::write(dir.path().join("state"), "5 0\n").unwrap();
        std::fs::write(dir.path().join("00000000000000000005.tmp"), "half").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.is_empty());
        assert!(!dir.path().join("00000000000000000005.tmp").exists());
    }

    /// A report file emptied or cut short (a disk error, a backup or an antivirus truncating it)
    /// is set aside and counted, never taken for a report of seq 0 that blocks every later one;
    /// the count survives a restart and travels in the next report.
    #[test]
    fn an_empty_or_truncated_file_is_quarantined_counted_and_blocks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for _ in 0..4 {
            s.push(report(3)).unwrap();
        }
        std::fs::write(s.path(1), b"").unwrap();
        let whole = std::fs::read(s.path(3)).unwrap();
        std::fs::write(s.path(3), &whole[..whole.len() / 2]).unwrap();
        let seqs: Vec<u64> = s.after(0).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 4], "the rest goes on");
        assert_eq!(s.quarantined_total(), 2);
        assert!(s.quarantine_path(1).exists() && s.quarantine_path(3).exists());
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.quarantined_total(), 2);
        let seqs: Vec<u64> = s.after(0).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 4]);
        let r = s.push(report(1)).unwrap();
        assert_eq!(r.agent.unwrap().quarantined_total, 2);
        assert_eq!(r.seq, 5);
    }

    /// The collector says the counter is damaged (a seq far above what it stores): every held
    /// report above its stored seq goes on from the one after it, in order, none lost; a crash
    /// between the two phases is finished (or forgotten) at the next open.
    #[test]
    fn a_restart_renumbers_the_held_reports_from_the_stored_seq_crash_safely() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.continue_above(MAX_SEQ - 10).unwrap();
        for t in [10, 20, 30] {
            s.push(at(t)).unwrap();
        }
        s.mark_sent(MAX_SEQ - 8).unwrap();
        assert_eq!(s.restart_from(41).unwrap(), 3);
        assert_eq!(held(&mut s), [(42, 10), (43, 20), (44, 30)]);
        assert_eq!(s.push(at(40)).unwrap().seq, 45);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(held(&mut s), [(42, 10), (43, 20), (44, 30), (45, 40)]);
        assert_eq!(s.next_seq(), 46);

        // Cut after the decision (marker written, originals still there): finished at open.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.continue_above(1_000_000).unwrap();
        for t in [10, 20] {
            s.push(at(t)).unwrap();
        }
        let mut copy = at(10);
        copy.seq = 8;
        write_atomic(&s.renum_path(8), &copy.encode_to_vec()).unwrap();
        let mut copy = at(20);
        copy.seq = 9;
        write_atomic(&s.renum_path(9), &copy.encode_to_vec()).unwrap();
        std::fs::write(dir.path().join(RENUMBER_DONE), "1000001 8\n1000002 9\n").unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(held(&mut s), [(8, 10), (9, 20)]);
        // Cut before it (copies only): the copies are forgotten, the originals stay.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(at(10)).unwrap();
        write_atomic(&s.renum_path(8), &at(99).encode_to_vec()).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(held(&mut s), [(1, 10)]);
        assert!(!dir.path().join(format!("{:020}.renum", 8)).exists());
    }

    const DAY: Duration = Duration::from_secs(86_400);

    /// Sends and acks seqs 1..=n through a spool that keeps acknowledged reports.
    fn acked_spool(dir: &Path, n: u64) -> Spool {
        let mut s = Spool::open(dir, 1 << 20).unwrap().keeping_acked_for(DAY);
        for _ in 0..n {
            s.push(report(1)).unwrap();
        }
        s.mark_sent(n).unwrap();
        for seq in 1..=n {
            s.acknowledge(seq).unwrap();
            s.mark_acked(seq).unwrap();
        }
        s
    }

    #[test]
    fn acknowledged_reports_are_kept_and_given_back_to_a_collector_that_lost_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = acked_spool(dir.path(), 5);
        assert!(s.is_empty(), "nothing waits for delivery");
        assert_eq!(s.kept().0, 5);
        drop(s);
        // Across a restart, and a collector restored from a backup that holds seq 2.
        let mut s = Spool::open(dir.path(), 1 << 20)
            .unwrap()
            .keeping_acked_for(DAY);
        assert_eq!(s.kept().0, 5);
        assert_eq!(s.accept_welcome(2).unwrap(), Welcomed::Resent(3));
        let again: Vec<u64> = s.after(2).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(again, [3, 4, 5], "the lost ones go again, in order");
        assert_eq!(s.kept().0, 2, "the ones it still holds stay kept");
        assert_eq!(s.next_seq(), 6);
        // A collector that holds everything it acknowledged takes nothing back.
        let dir = tempfile::tempdir().unwrap();
        let mut s = acked_spool(dir.path(), 3);
        assert_eq!(s.accept_welcome(3).unwrap(), Welcomed::Delivered(0));
        assert!(s.after(0).unwrap().is_empty());
    }

    #[test]
    fn kept_reports_expire_after_the_window_and_make_room_before_unsent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = acked_spool(dir.path(), 3);
        s.expire_kept(SystemTime::now() + DAY / 2).unwrap();
        assert_eq!(s.kept().0, 3);
        s.expire_kept(SystemTime::now() + DAY + Duration::from_secs(60))
            .unwrap();
        assert_eq!(s.kept().0, 0, "older than the window: gone");
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".acked"))
                .count(),
            0
        );

        // Full: the kept ones go first, and no unsent report is dropped while one is kept.
        let dir = tempfile::tempdir().unwrap();
        let one = report(10).encode_to_vec().len() as u64 + 8;
        let mut s = Spool::open(dir.path(), one * 3)
            .unwrap()
            .keeping_acked_for(DAY);
        for _ in 0..3 {
            s.push(report(10)).unwrap();
        }
        s.mark_sent(2).unwrap();
        s.acknowledge(1).unwrap();
        s.acknowledge(2).unwrap();
        s.push(report(10)).unwrap();
        s.push(report(10)).unwrap();
        assert_eq!(s.dropped_total(), 0, "room came from the kept reports");
        assert_eq!(s.kept().0, 0);
        let seqs: Vec<u64> = s.after(0).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        // Without a window nothing is kept.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(report(1)).unwrap();
        s.acknowledge(1).unwrap();
        assert_eq!(s.kept(), (0, 0));
    }
}
