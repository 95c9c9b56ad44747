//! What each check of one report says, reduced to what the NOC follows over time: the check's
//! outcome, a latency, a small JSON detail, and a signature of everything in the detail that
//! matters (latencies, offsets and free-text errors excluded) so that "nothing changed" is a
//! comparison of two numbers.
//!
//! Pure: a report in, samples out. Must never decide flags (that is `flags`) or store anything.

use oqs_proto::v1::{AddressKind, HttpTarget, Outcome, Report, ResolverRole};
use oqs_proto::wire_name;
use serde_json::{json, Value};
use std::net::Ipv6Addr;

pub use crate::catalog::Check;

/// One check of one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub check: Check,
    pub ok: bool,
    /// `ok`, `failed`, `timed_out`.
    pub outcome: String,
    /// The check's latency (the slowest probe of the check).
    pub latency_ms: u32,
    /// What the check found, with per-probe latencies.
    pub detail: Value,
    /// The part of `detail` that varies from sample to sample (latencies, offsets, errors).
    pub volatile: Value,
    /// FNV-1a of the detail without latencies, offsets and error texts.
    pub signature: u64,
}

fn is_ok(o: i32) -> bool {
    o == Outcome::Ok as i32
}

/// The worst outcome of several probes: any timeout, else any failure, else ok.
fn worst(outcomes: impl Iterator<Item = i32>) -> i32 {
    let mut w = Outcome::Ok as i32;
    for o in outcomes {
        if o == Outcome::TimedOut as i32 {
            return o;
        }
        if o != Outcome::Ok as i32 {
            w = Outcome::Failed as i32;
        }
    }
    w
}

fn fnv1a(v: &Value) -> u64 {
    let text = v.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn sample(check: Check, outcome: i32, latency_ms: u32, sig: Value, extra: Value) -> Sample {
    let signature = fnv1a(&json!([wire_name!(Outcome, outcome), &sig]));
    let mut detail = sig;
    if let (Some(d), Value::Object(e)) = (detail.as_object_mut(), extra.clone()) {
        d.extend(e);
    }
    Sample {
        check,
        ok: is_ok(outcome),
        outcome: wire_name!(Outcome, outcome),
        latency_ms,
        detail,
        volatile: extra,
        signature,
    }
}

/// The /64 of an address text, as `2408:210:1:2::/64`.
pub fn slash64(addr: &str) -> Option<String> {
    let a: Ipv6Addr = addr.split('%').next()?.parse().ok()?;
    let s = a.segments();
    Some(format!(
        "{}/64",
        Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)
    ))
}

/// The line's prefix as the terminal sees it: the /64 of its preferred global (non-temporary)
/// addresses, so temporary-address rotation and a deprecated old prefix during renumbering do not
/// count. Falls back to the agent's own `prefix` when no address parses.
pub fn line_prefix(r: &Report) -> Option<String> {
    let s = r.ipv6.as_ref()?;
    let mut prefixes: Vec<String> = s
        .addresses
        .iter()
        .filter(|a| a.kind == AddressKind::Global as i32 && !a.deprecated)
        .filter_map(|a| slash64(&a.address))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    match prefixes.into_iter().next() {
        Some(p) => Some(p),
        None if !s.prefix.is_empty() && s.addresses.is_empty() => Some(s.prefix.clone()),
        None => None,
    }
}

/// The terminal's preferred global (non-temporary) addresses: what the guide asks a caller to read
/// out (手順6-⑫).
pub fn global_addresses(r: &Report) -> Vec<String> {
    let Some(s) = r.ipv6.as_ref() else {
        return Vec::new();
    };
    let mut v: Vec<String> = s
        .addresses
        .iter()
        .filter(|a| a.kind == AddressKind::Global as i32 && !a.deprecated)
        .map(|a| a.address.clone())
        .collect();
    v.sort();
    v
}

fn web_sample(r: &Report, check: Check, targets: &[HttpTarget]) -> Option<Sample> {
    let probes: Vec<_> = r
        .http
        .iter()
        .filter(|h| targets.iter().any(|t| *t as i32 == h.target))
        .collect();
    if probes.is_empty() {
        return None;
    }
    let sig = json!({ "targets": probes.iter().map(|h| json!({
        "target": wire_name!(HttpTarget, h.target),
        "url": h.url,
        "outcome": wire_name!(Outcome, h.outcome),
        "status": h.status,
        "tls_trusted": h.tls_trusted,
    })).collect::<Vec<_>>() });
    let extra = json!({
        "latencies_ms": probes.iter().map(|h| h.latency_ms).collect::<Vec<_>>(),
        "errors": probes.iter().map(|h| h.error.as_str()).collect::<Vec<_>>(),
    });
    Some(sample(
        check,
        worst(probes.iter().map(|h| h.outcome)),
        probes.iter().map(|h| h.latency_ms).max().unwrap_or(0),
        sig,
        extra,
    ))
}

