//! One round: every check of the guide, run concurrently with per-probe timeouts, gathered into one
//! `Report`. A round takes about as long as its slowest probe.
//!
//! Must never retry inside a round (the next round is the retry) and never block the runtime:
//! OS reads go to a blocking thread.

use crate::checks::{self, certs, dns, http, ipv6, lineauth, ntp};
use crate::config::AgentConfig;
use oqs_proto::v1::Report;
use std::time::{SystemTime, UNIX_EPOCH};

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

    /// Runs every check once, concurrently: each kind's `run` with the same [`checks::Context`].
    pub async fn run(&self, seq: u64, spool_dropped_total: u64) -> Report {
        let started_at_ms = now_ms();
        let ctx = checks::Context {
            probes: &self.cfg.probes,
            timeout: self.cfg.probe_timeout,
            classifier: &self.classifier,
            lineauth: &self.lineauth,
            web: &self.web,
        };
        // The IPv6 and line-authentication checks are FLET'S IPoE's: on another method they are
        // not run (absent from the report), so they raise nothing.
        let guides = self.cfg.connection.is_guides();
        let (ipv6, dns, lineauth, http, ntp, certs) = tokio::join!(
            async {
                match guides {
                    true => Some(ipv6::run(&ctx).await),
                    false => None,
                }
            },
            dns::run(&ctx),
            async {
                match guides {
                    true => Some(lineauth::run(&ctx).await),
                    false => None,
                }
            },
            http::run(&ctx),
            ntp::run(&ctx),
            certs::run(&ctx),
        );
        let mut report = Report {
            seq,
            started_at_ms,
            finished_at_ms: now_ms().max(started_at_ms),
            ipv6,
            dns,
            lineauth,
            http,
            ntp,
            spool_dropped_total,
            certs: Some(certs),
            agent: None,
            connection: self.cfg.connection.to_wire() as i32,
        };
        crate::tidy::report(&mut report);
        report
    }
}
