//! The fault-injection suite's accounting (`tests/faults/run`): for one terminal, every report its
//! agent made against what the collector stores — stored exactly once with the same content, still
//! held by the agent undelivered, set aside by the agent (a spooled file that no longer decoded:
//! quarantined, kept on its disk and counted), or gone from both (which the suite then checks
//! against the stated, detected rules: spool full, a store restored from beyond the agent's
//! window).
//!
//! Reads an agent's spool directory and a collector's data directory (the collector stopped: sled
//! locks it). Must never write to either: it is evidence.

use oqs_collector::store::{Store, StoreError, StoredReport, TerminalKey};
use oqs_proto::v1::Report;
use prost::Message;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("agent spool {path}: {reason}")]
    Spool { path: String, reason: String },
    #[error("collector store: {0}")]
    Store(#[from] StoreError),
}

/// What an agent's spool says: how many reports it made, which it still holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AgentSide {
    /// The seq counter's next value: the agent made seqs `1..next_seq`.
    pub next_seq: u64,
    /// Reports dropped because the spool was full (the agent's own count).
    pub dropped_total: u64,
    /// Held and not acknowledged.
    pub unacked: BTreeMap<u64, Report>,
    /// Acknowledged and still kept (`spool.keep_acked_hours`).
    pub acked: BTreeMap<u64, Report>,
    /// Set aside unsent (`{seq}.quarantined`: a file that no longer decoded, or a report refused
    /// again and again), still on the agent's disk.
    pub quarantined: std::collections::BTreeSet<u64>,
}

/// What the collector stores of one terminal.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoreSide {
    pub reports: BTreeMap<u64, StoredReport>,
    /// The terminal record's count of stored reports.
    pub reports_total: u64,
    pub last_seq: u64,
}

/// One terminal's accounting.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Accounting {
    pub site: String,
    pub terminal: String,
    pub made: u64,
    pub stored: u64,
    pub dropped_total: u64,
    /// Stored and the agent's copy is the same report (whole, or elided with the same time).
    pub verified: u64,
    /// Stored; the agent no longer holds a copy to compare with (acknowledged and not kept).
    pub stored_unverifiable: u64,
    /// Made, neither stored nor held: must be explained by a stated rule.
    pub missing: Vec<u64>,
    /// Made, not stored, set aside by the agent (its file kept as `.quarantined`, counted in
    /// its reports): explained.
    pub quarantined: Vec<u64>,
    /// Held by the agent unacknowledged and not stored: not delivered by the end.
    pub undelivered: Vec<u64>,
    /// Stored under a seq whose content differs from the agent's copy.
    pub differ: Vec<u64>,
    /// Stored under a seq the agent never made.
    pub not_made: Vec<u64>,
    /// Held acknowledged by the agent but not stored (a loss the agent could still heal).
    pub acked_not_stored: Vec<u64>,
    /// The record's `reports_total` against the reports stored (retention is off in the suite).
    pub reports_total: u64,
}

/// Accounts for every seq `1..agent.next_seq`.
pub fn account(site: &str, terminal: &str, agent: &AgentSide, store: &StoreSide) -> Accounting {
    let mut a = Accounting {
        site: site.to_owned(),
        terminal: terminal.to_owned(),
        made: agent.next_seq.saturating_sub(1),
        stored: store.reports.len() as u64,
        dropped_total: agent.dropped_total,
        reports_total: store.reports_total,
        ..Default::default()
    };
    for seq in 1..agent.next_seq {
        let copy = agent.unacked.get(&seq).or_else(|| agent.acked.get(&seq));
        match (store.reports.get(&seq), copy) {
            (Some(stored), Some(copy)) => {
                let same = match stored {
                    StoredReport::Full(r) => r == copy,
                    StoredReport::Elided { finished_at_ms } => {
                        *finished_at_ms == copy.finished_at_ms
                    }
                };
                if same {
                    a.verified += 1;
                } else {
                    a.differ.push(seq);
                }
            }
            (Some(_), None) => a.stored_unverifiable += 1,
            (None, Some(_)) if agent.unacked.contains_key(&seq) => a.undelivered.push(seq),
            (None, Some(_)) => a.acked_not_stored.push(seq),
            (None, None) if agent.quarantined.contains(&seq) => a.quarantined.push(seq),
            (None, None) => a.missing.push(seq),
        }
    }
    a.not_made = store
        .reports
        .range(agent.next_seq.max(1)..)
        .map(|(s, _)| *s)
        .collect();
    a
}

