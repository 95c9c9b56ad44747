//! How each terminal's reports reach the collector, as its agent last said (`Uplink`): the way
//! (direct, a proxy, the relay PC), the backlog waiting behind it and the ways that failed — for
//! the site page ("via relay-pc, 3 h behind"), the inventory and the upload metrics.
//!
//! In memory only, like presence: after a restart each agent says it again when it reconnects. A
//! terminal that came direct by its first way with nothing waiting and nothing failed has no entry
//! (the common case costs nothing: a fleet of 10,000 direct terminals holds none). Must never hold
//! credentials (the agent never sends them) nor trust the agent's texts beyond their limits.

use crate::store::TerminalKey;
use oqs_proto::v1::{Uplink, UplinkPath};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// The most ways an agent has, and way errors kept per terminal.
const MAX_WAYS: u32 = 8;
/// Characters kept of a way's relay or proxy name and of an error.
const TEXT_CHARS: usize = oqs_proto::AGENT_TEXT_CHARS;

/// Why an `Uplink` was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UplinkError {
    #[error("Uplink.path {0} is not a known path")]
    Path(i32),
    #[error("Uplink.ways {0} is outside 1..=8, or way_index {1} is not below it")]
    Ways(u32, u32),
    #[error("Uplink.way_errors has {0} entries; at most 8")]
    TooManyErrors(usize),
    #[error("Uplink.system_proxy.domains has {0} entries; at most 16")]
    TooManyDomains(usize),
}

/// The most bypass-list entries kept of a terminal's system proxy.
const MAX_DOMAINS: usize = 16;

/// The terminal's system proxy as its agent read it (WinHTTP, HTTPS_PROXY): a fact, judged by
/// no flag until the field's rule is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemProxySeen {
    pub source: String,
    /// HOST:PORT; empty: none.
    pub proxy: String,
    pub problem: String,
    /// Each OQS bypass-list entry and whether its name goes around the proxy.
    pub domains: Vec<DomainSeen>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSeen {
    pub domain: String,
    pub bypassed: bool,
}

impl SystemProxySeen {
    /// The OQS entries that would go through the proxy.
    pub fn not_bypassed(&self) -> impl Iterator<Item = &str> {
        self.domains
            .iter()
            .filter(|d| !d.bypassed)
            .map(|d| d.domain.as_str())
    }
}

/// One way's last failure, as the agent said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WayFailure {
    pub way_index: u32,
    pub url: String,
    pub error: String,
}

/// What a terminal's agent last said of its way home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UplinkSeen {
    /// `direct`, `proxy` or `relay`.
    pub path: &'static str,
    /// The proxy's HOST:PORT or the relay's host name (empty when direct).
    pub via: String,
    pub way_index: u32,
    pub ways: u32,
    /// Reports waiting in the agent's spool when it said so.
    pub backlog_reports: u64,
    /// When the oldest of them was made (the agent's clock); 0: none.
    pub oldest_unsent_made_ms: i64,
    /// Connection attempts that failed before this stream.
    pub failed_attempts: u32,
    pub way_errors: Vec<WayFailure>,
    /// The machine's proxy setting, when one is set or could not be understood (null: none).
    pub system_proxy: Option<SystemProxySeen>,
    /// When the collector heard it (its clock).
    pub heard_at_ms: i64,
}

impl UplinkSeen {
    /// Checks and bounds what the agent sent.
    pub fn parse(u: &Uplink, now_ms: i64) -> Result<Self, UplinkError> {
        let path = match UplinkPath::try_from(u.path) {
            Ok(UplinkPath::Direct) => "direct",
            Ok(UplinkPath::Proxy) => "proxy",
            Ok(UplinkPath::Relay) => "relay",
            _ => return Err(UplinkError::Path(u.path)),
        };
        if u.ways == 0 || u.ways > MAX_WAYS || u.way_index >= u.ways {
            return Err(UplinkError::Ways(u.ways, u.way_index));
        }
        if u.way_errors.len() > MAX_WAYS as usize {
            return Err(UplinkError::TooManyErrors(u.way_errors.len()));
        }
        if let Some(p) = &u.system_proxy {
            if p.domains.len() > MAX_DOMAINS {
                return Err(UplinkError::TooManyDomains(p.domains.len()));
            }
        }
        let text = |s: &str, n: usize| -> String {
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(n)
                .collect()
        };
        Ok(Self {
            path,
            via: text(&u.via, TEXT_CHARS),
            way_index: u.way_index,
            ways: u.ways,
            backlog_reports: u.backlog_reports,
            oldest_unsent_made_ms: u.oldest_unsent_made_ms.max(0),
            failed_attempts: u.failed_attempts,
            way_errors: u
                .way_errors
                .iter()
                .map(|w| WayFailure {
                    way_index: w.way_index.min(MAX_WAYS),
                    url: text(&w.url, oqs_proto::report_limits::URL_CHARS),
                    error: text(&w.error, TEXT_CHARS),
                })
                .collect(),
            // No proxy and nothing misread is the common case: nothing to keep.
            system_proxy: u
                .system_proxy
                .as_ref()
                .filter(|p| !p.proxy.is_empty() || !p.problem.is_empty())
                .map(|p| SystemProxySeen {
                    source: text(&p.source, 32),
                    proxy: text(&p.proxy, TEXT_CHARS),
                    problem: text(&p.problem, TEXT_CHARS),
                    domains: p
                        .domains
                        .iter()
                        .map(|d| DomainSeen {
                            domain: text(&d.domain, oqs_proto::text_limits::DNS_NAME),
                            bypassed: d.bypassed,
                        })
                        .collect(),
                }),
            heard_at_ms: now_ms,
        })
    }

