//! The configuration file's shape as serde reads it: every key optional, unknown keys refused.
//! Nothing here is trusted; [`super::validate`] turns it into an [`super::AgentConfig`].

use crate::checks::lineauth::classify::Pattern;
use crate::guide::Resolver;
use serde::Deserialize;
use std::net::Ipv6Addr;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) site_id: Option<String>,
    pub(super) terminal_id: Option<String>,
    pub(super) area: Option<String>,
    pub(super) connection: Option<String>,
    pub(super) prefecture: Option<String>,
    pub(super) site_name: Option<String>,
    pub(super) customer_id: Option<String>,
    pub(super) interval_secs: Option<u64>,
    pub(super) probe_timeout_ms: Option<u64>,
    pub(super) oqs_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) collector: RawCollector,
    #[serde(default)]
    pub(super) spool: RawSpool,
    #[serde(default)]
    pub(super) dns: RawDns,
    #[serde(default)]
    pub(super) lineauth: RawLineAuth,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) ntp: RawNtp,
    #[serde(default)]
    pub(super) certs: RawCerts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCerts {
    pub(super) pem_paths: Option<Vec<PathBuf>>,
    pub(super) client_contains: Option<Vec<String>>,
    pub(super) anchor_contains: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCollector {
    pub(super) url: Option<String>,
    pub(super) urls: Option<Vec<String>>,
    pub(super) ways: Option<Vec<RawWay>>,
    pub(super) proxy: Option<String>,
    pub(super) proxy_auth_file: Option<PathBuf>,
    pub(super) no_proxy: Option<Vec<String>>,
    pub(super) first_way_retry_secs: Option<u64>,
    pub(super) ca: Option<PathBuf>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    pub(super) enrollment_token: Option<String>,
    pub(super) insecure: Option<bool>,
    pub(super) refused_retry_min_secs: Option<u64>,
    pub(super) refused_retry_max_secs: Option<u64>,
}

/// One way to the collector (`[[collector.ways]]`): its URL, and its own proxy (else
/// `collector.proxy`; `"direct"` for none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWay {
    pub(super) url: String,
    pub(super) proxy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpool {
    pub(super) dir: Option<PathBuf>,
    pub(super) max_bytes: Option<u64>,
    pub(super) keep_acked_hours: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawName {
    pub(super) name: String,
    pub(super) resolver: Resolver,
    pub(super) expected_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub(super) names: Option<Vec<RawName>>,
    pub(super) nw_base_servers: Option<Vec<Ipv6Addr>>,
    pub(super) ngn_servers: Option<Vec<Ipv6Addr>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLineAuth {
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) patterns: Vec<Pattern>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) production_url: Option<String>,
    pub(super) verification_url: Option<String>,
    pub(super) crl_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNtp {
    pub(super) servers: Option<Vec<String>>,
}
