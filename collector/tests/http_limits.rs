//! Idle and slow HTTP clients hold nothing for long (issue "true alarms", item 17): an HTTP/2
//! connection that never asks anything (no credential needed to open one, even with tokens set)
//! is closed after `limits.http_idle_secs`; a request whose body never comes is answered 408 after
//! `limits.http_request_timeout_ms`; at most `limits.max_http_connections` are open, the rest
//! closed as they are accepted — and meanwhile the gRPC side keeps taking agents' reports.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The HTTP/2 connection preface and an empty SETTINGS frame: a client that opens a connection
/// and then asks nothing.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn cfg(dir: &std::path::Path) -> oqs_collector::config::CollectorConfig {
    let mut c = config(dir);
    c.limits.http_idle_secs = 1;
    c.limits.http_request_timeout_ms = 1_000;
    c.limits.max_http_connections = 8;
    // Tokens on the HTTP side: opening a connection still needs none.
    c.http_auth.token_sha256 = vec![oqs_collector::http_auth::token_hash("t")];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_http_clients_are_closed_and_capped_while_agents_still_report() {
    let dir = tempfile::tempdir().unwrap();
    let c = oqs_collector::server::start(cfg(dir.path())).await.unwrap();
    let http = c.http_addr;

    // An HTTP/2 client that asks nothing is closed once idle, not kept for ever.
    let (closed, after) =
        tokio::task::spawn_blocking(move || closed_after_sending(http, H2_PREFACE))
            .await
            .unwrap();
    assert!(closed, "an idle HTTP/2 connection is closed");
    assert!(
        after < Duration::from_secs(4),
        "after about http_idle_secs: {after:?}"
    );

    // A request whose body never comes: 408 after the whole-request timeout, and closed.
    let answer = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(http).unwrap();
        tcp.write_all(
            format!(
                "POST /api/sites/x/config HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer t\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(
        answer.0.starts_with("HTTP/1.1 408"),
        "{:?} after {:?}",
        answer.0,
        answer.1
    );
    assert!(
        answer.0.contains("limits.http_request_timeout_ms"),
        "{}",
        answer.0
    );
    assert!(answer.1 < Duration::from_secs(4), "{:?}", answer.1);

    // A flood of idle HTTP/2 clients: at most max_http_connections are held, the rest closed at
    // once; the agents' side is untouched.
    let held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut t = std::net::TcpStream::connect(http).unwrap();
            t.write_all(H2_PREFACE).unwrap();
            t
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (closed, after) =
        tokio::task::spawn_blocking(move || closed_after_sending(http, H2_PREFACE))
            .await
            .unwrap();
    assert!(
        closed && after < Duration::from_millis(500),
        "over the cap: {after:?}"
    );
    let (mut s, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-h2", "pc-1")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1, "an agent reports meanwhile");
    drop(held);
    // Once they are gone the HTTP side answers again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get(http, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (_, m, _) = get_with(http, "/metrics", &[("Authorization", "Bearer t")]).await;
    let _ = m;
    let (_, _, metrics) = get_with(http, "/metrics", &[("Authorization", "Bearer t")]).await;
    assert!(
        metric(
            &metrics,
            "oqs_reports_rejected_total{reason=\"too_many_http_connections\"}"
        ) >= 1.0
    );
    c.stop().await.unwrap();
}
