//! One sender cannot take the collector down (issue "true alarms", items 14–15): each terminal,
//! and each site, stores at most its day's budget of bytes (`limits.max_stored_bytes_per_*`);
//! beyond it its reports are refused for now — RESOURCE_EXHAUSTED with a pushback, no `Rejected`
//! (the agent keeps them) — and the site is flagged `reports_refused`, while other sites go on.
//! The collector keeps a reserve on its disk (`store.reserve_*`): down to it, reports are refused
//! the same way, reads are served, and reports are taken again once there is room. On a disk that
//! fills beyond that (another process filling it), the collector exits for its supervisor rather
//! than hang. Needs root for the tmpfs (CI runs as root).

mod common;

use common::*;
use oqs_proto::v1::{DnsProbe, Outcome, RecordType, ResolverRole};
use std::process::Command;
use std::time::Duration;

/// Report `seq` with ~100 KB of DNS answers, different every time (never elided).
fn large(seq: u64) -> oqs_proto::v1::Report {
    let mut r = report(seq);
    r.dns = (0..50u32)
        .map(|i| DnsProbe {
            outcome: Outcome::Ok as i32,
            name: format!("n{i}.pweb.base.oqs-pdl.org"),
            record_type: RecordType::Aaaa as i32,
            role: ResolverRole::NwBase as i32,
            server: "2404:1a8:f583:d00::53:1".into(),
            rcode: "NOERROR".into(),
            answers: (0..50u64)
                .map(|a| format!("2408:210:9c0:{seq:x}:{i:x}:{a:x}:abcd:ef01"))
                .collect(),
            latency_ms: 5,
            ..Default::default()
        })
        .collect();
    r
}

/// Sends large reports from `seq` on until one is refused; returns the refusal and the seq.
async fn until_refused(s: &mut AgentStream, from: u64) -> (tonic::Status, u64) {
    for seq in from..from + 200 {
        s.send(large(seq)).await;
        match s.next().await {
            Ok(Some(oqs_proto::v1::collector_message::Body::Ack(a))) => {
                assert_eq!(a.seq, seq);
            }
            Ok(Some(oqs_proto::v1::collector_message::Body::Rejected(r))) => {
                panic!("a budget refusal is not Rejected (the agent would drop it): {r:?}")
            }
            Ok(other) => panic!("{other:?}"),
            Err(st) => return (st, seq),
        }
    }
    panic!("never refused");
}

fn pushback(st: &tonic::Status) -> u64 {
    st.metadata()
        .get(oqs_proto::RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("the refusal says when to come back")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_and_a_site_store_at_most_their_days_budget_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_stored_bytes_per_terminal_per_day = 1 << 20;
    cfg.limits.max_stored_bytes_per_site_per_day = 3 << 19;
    let c = oqs_collector::server::start(cfg.clone()).await.unwrap();
    let ch = channel(c.grpc_addr).await;
    let (mut a, _) = AgentStream::hello(ch.clone(), hello("big-site", "pc-1")).await;
    let (st, refused_at) = until_refused(&mut a, 1).await;
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    assert!(
        st.message()
            .contains("limits.max_stored_bytes_per_terminal_per_day"),
        "{st:?}"
    );
    let wait = pushback(&st);
    assert!(
        wait > 86_000_000 - 600_000,
        "until the day's window ends: {wait} ms"
    );
    let stored = refused_at - 1;
    // Each stores its report and its DNS history point (both ~100 KB and more).
    assert!(
        (4..=12).contains(&stored),
        "~1 MiB of ~100 KB reports: {stored}"
    );
    // The site says so; nothing of the refused one was stored.
    let site = get_json(c.http_addr, "/api/sites/big-site").await;
    assert_eq!(site["terminals"][0]["last_seq"], stored, "{site}");
    let flag = site["active_flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flag"] == "reports_refused")
        .cloned()
        .unwrap_or_default();
    assert!(
        flag["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_stored_bytes_per_terminal_per_day")),
        "{site}"
    );
    // Its second terminal stores until the site's budget (1.5 MiB) is used up.
    let (mut b, _) = AgentStream::hello(ch.clone(), hello("big-site", "pc-2")).await;
    let (st, _) = until_refused(&mut b, 1).await;
    assert!(
        st.message()
            .contains("limits.max_stored_bytes_per_site_per_day"),
        "{st:?}"
    );
    // Another site is not touched.
    let (mut other, _) = AgentStream::hello(ch, hello("small-site", "pc-1")).await;
    for seq in 1..=3 {
        other.send(report(seq)).await;
        assert_eq!(other.ack().await.seq, seq);
    }
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert!(metric(&m, "oqs_reports_rejected_total{reason=\"over_budget\"}") >= 2.0);
    // The window is the terminal's, kept in its record: a restart does not give it a new day.
    c.stop().await.unwrap();
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let (mut a, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("big-site", "pc-1")).await;
    let (st, again) = until_refused(&mut a, refused_at).await;
    assert_eq!(
        again, refused_at,
        "refused at once after the restart: {st:?}"
    );
    assert!(
        st.message()
            .contains("limits.max_stored_bytes_per_terminal_per_day"),
        "{st:?}"
    );
    c.stop().await.unwrap();
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

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
        "mounting a tmpfs failed: this test needs root (CI runs as root)"
    );
    Tmpfs(mount)
}

