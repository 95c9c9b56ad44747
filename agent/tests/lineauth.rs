//! The line-authentication check against an HTTPS stand-in of https://www.lineauth.mnw on
//! loopback, with a test CA made by the test: every page state of the guide (fixtures in
//! tests/fixtures/lineauth), an unknown code, an untrusted certificate, and a slow answer.

use oqs_agent::checks::lineauth::classify::Classifier;
use oqs_agent::checks::lineauth::fetch::LineAuthClient;
use oqs_proto::v1::{CertProblem, LineAuthState, Outcome};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;

const HOST: &str = "www.lineauth.mnw";

/// A CA, and a leaf for the portal's name signed by it.
fn pki() -> (String, ServerConfig) {
    pki_for(HOST)
}

/// A CA, and a leaf for `name` signed by it.
fn pki_for(name: &str) -> (String, ServerConfig) {
    pki_with(name, false)
}

/// A CA, and a leaf for `name` signed by it, expired if `expired`.
fn pki_with(name: &str, expired: bool) -> (String, ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "OQS test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec![name.to_string()]).unwrap();
    if expired {
        leaf_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (ca.pem(), config)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tests/fixtures/lineauth/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Serves `/<fixture>.html` over HTTPS; `/slow` answers after 3 s.
async fn portal(config: ServerConfig) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                if path == "slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let body = std::fs::read_to_string(format!(
                    "{}/../tests/fixtures/lineauth/{path}",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap_or_else(|_| fixture("consent.html"));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn client(addr: SocketAddr, path: &str, ca: Option<&str>, timeout: Duration) -> LineAuthClient {
    let url = format!("https://{HOST}:{}/{path}", addr.port());
    LineAuthClient::new(
        &url,
        ca.map(|c| ("test-ca.pem", c.as_bytes())),
        timeout,
        Some((HOST, addr)),
    )
    .unwrap()
}

#[tokio::test]
async fn every_page_state_is_reported_through_real_https() {
    let (ca, config) = pki();
    let addr = portal(config).await;
    let cases = [
        ("consent.html", LineAuthState::Consent, "", false),
        ("success.html", LineAuthState::Success, "", true),
        (
            "already_authenticated.html",
            LineAuthState::AlreadyAuthenticated,
            "",
            true,
        ),
        ("retry_later.html", LineAuthState::RetryLater, "", false),
        ("failed.html", LineAuthState::Failed, "", false),
        ("declined.html", LineAuthState::Declined, "", false),
        (
            "not_from_portal.html",
            LineAuthState::NotFromPortal,
            "",
            false,
        ),
        ("system_error.html", LineAuthState::SystemError, "", false),
        (
            "p11019.html",
            LineAuthState::IneligibleLine,
            "P11019",
            false,
        ),
        ("p32031.html", LineAuthState::NoResponse, "P32031", false),
        (
            "unknown_code.html",
            LineAuthState::UnknownPage,
            "P40401",
            false,
        ),
    ];
    let classifier = Classifier::default();
    for (page, state, code, ok) in cases {
        let p = client(addr, page, Some(&ca), Duration::from_secs(2))
            .probe(&classifier)
            .await;
        assert_eq!(p.state, state as i32, "{page}: {p:?}");
        assert_eq!(p.error_code, code, "{page}");
        assert_eq!(p.outcome == Outcome::Ok as i32, ok, "{page}: {}", p.error);
        assert!(p.tls_trusted, "{page}");
        assert_eq!(p.http_status, 200);
    }
}

#[tokio::test]
async fn without_the_oqs_certificate_the_state_is_cert_untrusted_and_the_page_still_read() {
    let (_, config) = pki();
    let addr = portal(config).await;
    let p = client(addr, "p11019.html", None, Duration::from_secs(2))
        .probe(&Classifier::default())
        .await;
    assert_eq!(p.state, LineAuthState::CertUntrusted as i32, "{p:?}");
    assert!(!p.tls_trusted);
    assert!(p.fetched_without_verification);
    assert_eq!(
        p.unverified_page_state,
        LineAuthState::IneligibleLine as i32
    );
    assert_eq!(p.error_code, "P11019");
    assert!(p.error.contains("FAQ Q8"), "{}", p.error);
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_timed_out() {
    let (ca, config) = pki();
    let addr = portal(config).await;
    let started = std::time::Instant::now();
    let p = client(addr, "slow", Some(&ca), Duration::from_millis(500))
        .probe(&Classifier::default())
        .await;
    assert_eq!(p.outcome, Outcome::TimedOut as i32, "{p:?}");
    assert_eq!(p.state, LineAuthState::Unreachable as i32);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn nobody_listening_is_unreachable() {
    let closed: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let p = client(closed, "", None, Duration::from_secs(1))
        .probe(&Classifier::default())
        .await;
    assert_eq!(p.state, LineAuthState::Unreachable as i32);
    assert_eq!(p.outcome, Outcome::Failed as i32);
}

#[test]
fn a_bad_ca_file_is_an_error_naming_it() {
    let e = LineAuthClient::new(
        "https://www.lineauth.mnw/",
        Some(("oqs-ca.pem", b"not a pem")),
        Duration::from_secs(1),
        None,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("oqs-ca.pem"), "{e}");
}

/// One look at the already-authenticated page, trusting `ca` (PEM) if given.
async fn authenticated_page(addr: SocketAddr, ca: Option<&str>) -> oqs_proto::v1::LineAuthProbe {
    client(
        addr,
        "already_authenticated.html",
        ca,
        Duration::from_secs(5),
    )
    .probe(&Classifier::default())
    .await
}

#[tokio::test]
async fn the_oqs_ca_bundle_never_trusts_a_certificate_for_another_name() {
    // Signed by the bundle's CA, but for another host: the bundle adds roots, not names.
    let (ca, config) = pki_for("portal.example.invalid");
    let addr = portal(config).await;
    let p = authenticated_page(addr, Some(&ca)).await;
    assert!(!p.tls_trusted, "{p:?}");
    assert_eq!(p.state, LineAuthState::CertUntrusted as i32, "{p:?}");
    assert_eq!(p.cert_problem, CertProblem::NameMismatch as i32, "{p:?}");
    assert!(p.error.contains("another name"), "{}", p.error);
}

#[tokio::test]
async fn a_certificate_error_says_which_not_installed_or_expired() {
    // Not installed (no bundle, the system does not know the CA): FAQ Q8.
    let (_, config) = pki();
    let addr = portal(config).await;
    let p = authenticated_page(addr, None).await;
    assert_eq!(p.cert_problem, CertProblem::NotTrusted as i32, "{p:?}");
    assert!(p.error.contains("FAQ Q8"), "{}", p.error);
    // Expired, though its CA is in the bundle.
    let (ca, config) = pki_with(HOST, true);
    let addr = portal(config).await;
    let p = authenticated_page(addr, Some(&ca)).await;
    assert_eq!(p.state, LineAuthState::CertUntrusted as i32, "{p:?}");
    assert_eq!(p.cert_problem, CertProblem::Expired as i32, "{p:?}");
    assert!(p.error.contains("expired"), "{}", p.error);
}
