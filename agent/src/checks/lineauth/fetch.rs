//! Fetches the line-authentication portal over HTTPS, trusting the OQS CA bundle, and classifies
//! the page. When the certificate does not verify (the OQS certificate is not installed, FAQ Q8)
//! the result is its own state, and the page is fetched once more without verification so what it
//! says is not lost — the result says so.
//!
//! Must never submit anything: only GET, never follows the consent form (never presses 希望する).

use super::classify::{Classifier, PageState};
use oqs_proto::v1::{CertProblem, LineAuthProbe, LineAuthState, Outcome};
use std::error::Error as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The most bytes of a page read (portal pages are a few KiB).
pub const MAX_PAGE_BYTES: usize = 256 * 1024;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("OQS CA bundle {path}: {message}")]
    Ca { path: String, message: String },
    #[error("HTTPS client: {0}")]
    Build(String),
}

/// Two clients: one verifying against the OQS CA, one that does not (used only after the first
/// failed on the certificate, to classify the page).
pub struct LineAuthClient {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl LineAuthClient {
    /// `ca_pem`: the OQS CA bundle; `None` trusts the system roots only. `resolve` pins the URL's
    /// host to an address (tests and the lab; the guide's setup resolves it through DNS).
    pub fn new(
        url: &str,
        ca_pem: Option<(&str, &[u8])>,
        timeout: Duration,
        resolve: Option<(&str, SocketAddr)>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            verified: https_client(ca_pem, timeout, resolve, true)?,
            unverified: https_client(None, timeout, resolve, false)?,
            url: url.to_string(),
            timeout,
        })
    }

    /// One look at the portal.
    pub async fn probe(&self, classifier: &Classifier) -> LineAuthProbe {
        let started = Instant::now();
        let mut p = LineAuthProbe {
            url: self.url.clone(),
            tls_trusted: true,
            ..Default::default()
        };
        match get(&self.verified, &self.url).await {
            Ok((status, body, content_type)) => {
                p.http_status = status;
                let c = classifier.classify_bytes(&body, content_type.as_deref());
                p.state = c.state.to_wire() as i32;
                p.error_code = c.code.map(|c| c.as_str().to_string()).unwrap_or_default();
                p.excerpt = c.excerpt;
                let good = matches!(
                    c.state,
                    PageState::Success | PageState::AlreadyAuthenticated
                );
                p.outcome = if good { Outcome::Ok } else { Outcome::Failed } as i32;
                if !good {
                    p.error = format!(
                        "the portal shows {:?}{}",
                        c.state,
                        code_suffix(&p.error_code)
                    );
                }
            }
            Err(e) if is_certificate_error(&e) => {
                let problem = cert_problem(&e);
                p.tls_trusted = false;
                p.state = LineAuthState::CertUntrusted as i32;
                p.cert_problem = problem as i32;
                p.outcome = Outcome::Failed as i32;
                p.error = oqs_guide::diagnosis::cert_problem_text(problem).into();
                if let Ok((status, body, content_type)) = get(&self.unverified, &self.url).await {
                    let c = classifier.classify_bytes(&body, content_type.as_deref());
                    p.fetched_without_verification = true;
                    p.http_status = status;
                    p.unverified_page_state = c.state.to_wire() as i32;
                    p.error_code = c.code.map(|c| c.as_str().to_string()).unwrap_or_default();
                    p.excerpt = c.excerpt;
                    p.error.push_str(&format!(
                        "; fetched without verification, the page shows {:?}{}",
                        c.state,
                        code_suffix(&p.error_code)
                    ));
                }
            }
            Err(e) => {
                p.tls_trusted = false;
                p.state = LineAuthState::Unreachable as i32;
                p.outcome = if e.is_timeout() {
                    Outcome::TimedOut
                } else {
                    Outcome::Failed
                } as i32;
                p.error = if e.is_timeout() {
                    format!("no answer within {} ms", self.timeout.as_millis())
                } else {
                    chain(&e)
                };
            }
        }
        p.latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        p
    }
}

/// An HTTPS client that trusts the system's store and `ca_pem` (`checks/trust.rs`), or, with `verify` false, nothing
/// at all (only for reading a page whose certificate already failed). `resolve` pins a host to an
/// address (tests and the lab).
pub fn https_client(
    ca_pem: Option<(&str, &[u8])>,
    timeout: Duration,
    resolve: Option<(&str, SocketAddr)>,
    verify: bool,
) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("oqs-agent/", env!("CARGO_PKG_VERSION")));
    if let Some((host, addr)) = resolve {
        b = b.resolve(host, addr);
    }
    if !verify {
        b = b.tls_danger_accept_invalid_certs(true);
    } else {
        let roots = match ca_pem {
            None => Vec::new(),
            Some((path, pem)) => pem_roots(path, pem)?,
        };
        let tls = crate::checks::trust::SystemThenBundle::new(roots)
            .and_then(|t| t.client_config())
            .map_err(|e| match (e, ca_pem) {
                (e @ crate::checks::trust::TrustError::Bundle(_), Some((path, _))) => {
                    ClientError::Ca {
                        path: path.into(),
                        message: e.to_string(),
                    }
                }
                (e, _) => ClientError::Build(e.to_string()),
            })?;
        b = b.tls_backend_preconfigured(tls);
    }
    b.build().map_err(|e| ClientError::Build(e.to_string()))
}

/// The certificates of a PEM bundle (`oqs_ca`), or an error naming the file.
fn pem_roots(
    path: &str,
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let ca = |message: String| ClientError::Ca {
        path: path.into(),
        message,
    };
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(ca("no certificate in the file".into()));
    }
    Ok(certs)
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" (code {code})")
    }
}

/// One GET: the status, the body (at most [`MAX_PAGE_BYTES`]) and the Content-Type header.
pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
) -> Result<(u32, Vec<u8>, Option<String>), reqwest::Error> {
    let mut resp = client.get(url).send().await?;
    let status = u32::from(resp.status().as_u16());
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_PAGE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_PAGE_BYTES {
            break;
        }
    }
    Ok((status, body, content_type))
}

/// The error and its causes, one line.
pub(crate) fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// What the verifier said was wrong (rustls's and the platform verifier's wording: webpki, and
/// CryptoAPI's CERT_E_EXPIRED / CERT_E_CN_NO_MATCH mapped by rustls-platform-verifier).
pub fn cert_problem(e: &reqwest::Error) -> CertProblem {
    let t = chain(e).to_ascii_lowercase().replace([' ', '_'], "");
    if t.contains("notvalidforname") {
        CertProblem::NameMismatch
    } else if t.contains("notvalidyet") {
        CertProblem::NotYetValid
    } else if t.contains("expired") || t.contains("notvalidafter") {
        CertProblem::Expired
    } else if t.contains("revoked") {
        CertProblem::Revoked
    } else {
        CertProblem::NotTrusted
    }
}

fn is_certificate_error(e: &reqwest::Error) -> bool {
    let text = chain(e).to_ascii_lowercase();
    e.is_connect() && (text.contains("certificate") || text.contains("unknownissuer"))
}
