//! Raw configuration to trusted types: every rule, with the guide's values as the area's defaults.
//! Errors name the key and the rule; none quotes a secret or a full customer ID.

use super::raw::*;
use super::*;

pub(super) fn url(
    key: &'static str,
    v: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_string());
    // The protocol's rule, the one the collector holds the NOC's updates to: a URL that passes
    // here never gets a report refused.
    oqs_proto::check_probe_url(&v, true)
        .map_err(|e| invalid(key, format!("{v:?} is not a usable http(s) URL: it {e}")))?;
    Ok(v)
}

/// The ways to the collector: `url`, `urls` (each through `proxy`) or `[[ways]]` (each with its
/// own proxy, else `proxy`); at most one of the three.
fn ways(c: &RawCollector) -> Result<Vec<Way>, ConfigError> {
    use crate::uplink::{proxy, NoProxy, ProxyCredentials, Route};
    let given = [c.url.is_some(), c.urls.is_some(), c.ways.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(invalid(
            "collector.url",
            "set one of collector.url, collector.urls and [[collector.ways]]",
        ));
    }
    let credentials = c
        .proxy_auth_file
        .as_deref()
        .map(ProxyCredentials::from_file)
        .transpose()
        .map_err(|e| invalid("collector.proxy_auth_file", e))?;
    let no_proxy = NoProxy::parse(c.no_proxy.iter().flatten().map(String::as_str))
        .map_err(|e| invalid("collector.no_proxy", e))?;
    let route = |key: &'static str, v: Option<&str>| -> Result<Route, ConfigError> {
        Ok(match v.map(str::trim) {
            None | Some("") | Some("direct") => Route::Direct,
            Some("system") => Route::System {
                credentials: credentials.clone(),
                no_proxy: no_proxy.clone(),
            },
            Some(u) => Route::Proxy {
                addr: proxy::parse_proxy_url(u).map_err(|e| invalid(key, e))?,
                credentials: credentials.clone(),
                no_proxy: no_proxy.clone(),
            },
        })
    };
    let default = route("collector.proxy", c.proxy.as_deref())?;
    let mut out = Vec::new();
    if let Some(u) = &c.url {
        out.push(Way {
            url: url("collector.url", Some(u.clone()), "")?,
            route: default.clone(),
        });
    }
    for u in c.urls.iter().flatten() {
        out.push(Way {
            url: url("collector.urls", Some(u.clone()), "")?,
            route: default.clone(),
        });
    }
    for w in c.ways.iter().flatten() {
        out.push(Way {
            url: url("collector.ways.url", Some(w.url.clone()), "")?,
            route: match &w.proxy {
                Some(p) => route("collector.ways.proxy", Some(p))?,
                None => default.clone(),
            },
        });
    }
    if (c.urls.is_some() || c.ways.is_some()) && out.is_empty() {
        return Err(invalid("collector.urls", "lists no way to the collector"));
    }
    const MAX_WAYS: usize = 8;
    if out.len() > MAX_WAYS {
        return Err(invalid(
            "collector.urls",
            format!("{} ways; at most {MAX_WAYS}", out.len()),
        ));
    }
    if out.is_empty() && (c.proxy.is_some() || c.proxy_auth_file.is_some()) {
        return Err(invalid(
            "collector.proxy",
            "a proxy is set but no collector.url to reach through it",
        ));
    }
    Ok(out)
}