/// Every check present in `r`, in [`Check::ALL`] order.
pub fn samples(r: &Report) -> Vec<Sample> {
    let mut out = Vec::with_capacity(6);
    if let Some(s) = &r.ipv6 {
        let sig = json!({
            "prefix": line_prefix(r),
            "global": global_addresses(r),
            "default_route": s.has_default_route,
            "dns_servers": s.dns_servers,
            "dns_mode": wire_name!(DnsServerMode, s.dns_mode),
        });
        let temporary = s
            .addresses
            .iter()
            .filter(|a| a.kind == AddressKind::Temporary as i32)
            .count();
        let extra = json!({ "temporary_addresses": temporary, "error": s.error });
        out.push(sample(Check::Ipv6, s.outcome, s.latency_ms, sig, extra));
    }
    if !r.dns.is_empty() {
        let sig = json!({ "probes": r.dns.iter().map(|p| json!({
            "name": p.name,
            "type": wire_name!(RecordType, p.record_type),
            "resolver": wire_name!(ResolverRole, p.role),
            "server": p.server,
            "outcome": wire_name!(Outcome, p.outcome),
            "rcode": p.rcode,
            "answers": p.answers,
        })).collect::<Vec<_>>() });
        let extra = json!({
            "latencies_ms": r.dns.iter().map(|p| p.latency_ms).collect::<Vec<_>>(),
        });
        out.push(sample(
            Check::Dns,
            worst(r.dns.iter().map(|p| p.outcome)),
            r.dns.iter().map(|p| p.latency_ms).max().unwrap_or(0),
            sig,
            extra,
        ));
    }
    if let Some(la) = &r.lineauth {
        let sig = json!({
            "state": wire_name!(LineAuthState, la.state),
            "code": la.error_code,
            "http_status": la.http_status,
            "tls_trusted": la.tls_trusted,
            "unverified_page_state": wire_name!(LineAuthState, la.unverified_page_state),
        });
        let extra = json!({ "excerpt": la.excerpt, "error": la.error });
        out.push(sample(
            Check::Lineauth,
            la.outcome,
            la.latency_ms,
            sig,
            extra,
        ));
    }
    out.extend(web_sample(
        r,
        Check::OqsWeb,
        &[HttpTarget::OqsWebProduction, HttpTarget::OqsWebVerification],
    ));
    out.extend(web_sample(r, Check::Crl, &[HttpTarget::Crl]));
    if !r.ntp.is_empty() {
        let sig = json!({ "servers": r.ntp.iter().map(|n| json!({
            "server": n.server,
            "outcome": wire_name!(Outcome, n.outcome),
            "stratum": n.stratum,
        })).collect::<Vec<_>>() });
        let extra = json!({
            "offsets_ms": r.ntp.iter().map(|n| n.offset_us as f64 / 1000.0).collect::<Vec<_>>(),
            "latencies_ms": r.ntp.iter().map(|n| n.latency_ms).collect::<Vec<_>>(),
        });
        out.push(sample(
            Check::Ntp,
            worst(r.ntp.iter().map(|n| n.outcome)),
            r.ntp.iter().map(|n| n.latency_ms).max().unwrap_or(0),
            sig,
            extra,
        ));
    }
    out
}

/// Whether a probe went through the terminal's own resolver.
pub fn is_system(p: &oqs_proto::v1::DnsProbe) -> bool {
    p.role == ResolverRole::System as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};

    #[test]
    fn check_names_round_trip_and_errors_list_them() {
        for c in Check::ALL {
            assert_eq!(Check::parse(c.as_str()), Ok(c));
        }
        assert!(Check::parse("dnss").unwrap_err().contains("oqs_web"));
    }

    #[test]
    fn a_healthy_report_has_every_check() {
        let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let s = samples(&report(&site, 0, 0, 1, 1_000));
        let kinds: Vec<_> = s.iter().map(|s| s.check).collect();
        assert_eq!(kinds, Check::ALL.to_vec());
        assert!(s.iter().all(|s| s.ok), "{s:?}");
    }

    #[test]
    fn latency_jitter_and_temporary_rotation_keep_the_signature() {
        let site = SiteProfile::new(3, "s", Scenario::Healthy, 1);
        // Rounds 0 and 30 differ in every latency and in the temporary address (it rotates every
        // 24 rounds in the simulator).
        let a = samples(&report(&site, 0, 0, 1, 1_000));
        let b = samples(&report(&site, 0, 30, 31, 1_000_000));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.signature, y.signature, "{:?}", x.check);
        }
        assert_ne!(a[1].detail, b[1].detail, "latencies are in the detail");
    }

    #[test]
    fn a_prefix_change_changes_the_ipv6_signature_only_there() {
        let site = SiteProfile::new(0, "s", Scenario::PrefixChange, 1);
        let a = samples(&report(&site, 0, 0, 1, 1_000));
        let b = samples(&report(&site, 0, 5, 6, 2_000));
        assert_ne!(a[0].signature, b[0].signature);
        assert_eq!(
            a[1].signature, b[1].signature,
            "dns answers do not depend on the prefix"
        );
        assert_ne!(
            line_prefix(&report(&site, 0, 0, 1, 1)),
            line_prefix(&report(&site, 0, 5, 6, 1))
        );
    }

    #[test]
    fn line_prefix_ignores_temporary_and_deprecated_addresses() {
        use oqs_proto::v1::{Ipv6Address, Ipv6State};
        let addr = |a: &str, kind: AddressKind, deprecated| Ipv6Address {
            address: a.into(),
            kind: kind as i32,
            deprecated,
            prefix_len: 64,
            ..Default::default()
        };
        let r = Report {
            ipv6: Some(Ipv6State {
                addresses: vec![
                    addr("2408:1::5", AddressKind::Global, true),
                    addr("2408:3::7", AddressKind::Temporary, false),
                    addr("2408:2:0:0:1::9", AddressKind::Global, false),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(line_prefix(&r).as_deref(), Some("2408:2::/64"));
        assert_eq!(global_addresses(&r), vec!["2408:2:0:0:1::9".to_string()]);
        assert_eq!(slash64("nonsense"), None);
    }
}
