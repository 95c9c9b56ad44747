//! Durability across a crash: the real `oqs-collector` binary, killed with SIGKILL while reports
//! are in flight, restarted on the same data dir, must still hold every report it acknowledged.

mod common;

use common::*;
use oqs_collector::store::{Store, TerminalKey};
use oqs_proto::v1::collector_message::Body as CollectorBody;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills the collector when dropped, so a failing test never leaves one running (it would hold the
/// test's stderr open and hang the test runner).
struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the collector binary on ephemeral ports; returns the child and its (grpc, http) ports.
fn spawn_collector(dir: &Path) -> (Collector, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oqs-collector"));
    let mut child = on_ephemeral_ports(&mut cmd, dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("collector binary runs");
    let (g, h) = ports(&mut child);
    (Collector(child), g, h)
}

/// The collector's arguments: `dir` as its data directory, both listeners on ephemeral ports.
fn on_ephemeral_ports<'c>(cmd: &'c mut Command, dir: &Path) -> &'c mut Command {
    cmd.args(["--data-dir", dir.to_str().unwrap()]).args([
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
}

/// The (grpc, http) addresses the collector prints on its first line of stdout.
fn ports(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("the collector did not start: no {name} in {line:?}"))
            .parse()
            .unwrap()
    };
    (field("grpc="), field("http="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_reports_survive_sigkill_and_replays_are_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, grpc, _) = spawn_collector(dir.path());
    let (mut s, _) = AgentStream::hello(channel(grpc).await, hello("clinic-k", "pc-1")).await;
    let sent: Vec<_> = (1..=300).map(report).collect();
    for r in &sent {
        s.send(r.clone()).await;
    }
    // Kill as soon as 100 are acked: later ones are in flight, some flushed, some not.
    let mut acked = Vec::new();
    while acked.len() < 100 {
        acked.push(s.ack().await.seq);
    }
    child.0.kill().unwrap(); // SIGKILL: no graceful shutdown, no final flush.
    child.0.wait().unwrap();
    // Any acks that were already on the wire count too.
    while let Ok(Some(oqs_proto::v1::collector_message::Body::Ack(a))) =
        s.rx.message().await.map(|m| m.and_then(|m| m.body))
    {
        acked.push(a.seq);
    }
    assert_eq!(acked[..100], (1..=100).collect::<Vec<u64>>()[..]);
    let highest_acked = *acked.last().unwrap();

    // Restart on the same data: every acked report is there.
    let (mut child, grpc, http) = spawn_collector(dir.path());
    let site = get_json(http, "/api/sites/clinic-k").await;
    let last_seq = site["terminals"][0]["last_seq"].as_u64().unwrap();
    assert!(
        last_seq >= highest_acked,
        "last_seq {last_seq} < acked {highest_acked}"
    );
    assert_eq!(
        site["terminals"][0]["reports_total"].as_u64().unwrap(),
        last_seq
    );

    // The agent replays everything it holds: stored ones come back as duplicates, the rest new.
    let (mut s, welcome_last) =
        AgentStream::hello(channel(grpc).await, hello("clinic-k", "pc-1")).await;
    assert_eq!(welcome_last, last_seq);
    for r in &sent {
        s.send(r.clone()).await;
    }
    for r in &sent {
        let a = s.ack().await;
        assert_eq!(a.seq, r.seq);
        assert_eq!(a.duplicate, r.seq <= last_seq, "seq {}", r.seq);
    }
    let (_, m) = get(http, "/metrics").await;
    assert_eq!(metric(&m, "oqs_reports_duplicate_total"), last_seq as f64);
    drop(s);

    // Stop it with SIGTERM (graceful), then check the store byte for byte.
    sigterm(&child.0);
    child.0.wait().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = TerminalKey::new("clinic-k", "pc-1");
    assert_eq!(
        store.count_reports(&key).unwrap(),
        300,
        "each report stored exactly once"
    );
    for r in &sent {
        assert_eq!(
            store
                .report(&key, r.seq)
                .unwrap()
                .as_ref()
                .and_then(|s| s.full()),
            Some(r)
        );
    }
}

/// Sends SIGTERM through the `kill` command (keeps the crate free of unsafe code).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_collector_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, grpc, _) = spawn_collector(dir.path());
    let (mut s, _) = AgentStream::hello(channel(grpc).await, hello("clinic-t", "pc-1")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    sigterm(&child.0);
    // The open stream is ended by the collector, not left hanging.
    let end = s.next().await;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .count_reports(&TerminalKey::new("clinic-t", "pc-1"))
            .unwrap(),
        1
    );
}

#[test]
fn the_collector_lifts_a_low_soft_file_limit_for_thousands_of_agents() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "ulimit -Sn 256; exec {} --data-dir {} --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0",
        env!("CARGO_BIN_EXE_oqs-collector"),
        dir.path().display()
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Collector(child);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(soft > 256, "soft limit still {soft}");
}

