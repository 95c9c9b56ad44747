//! Enrollment with the real protocol: a wrong, missing or revoked credential is refused with
//! UNAUTHENTICATED and stores nothing; a site's token is exchanged once for a terminal secret; a
//! site's credential cannot report for another site; revocation takes effect on the next message;
//! a token never re-enrolls an enrolled terminal (the NOC replaces one explicitly) and can be
//! limited in uses; failures are counted and limited per source, site and terminal, a valid
//! credential always passing; the admin API needs its own token once the HTTP side has tokens.

mod common;

use common::*;
use oqs_collector::http_auth::token_hash;
use oqs_collector::server::{self, Running};
use oqs_proto::v1::collector_message::Body as CollectorBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn request(
    http: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {http}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

async fn enrolled_collector(dir: &std::path::Path) -> Running {
    let mut cfg = config(dir);
    cfg.enrollment.required = true;
    cfg.enrollment.max_failures_per_minute = 5;
    server::start(cfg).await.unwrap()
}

fn with_cred(site: &str, terminal: &str, cred: Option<&str>) -> oqs_proto::v1::Hello {
    let mut h = hello(site, terminal);
    h.credential = cred.map(str::to_owned);
    h
}

/// Opens a stream with `h`; returns the Welcome's secret, or the refusal status.
async fn open(
    c: &Running,
    h: oqs_proto::v1::Hello,
) -> Result<(AgentStream, String), tonic::Status> {
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_hello(h)).await?;
    match s.next().await? {
        Some(CollectorBody::Welcome(w)) => Ok((s, w.terminal_secret)),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_terminals_report_for_their_own_site() {
    let dir = tempfile::tempdir().unwrap();
    let c = enrolled_collector(dir.path()).await;
    let http = c.http_addr;
    let (status, body) = request(http, "POST", "/api/admin/enrollments/clinic-a", None).await;
    assert_eq!(status, 200, "{body}");
    let token_a = body["token"].as_str().unwrap().to_owned();
    assert!(token_a.starts_with("oqs-enroll-"));
    let (_, body) = request(http, "POST", "/api/admin/enrollments/clinic-b", None).await;
    let token_b = body["token"].as_str().unwrap().to_owned();

    // Missing, wrong, and another site's token: UNAUTHENTICATED, nothing stored.
    for cred in [None, Some("oqs-enroll-nope"), Some(token_b.as_str())] {
        let err = open(&c, with_cred("clinic-a", "pc-1", cred))
            .await
            .err()
            .expect("refused");
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "{cred:?}: {err:?}"
        );
    }
    let (_, sites) = request(http, "GET", "/api/sites", None).await;
    assert_eq!(sites["total"], 0, "nothing stored: {sites}");

    // The right token: enrolled, a secret issued once, reports stored.
    let (mut s, secret) = open(&c, with_cred("clinic-a", "pc-1", Some(&token_a)))
        .await
        .unwrap();
    assert!(secret.starts_with("oqs-term-"), "{secret}");
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    drop(s);
    // The secret works on its own; the token still enrolls other terminals of the same site only.
    let (mut s, again) = open(&c, with_cred("clinic-a", "pc-1", Some(&secret)))
        .await
        .unwrap();
    assert!(again.is_empty(), "a secret is issued once");
    s.send(report(2)).await;
    assert_eq!(s.ack().await.seq, 2);
    let err = open(&c, with_cred("clinic-b", "pc-1", Some(&secret)))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "site A's secret cannot report as site B"
    );

    // Revocation: the open stream is ended at once, before it sends anything more, and nothing
    // more is stored.
    let (status, body) = request(http, "DELETE", "/api/admin/enrollments/clinic-a", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_terminals"], 1);
    assert_eq!(body["closed_streams"], 1);
    let (st, _) = tokio::time::timeout(std::time::Duration::from_secs(2), s.error())
        .await
        .expect("the open stream is ended at revocation, not at its next report");
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    assert!(st.message().contains("revoked"), "{st:?}");
    let err = open(&c, with_cred("clinic-a", "pc-1", Some(&secret)))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let site = get_json(http, "/api/sites/clinic-a").await;
    assert_eq!(
        site["terminals"][0]["last_seq"], 2,
        "report 3 was not stored"
    );

    let (_, m) = get(http, "/metrics").await;
    assert!(metric(&m, "oqs_auth_failures_total{reason=\"missing\"}") >= 1.0);
    assert!(metric(&m, "oqs_auth_failures_total{reason=\"wrong_credential\"}") >= 2.0);
    assert!(metric(&m, "oqs_auth_failures_total{reason=\"revoked\"}") >= 1.0);
    assert!(!m.contains(&token_a) && !m.contains(&secret));
    c.stop().await.unwrap();
}

/// Wrong credentials are limited per source, site and terminal, and a valid credential always
/// passes: one device sharing the agents' address (a VPN, a clinic's NAT) that guesses again and
/// again gets "try later" for what it guesses at, and locks out nobody else — not the other
/// terminals of the address, and not the real terminal it guesses as.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_lock_out_only_what_failed_and_a_valid_one_always_passes() {
    let dir = tempfile::tempdir().unwrap();
    let c = enrolled_collector(dir.path()).await;
    let (_, body) = request(c.http_addr, "POST", "/api/admin/enrollments/clinic-r", None).await;
    let token = body["token"].as_str().unwrap().to_owned();
    let (_, secret_1) = open(&c, with_cred("clinic-r", "pc-1", Some(&token)))
        .await
        .unwrap();
    // One stale credential retried over and over counts once: no lockout.
    for _ in 0..8 {
        let err = open(&c, with_cred("clinic-r", "pc-1", Some("stale")))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
    // Distinct guesses as pc-1 do: past max_failures_per_minute (5) they are told to wait, as
    // RESOURCE_EXHAUSTED ("later", not "your credential is bad", on which an agent forgets its
    // secret).
    let mut limited = 0;
    for i in 0..20 {
        let err = open(
            &c,
            with_cred("clinic-r", "pc-1", Some(&format!("guess-{i}"))),
        )
        .await
        .err()
        .unwrap();
        if err.code() == tonic::Code::ResourceExhausted {
            assert!(
                err.message().contains("too many failed attempts"),
                "{err:?}"
            );
            limited += 1;
        }
    }
    assert!(limited >= 15, "the guesser is limited: {limited}");
    // The real pc-1 still gets in with its secret; another terminal of the same address enrolls
    // with the token; another site's agent on the same address is not touched.
    open(&c, with_cred("clinic-r", "pc-1", Some(&secret_1)))
        .await
        .expect("a valid secret always passes");
    open(&c, with_cred("clinic-r", "pc-2", Some(&token)))
        .await
        .expect("a valid token for another terminal passes");
    let (_, body) = request(c.http_addr, "POST", "/api/admin/enrollments/clinic-s", None).await;
    let other = body["token"].as_str().unwrap().to_owned();
    open(&c, with_cred("clinic-s", "pc-1", Some(&other)))
        .await
        .expect("another site's agent behind the same address passes");
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert!(metric(&m, "oqs_auth_failures_total{reason=\"rate_limited\"}") >= 15.0);
    c.stop().await.unwrap();
}

/// A site's token never re-enrolls a terminal that already holds a secret (anyone with the token
/// could otherwise cut the real agent off); the NOC replaces a terminal explicitly
/// (`enroll SITE --replace TERMINAL`: the old secret stops working, its stream ends, the new token
/// enrolls it). Tokens can be limited in uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_hijack_an_enrolled_terminal_and_the_noc_replaces_one_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let c = enrolled_collector(dir.path()).await;
    let (_, body) = request(
        c.http_addr,
        "POST",
        "/api/admin/enrollments/clinic-h?max_uses=2",
        None,
    )
    .await;
    assert_eq!(body["max_uses"], 2, "{body}");
    assert!(body["expires_at"].is_string(), "the default expiry: {body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (mut real, secret) = open(&c, with_cred("clinic-h", "pc-1", Some(&token)))
        .await
        .unwrap();
    real.send(report(1)).await;
    assert_eq!(real.ack().await.seq, 1);
    // Someone else with the site's token, as pc-1: refused, and the real agent is untouched.
    let err = open(&c, with_cred("clinic-h", "pc-1", Some(&token)))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("already enrolled"), "{err:?}");
    real.send(report(2)).await;
    assert_eq!(real.ack().await.seq, 2, "the real agent goes on");
    open(&c, with_cred("clinic-h", "pc-1", Some(&secret)))
        .await
        .expect("its secret still works");
    // The token's second use enrolls pc-2; a third is refused.
    open(&c, with_cred("clinic-h", "pc-2", Some(&token)))
        .await
        .unwrap();
    let err = open(&c, with_cred("clinic-h", "pc-3", Some(&token)))
        .await
        .err()
        .expect("no uses left");
    assert!(
        err.message().contains("enrolled as many terminals"),
        "{err:?}"
    );

    // The PC was replaced: the NOC re-enrolls pc-1 on purpose.
    let (status, body) = request(
        c.http_addr,
        "POST",
        "/api/admin/enrollments/clinic-h?replace=pc-1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replaced_terminal"], "pc-1");
    let new_token = body["token"].as_str().unwrap().to_owned();
    let (st, _) = tokio::time::timeout(std::time::Duration::from_secs(2), real.error())
        .await
        .expect("the old machine's stream ends at once");
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    let err = open(&c, with_cred("clinic-h", "pc-1", Some(&secret)))
        .await
        .err()
        .expect("the old secret no longer works");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let (_, new_secret) = open(&c, with_cred("clinic-h", "pc-1", Some(&new_token)))
        .await
        .expect("the new token enrolls the replaced terminal");
    assert!(new_secret.starts_with("oqs-term-"));
    let (status, body) = request(
        c.http_addr,
        "POST",
        "/api/admin/enrollments/clinic-h?replace=bad%20id",
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert!(metric(&m, "oqs_auth_failures_total{reason=\"already_enrolled\"}") >= 1.0);
    assert!(metric(&m, "oqs_auth_failures_total{reason=\"token_used_up\"}") >= 1.0);
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_admin_token_once_http_has_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http_auth.token_sha256 = vec![token_hash("viewer")];
    let c = server::start(cfg.clone()).await.unwrap();
    let (status, _) = request(
        c.http_addr,
        "POST",
        "/api/admin/enrollments/x",
        Some("viewer"),
    )
    .await;
    assert_eq!(status, 403, "no admin token configured: admin is off");
    c.stop().await.unwrap();
    cfg.http_auth.admin_token_sha256 = vec![token_hash("admin")];
    let c = server::start(cfg).await.unwrap();
    let (status, _) = request(
        c.http_addr,
        "POST",
        "/api/admin/enrollments/x",
        Some("viewer"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = request(
        c.http_addr,
        "POST",
        "/api/admin/enrollments/x",
        Some("admin"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(c.http_addr, "GET", "/api/admin/enrollments", Some("admin")).await;
    assert_eq!(status, 200);
    assert_eq!(body["sites"][0]["site_id"], "x");
    c.stop().await.unwrap();
}

/// The NOC's commands, as documented: `oqs-collector admin enroll|list|revoke` against a running
/// collector's admin API with `--token-file`; the printed token admits an agent; without the admin
/// token the command fails and says the collector's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_enroll_list_and_revoke_a_site() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.enrollment.required = true;
    cfg.http_auth.token_sha256 = vec![token_hash("viewer")];
    cfg.http_auth.admin_token_sha256 = vec![token_hash("admin-secret")];
    let c = server::start(cfg).await.unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "admin-secret\n").unwrap();
    let http = c.http_addr.to_string();
    let admin = |args: &[&str], with_token: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oqs-collector"));
        cmd.args(["admin", "--http", &http]);
        if with_token {
            cmd.arg("--token-file").arg(&token_file);
        }
        cmd.args(args).env("RUST_LOG", "warn");
        cmd.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| admin(&["enroll", "clinic-cli"], true));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("oqs-enroll-"), "{v}");

    // The printed token admits the site's agent (which gets its terminal secret).
    let (stream, secret) = open(&c, with_cred("clinic-cli", "pc-1", Some(&token)))
        .await
        .expect("admitted with the printed token");
    assert!(secret.starts_with("oqs-term-"));
    drop(stream);

    let out = tokio::task::block_in_place(|| admin(&["list"], true));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sites"][0]["site_id"], "clinic-cli", "{v}");

    let out = tokio::task::block_in_place(|| admin(&["list"], false));
    assert!(!out.status.success(), "no admin token: refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = tokio::task::block_in_place(|| admin(&["revoke", "clinic-cli"], true));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for cred in [&token, &secret] {
        let err = open(&c, with_cred("clinic-cli", "pc-1", Some(cred)))
            .await
            .err()
            .expect("revoked");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
    c.stop().await.unwrap();
}
