//! The HTTP side with tokens configured: every page and API answers 401 without credentials,
//! `/metrics` takes its own token, `/healthz` stays open, only a reveal token sees full customer
//! IDs, every answer carries the security headers, and a non-loopback bind needs tokens. Wrong
//! credentials are counted and a source that keeps guessing gets 429. Open, the collector answers
//! only requests addressed by IP or localhost (DNS rebinding), and refuses changes that a page of
//! another site sends (cross-site requests).

mod common;

use common::*;
use oqs_collector::config::HttpAuth;
use oqs_collector::http_auth::token_hash;
use oqs_collector::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_protect_pages_api_and_metrics_and_gate_customer_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_auth = HttpAuth {
        token_sha256: vec![token_hash("noc-token")],
        metrics_token_sha256: vec![token_hash("prom-token")],
        reveal_token_sha256: vec![token_hash("lead-token")],
        admin_token_sha256: vec![],
        ..HttpAuth::default()
    };
    let c = server::start(cfg).await.unwrap();
    // One site with a customer ID (common::hello sends CAF0123456789).
    let (mut s, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-auth", "pc-1")).await;
    s.send(report(1)).await;
    s.ack().await;
    let http = c.http_addr;
    let bearer = |t: &str| format!("Bearer {t}");

    for path in [
        "/",
        "/sites/clinic-auth",
        "/api/sites",
        "/api/sites/clinic-auth",
        "/api/events",
        "/metrics",
    ] {
        let (status, head, body) = get_with(http, path, &[]).await;
        assert_eq!(status, 401, "{path} without credentials: {body}");
        assert!(
            head.to_ascii_lowercase().contains("x-frame-options: deny"),
            "{path}: {head}"
        );
        let (status, _, _) = get_with(http, path, &[("Authorization", "Bearer wrong")]).await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (_, head, _) = get_with(http, "/", &[]).await;
    assert!(
        head.contains("WWW-Authenticate: Basic") || head.contains("www-authenticate: Basic"),
        "{head}"
    );
    let (status, _, _) = get_with(http, "/healthz", &[]).await;
    assert_eq!(status, 200);

    let (status, head, _) = get_with(
        http,
        "/api/sites",
        &[("Authorization", &bearer("noc-token"))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-security-policy: default-src 'self'"));
    // A browser's basic auth, the token as password ("noc:noc-token").
    let (status, _, _) = get_with(
        http,
        "/",
        &[("Authorization", "Basic bm9jOm5vYy10b2tlbg==")],
    )
    .await;
    assert_eq!(status, 200);

    let (status, _, _) =
        get_with(http, "/metrics", &[("Authorization", &bearer("noc-token"))]).await;
    assert_eq!(status, 401, "/metrics has its own token");
    let (status, _, body) = get_with(
        http,
        "/metrics",
        &[("Authorization", &bearer("prom-token"))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("oqs_reports_ingested_total"));

    let (_, _, body) = get_with(
        http,
        "/api/sites/clinic-auth",
        &[("Authorization", &bearer("noc-token"))],
    )
    .await;
    assert!(body.contains("CAF*******789"), "masked for the NOC: {body}");
    assert!(!body.contains("CAF0123456789"));
    let (_, _, body) = get_with(
        http,
        "/api/sites/clinic-auth",
        &[("Authorization", &bearer("lead-token"))],
    )
    .await;
    assert!(
        body.contains("CAF0123456789"),
        "full for an authorised viewer: {body}"
    );
    // Searching by the customer ID is seeing it: only the reveal token finds the site by it, so
    // a masked ID cannot be recovered by trying its hidden digits.
    for (token, found) in [("noc-token", false), ("lead-token", true)] {
        let (status, _, body) = get_with(
            http,
            "/api/sites?q=CAF0123456789",
            &[("Authorization", &bearer(token))],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body.contains("clinic-auth"), found, "{token}: {body}");
    }
    drop(s);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn without_tokens_ids_are_masked_and_a_public_bind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-open", "pc-1")).await;
    s.send(report(1)).await;
    s.ack().await;
    let (status, _, body) = get_with(c.http_addr, "/api/sites/clinic-open", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("CAF*******789") && !body.contains("CAF0123456789"),
        "{body}"
    );
    drop(s);
    c.stop().await.unwrap();

    let mut cfg = config(dir.path());
    cfg.http_listen = "0.0.0.0:0".parse().unwrap();
    let e = server::start(cfg.clone()).await.err().unwrap().to_string();
    assert!(
        e.contains("http_listen") && e.contains("token_sha256"),
        "{e}"
    );
    cfg.http_auth.token_sha256 = vec!["NOT-A-HASH".into()];
    let e = server::start(cfg).await.err().unwrap().to_string();
    assert!(e.contains("sha256sum"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_is_counted_and_limited_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_auth.token_sha256 = vec![token_hash("noc-token")];
    cfg.http_auth.max_failures_per_minute = 3;
    let c = server::start(cfg).await.unwrap();
    let http = c.http_addr;
    // A browser's first request carries no credentials: not a failure.
    let (status, _, _) = get_with(http, "/api/sites", &[]).await;
    assert_eq!(status, 401);
    // A tab left open with the old token after a rotation repeats one wrong credential: it
    // counts once and locks nobody out.
    for _ in 0..10 {
        let (status, _, _) =
            get_with(http, "/api/sites", &[("Authorization", "Bearer old-token")]).await;
        assert_eq!(status, 401);
    }
    for i in 0..2 {
        let (status, _, _) = get_with(
            http,
            "/api/sites",
            &[("Authorization", &format!("Bearer guess-{i}"))],
        )
        .await;
        assert_eq!(status, 401);
    }
    // Three distinct wrong tokens: a token that never worked from here waits for the minute.
    let (status, _, body) =
        get_with(http, "/api/sites", &[("Authorization", "Bearer noc-token")]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("wait a minute"), "{body}");
    // /healthz has no credentials to guess and stays open, even with one.
    let (status, _, _) = get_with(http, "/healthz", &[("Authorization", "Bearer x")]).await;
    assert_eq!(status, 200);
    c.stop().await.unwrap();

    // A token that has worked from an address keeps working there while someone guesses from it.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_auth.token_sha256 = vec![token_hash("noc-token")];
    cfg.http_auth.max_failures_per_minute = 2;
    let c = server::start(cfg).await.unwrap();
    let ok = |c: &oqs_collector::server::Running| {
        let http = c.http_addr;
        async move {
            get_with(http, "/api/sites", &[("Authorization", "Bearer noc-token")])
                .await
                .0
        }
    };
    assert_eq!(ok(&c).await, 200);
    for i in 0..5 {
        get_with(
            c.http_addr,
            "/api/sites",
            &[("Authorization", &format!("Bearer guess-{i}"))],
        )
        .await;
    }
    let (status, _, _) = get_with(
        c.http_addr,
        "/api/sites",
        &[("Authorization", "Bearer guess-9")],
    )
    .await;
    assert_eq!(status, 429, "the guesser is limited");
    assert_eq!(ok(&c).await, 200, "the NOC is not locked out");
    c.stop().await.unwrap();

    // Each wrong credential is counted (read with the separate /metrics token).
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_auth.token_sha256 = vec![token_hash("noc-token")];
    cfg.http_auth.metrics_token_sha256 = vec![token_hash("prom")];
    let c = server::start(cfg).await.unwrap();
    for _ in 0..2 {
        get_with(
            c.http_addr,
            "/api/sites",
            &[("Authorization", "Bearer guess")],
        )
        .await;
    }
    let (_, _, m) = get_with(c.http_addr, "/metrics", &[("Authorization", "Bearer prom")]).await;
    assert_eq!(
        metric(&m, "oqs_auth_failures_total{reason=\"http_credentials\"}"),
        2.0
    );
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_it_answers_only_its_own_addresses_and_refuses_changes_from_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_auth.allowed_hosts = vec!["noc-box".into()];
    let c = server::start(cfg).await.unwrap();
    let (mut s, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-x", "pc-1")).await;
    s.send(report(1)).await;
    s.ack().await;
    let http = c.http_addr;
    let port = http.port().to_string();
    // DNS rebinding: a page of evil.example whose name now points here sends its own Host.
    for host in ["evil.example", "evil.example:8080"] {
        let (status, _, body) = get_with(http, "/api/sites", &[("Host", host)]).await;
        assert_eq!(status, 403, "{host}: {body}");
        assert!(body.contains("allowed_hosts"), "{body}");
    }
    for host in [
        http.to_string(),
        format!("localhost:{port}"),
        format!("noc-box:{port}"),
        "[::1]:8080".to_string(),
    ] {
        let (status, _, body) = get_with(http, "/api/sites", &[("Host", &host)]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // A change from another site's page (a form or script) is refused before it reaches an agent.
    let own = format!("http://{http}");
    for headers in [
        vec![("Origin", "http://evil.example")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "same-site")],
    ] {
        let (status, _, body) =
            request_raw(http, "POST", "/api/sites/clinic-x/run-now", &headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // The dashboard itself (same origin) and scripts (no Origin) reach the handler, which sends
    // RunNow to the site's connected agent. Behind a reverse proxy that rewrites Host, the
    // browser's Sec-Fetch-Site still says same-origin and decides.
    for headers in [
        vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
        vec![
            ("Origin", "https://noc.example.jp"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![],
    ] {
        let (status, _, body) =
            request_raw(http, "POST", "/api/sites/clinic-x/run-now", &headers).await;
        assert_eq!(status, 200, "{headers:?}: {body}");
    }
    drop(s);
    c.stop().await.unwrap();
}

/// A client that does not send a whole request head within `limits.http_header_timeout_ms` —
/// silent, or stalled halfway — is disconnected; one that does is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_that_stall_are_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.http_header_timeout_ms = 400;
    let c = server::start(cfg).await.unwrap();
    let http = c.http_addr;
    let (status, _) = get(http, "/healthz").await;
    assert_eq!(status, 200);
    for sent in [
        &b""[..],
        b"GET /api/sites HTTP/1.1\r\nHost: 127",
        // Answered, then idle on keep-alive.
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ] {
        let bytes = sent.to_vec();
        let (closed, took) =
            tokio::task::spawn_blocking(move || closed_after_sending(http, &bytes))
                .await
                .unwrap();
        assert!(
            closed,
            "a client that sent {:?} is disconnected",
            String::from_utf8_lossy(sent)
        );
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    }
    c.stop().await.unwrap();
}