/// Fills `path` until about `leave` bytes are left on its filesystem (or it is full: others write
/// meanwhile).
fn fill_leaving(path: &std::path::Path, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        let avail = fs2::available_space(path.parent().unwrap()).unwrap();
        if avail <= leave {
            break;
        }
        let n = chunk.len().min((avail - leave) as usize);
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_to_its_reserve_the_collector_refuses_reports_serves_reads_and_takes_them_later() {
    let dir = tempfile::tempdir().unwrap();
    let disk = tmpfs(dir.path(), 32);
    let mut cfg = config(&disk.0.join("data"));
    cfg.store.reserve_percent = 25; // 8 MiB of 32
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let ch = channel(c.grpc_addr).await;
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("clinic-disk", "pc-1")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    // Another process leaves the disk 4 MiB: below the reserve.
    let filler = disk.0.join("filler");
    fill_leaving(&filler, 4 << 20);
    s.send(report(2)).await;
    let (st, rejected) = s.error().await;
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("reserve"), "{st:?}");
    assert!(rejected.is_empty(), "kept by the agent: {rejected:?}");
    assert!(pushback(&st) >= 1000);
    // Reads are served meanwhile.
    let (status, _) = get(c.http_addr, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(
        get_json(c.http_addr, "/api/sites/clinic-disk").await["terminals"][0]["last_seq"],
        1
    );
    // Room again: the report is taken.
    std::fs::remove_file(&filler).unwrap();
    let (mut s, last) = AgentStream::hello(ch, hello("clinic-disk", "pc-1")).await;
    assert_eq!(last, 1);
    s.send(report(2)).await;
    assert_eq!(s.ack().await.seq, 2);
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert!(metric(&m, "oqs_reports_rejected_total{reason=\"no_room\"}") >= 1.0);
    c.stop().await.unwrap();
}

/// The real binary with no reserve, large reports streaming in, and its disk filled from outside:
/// it exits by itself, non-zero, within seconds (for its supervisor to restart it) — it does not
/// hang in sled's last flush — and starts again, serving, once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_whose_disk_fills_under_large_reports_exits_rather_than_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let disk = tmpfs(dir.path(), 24);
    let data = disk.0.join("data");
    let conf = dir.path().join("collector.toml");
    std::fs::write(
        &conf,
        "[store]\nreserve_percent = 0\n[limits]\nmax_stored_bytes_per_terminal_per_day = 1073741824\n\
         max_stored_bytes_per_site_per_day = 1073741824\n",
    )
    .unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oqs-collector"))
            .arg("--config")
            .arg(&conf)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let addr = |k: &str| -> std::net::SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap()
                .parse()
                .unwrap()
        };
        (child, addr("grpc="), addr("http="))
    };
    let (mut child, grpc, _) = start();
    let filler = disk.0.join("filler");
    let sender = tokio::spawn(async move {
        let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
        else {
            return;
        };
        let Ok(mut s) = AgentStream::open(ch, msg_hello(hello("clinic-full", "pc-1"))).await else {
            return;
        };
        let _ = s.next().await;
        for seq in 1..100_000 {
            if s.tx.send(msg_report(large(seq))).await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(5), s.rx.message()).await {
                Ok(Ok(Some(_))) => {}
                _ => return,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    fill_leaving(&filler, 0);
    let exited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    sender.abort();
    let status = exited.expect("the collector exited by itself, not hung, on the full disk");
    assert!(
        !status.success(),
        "non-zero, for its supervisor: {status:?}"
    );
    std::fs::remove_file(&filler).unwrap();
    let (mut child, _, http) = start();
    let mut ok = false;
    for _ in 0..100 {
        if get(http, "/healthz").await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "serving again once there is room");
}
