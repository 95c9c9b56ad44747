//! Stream limits answer with clear statuses: more than `limits.max_streams` open streams, and more
//! than `limits.max_reports_per_minute` reports from one terminal in a rate window, are
//! RESOURCE_EXHAUSTED. A report over the rate is not stored and not `Rejected` (it is a good report,
//! refused only for now): the status carries `grpc-retry-pushback-ms`; a new stream within the
//! window is refused too (the window is the terminal's, not the stream's); after it, the report is
//! stored.

mod common;

use common::*;
use oqs_collector::server;

/// A new stream for clinic-l/pc-1 and its Welcome, once the previous stream's slot is free
/// (`limits.max_streams` is 1 here).
async fn reopen(c: &oqs_collector::server::Running) -> (AgentStream, oqs_proto::v1::Welcome) {
    for _ in 0..50 {
        if let Ok(mut s) = AgentStream::open(
            channel(c.grpc_addr).await,
            msg_hello(hello("clinic-l", "pc-1")),
        )
        .await
        {
            match s.next().await {
                Ok(Some(oqs_proto::v1::collector_message::Body::Welcome(w))) => return (s, w),
                other => panic!("expected Welcome, got {other:?}"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no stream slot freed within 2.5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_streams_and_too_fast_a_stream_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_streams = 1;
    cfg.limits.max_reports_per_minute = 3;
    cfg.limits.rate_window_secs = 2;
    let c = server::start(cfg).await.unwrap();

    let (mut first, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-l", "pc-1")).await;
    let err = AgentStream::open(
        channel(c.grpc_addr).await,
        msg_hello(hello("clinic-l", "pc-2")),
    )
    .await
    .err()
    .expect("a second stream is refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("limits.max_streams"), "{err:?}");

    for seq in 1..=3 {
        first.send(report(seq)).await;
        assert_eq!(first.ack().await.seq, seq);
    }
    first.send(report(4)).await;
    let (st, rejected) = first.error().await;
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    assert!(
        st.message().contains("limits.max_reports_per_minute"),
        "{st:?}"
    );
    assert!(
        rejected.is_empty(),
        "a report over the rate is not Rejected (the agent would drop it): {rejected:?}"
    );
    let pushback: u64 = st
        .metadata()
        .get(oqs_collector::ingest::RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("the refusal says when to try again");
    assert!(pushback <= 2_000, "{pushback} ms");
    let site = get_json(c.http_addr, "/api/sites/clinic-l").await;
    assert_eq!(
        site["terminals"][0]["last_seq"], 3,
        "the refused report is not stored"
    );
    drop(first);

    // Reconnecting at once does not open a new window: the same refusal.
    let (mut again, welcome) = reopen(&c).await;
    assert_eq!(welcome.last_stored_seq, 3);
    again.send(report(4)).await;
    let (st, _) = again.error().await;
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    drop(again);

    // After the pushback, the report is stored: nothing lost.
    tokio::time::sleep(std::time::Duration::from_millis(pushback + 50)).await;
    let (mut again, _) = reopen(&c).await;
    again.send(report(4)).await;
    assert_eq!(again.ack().await.seq, 4);
    let site = get_json(c.http_addr, "/api/sites/clinic-l").await;
    assert_eq!(site["terminals"][0]["last_seq"], 4);
    drop(again);
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert!(
        metric(
            &m,
            "oqs_reports_rejected_total{reason=\"too_many_streams\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(&m, "oqs_reports_rejected_total{reason=\"rate_limited\"}"),
        2.0
    );
    c.stop().await.unwrap();
}

/// A stream that has sent nothing yet: (its sender, kept to hold it open; the connect result).
async fn silent(
    ch: tonic::transport::Channel,
) -> (
    tokio::sync::mpsc::Sender<oqs_proto::v1::AgentMessage>,
    Result<tonic::Response<tonic::Streaming<oqs_proto::v1::CollectorMessage>>, tonic::Status>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let r = oqs_proto::v1::fleet_ingest_client::FleetIngestClient::new(ch)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    (tx, r)
}

/// A raw connection that sent the HTTP/2 preface (kept open by the caller), and whether the
/// server answered it (within 10 s; closed unanswered is `false`).
async fn h2_answers(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Writing may already fail (closed as accepted); what is read says.
    let _ = tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("the server answers or closes within 10 s");
    (tcp, matches!(read, Ok(n) if n > 0))
}

async fn rejected(c: &server::Running, reason: &str) -> f64 {
    let (_, m) = get(c.http_addr, "/metrics").await;
    metric(
        &m,
        &format!("oqs_reports_rejected_total{{reason=\"{reason}\"}}"),
    )
}

/// Streams that never say Hello take no agent's slot (`limits.max_streams` counts streams past
/// their Hello), and one source may hold only `limits.max_pre_hello_per_source` of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_without_a_hello_take_no_agent_slot_and_are_capped_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_streams = 1;
    cfg.limits.max_pre_hello_per_source = 2;
    let c = server::start(cfg).await.unwrap();
    let ch = channel(c.grpc_addr).await;
    let (_a, ra) = silent(ch.clone()).await;
    let (b, rb) = silent(ch.clone()).await;
    assert!(ra.is_ok() && rb.is_ok(), "two silent streams are let in");
    let (_c, rc) = silent(ch.clone()).await;
    let st = rc.expect_err("a third silent stream from the same source is refused");
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    assert!(
        st.message().contains("limits.max_pre_hello_per_source"),
        "{st:?}"
    );
    assert_eq!(rejected(&c, "too_many_pre_hello").await, 1.0);
    let pushback: u64 = st
        .metadata()
        .get(oqs_collector::ingest::RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a busy refusal says when to come back");
    assert!((1_000..=11_000).contains(&pushback), "{pushback} ms");
    // One silent stream goes: an agent's Hello gets the only agent slot although another silent
    // stream is still open.
    drop((b, rb));
    let mut welcomed = None;
    for _ in 0..50 {
        if let Ok(mut s) = AgentStream::open(ch.clone(), msg_hello(hello("clinic-p", "pc-1"))).await
        {
            if let Ok(Some(oqs_proto::v1::collector_message::Body::Welcome(_))) = s.next().await {
                welcomed = Some(s);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(welcomed.is_some(), "the agent is welcomed");
    c.stop().await.unwrap();
}

/// One HTTP/2 connection carries at most `limits.max_streams_per_connection` streams at once (the
/// next waits for a free one), and one source at most `limits.max_connections_per_source`
/// connections (more are closed as they are accepted, and counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_and_connections_per_source_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_streams_per_connection = 2;
    cfg.limits.max_connections_per_source = 2;
    let c = server::start(cfg).await.unwrap();
    let ch = channel(c.grpc_addr).await;
    let (s1, _) = AgentStream::hello(ch.clone(), hello("clinic-q", "pc-1")).await;
    let (_s2, _) = AgentStream::hello(ch.clone(), hello("clinic-q", "pc-2")).await;
    let third = tokio::spawn({
        let ch = ch.clone();
        async move { AgentStream::hello(ch, hello("clinic-q", "pc-3")).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third stream on the connection waits"
    );
    drop(s1);
    let (_s3, _) = tokio::time::timeout(std::time::Duration::from_secs(10), third)
        .await
        .expect("the third stream gets the freed slot")
        .unwrap();

    // Connections: this one and one more are let in; a third is closed when accepted.
    // Seen on the wire (a tonic channel over a refused connection reconnects over and over,
    // each new connection closed in turn, and the test would wait on that loop): an accepted
    // connection gets the server's HTTP/2 SETTINGS at once, a refused one is closed without.
    let (_second, answered) = h2_answers(c.grpc_addr).await;
    assert!(answered, "a second connection is let in");
    let (_third, answered) = h2_answers(c.grpc_addr).await;
    assert!(!answered, "a third connection from the source is refused");
    assert!(rejected(&c, "too_many_connections").await >= 1.0);
    c.stop().await.unwrap();
}

/// A stream that says nothing after its Hello for `limits.stream_idle_secs` is closed
/// (UNAVAILABLE: the agent reconnects), and a connection that sends nothing at all within
/// `limits.connect_timeout_ms` is dropped, while one that speaks is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_streams_and_silent_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.stream_idle_secs = 1;
    cfg.limits.connect_timeout_ms = 300;
    let c = server::start(cfg).await.unwrap();
    let (mut s, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-i", "pc-1")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    let started = std::time::Instant::now();
    let (st, _) = s.error().await;
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
    assert!(st.message().contains("limits.stream_idle_secs"), "{st:?}");
    // Idle is counted from the last message received (the report), not from its ack.
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    assert_eq!(rejected(&c, "stream_idle").await, 1.0);

    let addr = c.grpc_addr;
    let closed = tokio::task::spawn_blocking(move || closed_after_sending(addr, b""))
        .await
        .unwrap();
    assert!(closed.0, "the silent connection is closed");
    assert!(
        closed.1 < std::time::Duration::from_secs(4),
        "within the timeout, not the read's own 5 s: {:?}",
        closed.1
    );
    c.stop().await.unwrap();
}

/// A fleet behind one address that meets the per-source limits all at once (every terminal of
/// the simulator connecting together) is refused in part, counted, and comes back as agents do
/// (the refusal's pushback, backoff with jitter): every site is shown and every report acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_refused_by_the_per_source_limits_come_back_until_all_are_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_pre_hello_per_source = 4;
    cfg.limits.retry_spread_ms = 1_000;
    let c = server::start(cfg).await.unwrap();
    let s = oqs_fleet_sim::run(
        oqs_fleet_sim::SimOptions {
            collector: format!("http://{}", c.grpc_addr),
            sites: 60,
            terminals_per_site: 1,
            reports: 3,
            interval: std::time::Duration::from_millis(200),
            spread_start: false,
            site_prefix: "nat-".into(),
            ..oqs_fleet_sim::SimOptions::default()
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(s.all_acked(), "{s} {:?}", s.errors);
    assert!(s.retries > 0, "some were refused and came back: {s}");
    assert!(rejected(&c, "too_many_pre_hello").await >= 1.0);
    assert_eq!(get_json(c.http_addr, "/api/sites").await["total"], 60);
    c.stop().await.unwrap();
}