    /// What a connected terminal without an entry said: direct by its first way, nothing
    /// waiting, nothing failed.
    pub fn direct() -> Self {
        Self {
            path: "direct",
            via: String::new(),
            way_index: 0,
            ways: 1,
            backlog_reports: 0,
            oldest_unsent_made_ms: 0,
            failed_attempts: 0,
            way_errors: Vec::new(),
            system_proxy: None,
            heard_at_ms: 0,
        }
    }

    /// Nothing worth keeping: direct by the first way, nothing waiting, nothing failed.
    fn is_plain(&self) -> bool {
        self.path == "direct"
            && self.way_index == 0
            && self.backlog_reports == 0
            && self.failed_attempts == 0
            && self.way_errors.is_empty()
            && self.system_proxy.is_none()
    }

    /// How long the oldest waiting report has waited at `now_ms` (0 when none waits).
    pub fn oldest_unsent_secs(&self, now_ms: i64) -> i64 {
        if self.backlog_reports == 0 || self.oldest_unsent_made_ms == 0 {
            0
        } else {
            (now_ms - self.oldest_unsent_made_ms).max(0) / 1000
        }
    }
}

/// Each terminal's last `Uplink` (only the ones worth keeping).
#[derive(Clone, Default)]
pub struct Uplinks {
    // A std mutex: held only for a map update or a copy, never across an await.
    map: Arc<Mutex<HashMap<TerminalKey, Box<UplinkSeen>>>>,
}

