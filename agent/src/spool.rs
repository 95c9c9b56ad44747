//! The agent's on-disk spool: every report stays here, one file per report, until the collector
//! acknowledges it, so nothing is lost across a network outage or an agent restart.
//!
//! Bounded in bytes: when a new report would exceed the bound the oldest are dropped, and the
//! count of dropped reports is kept (and reported in every Report). Files are written to a
//! temporary name, synced, then renamed, so a crash never leaves half a report. Must never hold a
//! report the collector has acknowledged, and never reuse a seq.

use oqs_proto::v1::Report;
use prost::Message;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

impl Spool {
    /// Opens (or creates) the spool in `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut held = BTreeMap::new();
        let mut bytes = 0;
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
            } else if name.ends_with(".tmp") {
                // A write that never finished: it was never sent, so it is not lost data.
                let _ = fs::remove_file(entry.path());
            }
        }
        let state_path = dir.join("state");
        let (mut next_seq, dropped_total) = match fs::read_to_string(&state_path) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(str::parse::<u64>);
                match (it.next(), it.next()) {
                    (Some(Ok(n)), Some(Ok(d))) => (n, d),
                    _ => {
                        return Err(SpoolError::State {
                            path: state_path.display().to_string(),
                            message: format!("expected \"next_seq dropped_total\", found {s:?}"),
                        })
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (1, 0),
            Err(e) => return Err(io(&state_path)(e)),
        };
        if let Some((&last, _)) = held.iter().next_back() {
            next_seq = next_seq.max(last + 1);
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            held,
            bytes,
            next_seq: next_seq.max(1),
            dropped_total,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.report"))
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        write_atomic(
            &self.dir.join("state"),
            format!("{} {}\n", self.next_seq, self.dropped_total).as_bytes(),
        )
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
        if self.next_seq <= stored {
            self.next_seq = stored + 1;
            self.save_state()?;
        }
        Ok(())
    }

    /// Stores a report under the next seq (set on the report) and returns it.
    pub fn push(&mut self, mut report: Report) -> Result<Report, SpoolError> {
        report.seq = self.next_seq;
        report.spool_dropped_total = self.dropped_total;
        let data = report.encode_to_vec();
        let len = data.len() as u64;
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
        write_atomic(&p, &data)?;
        self.held.insert(report.seq, data.len() as u64);
        self.bytes += data.len() as u64;
        self.next_seq += 1;
        self.save_state()?;
        Ok(report)
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
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
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

    /// The held reports with seq above `after`, in order. A file that no longer decodes is
    /// dropped (and counted) rather than blocking the queue.
    pub fn after(&mut self, after: u64) -> Result<Vec<Report>, SpoolError> {
        let seqs: Vec<u64> = self.held.range(after + 1..).map(|(s, _)| *s).collect();
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            let p = self.path(s);
            let data = fs::read(&p).map_err(io(&p))?;
            match Report::decode(data.as_slice()) {
                Ok(r) => out.push(r),
                Err(_) => {
                    self.remove(s)?;
                    self.dropped_total += 1;
                    self.save_state()?;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
