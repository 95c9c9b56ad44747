//! A full disk under the store, for real (a small tmpfs; needs root, as CI is): what sled 0.34
//! does when its log writer hits ENOSPC — it keeps that error and returns it from every later
//! call, even once the disk has room again — is recognised as unrecoverable
//! (`StoreError::is_unrecoverable`), and the store reopened afterwards holds every commit that
//! returned Ok. The committer stops on such an error (so the collector exits and its supervisor
//! restarts it: `server.rs`); the fault suite (`tests/faults/run`) runs that end to end.

mod common;

use oqs_collector::committer::{self, CommitterSettings, ReportCommit};
use oqs_collector::config::CollectorConfig;
use oqs_collector::store::{Store, StoreError, TerminalKey};
use std::process::Command;
use std::time::Duration;

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A small tmpfs under a fresh directory, unmounted when dropped.
fn tmpfs(dir: &std::path::Path, mb: u32) -> Tmpfs {
    let mount = dir.join("disk");
    std::fs::create_dir(&mount).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "mounting a tmpfs failed: this test needs root (CI runs as root), like the network lab"
    );
    Tmpfs(mount)
}

fn fill(path: &std::path::Path) {
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", path.display()))
        .args(["bs=64K", "status=none"])
        .stderr(std::process::Stdio::null())
        .status();
}

/// The committer meets sled's sticky error and stops (the server then exits non-zero, for its
/// supervisor to restart it), rather than failing every batch for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committer_stops_when_the_store_can_no_longer_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = tmpfs(dir.path(), 8);
    let config = CollectorConfig::default();
    let store = Store::open_with(&disk.0.join("data"), 1 << 20, None).unwrap();
    let (handle, task) = committer::spawn(
        store,
        CommitterSettings {
            batch_max: 64,
            queue: 1024,
            flags: config.flags.clone(),
            history: config.history.clone(),
            maintenance: Default::default(),
            incidents: Default::default(),
            incident_book: Default::default(),
            limits: config.limits.clone(),
            // No reserve: this is about sled on a disk that is full for real.
            store: oqs_collector::config::StoreTuning {
                reserve_percent: 0,
                ..config.store.clone()
            },
        },
        std::sync::Arc::new(oqs_collector::metrics::Metrics::new()),
        oqs_collector::view::FleetView::default(),
    )
    .await
    .unwrap();
    fill(&disk.0.join("filler"));
    let key = TerminalKey::new("full-1", "pc-1");
    let mut stopped = false;
    let mut acked_while_full = 0;
    for seq in 1..=3000u64 {
        let mut r = common::report(seq);
        // Every report different, so none is elided: each one needs log space.
        r.finished_at_ms += seq as i64;
        match handle.report(ReportCommit::new(&key, r, None)).await {
            Ok(rx) => match tokio::time::timeout(Duration::from_secs(10), rx).await {
                Ok(Ok(Ok(_))) => acked_while_full += 1,
                Ok(Ok(Err(_))) => {}
                Ok(Err(_)) | Err(_) => {
                    stopped = true;
                    break;
                }
            },
            Err(_) => {
                stopped = true;
                break;
            }
        }
        if task.is_finished() {
            stopped = true;
            break;
        }
    }
    assert!(
        stopped,
        "the committer kept going on a store that cannot write ({acked_while_full} acked)"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the committer task ends")
        .unwrap();
}

#[test]
fn sleds_sticky_write_error_is_unrecoverable_and_a_reopen_keeps_every_ok_commit() {
    let dir = tempfile::tempdir().unwrap();
    let disk = tmpfs(dir.path(), 8);
    let mount = disk.0.clone();
    let data = mount.join("data");
    let value = vec![0x5a_u8; 64 << 10];
    let mut committed = Vec::new();
    let mut first_err: Option<StoreError> = None;
    {
        let store = Store::open_with(&data, 1 << 20, None).unwrap();
        // Fill the disk from beside the store, then keep committing until sled's own write
        // fails (our fdatasync failing first is the recoverable kind).
        let filler = mount.join("filler");
        fill(&filler);
        for i in 0..400u32 {
            let key = format!("Zkey-{i:05}");
            match store.raw_put_flush(key.as_bytes(), &value) {
                Ok(()) => committed.push(key),
                Err(e) if e.is_unrecoverable() => {
                    first_err = Some(e);
                    break;
                }
                Err(e) => assert!(
                    e.to_string().contains("fdatasync") || e.to_string().contains("No space"),
                    "{e}"
                ),
            }
        }
        let e = first_err.expect("sled's log writer never failed on the full disk");
        assert!(e.to_string().contains("No space left"), "{e}");
        // Room again: this handle still refuses, with the same error.
        std::fs::remove_file(&filler).unwrap();
        let again = store.raw_put_flush(b"Zafter", b"x").unwrap_err();
        assert!(again.is_unrecoverable(), "{again}");
    }
    // Reopened (as the restarted collector does), it writes again and holds every Ok commit.
    let store = Store::open_with(&data, 1 << 20, None).unwrap();
    store.raw_put_flush(b"Zafter", b"x").unwrap();
    let held: Vec<String> = store
        .raw_scan(b"Zkey-")
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    for k in &committed {
        assert!(held.contains(k), "{k} was committed and is gone");
    }
}