impl Uplinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TerminalKey, Box<UplinkSeen>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `key`'s agent said now.
    pub fn record(&self, key: &TerminalKey, seen: UplinkSeen) {
        let mut map = self.lock();
        if seen.is_plain() {
            map.remove(key);
        } else {
            map.insert(key.clone(), Box::new(seen));
        }
    }

    /// `key`'s last word (None: direct by its first way, or never said).
    pub fn get(&self, key: &TerminalKey) -> Option<UplinkSeen> {
        self.lock().get(key).map(|b| (**b).clone())
    }

    /// `oqs_agent_upload_backlog_reports` and `oqs_agent_upload_oldest_unsent_seconds` {site,
    /// terminal}, for the terminals whose agent last said reports were waiting (a caught-up fleet
    /// has no series).
    pub fn render(&self, now_ms: i64, out: &mut String) {
        let mut rows: Vec<(TerminalKey, u64, i64)> = self
            .lock()
            .iter()
            .filter(|(_, u)| u.backlog_reports > 0)
            .map(|(k, u)| (k.clone(), u.backlog_reports, u.oldest_unsent_secs(now_ms)))
            .collect();
        rows.sort_by(|a, b| (&a.0.site, &a.0.terminal).cmp(&(&b.0.site, &b.0.terminal)));
        let _ = writeln!(out, "# HELP oqs_agent_upload_backlog_reports Reports waiting in a terminal's spool when its agent last connected (only terminals with some; 0 once it caught up).");
        let _ = writeln!(out, "# TYPE oqs_agent_upload_backlog_reports gauge");
        for (k, n, _) in &rows {
            let _ = writeln!(
                out,
                "oqs_agent_upload_backlog_reports{{site=\"{}\",terminal=\"{}\"}} {n}",
                k.site, k.terminal
            );
        }
        let _ = writeln!(out, "# HELP oqs_agent_upload_oldest_unsent_seconds Age of the oldest report waiting in a terminal's spool, as its agent last said (only terminals with a backlog).");
        let _ = writeln!(out, "# TYPE oqs_agent_upload_oldest_unsent_seconds gauge");
        for (k, _, age) in &rows {
            let _ = writeln!(
                out,
                "oqs_agent_upload_oldest_unsent_seconds{{site=\"{}\",terminal=\"{}\"}} {age}",
                k.site, k.terminal
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::WayError;

    fn uplink(path: UplinkPath, backlog: u64) -> Uplink {
        Uplink {
            path: path as i32,
            via: "relay-pc".into(),
            way_index: 1,
            ways: 2,
            backlog_reports: backlog,
            oldest_unsent_made_ms: 1_000_000,
            failed_attempts: 3,
            way_errors: vec![WayError {
                way_index: 0,
                url: "https://noc.example:50051".into(),
                error: "connecting timed out\n".into(),
            }],
            system_proxy: None,
        }
    }

    /// A direct terminal whose machine has the OQS proxy set, one OQS domain missing from its
    /// bypass list: kept (the fact is worth showing) and says which; no proxy at all is nothing.
    #[test]
    fn a_system_proxy_is_kept_as_a_fact_and_no_proxy_is_nothing() {
        use oqs_proto::v1::{DomainRoute, SystemProxyFacts};
        let key = TerminalKey::new("s1", "pc-1");
        let u = Uplinks::default();
        let facts = |proxy: &str| SystemProxyFacts {
            source: "WinHTTP".into(),
            proxy: proxy.into(),
            problem: String::new(),
            domains: vec![
                DomainRoute {
                    domain: "onshikaku.org".into(),
                    bypassed: true,
                },
                DomainRoute {
                    domain: "lineauth.mnw".into(),
                    bypassed: false,
                },
            ],
        };
        let direct = |f: SystemProxyFacts| Uplink {
            path: UplinkPath::Direct as i32,
            ways: 1,
            system_proxy: Some(f),
            ..Default::default()
        };
        let seen = UplinkSeen::parse(&direct(facts("proxy.base.oqs-pdl.org:8080")), 1_000).unwrap();
        u.record(&key, seen);
        let p = u.get(&key).unwrap().system_proxy.unwrap();
        assert_eq!(p.proxy, "proxy.base.oqs-pdl.org:8080");
        assert_eq!(p.not_bypassed().collect::<Vec<_>>(), ["lineauth.mnw"]);
        u.record(&key, UplinkSeen::parse(&direct(facts("")), 2_000).unwrap());
        assert_eq!(u.get(&key), None, "no proxy: the plain case, nothing kept");
        let mut many = facts("p:1");
        many.domains = vec![DomainRoute::default(); 17];
        assert_eq!(
            UplinkSeen::parse(&direct(many), 0),
            Err(UplinkError::TooManyDomains(17))
        );
    }

    #[test]
    fn an_uplink_is_checked_bounded_and_kept_only_when_worth_it() {
        let key = TerminalKey::new("s1", "pc-1");
        let u = Uplinks::default();
        let seen = UplinkSeen::parse(&uplink(UplinkPath::Relay, 180), 2_000_000).unwrap();
        assert_eq!(seen.path, "relay");
        assert_eq!(seen.way_errors[0].error, "connecting timed out ");
        assert_eq!(seen.oldest_unsent_secs(11_000_000), 10_000);
        u.record(&key, seen);
        let mut out = String::new();
        u.render(11_000_000, &mut out);
        assert!(out.contains("oqs_agent_upload_backlog_reports{site=\"s1\",terminal=\"pc-1\"} 180"));
        assert!(out.contains(
            "oqs_agent_upload_oldest_unsent_seconds{site=\"s1\",terminal=\"pc-1\"} 10000"
        ));
        // Caught up by the relay: still kept (the way is worth showing), no metric series.
        let caught_up = UplinkSeen::parse(&uplink(UplinkPath::Relay, 0), 3_000_000).unwrap();
        u.record(&key, caught_up);
        let mut out = String::new();
        u.render(11_000_000, &mut out);
        assert!(!out.contains("site=\"s1\""), "{out}");
        assert_eq!(u.get(&key).unwrap().via, "relay-pc");
        // Direct by the first way with nothing waiting: no entry.
        let plain = Uplink {
            path: UplinkPath::Direct as i32,
            ways: 1,
            ..Default::default()
        };
        u.record(&key, UplinkSeen::parse(&plain, 4_000_000).unwrap());
        assert_eq!(u.get(&key), None);
    }

    #[test]
    fn a_bad_uplink_names_what_is_wrong() {
        let mut bad = uplink(UplinkPath::Relay, 0);
        bad.path = 9;
        assert_eq!(UplinkSeen::parse(&bad, 0), Err(UplinkError::Path(9)));
        let mut bad = uplink(UplinkPath::Relay, 0);
        bad.way_index = 2;
        assert!(UplinkSeen::parse(&bad, 0)
            .unwrap_err()
            .to_string()
            .contains("way_index"));
        let mut bad = uplink(UplinkPath::Relay, 0);
        bad.way_errors = vec![WayError::default(); 9];
        assert_eq!(
            UplinkSeen::parse(&bad, 0),
            Err(UplinkError::TooManyErrors(9))
        );
    }
}
