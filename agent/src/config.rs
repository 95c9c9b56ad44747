//! The agent's configuration: a TOML file parsed once into trusted types, with the guide's values
//! (`crate::guide`) as defaults for the area. Unknown keys and bad values are errors that name the
//! key and the rule.
//!
//! Must never read anything but the file it is given, and never log the customer ID in full.

use crate::checks::lineauth::classify::Pattern;
use crate::guide::{self, Resolver};
use oqs_proto::ident::{Area, CustomerId, SiteId, TerminalId};
use serde::Deserialize;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What is wrong with a configuration: the key, and what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("config: {0}")]
    Parse(String),
    #[error("config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    site_id: Option<String>,
    terminal_id: Option<String>,
    area: Option<String>,
    prefecture: Option<String>,
    site_name: Option<String>,
    customer_id: Option<String>,
    interval_secs: Option<u64>,
    probe_timeout_ms: Option<u64>,
    oqs_ca: Option<PathBuf>,
    #[serde(default)]
    collector: RawCollector,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    lineauth: RawLineAuth,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    ntp: RawNtp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    url: Option<String>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    enrollment_token: Option<String>,
    insecure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    dir: Option<PathBuf>,
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawName {
    name: String,
    resolver: Resolver,
    expected_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    names: Option<Vec<RawName>>,
    nw_base_servers: Option<Vec<Ipv6Addr>>,
    ngn_servers: Option<Vec<Ipv6Addr>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLineAuth {
    url: Option<String>,
    #[serde(default)]
    patterns: Vec<Pattern>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    production_url: Option<String>,
    verification_url: Option<String>,
    crl_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNtp {
    servers: Option<Vec<String>>,
}

/// A name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName {
    pub name: String,
    pub resolver: Resolver,
    /// When set, answers outside this prefix count as a failure (the guide's answers may change,
    /// so this is opt-in).
    pub expected_prefix: Option<(Ipv6Addr, u8)>,
}

/// What the checks probe. Defaults: the guide's values for the area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probes {
    pub dns_names: Vec<DnsName>,
    pub nw_base_servers: Vec<Ipv6Addr>,
    pub ngn_servers: Vec<Ipv6Addr>,
    pub lineauth_url: String,
    pub lineauth_patterns: Vec<Pattern>,
    pub oqs_web_production_url: String,
    pub oqs_web_verification_url: String,
    pub crl_url: String,
    pub ntp_servers: Vec<String>,
}

/// A credential from the config: its Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The credential itself, to send to the collector (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The agent's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub site: SiteId,
    pub terminal: TerminalId,
    pub area: Area,
    /// The prefecture as configured (full name), sent to the collector for the NOC's filters.
    pub prefecture: Option<String>,
    /// The site's name for people (one line, at most 128 characters).
    pub site_name: Option<String>,
    pub customer_id: Option<CustomerId>,
    pub interval: Duration,
    pub probe_timeout: Duration,
    /// The OQS CA bundle (PEM) the portal and OQS web are verified against.
    pub oqs_ca: Option<PathBuf>,
    /// The collector's gRPC URL; `None` for a one-shot `check`.
    pub collector_url: Option<String>,
    /// The CA that signed the collector's certificate (PEM), for `https://` URLs; without it the
    /// system's trust store is not consulted (the NOC runs its own CA).
    pub collector_ca: Option<PathBuf>,
    /// This terminal's certificate and key (PEM), when the collector requires client certificates.
    pub collector_client_cert: Option<PathBuf>,
    pub collector_client_key: Option<PathBuf>,
    /// The site's enrollment token, exchanged at first contact for this terminal's own secret
    /// (kept in the spool directory). Never logged.
    pub collector_enrollment_token: Option<Secret>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub probes: Probes,
}

/// Bounds, our choices (the ones a `ConfigUpdate` can change are the protocol's, shared with the
/// collector).
pub use oqs_proto::{INTERVAL_SECS, PROBE_TIMEOUT_MS};
pub const MIN_SPOOL_BYTES: u64 = 64 * 1024;
pub const DEFAULT_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SPOOL_BYTES: u64 = 64 * 1024 * 1024;

