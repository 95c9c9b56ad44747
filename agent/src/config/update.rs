//! A collector's `ConfigUpdate` applied to a running configuration: a zero or empty field keeps
//! the current value, every new value is checked like the file's.

use super::validate::url;
use super::*;

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
                if n.is_empty()
                    || n.len() > oqs_proto::text_limits::DNS_NAME
                    || n.chars().any(|c| c.is_control() || c.is_whitespace())
                {
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
            if u.ntp_servers.iter().any(|s| {
                s.is_empty()
                    || s.len() > oqs_proto::text_limits::DNS_NAME
                    || s.chars().any(|c| c.is_control() || c.is_whitespace())
            }) {
                return Err(invalid(
                    "ntp_servers",
                    "has an empty, over-long or garbled name",
                ));
            }
            c.probes.ntp_servers = u.ntp_servers.clone();
            changed.push("ntp_servers");
        }
        // What the rounds would make with it must fit a report, or every report would be refused.
        super::validate::fits_a_report(&c.probes, "dns_names", "ntp_servers")?;
        Ok((c, changed))
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;
    use oqs_proto::v1::{ConfigUpdate, HttpTarget, HttpTargetUrl};

    #[test]
    fn an_update_changes_only_what_it_sets_and_is_validated() {
        let base = AgentConfig::for_check(Area::East, None, Default::default());
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
        // A pasted CR, nine NTP servers: refused, naming the field (the agent keeps its config).
        let e = base
            .apply_update(&ConfigUpdate {
                lineauth_url: "https://www.lineauth.mnw\r".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            e.to_string().contains("lineauth_url") && e.to_string().contains("control"),
            "{e}"
        );
        let e = base
            .apply_update(&ConfigUpdate {
                ntp_servers: (0..9).map(|i| format!("ntp{i}.example")).collect(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            e.to_string().contains("ntp_servers") && e.to_string().contains("at most 8"),
            "{e}"
        );
    }
}
