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
