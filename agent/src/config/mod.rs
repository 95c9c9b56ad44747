//! The agent's configuration: a TOML file parsed once into trusted types, with the guide's values
//! (`crate::guide`) as defaults for the area. Unknown keys and bad values are errors that name the
//! key and the rule.
//!
//! Must never read anything but the file it is given, and never log the customer ID in full.
//!
//! Here: the trusted types and the entry points; [`raw`]: the file's shape as serde reads it;
//! [`validate`]: raw to trusted, with the guide's defaults; [`update`]: a collector's
//! `ConfigUpdate` applied to a running configuration.

mod raw;
mod update;
mod validate;

use raw::Raw;
use validate::parse_error;

use crate::checks::lineauth::classify::Pattern;
use crate::guide::{self, Resolver};
use oqs_proto::ident::{Area, Connection, CustomerId, SiteId, TerminalId};
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

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// One way to the collector: its gRPC URL and how the connection gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Way {
    pub url: String,
    pub route: crate::uplink::Route,
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
    /// Which certificates the certificate check reads (`[certs]`).
    pub certs: crate::checks::certs::CertRules,
    /// The OQS CA bundle, also watched for its expiry (the same as [`AgentConfig::oqs_ca`]).
    pub oqs_ca: Option<PathBuf>,
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
    /// How the clinic reaches the OQS network (`connection`, default the guide's FLET'S IPoE):
    /// other methods run neither the IPv6 nor the line-authentication check.
    pub connection: Connection,
    /// The prefecture as configured (full name), sent to the collector for the NOC's filters.
    pub prefecture: Option<String>,
    /// The site's name for people (one line, at most 128 characters).
    pub site_name: Option<String>,
    pub customer_id: Option<CustomerId>,
    pub interval: Duration,
    pub probe_timeout: Duration,
    /// The OQS CA bundle (PEM) the portal and OQS web are verified against.
    pub oqs_ca: Option<PathBuf>,
    /// The ways to the collector, tried in order (empty for a one-shot `check`): `collector.url`
    /// or `urls`, each through `collector.proxy`; or `[[collector.ways]]`, each with its own.
    pub collector_ways: Vec<Way>,
    /// While reporting over a later way, how often the first is tried again (and taken back
    /// when it works): `collector.first_way_retry_secs`, 300.
    pub first_way_retry: Duration,
    /// The CA that signed the collector's certificate (PEM), for `https://` URLs; without it the
    /// system's trust store is not consulted (the NOC runs its own CA).
    pub collector_ca: Option<PathBuf>,
    /// This terminal's certificate and key (PEM), when the collector requires client certificates.
    pub collector_client_cert: Option<PathBuf>,
    pub collector_client_key: Option<PathBuf>,
    /// The site's enrollment token, exchanged at first contact for this terminal's own secret
    /// (kept in the spool directory). Never logged.
    pub collector_enrollment_token: Option<Secret>,
    /// After the collector refused a report: the first wait before it is sent again, doubling
    /// up to the second (`collector.refused_retry_min_secs` / `_max_secs`, 30 s and an hour).
    pub refused_retry: (Duration, Duration),
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// How long acknowledged reports stay in the spool (within `spool_max_bytes`), so a collector
    /// restored from an older backup is given them again.
    pub spool_keep_acked: Duration,
    pub probes: Probes,
}

