//! One round: every check of the guide, run concurrently with per-probe timeouts, gathered into one
//! `Report`. A round takes about as long as its slowest probe.
//!
//! Must never retry inside a round (the next round is the retry) and never block the runtime:
//! OS reads go to a blocking thread.

use crate::checks::{dns, http, ipv6, lineauth, ntp};
use crate::config::AgentConfig;
use oqs_proto::v1::{HttpTarget, Ipv6State, Outcome, Report};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a round cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("cannot read the OQS CA bundle {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] lineauth::fetch::ClientError),
}

/// Everything a round needs, built once from the configuration.
pub struct RoundRunner {
    cfg: AgentConfig,
    classifier: lineauth::classify::Classifier,
    lineauth: lineauth::fetch::LineAuthClient,
    web: reqwest::Client,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl RoundRunner {
    pub fn new(cfg: AgentConfig) -> Result<Self, RoundError> {
        let ca = match &cfg.oqs_ca {
            None => None,
            Some(p) => Some((
                p.display().to_string(),
                std::fs::read(p).map_err(|source| RoundError::Ca {
                    path: p.display().to_string(),
                    source,
                })?,
            )),
        };
        let ca_ref = ca.as_ref().map(|(p, b)| (p.as_str(), b.as_slice()));
        let timeout = cfg.probe_timeout;
        let classifier =
            lineauth::classify::Classifier::with_extra(cfg.probes.lineauth_patterns.clone())
                .expect("patterns were checked when the configuration was parsed");
        let lineauth =
            lineauth::fetch::LineAuthClient::new(&cfg.probes.lineauth_url, ca_ref, timeout, None)?;
        let web = lineauth::fetch::https_client(ca_ref, timeout, None, true)?;
        Ok(Self {
            cfg,
            classifier,
            lineauth,
            web,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// Runs every check once.
    pub async fn run(&self, seq: u64, spool_dropped_total: u64) -> Report {
        let started_at_ms = now_ms();
        let t = self.cfg.probe_timeout;
        let p = &self.cfg.probes;
        let (ipv6, dns, lineauth, http, ntp) = tokio::join!(
            observe_ipv6(&p.nw_base_servers, t),
            async {
                // The system's DNS configuration is read afresh every round: in the guide's normal
                // setup the DNS server is the router's global address (手順5), which moves with
                // the prefix.
                let system = system_resolver(t).await;
                dns::run(p, system.as_ref(), 53, t).await
            },
            self.lineauth.probe(&self.classifier),
            futures::future::join_all([
                http::probe(
                    &self.web,
                    HttpTarget::OqsWebProduction,
                    &p.oqs_web_production_url,
                    t
                ),
                http::probe(
                    &self.web,
                    HttpTarget::OqsWebVerification,
                    &p.oqs_web_verification_url,
                    t
                ),
                http::probe(&self.web, HttpTarget::Crl, &p.crl_url, t),
            ]),
            futures::future::join_all(p.ntp_servers.iter().map(|s| ntp::probe(s, t))),
        );
        let mut report = Report {
            seq,
            started_at_ms,
            finished_at_ms: now_ms().max(started_at_ms),
            ipv6: Some(ipv6),
            dns,
            lineauth: Some(lineauth),
            http,
            ntp,
            spool_dropped_total,
        };
        crate::tidy::report(&mut report);
        report
    }
}

/// The resolver the OS is configured with now, read on a blocking thread within `timeout`.
async fn system_resolver(timeout: Duration) -> Result<dns::SystemResolver, dns::ResolverError> {
    match tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || dns::system(timeout)),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(dns::ResolverError::new(format!(
            "reading the system DNS configuration failed: {e}"
        ))),
        Err(_) => Err(dns::ResolverError::new(format!(
            "reading the system DNS configuration took longer than {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Reads and judges the terminal's IPv6 state within the probe timeout (a reader that hangs must
/// not stall the rounds). On Windows the route to the area's first NW-base DNS server picks the
/// adapter that decides (`checks/ipv6/windows.rs`).
pub async fn observe_ipv6(nw_base: &[std::net::Ipv6Addr], probe_timeout: Duration) -> Ipv6State {
    let timeout = probe_timeout;
    let started = Instant::now();
    #[cfg(target_os = "linux")]
    let observe = tokio::task::spawn_blocking(ipv6::linux::observe);
    #[cfg(windows)]
    let observe = {
        let target = nw_base.first().copied();
        tokio::task::spawn_blocking(move || ipv6::windows::observe(target))
    };
    #[cfg(not(any(target_os = "linux", windows)))]
    let observe = async {
        Ok::<std::io::Result<ipv6::Observed>, String>(Err(std::io::Error::other(
            "reading IPv6 state is not implemented on this platform yet",
        )))
    };
    let observed = tokio::time::timeout(timeout, observe).await;
    let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    let failed = |outcome: Outcome, error: String| Ipv6State {
        outcome: outcome as i32,
        error,
        latency_ms: ms,
        ..Default::default()
    };
    match observed {
        Ok(Ok(Ok(o))) => ipv6::judge(&o, nw_base, ms),
        Ok(Ok(Err(e))) => failed(Outcome::Failed, format!("cannot read the IPv6 state: {e}")),
        Ok(Err(e)) => failed(
            Outcome::Failed,
            format!("reading the IPv6 state failed: {e}"),
        ),
        Err(_) => failed(
            Outcome::TimedOut,
            format!(
                "reading the IPv6 state took longer than {} ms",
                timeout.as_millis()
            ),
        ),
    }
}