/// A TCP relay that can go silent: after `freeze`, it forwards nothing in either direction and
/// keeps both sockets open — an agent whose address vanished mid-stream, as the collector sees it.
async fn freezable_relay(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = std::sync::Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to, frozen) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    f.clone(),
                ),
                (Box::new(sr), Box::new(cw), f.clone()),
            ] {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                // Hold the other side open: a vanished peer sends no FIN.
                                std::future::pending::<()>().await;
                                return;
                            }
                            Ok(n) => n,
                        };
                        if !frozen.load(Ordering::Relaxed) && to.write_all(&buf[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
    });
    (addr, frozen)
}

/// An agent that vanished (its address went away) leaves a connection that never answers; the
/// collector still stops within seconds on shutdown, with everything acked stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_vanished_agent() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (relay, frozen) = freezable_relay(c.grpc_addr).await;
    let (mut s, _) = AgentStream::hello(channel(relay).await, hello("clinic-v", "pc-1")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    s.send(report(2)).await; // never arrives
    let site = get_json(c.http_addr, "/api/sites/clinic-v").await;
    assert_eq!(site["terminals"][0]["reports_total"], 1);
    let started = std::time::Instant::now();
    c.stop().await.unwrap();
    let took = started.elapsed();
    // Before, shutdown waited its whole grace (10 s) for the connection, then 10 s more for the
    // committer that connection kept alive.
    assert!(
        took < std::time::Duration::from_secs(5),
        "shutdown waited {took:?} for a silent connection"
    );
    drop(s);
}

/// `strace` and the collector it runs: killing strace alone would leave the collector running
/// (detached), so the collector (strace's child) is killed first.
struct Traced(Child);

impl Drop for Traced {
    fn drop(&mut self) {
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the collector binary under `strace`, tracing `fdatasync` into `trace`; `inject` adds an
/// `-e inject=…` fault (e.g. `fdatasync:error=EIO`).
fn spawn_traced(dir: &Path, trace: &Path, inject: Option<&str>) -> (Traced, SocketAddr) {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=fdatasync", "-o"])
        .arg(trace);
    if let Some(i) = inject {
        cmd.args(["-e", &format!("inject={i}")]);
    }
    cmd.arg(env!("CARGO_BIN_EXE_oqs-collector"));
    let mut child = on_ephemeral_ports(&mut cmd, dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace must be installed (apt-get install strace, as .ci/run does)");
    let (grpc, _) = ports(&mut child);
    (Traced(child), grpc)
}

fn fdatasyncs(trace: &Path) -> usize {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("fdatasync(") && l.contains("= 0"))
        .count()
}

/// An ack means the report reached the disk: each one is preceded by its own `fdatasync` (sled's
/// flush alone is only `sync_file_range`), seen in a syscall trace of the real binary; and when
/// the sync fails (injected EIO), nothing is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ack_follows_an_fdatasync_and_a_failed_sync_acks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let (child, grpc) = spawn_traced(&dir.path().join("data"), &trace, None);
    // (The store's open fsyncs; commits fdatasync.)
    let before = fdatasyncs(&trace);
    let (mut s, _) = AgentStream::hello(channel(grpc).await, hello("clinic-f", "pc-1")).await;
    // One at a time: each report is its own group commit.
    for seq in 1..=20 {
        s.send(report(seq)).await;
        assert_eq!(s.ack().await.seq, seq);
    }
    let after = fdatasyncs(&trace);
    assert!(
        after >= before + 20,
        "20 acks, one commit each, need 20 fdatasyncs: {before} before, {after} after"
    );
    drop(s);
    drop(child);

    // Every fdatasync fails (strace counts `when=` per thread, and commits run on a pool of
    // threads, so every call is failed, not "from the second on"): no report is acked.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let (_child, grpc) = spawn_traced(
        &dir.path().join("data"),
        &trace,
        Some("fdatasync:error=EIO"),
    );
    let mut s = AgentStream::open(channel(grpc).await, msg_hello(hello("clinic-f", "pc-1")))
        .await
        .expect("the stream opens");
    let status = loop {
        match s.next().await {
            Ok(Some(CollectorBody::Welcome(_))) => s.send(report(1)).await,
            Ok(Some(CollectorBody::Ack(a))) => {
                panic!(
                    "seq {} acked although its sync failed: {}",
                    a.seq,
                    std::fs::read_to_string(&trace).unwrap_or_default()
                )
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without saying why"),
            Err(st) => break st,
        }
    };
    assert!(
        status.message().contains("fdatasync") || status.message().contains("durable"),
        "the status says the write could not be made durable: {status:?}"
    );
    // Sent again: the collector holds it (sled took the batch) but it is still not durable, so
    // it is not acked as a duplicate either.
    for _ in 0..3 {
        let Ok(mut s) =
            AgentStream::open(channel(grpc).await, msg_hello(hello("clinic-f", "pc-1"))).await
        else {
            continue;
        };
        loop {
            match s.next().await {
                Ok(Some(CollectorBody::Welcome(_))) => s.send(report(1)).await,
                Ok(Some(CollectorBody::Ack(a))) => {
                    panic!("seq {} acked again while no sync succeeds", a.seq)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}