fn url(key: &'static str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_string());
    if !(v.starts_with("https://") || v.starts_with("http://")) || v.len() > 2048 {
        return Err(invalid(key, format!("{v:?} is not an http(s) URL")));
    }
    Ok(v)
}

/// A TOML error as "line N: what": never the offending line itself, which may hold the
/// enrollment token or the customer ID (the error goes to the service's log).
fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = match e.span() {
        Some(span) => {
            let n = text.get(..span.start).unwrap_or("").matches('\n').count();
            // The key of that line is safe to name; its value is not.
            let key = text
                .lines()
                .nth(n)
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                });
            match key {
                Some(k) => format!("line {} ({k}): ", n + 1),
                None => format!("line {}: ", n + 1),
            }
        }
        None => String::new(),
    };
    ConfigError::Parse(format!("{at}{}", e.message().trim()))
}

/// Whether a collector URL's host is this machine (clear text is then acceptable).
fn loopback_host(url: &str) -> bool {
    let Some(u) = reqwest::Url::parse(url).ok() else {
        return false;
    };
    let host = u.host_str().unwrap_or("");
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn prefix(s: &str) -> Option<(Ipv6Addr, u8)> {
    let (a, l) = s.split_once('/')?;
    let len: u8 = l.parse().ok().filter(|l| *l <= 128)?;
    Some((a.parse().ok()?, len))
}

impl AgentConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        Self::from_raw(raw)
    }

    /// The configuration of a one-shot `check`: the guide's defaults for `area`, no collector.
    pub fn for_check(area: Area, oqs_ca: Option<PathBuf>) -> Self {
        let raw = Raw {
            site_id: Some("local".into()),
            terminal_id: Some("check".into()),
            area: Some(area.as_str().into()),
            oqs_ca,
            ..Raw::default()
        };
        Self::from_raw(raw).expect("the guide's defaults are valid")
    }

    fn from_raw(r: Raw) -> Result<Self, ConfigError> {
        let site = SiteId::parse(
            r.site_id
                .as_deref()
                .ok_or_else(|| invalid("site_id", "is required"))?,
        )
        .map_err(|e| invalid("site_id", e.to_string()))?;
        let terminal = TerminalId::parse(
            r.terminal_id
                .as_deref()
                .ok_or_else(|| invalid("terminal_id", "is required"))?,
        )
        .map_err(|e| invalid("terminal_id", e.to_string()))?;
        let from_pref = match &r.prefecture {
            None => None,
            Some(p) => Some(guide::prefecture_area(p).ok_or_else(|| {
                invalid(
                    "prefecture",
                    format!("{p:?} is not a prefecture's full name (e.g. \"東京都\", \"大阪府\")"),
                )
            })?),
        };
        let from_area = match &r.area {
            None => None,
            Some(a) => Some(
                a.parse::<Area>()
                    .map_err(|e| invalid("area", e.to_string()))?,
            ),
        };
        let area = match (from_area, from_pref) {
            (Some(a), Some(p)) if a != p => {
                return Err(invalid(
                    "area",
                    format!(
                        "is {a} but prefecture {:?} is in the {p}",
                        r.prefecture.unwrap_or_default()
                    ),
                ))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => {
                return Err(invalid(
                    "area",
                    "is required: set area (east/west) or prefecture",
                ))
            }
        };
        let customer_id = r
            .customer_id
            .as_deref()
            .map(|c| CustomerId::parse(c, Some(area)))
            .transpose()
            .map_err(|e| invalid("customer_id", e.to_string()))?;
        let interval_secs = r.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS);
        if !INTERVAL_SECS.contains(&interval_secs) {
            return Err(invalid(
                "interval_secs",
                format!("{interval_secs} is outside {INTERVAL_SECS:?}"),
            ));
        }
        let timeout_ms = r.probe_timeout_ms.unwrap_or(DEFAULT_PROBE_TIMEOUT_MS);
        if !PROBE_TIMEOUT_MS.contains(&timeout_ms) {
            return Err(invalid(
                "probe_timeout_ms",
                format!("{timeout_ms} is outside {PROBE_TIMEOUT_MS:?}"),
            ));
        }
        let spool_max_bytes = r.spool.max_bytes.unwrap_or(DEFAULT_SPOOL_BYTES);
        if spool_max_bytes < MIN_SPOOL_BYTES {
            return Err(invalid(
                "spool.max_bytes",
                format!("{spool_max_bytes} is below {MIN_SPOOL_BYTES}"),
            ));
        }
        let collector_url = r
            .collector
            .url
            .map(|u| url("collector.url", Some(u), ""))
            .transpose()?;
        if r.collector.client_cert.is_some() != r.collector.client_key.is_some() {
            return Err(invalid(
                "collector.client_cert",
                "client_cert and client_key go together: set both or neither",
            ));
        }
        let https = collector_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if !https && (r.collector.ca.is_some() || r.collector.client_cert.is_some()) {
            return Err(invalid(
                "collector.url",
                "collector.ca / client_cert are set but the URL is not https://",
            ));
        }
        if let Some(u) = collector_url.as_deref() {
            if !https && !loopback_host(u) && r.collector.insecure != Some(true) {
                return Err(invalid(
                    "collector.url",
                    format!(
                        "{u:?} would carry this site's reports and credentials across the network in \
                         clear text: use https:// with collector.ca, or set collector.insecure = true \
                         to accept that"
                    ),
                ));
            }
        }
        if https && r.collector.ca.is_none() {
            return Err(invalid(
                "collector.ca",
                "an https:// collector.url needs collector.ca, the PEM of the CA that signed the collector's certificate",
            ));
        }
        let dns_names = match r.dns.names {
            None => guide::probe_names(area)
                .into_iter()
                .map(|p| DnsName {
                    name: p.name.to_string(),
                    resolver: p.resolver,
                    expected_prefix: None,
                })
                .collect(),
            Some(names) => {
                let mut out = Vec::with_capacity(names.len());
                for n in names {
                    if n.name.is_empty() || n.name.len() > oqs_proto::text_limits::DNS_NAME {
                        return Err(invalid(
                            "dns.names",
                            format!("name {:?} is not a DNS name", n.name),
                        ));
                    }
                    let expected_prefix = match n.expected_prefix {
                        None => None,
                        Some(p) => Some(prefix(&p).ok_or_else(|| {
                            invalid(
                                "dns.names",
                                format!("expected_prefix {p:?} of {} is not addr/len", n.name),
                            )
                        })?),
                    };
                    out.push(DnsName {
                        name: n.name,
                        resolver: n.resolver,
                        expected_prefix,
                    });
                }
                out
            }
        };
        let servers = |key: &'static str, v: Option<Vec<Ipv6Addr>>, d: [Ipv6Addr; 2]| {
            let v = v.unwrap_or_else(|| d.to_vec());
            if v.is_empty() {
                return Err(invalid(key, "needs at least one server"));
            }
            Ok(v)
        };
        let ntp_servers = r
            .ntp
            .servers
            .unwrap_or_else(|| vec![guide::NTP_SERVER.to_string()]);
        if ntp_servers
            .iter()
            .any(|s| s.is_empty() || s.len() > oqs_proto::text_limits::DNS_NAME)
        {
            return Err(invalid("ntp.servers", "has an empty or over-long name"));
        }
        // Checked now, so a bad pattern fails at start, not at the first round.
        crate::checks::lineauth::classify::Classifier::with_extra(r.lineauth.patterns.clone())
            .map_err(|e| invalid("lineauth.patterns", e.to_string()))?;
        let site_name = match r.site_name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if n.chars().count() > 128 || n.chars().any(char::is_control) => {
                return Err(invalid(
                    "site_name",
                    "must be one line of at most 128 characters",
                ))
            }
            Some(n) => Some(n.to_owned()),
        };
        Ok(Self {
            prefecture: r.prefecture.clone(),
            site_name,
            site,
            terminal,
            area,
            customer_id,
            interval: Duration::from_secs(interval_secs),
            probe_timeout: Duration::from_millis(timeout_ms),
            oqs_ca: r.oqs_ca,
            collector_url,
            collector_ca: r.collector.ca,
            collector_client_cert: r.collector.client_cert,
            collector_client_key: r.collector.client_key,
            collector_enrollment_token: r
                .collector
                .enrollment_token
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(Secret),
            spool_dir: r
                .spool
                .dir
                .unwrap_or_else(|| PathBuf::from("./oqs-agent-spool")),
            spool_max_bytes,
            probes: Probes {
                dns_names,
                nw_base_servers: servers(
                    "dns.nw_base_servers",
                    r.dns.nw_base_servers,
                    guide::nw_base_servers(area),
                )?,
                ngn_servers: servers(
                    "dns.ngn_servers",
                    r.dns.ngn_servers,
                    guide::ngn_servers(area),
                )?,
                lineauth_url: url("lineauth.url", r.lineauth.url, guide::LINEAUTH_URL)?,
                lineauth_patterns: r.lineauth.patterns,
                oqs_web_production_url: url(
                    "http.production_url",
                    r.http.production_url,
                    guide::OQS_WEB_PRODUCTION_URL,
                )?,
                oqs_web_verification_url: url(
                    "http.verification_url",
                    r.http.verification_url,
                    guide::OQS_WEB_VERIFICATION_URL,
                )?,
                crl_url: url("http.crl_url", r.http.crl_url, guide::CRL_URL)?,
                ntp_servers,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "site_id = \"clinic-1\"\nterminal_id = \"pc-1\"\n";

    #[test]
    fn clear_text_to_another_machine_needs_collector_insecure() {
        let with = |collector: &str| {
            AgentConfig::from_toml(&format!("{MIN}area = \"east\"\n[collector]\n{collector}\n"))
        };
        let e = with("url = \"http://noc.example.jp:50051\"").unwrap_err();
        assert!(e.to_string().contains("collector.insecure = true"), "{e}");
        let e = with("url = \"http://[2001:db8::1]:50051\"").unwrap_err();
        assert!(e.to_string().contains("clear text"), "{e}");
        assert!(with("url = \"http://noc.example.jp:50051\"\ninsecure = true").is_ok());
        for local in [
            "http://127.0.0.1:50051",
            "http://[::1]:50051",
            "http://localhost:50051/",
        ] {
            assert!(with(&format!("url = \"{local}\"")).is_ok(), "{local}");
        }
    }

    #[test]
    fn a_toml_error_names_the_line_but_never_quotes_it() {
        let e = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[collector]\nenrollment_token = \"oqs-enroll-SECRET\"\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 5"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        let e = AgentConfig::from_toml(&format!("{MIN}bogus_key = 1\n")).unwrap_err();
        assert!(e.to_string().contains("bogus_key"), "{e}");
    }

    #[test]
    fn defaults_are_the_guides_for_the_area() {
        let c = AgentConfig::from_toml(&format!("{MIN}area = \"west\"\n")).unwrap();
        assert_eq!(c.area, Area::West);
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(
            c.probes.nw_base_servers,
            guide::nw_base_servers(Area::West).to_vec()
        );
        assert_eq!(c.probes.lineauth_url, "https://www.lineauth.mnw/");
        assert!(c
            .probes
            .dns_names
            .iter()
            .any(|n| n.name == "www.lineauth.mnw"));
        assert!(c
            .probes
            .dns_names
            .iter()
            .all(|n| n.resolver == Resolver::NwBase));
    }

    #[test]
    fn prefecture_gives_the_area_and_must_agree_with_it() {
        let c = AgentConfig::from_toml(&format!("{MIN}prefecture = \"北海道\"\n")).unwrap();
        assert_eq!(c.area, Area::East);
        let e = AgentConfig::from_toml(&format!("{MIN}prefecture = \"大阪府\"\narea = \"east\"\n"))
            .unwrap_err();
        assert!(e.to_string().contains("area"), "{e}");
        let e = AgentConfig::from_toml(&format!("{MIN}prefecture = \"大阪\"\n")).unwrap_err();
        assert!(e.to_string().contains("prefecture"), "{e}");
        let e = AgentConfig::from_toml(MIN).unwrap_err();
        assert!(e.to_string().contains("area"), "{e}");
    }

    #[test]
    fn customer_id_rules_are_enforced_and_errors_do_not_leak_it() {
        let e = AgentConfig::from_toml(&format!(
            "{MIN}area = \"west\"\ncustomer_id = \"COP01234567\"\n"
        ))
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("customer_id") && msg.contains("West"), "{msg}");
        assert!(!msg.contains("01234567"), "{msg}");
        let e =
            AgentConfig::from_toml(&format!("{MIN}area = \"east\"\ncustomer_id = \"CAF123\"\n"))
                .unwrap_err();
        assert!(e.to_string().contains("\"CAF\" + 10 digits"), "{e}");
        let c = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\ncustomer_id = \"COP01234567\"\n"
        ))
        .unwrap();
        assert_eq!(c.customer_id.unwrap().masked(), "COP*****567");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        for (extra, key) in [
            ("area = \"east\"\nintervall_secs = 5\n", "intervall_secs"),
            ("area = \"east\"\n[dns]\nservers = []\n", "servers"),
            ("area = \"east\"\ninterval_secs = 0\n", "interval_secs"),
            ("area = \"east\"\nprobe_timeout_ms = 0\n", "probe_timeout_ms"),
            ("area = \"east\"\n[spool]\nmax_bytes = 10\n", "spool.max_bytes"),
            ("area = \"east\"\n[lineauth]\nurl = \"ftp://x\"\n", "lineauth.url"),
            ("area = \"east\"\n[dns]\nnw_base_servers = []\n", "dns.nw_base_servers"),
            ("area = \"east\"\n[dns]\nnw_base_servers = [\"10.0.0.1\"]\n", "nw_base_servers"),
            ("area = \"north\"\n", "area"),
            (
                "area = \"east\"\n[[dns.names]]\nname = \"a.example\"\nresolver = \"nw_base\"\nexpected_prefix = \"2404::\"\n",
                "expected_prefix",
            ),
            (
                "area = \"east\"\n[[lineauth.patterns]]\nstate = \"consent\"\nall_of = []\n",
                "lineauth.patterns",
            ),
        ] {
            let e = AgentConfig::from_toml(&format!("{MIN}{extra}")).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn overrides_replace_the_defaults() {
        let c = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[[dns.names]]\nname = \"new.onshikaku.org\"\nresolver = \"nw_base\"\nexpected_prefix = \"2404:1a8::/32\"\n\
             [[lineauth.patterns]]\nstate = \"retry_later\"\nall_of = [\"メンテナンス\"]\n[ntp]\nservers = [\"ntp2.example\"]\n"
        ))
        .unwrap();
        assert_eq!(c.probes.dns_names.len(), 1);
        assert_eq!(c.probes.dns_names[0].expected_prefix.unwrap().1, 32);
        assert_eq!(c.probes.lineauth_patterns.len(), 1);
        assert_eq!(c.probes.ntp_servers, vec!["ntp2.example".to_string()]);
    }

    #[test]
    fn check_mode_needs_only_the_area() {
        let c = AgentConfig::for_check(Area::East, None);
        assert!(c.collector_url.is_none());
        assert!(c
            .probes
            .dns_names
            .iter()
            .any(|n| n.name == "assv.asc.flets-east.jp"));
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn shipped_example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.toml");
        let c = super::AgentConfig::from_file(std::path::Path::new(path)).unwrap();
        assert_eq!(c.area, oqs_proto::ident::Area::East);
        assert_eq!(c.spool_max_bytes, 64 * 1024 * 1024);
    }

    /// Every commented-out setting of the example, uncommented (with its section), is valid as
    /// written: an engineer who removes a `# ` gets a working line.
    #[test]
    fn every_commented_setting_of_the_example_is_valid_when_uncommented() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        fn setting(l: &str) -> Option<&str> {
            l.strip_prefix("# ").filter(|rest| {
                rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
        }
        let all: String = text
            .lines()
            .map(|l| setting(l).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("\nenrollment_token = "), "{all}");
        let c = super::AgentConfig::from_toml(&all).unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert!(c.collector_enrollment_token.is_some());
        assert_eq!(c.probes.ntp_servers, ["ntp.base.oqs-pdl.org"]);
    }
}

