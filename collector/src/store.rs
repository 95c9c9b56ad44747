//! The durable store: one sled tree holding every stored report and one record per terminal.
//!
//! Keys are built for range scans (ids cannot contain NUL, the separator):
//! - `R` site NUL terminal NUL seq(u64 big-endian) → the `Report`, protobuf-encoded as received;
//! - `T` site NUL terminal → [`TerminalRecord`].
//!
//! Reports and terminal records live in one tree so that one `apply_batch` writes both atomically:
//! a crash never leaves a report without its terminal's `last_seq`, or the reverse.
//!
//! Must never acknowledge anything itself: [`Store::commit`] returns once the batch is flushed and
//! only then may a caller send `Ack`. Reads here are for the query side and tests.

use oqs_proto::v1::Report;
use prost::Message;
use std::path::Path;

/// What the store could not do. Messages name the data directory or the key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store in {dir}: {source} (is another collector using it?)")]
    Open { dir: String, source: sled::Error },
    #[error("store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("stored record under key {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        source: prost::DecodeError,
    },
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
}

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
}

impl CommitBatch {
    pub fn put_report(&mut self, key: &TerminalKey, seq: u64, encoded: &[u8]) {
        self.batch.insert(key.report_key(seq), encoded);
        self.reports += 1;
    }
    pub fn put_terminal(&mut self, key: &TerminalKey, rec: &TerminalRecord) {
        self.batch.insert(key.record_key(), rec.encode_to_vec());
    }
}

/// The sled database and the tree the collector uses.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `dir` with a 64 MiB cache (tests and tools).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, 64 * 1024 * 1024)
    }

    /// Opens (or creates) the store in `dir`, caching at most `cache_bytes` in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // The collector flushes explicitly before each ack; no background timer is needed for
            // durability, and one would only add write amplification.
            .flush_every_ms(None)
            .open()
            .map_err(|source| StoreError::Open {
                dir: dir.display().to_string(),
                source,
            })?;
        let tree = db.open_tree("ingest")?;
        Ok(Self { db, tree })
    }

    /// Writes a batch atomically and flushes it to disk. Blocking: call from a blocking thread.
    pub fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.tree.apply_batch(batch.batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Whether a report is stored.
    pub fn has_report(&self, key: &TerminalKey, seq: u64) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key.report_key(seq))?)
    }

    /// One stored report.
    pub fn report(&self, key: &TerminalKey, seq: u64) -> Result<Option<Report>, StoreError> {
        let k = key.report_key(seq);
        match self.tree.get(&k)? {
            None => Ok(None),
            Some(v) => Report::decode(v.as_ref())
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    key: format!("{}/{}/{}", key.site, key.terminal, seq),
                    source,
                }),
        }
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

fn decode_record(key: &TerminalKey, v: &[u8]) -> Result<TerminalRecord, StoreError> {
    TerminalRecord::decode(v).map_err(|source| StoreError::Corrupt {
        key: format!("{}/{}", key.site, key.terminal),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_keys_sort_by_seq_within_a_terminal() {
        let k = TerminalKey::new("s", "t");
        assert!(k.report_key(2) < k.report_key(256));
        assert!(k.report_key(u64::MAX) > k.report_key(1 << 40));
        // A terminal whose id is a prefix of another's never interleaves with it.
        let k2 = TerminalKey::new("s", "t2");
        assert!(k.report_key(u64::MAX) < k2.report_key(0));
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
        b.put_report(&key, 7, &report.encode_to_vec());
        b.put_terminal(
            &key,
            &TerminalRecord {
                last_seq: 7,
                reports_total: 1,
                ..Default::default()
            },
        );
        store.commit(b).unwrap();
        assert_eq!(store.report(&key, 7).unwrap(), Some(report));
        assert!(store.has_report(&key, 7).unwrap());
        assert!(!store.has_report(&key, 6).unwrap());
        assert_eq!(store.count_reports(&key).unwrap(), 1);
        let all = store.terminals().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, key);
        assert_eq!(all[0].1.last_seq, 7);
        assert_eq!(store.site_terminals("site-a").unwrap().len(), 1);
        assert_eq!(store.site_terminals("site").unwrap().len(), 0);
    }
}