/// A TOML error as "line N: what": never the offending line itself, which may hold the
/// enrollment token or the customer ID (the error goes to the service's log).
pub(super) fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
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
pub(super) fn loopback_host(url: &str) -> bool {
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

/// Whether the rounds `p` describes fit in one report as every collector accepts it
/// (`oqs_proto::report_limits`): the DNS probes (each name as AAAA and A, through the system
/// resolver and straight at each server of its kind) and the SNTP servers. `dns_key` and
/// `ntp_key` name the settings in the error (the file's or an update's).
pub(super) fn fits_a_report(
    p: &Probes,
    dns_key: &'static str,
    ntp_key: &'static str,
) -> Result<(), ConfigError> {
    use oqs_proto::report_limits as RL;
    let probes: usize = p
        .dns_names
        .iter()
        .map(|n| {
            let servers = match n.resolver {
                guide::Resolver::NwBase => p.nw_base_servers.len(),
                guide::Resolver::Ngn => p.ngn_servers.len(),
            };
            2 * (1 + servers)
        })
        .sum();
    if probes > RL::DNS_PROBES {
        return Err(invalid(
            dns_key,
            format!(
                "{} names make {probes} DNS probes a round (each as AAAA and A, through the system \
                 resolver and each server); a report carries at most {}",
                p.dns_names.len(),
                RL::DNS_PROBES
            ),
        ));
    }
    if p.ntp_servers.len() > RL::NTP_PROBES {
        return Err(invalid(
            ntp_key,
            format!(
                "has {} servers; a report carries at most {} (every collector refuses more)",
                p.ntp_servers.len(),
                RL::NTP_PROBES
            ),
        ));
    }
    Ok(())
}

pub(super) fn prefix(s: &str) -> Option<(Ipv6Addr, u8)> {
    let (a, l) = s.split_once('/')?;
    let len: u8 = l.parse().ok().filter(|l| *l <= 128)?;
    Some((a.parse().ok()?, len))
}

impl AgentConfig {
    pub(super) fn from_raw(r: Raw) -> Result<Self, ConfigError> {
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
        let connection = match &r.connection {
            None => Connection::default(),
            Some(c) => c
                .parse::<Connection>()
                .map_err(|e| invalid("connection", e.to_string()))?,
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
        let keep_acked_hours = r.spool.keep_acked_hours.unwrap_or(DEFAULT_KEEP_ACKED_HOURS);
        if !KEEP_ACKED_HOURS.contains(&keep_acked_hours) {
            return Err(invalid(
                "spool.keep_acked_hours",
                format!("{keep_acked_hours} is outside {KEEP_ACKED_HOURS:?} (0: keep none)"),
            ));
        }
        let collector_ways = ways(&r.collector)?;
        if r.collector.client_cert.is_some() != r.collector.client_key.is_some() {
            return Err(invalid(
                "collector.client_cert",
                "client_cert and client_key go together: set both or neither",
            ));
        }
        let https = collector_ways.iter().any(|w| w.url.starts_with("https://"));
        if https
            && collector_ways
                .iter()
                .any(|w| !w.url.starts_with("https://"))
        {
            return Err(invalid(
                "collector.urls",
                "every way to the collector is https://, or none is: one agent has one CA and one \
                 credential for all of them",
            ));
        }
        if !https && (r.collector.ca.is_some() || r.collector.client_cert.is_some()) {
            return Err(invalid(
                "collector.url",
                "collector.ca / client_cert are set but the URL is not https://",
            ));
        }
        for w in &collector_ways {
            let u = &w.url;
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
        let first_way_retry = {
            let s = r.collector.first_way_retry_secs.unwrap_or(300);
            if !(10..=86_400).contains(&s) {
                return Err(invalid(
                    "collector.first_way_retry_secs",
                    format!("{s} is outside 10 to 86400"),
                ));
            }
            Duration::from_secs(s)
        };
        let refused_retry = {
            let min = r.collector.refused_retry_min_secs.unwrap_or(30);
            let max = r.collector.refused_retry_max_secs.unwrap_or(3600);
            if !(1..=86_400).contains(&min) || !(min..=86_400).contains(&max) {
                return Err(invalid(
                    "collector.refused_retry_min_secs",
                    format!(
                        "{min} and refused_retry_max_secs {max}: both 1 to 86400, the max not below \
                         the min"
                    ),
                ));
            }
            (Duration::from_secs(min), Duration::from_secs(max))
        };
        if https && r.collector.ca.is_none() {
            return Err(invalid(
                "collector.ca",
                "an https:// collector URL needs collector.ca, the PEM of the CA that signed the collector's certificate",
            ));
        }
        let dns_names = match r.dns.names {
            // Without FLET'S IPoE the portal's name and the NGN's are not on the clinic's network.
            None => guide::probe_names(area)
                .into_iter()
                .filter(|p| {
                    connection.is_guides()
                        || (p.resolver != guide::Resolver::Ngn && p.name != guide::LINEAUTH_HOST)
                })
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
        // The NW-base and NGN servers are FLET'S IPoE's: another method asks them only when set.
        let servers = |key: &'static str, v: Option<Vec<Ipv6Addr>>, d: [Ipv6Addr; 2]| {
            if v.is_none() && !connection.is_guides() {
                return Ok(Vec::new());
            }
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
        let certs = {
            let d = crate::checks::certs::CertRules::default();
            let rules = |key: &'static str, v: Option<Vec<String>>, def: Vec<String>| match v {
                None => Ok(def),
                Some(v)
                    if v.len() > 16
                        || v.iter()
                            .any(|s| s.trim().is_empty() || s.chars().count() > 64) =>
                {
                    Err(invalid(key, "at most 16 texts of 1 to 64 characters"))
                }
                Some(v) => Ok(v),
            };
            let pem_paths = r.certs.pem_paths.clone().unwrap_or_default();
            if pem_paths.len() > 16 {
                return Err(invalid("certs.pem_paths", "at most 16 files"));
            }
            crate::checks::certs::CertRules {
                pem_paths,
                client_contains: rules(
                    "certs.client_contains",
                    r.certs.client_contains.clone(),
                    d.client_contains,
                )?,
                anchor_contains: rules(
                    "certs.anchor_contains",
                    r.certs.anchor_contains.clone(),
                    d.anchor_contains,
                )?,
            }
        };
        let oqs_ca_watch = r.oqs_ca.clone();
        let c = Self {
            prefecture: r.prefecture.clone(),
            site_name,
            site,
            terminal,
            area,
            connection,
            customer_id,
            interval: Duration::from_secs(interval_secs),
            probe_timeout: Duration::from_millis(timeout_ms),
            oqs_ca: r.oqs_ca,
            collector_ways,
            first_way_retry,
            collector_ca: r.collector.ca,
            collector_client_cert: r.collector.client_cert,
            collector_client_key: r.collector.client_key,
            collector_enrollment_token: r
                .collector
                .enrollment_token
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(Secret),
            refused_retry,
            spool_dir: r
                .spool
                .dir
                .unwrap_or_else(|| PathBuf::from("./oqs-agent-spool")),
            spool_max_bytes,
            spool_keep_acked: Duration::from_secs(keep_acked_hours * 3600),
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
                certs,
                oqs_ca: oqs_ca_watch,
            },
        };
        fits_a_report(&c.probes, "dns.names", "ntp.servers")?;
        Ok(c)
    }
}
