//! Fetches the line-authentication portal over HTTPS, trusting the OQS CA bundle, and classifies
//! the page. When the certificate does not verify (the OQS certificate is not installed, FAQ Q8)
//! the result is its own state, and the page is fetched once more without verification so what it
//! says is not lost — the result says so.
//!
//! Must never submit anything: only GET, never follows the consent form (never presses 希望する).

use super::classify::{Classifier, PageState};
use oqs_proto::v1::{LineAuthProbe, LineAuthState, Outcome};
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
            Ok((status, body)) => {
                p.http_status = status;
                let c = classifier.classify(&body);
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
                p.tls_trusted = false;
                p.state = LineAuthState::CertUntrusted as i32;
                p.outcome = Outcome::Failed as i32;
                p.error =
                    "the portal's certificate is not trusted: the OQS connection certificate is \
                           not installed (guide FAQ Q8)"
                        .into();
                if let Ok((status, body)) = get(&self.unverified, &self.url).await {
                    let c = classifier.classify(&body);
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

/// An HTTPS client that trusts `ca_pem` (and the system roots), or, with `verify` false, nothing
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
    }
    if let Some((path, pem)) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::Ca {
            path: path.into(),
            message: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(ClientError::Ca {
                path: path.into(),
                message: "no certificate in the file".into(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| ClientError::Build(e.to_string()))
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" (code {code})")
    }
}

pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
) -> Result<(u32, String), reqwest::Error> {
    let mut resp = client.get(url).send().await?;
    let status = u32::from(resp.status().as_u16());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_PAGE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_PAGE_BYTES {
            break;
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
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

fn is_certificate_error(e: &reqwest::Error) -> bool {
    let text = chain(e).to_ascii_lowercase();
    e.is_connect() && (text.contains("certificate") || text.contains("unknownissuer"))
}