/// Bounds, our choices (the ones a `ConfigUpdate` can change are the protocol's, shared with the
/// collector).
pub use oqs_proto::{INTERVAL_SECS, PROBE_TIMEOUT_MS};
pub const MIN_SPOOL_BYTES: u64 = 64 * 1024;
pub const DEFAULT_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SPOOL_BYTES: u64 = 64 * 1024 * 1024;
/// A day: a collector restored from last night's backup is healed by its agents.
pub const DEFAULT_KEEP_ACKED_HOURS: u64 = 24;
pub const KEEP_ACKED_HOURS: std::ops::RangeInclusive<u64> = 0..=720;

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

    /// The configuration of a one-shot `check`: the guide's defaults for `area` and the
    /// connection method, no collector.
    pub fn for_check(area: Area, oqs_ca: Option<PathBuf>, connection: Connection) -> Self {
        let raw = Raw {
            site_id: Some("local".into()),
            terminal_id: Some("check".into()),
            area: Some(area.as_str().into()),
            connection: Some(connection.as_str().into()),
            oqs_ca,
            ..Raw::default()
        };
        Self::from_raw(raw).expect("the guide's defaults are valid")
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

    /// A configuration whose rounds would make reports no collector accepts is refused when it
    /// is read (issue "true alarms", item 8: nine NTP servers made every report refused).
    #[test]
    fn a_config_whose_reports_would_be_refused_is_refused_naming_the_key() {
        let nine: Vec<String> = (0..9).map(|i| format!("\"ntp{i}.example\"")).collect();
        let e = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[ntp]\nservers = [{}]\n",
            nine.join(", ")
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("ntp.servers") && e.to_string().contains("at most 8"),
            "{e}"
        );
        let eight = &nine[..8];
        assert!(AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[ntp]\nservers = [{}]\n",
            eight.join(", ")
        ))
        .is_ok());
        let names: Vec<String> = (0..50)
            .map(|i| format!("{{ name = \"n{i}.onshikaku.org\", resolver = \"nw_base\" }}"))
            .collect();
        let e = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[dns]\nnames = [{}]\n",
            names.join(", ")
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("dns.names") && e.to_string().contains("300 DNS probes"),
            "{e}"
        );
        let e = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[lineauth]\nurl = \"https://www.lineauth.mnw\\r\"\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("lineauth.url") && e.to_string().contains("control"),
            "{e}"
        );
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
        // The West's NGN name (vendors' checkers; the guide names only the East's) through the
        // West's NGN servers, every other name through the NW base.
        assert!(c
            .probes
            .dns_names
            .iter()
            .all(|n| (n.resolver == Resolver::Ngn) == (n.name == "assv.asc.flets-west.jp")));
        assert_eq!(
            c.probes.ngn_servers,
            guide::ngn_servers(Area::West).to_vec()
        );
    }

    #[test]
    fn another_connection_method_drops_what_belongs_to_flets_ipoe() {
        let c = AgentConfig::from_toml(&format!("{MIN}area = \"east\"\n")).unwrap();
        assert_eq!(c.connection, Connection::FletsIpoe);
        let c = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\nconnection = \"ipv4_pppoe\"\n"
        ))
        .unwrap();
        assert_eq!(c.connection, Connection::Ipv4Pppoe);
        // The OQS names stay; the portal's and the NGN's go, and no NW-base or NGN server is
        // asked directly (they are FLET'S IPoE's).
        let names: Vec<&str> = c.probes.dns_names.iter().map(|n| n.name.as_str()).collect();
        assert!(names.contains(&"pweb.base.oqs-pdl.org"), "{names:?}");
        assert!(!names.contains(&"www.lineauth.mnw") && !names.contains(&"assv.asc.flets-east.jp"));
        assert!(c.probes.nw_base_servers.is_empty() && c.probes.ngn_servers.is_empty());
        // Servers set explicitly are asked all the same.
        let c = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\nconnection = \"ipsec\"\n[dns]\nnw_base_servers = [\"::1\"]\n"
        ))
        .unwrap();
        assert_eq!(c.probes.nw_base_servers, vec![Ipv6Addr::LOCALHOST]);
        let e = AgentConfig::from_toml(&format!("{MIN}area = \"east\"\nconnection = \"pppoe\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("connection") && e.contains("ipv4_pppoe"), "{e}");
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
    fn ways_to_the_collector_and_their_proxies_parse_or_name_the_key() {
        use crate::uplink::Route;
        let auth = std::env::temp_dir().join(format!("oqs-proxy-auth-{}", std::process::id()));
        std::fs::write(&auth, "noc:s3cret\n").unwrap();
        let c = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[collector]\ninsecure = true\nproxy_auth_file = {auth:?}\n\
             no_proxy = [\".oqs-pdl.org\"]\n[[collector.ways]]\nurl = \"http://noc.example:50051\"\n\
             [[collector.ways]]\nurl = \"http://noc.example:50051\"\nproxy = \"http://relay-pc:3128\"\n\
             [[collector.ways]]\nurl = \"http://noc2.example:50051\"\nproxy = \"system\"\n"
        ))
        .unwrap();
        assert_eq!(c.collector_ways.len(), 3);
        assert_eq!(c.collector_ways[0].route, Route::Direct);
        match &c.collector_ways[1].route {
            Route::Proxy {
                addr, credentials, ..
            } => {
                assert_eq!(addr.to_string(), "relay-pc:3128");
                assert!(credentials.is_some());
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(c.collector_ways[2].route, Route::System { .. }));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password never prints"
        );
        let c = AgentConfig::from_toml(&format!(
            "{MIN}area = \"east\"\n[collector]\ninsecure = true\nurls = [\"http://a:1\", \"http://b:1\"]\nproxy = \"http://p:8080\"\n"
        ))
        .unwrap();
        assert!(c
            .collector_ways
            .iter()
            .all(|w| matches!(w.route, Route::Proxy { .. })));
        let bad_auth = std::env::temp_dir().join(format!("oqs-proxy-bad-{}", std::process::id()));
        std::fs::write(&bad_auth, "no colon here\n").unwrap();
        let missing = std::env::temp_dir().join("oqs-no-such-auth-file");
        for (extra, key) in [
            ("proxy = \"http://p\"\n", "collector.proxy"),
            ("proxy = \"socks5://p:1080\"\n", "collector.proxy"),
            ("proxy = \"http://user:pw@p:8080\"\n", "collector.proxy"),
            ("proxy = \"http://p:8080/path\"\n", "collector.proxy"),
            ("no_proxy = [\"10.0.0.0/99\"]\n", "collector.no_proxy"),
            (
                &format!("proxy_auth_file = {missing:?}\n"),
                "collector.proxy_auth_file",
            ),
            (
                &format!("proxy_auth_file = {bad_auth:?}\n"),
                "collector.proxy_auth_file",
            ),
            (
                "first_way_retry_secs = 1\n",
                "collector.first_way_retry_secs",
            ),
            (
                "urls = [\"http://a:1\", \"https://b:1\"]\n",
                "collector.urls",
            ),
            ("urls = []\n", "collector.urls"),
            (
                "url = \"http://a:1\"\nurls = [\"http://b:1\"]\n",
                "collector.url",
            ),
            ("urls = [\"ftp://a:1\"]\n", "collector.urls"),
        ] {
            let e = AgentConfig::from_toml(&format!(
                "{MIN}area = \"east\"\n[collector]\ninsecure = true\nurl = \"http://noc:1\"\n{extra}"
            ))
            .or_else(|_| {
                AgentConfig::from_toml(&format!(
                    "{MIN}area = \"east\"\n[collector]\ninsecure = true\n{extra}"
                ))
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{extra}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let _ = std::fs::remove_file(auth);
        let _ = std::fs::remove_file(bad_auth);
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
        let c = AgentConfig::for_check(Area::East, None, Default::default());
        assert!(c.collector_ways.is_empty());
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