impl AgentConfig {
    /// Applies a collector's `ConfigUpdate`: a zero or empty field keeps the current value; every
    /// new value is checked like the file's. Returns what changed, for the log.
    pub fn apply_update(
        &self,
        u: &oqs_proto::v1::ConfigUpdate,
    ) -> Result<(AgentConfig, Vec<&'static str>), ConfigError> {
        use oqs_proto::v1::HttpTarget;
        let mut c = self.clone();
        let mut changed = Vec::new();
        if u.interval_seconds > 0 {
            let s = u64::from(u.interval_seconds);
            if !INTERVAL_SECS.contains(&s) {
                return Err(invalid(
                    "interval_seconds",
                    format!("{s} is outside {INTERVAL_SECS:?}"),
                ));
            }
            c.interval = Duration::from_secs(s);
            changed.push("interval");
        }
        if u.probe_timeout_ms > 0 {
            let ms = u64::from(u.probe_timeout_ms);
            if !PROBE_TIMEOUT_MS.contains(&ms) {
                return Err(invalid(
                    "probe_timeout_ms",
                    format!("{ms} is outside {PROBE_TIMEOUT_MS:?}"),
                ));
            }
            c.probe_timeout = Duration::from_millis(ms);
            changed.push("probe_timeout");
        }
        if !u.dns_names.is_empty() {
            let mut names = Vec::with_capacity(u.dns_names.len());
            for n in &u.dns_names {
                if n.is_empty() || n.len() > oqs_proto::text_limits::DNS_NAME {
                    return Err(invalid("dns_names", format!("{n:?} is not a DNS name")));
                }
                let resolver = guide::resolver_for(n);
                names.push(DnsName {
                    name: n.clone(),
                    resolver,
                    expected_prefix: None,
                });
            }
            c.probes.dns_names = names;
            changed.push("dns_names");
        }
        if !u.lineauth_url.is_empty() {
            c.probes.lineauth_url = url("lineauth_url", Some(u.lineauth_url.clone()), "")?;
            changed.push("lineauth_url");
        }
        for t in &u.http_targets {
            let v = url("http_targets", Some(t.url.clone()), "")?;
            match HttpTarget::try_from(t.target) {
                Ok(HttpTarget::OqsWebProduction) => c.probes.oqs_web_production_url = v,
                Ok(HttpTarget::OqsWebVerification) => c.probes.oqs_web_verification_url = v,
                Ok(HttpTarget::Crl) => c.probes.crl_url = v,
                _ => {
                    return Err(invalid(
                        "http_targets",
                        format!("target {} is not known", t.target),
                    ))
                }
            }
            changed.push("http_targets");
        }
        if !u.ntp_servers.is_empty() {
            if u.ntp_servers.iter().any(|s| s.is_empty() || s.len() > 253) {
                return Err(invalid("ntp_servers", "has an empty or over-long name"));
            }
            c.probes.ntp_servers = u.ntp_servers.clone();
            changed.push("ntp_servers");
        }
        Ok((c, changed))
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;
    use oqs_proto::v1::{ConfigUpdate, HttpTarget, HttpTargetUrl};

    #[test]
    fn an_update_changes_only_what_it_sets_and_is_validated() {
        let base = AgentConfig::for_check(Area::East, None);
        let (c, changed) = base
            .apply_update(&ConfigUpdate {
                interval_seconds: 30,
                dns_names: vec!["www.lineauth.mnw".into(), "assv.asc.flets-east.jp".into()],
                http_targets: vec![HttpTargetUrl {
                    target: HttpTarget::Crl as i32,
                    url: "http://crl.example/".into(),
                }],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.probes.dns_names[1].resolver, Resolver::Ngn);
        assert_eq!(c.probes.crl_url, "http://crl.example/");
        assert_eq!(c.probes.lineauth_url, base.probes.lineauth_url);
        assert_eq!(changed, vec!["interval", "dns_names", "http_targets"]);
        let e = base
            .apply_update(&ConfigUpdate {
                probe_timeout_ms: 1,
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("probe_timeout_ms"), "{e}");
        let e = base
            .apply_update(&ConfigUpdate {
                lineauth_url: "ftp://x".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("lineauth_url"), "{e}");
    }
}