/// Reads an agent's spool directory (`state`, `{seq}.report`, `{seq}.acked`).
pub fn read_spool(dir: &Path) -> Result<AgentSide, AccountError> {
    let err = |path: &Path, reason: String| AccountError::Spool {
        path: path.display().to_string(),
        reason,
    };
    let state_path = dir.join("state");
    let state =
        std::fs::read_to_string(&state_path).map_err(|e| err(&state_path, e.to_string()))?;
    let mut fields = state.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(next_seq)), Some(Ok(dropped_total))) = (fields.next(), fields.next()) else {
        return Err(err(&state_path, format!("unexpected state {state:?}")));
    };
    let mut side = AgentSide {
        next_seq,
        dropped_total,
        ..Default::default()
    };
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, e.to_string()))?;
        let path: PathBuf = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_suffix(".quarantined")
            .and_then(|s| s.parse::<u64>().ok())
        {
            side.quarantined.insert(seq);
            continue;
        }
        let (seq, acked) = if let Some(s) = name.strip_suffix(".report") {
            (s, false)
        } else if let Some(s) = name.strip_suffix(".acked") {
            (s, true)
        } else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|e| err(&path, e.to_string()))?;
        let report = Report::decode(bytes.as_slice()).map_err(|e| err(&path, e.to_string()))?;
        if acked {
            side.acked.insert(seq, report);
        } else {
            side.unacked.insert(seq, report);
        }
    }
    Ok(side)
}

/// Reads what the store holds of one terminal.
pub fn read_store(store: &Store, site: &str, terminal: &str) -> Result<StoreSide, AccountError> {
    let key = TerminalKey::new(site, terminal);
    let mut side = StoreSide::default();
    if let Some(rec) = store.terminal(&key)? {
        side.reports_total = rec.reports_total;
        side.last_seq = rec.last_seq;
    }
    let mut seqs = Vec::new();
    store.report_times(&key, |seq, _| {
        seqs.push(seq);
        true
    })?;
    for seq in seqs {
        if let Some(r) = store.report(&key, seq)? {
            side.reports.insert(seq, r);
        }
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, at: i64) -> Report {
        Report {
            seq,
            finished_at_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn every_seq_is_stored_held_or_missing_and_content_is_compared() {
        let mut agent = AgentSide {
            next_seq: 8,
            dropped_total: 1,
            ..Default::default()
        };
        agent.acked.insert(1, report(1, 10));
        agent.acked.insert(2, report(2, 20));
        agent.acked.insert(3, report(3, 30));
        agent.unacked.insert(6, report(6, 60));
        agent.unacked.insert(7, report(7, 70));
        agent.next_seq = 9;
        agent.quarantined.insert(8);
        let mut store = StoreSide::default();
        store.reports.insert(1, StoredReport::Full(report(1, 10)));
        store
            .reports
            .insert(2, StoredReport::Elided { finished_at_ms: 20 });
        store.reports.insert(4, StoredReport::Full(report(4, 40)));
        store.reports.insert(7, StoredReport::Full(report(7, 71)));
        store.reports.insert(9, StoredReport::Full(report(9, 90)));
        let a = account("s", "t", &agent, &store);
        assert_eq!(a.made, 8);
        assert_eq!(
            a.quarantined,
            vec![8],
            "set aside by the agent, not missing"
        );
        assert_eq!(a.verified, 2, "1 whole, 2 elided with the same time");
        assert_eq!(a.acked_not_stored, vec![3]);
        assert_eq!(a.stored_unverifiable, 1, "4");
        assert_eq!(a.missing, vec![5]);
        assert_eq!(a.undelivered, vec![6]);
        assert_eq!(a.differ, vec![7]);
        assert_eq!(a.not_made, vec![9]);
        let _ = a;
    }

    #[test]
    fn a_spool_is_read_from_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), "4 2 3\n").unwrap();
        std::fs::write(
            dir.path().join(format!("{:020}.acked", 2)),
            report(2, 20).encode_to_vec(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("{:020}.report", 3)),
            report(3, 30).encode_to_vec(),
        )
        .unwrap();
        std::fs::write(dir.path().join("acked"), "2\n").unwrap();
        let side = read_spool(dir.path()).unwrap();
        assert_eq!((side.next_seq, side.dropped_total), (4, 2));
        assert_eq!(side.acked.keys().collect::<Vec<_>>(), vec![&2]);
        assert_eq!(side.unacked.keys().collect::<Vec<_>>(), vec![&3]);
        std::fs::write(dir.path().join("state"), "x").unwrap();
        let e = read_spool(dir.path()).unwrap_err().to_string();
        assert!(e.contains("state") && e.contains("\"x\""), "{e}");
    }
}
