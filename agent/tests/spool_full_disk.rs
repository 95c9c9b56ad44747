//! The spool on a disk that is really full (a small tmpfs made by the test; needs root, as CI
//! is): the acknowledged copies kept for healing make room before a new round fails to spool, and
//! a round that cannot be written at all is counted in `spool_dropped_total` and reported with
//! the next one — never silently lost.

use oqs_agent::spool::Spool;
use oqs_proto::v1::{DnsProbe, Report};
use std::process::Command;
use std::time::Duration;

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn tmpfs(dir: &std::path::Path, kb: u32) -> Tmpfs {
    let mount = dir.join("disk");
    std::fs::create_dir(&mount).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kb}k"), "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "mounting a tmpfs failed: this test needs root (CI runs as root), like the network lab"
    );
    Tmpfs(mount)
}

fn report(i: u64) -> Report {
    Report {
        started_at_ms: 1_000 + i as i64,
        finished_at_ms: 1_001 + i as i64,
        dns: (0..8)
            .map(|_| DnsProbe {
                name: "www.lineauth.mnw".into(),
                error: "x".repeat(200),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn a_full_disk_gives_up_acknowledged_copies_first_and_counts_what_it_cannot_keep() {
    let dir = tempfile::tempdir().unwrap();
    let disk = tmpfs(dir.path(), 128);
    let spool_dir = disk.0.join("spool");
    // The byte bound is far above the disk: the disk fills first, as on a terminal whose C: is full.
    let mut s = Spool::open(&spool_dir, 64 << 20)
        .unwrap()
        .keeping_acked_for(Duration::from_secs(86_400));
    // Delivered rounds, kept for healing, until the disk is nearly full.
    let mut i = 0;
    loop {
        i += 1;
        match s.push(report(i)) {
            Ok(r) => {
                s.acknowledge(r.seq).unwrap();
                s.mark_acked(r.seq).unwrap();
            }
            Err(_) => break,
        }
        if s.kept().0 > 0 && i > 400 {
            break;
        }
    }
    let kept_before = s.kept().0;
    assert!(
        kept_before > 5,
        "the disk holds acknowledged copies: {kept_before}"
    );
    assert_eq!(s.dropped_total(), 0, "freeing copies made room so far");

    // New rounds the collector has not taken yet: the copies go, one by one, and no round fails
    // while one is left.
    let mut made = 0;
    while s.kept().0 > 0 {
        s.push(report(1000 + made))
            .expect("room comes from an acknowledged copy");
        made += 1;
        assert!(made < 10_000);
    }
    assert!(made > 0);
    assert_eq!(
        s.dropped_total(),
        0,
        "no round was lost while copies could go"
    );

    // Nothing left to give: a round that cannot be written is counted, and says so next time.
    let mut failed = 0;
    for j in 0..5 {
        if s.push(report(5000 + j)).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "the disk is full");
    assert_eq!(s.dropped_total(), failed, "every lost round counted");
    // Room again (the collector took some): the next report carries the count.
    let first = s.after(0).unwrap()[0].seq;
    s.remove_through(first + 5).unwrap();
    let r = s.push(report(9000)).unwrap();
    assert_eq!(r.spool_dropped_total, failed);
    drop(s);
    let s = Spool::open(&spool_dir, 64 << 20).unwrap();
    assert_eq!(s.dropped_total(), failed, "and across a restart");
}
