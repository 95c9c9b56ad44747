//! The `ipv6` check (guide step 4): the terminal's addresses, prefix, default route and DNS
//! servers; the line's /64 as the NOC follows it.

use super::{count, ip, ipv6_addr, keep, outcome, sample_of, text};
use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::v1::{AddressKind, Report};
use oqs_proto::wire_name;
use serde_json::json;
use std::net::Ipv6Addr;

pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    let Some(s) = &r.ipv6 else {
        return Ok(());
    };
    outcome("ipv6", s.outcome)?;
    text("ipv6.error", &s.error, l.max_text_chars)?;
    count("ipv6.addresses", s.addresses.len(), l.max_addresses)?;
    for (i, a) in s.addresses.iter().enumerate() {
        ipv6_addr(&format!("ipv6.addresses[{i}].address"), &a.address)?;
        text(
            &format!("ipv6.addresses[{i}].interface"),
            &a.interface,
            oqs_proto::text_limits::INTERFACE,
        )?;
        if a.prefix_len > 128 {
            return Err(format!(
                "ipv6.addresses[{i}].prefix_len {} is over 128",
                a.prefix_len
            ));
        }
    }
    if !s.prefix.is_empty() {
        let (addr, len) = s
            .prefix
            .split_once('/')
            .ok_or_else(|| format!("ipv6.prefix {:?} is not addr/len", s.prefix))?;
        ipv6_addr("ipv6.prefix", addr)?;
        match len.parse::<u8>() {
            Ok(n) if n <= 128 => {}
            _ => return Err(format!("ipv6.prefix {:?} has a bad length", s.prefix)),
        }
    }
    count(
        "ipv6.default_gateways",
        s.default_gateways.len(),
        l.max_list_items,
    )?;
    for (i, g) in s.default_gateways.iter().enumerate() {
        ipv6_addr(&format!("ipv6.default_gateways[{i}]"), g)?;
    }
    count("ipv6.dns_servers", s.dns_servers.len(), l.max_list_items)?;
    for (i, g) in s.dns_servers.iter().enumerate() {
        ip(&format!("ipv6.dns_servers[{i}]"), g)?;
    }
    Ok(())
}

pub fn trim(r: &mut Report, l: &Limits) -> u64 {
    let Some(s) = &mut r.ipv6 else {
        return 0;
    };
    keep(&mut s.addresses, l.max_addresses)
        + keep(&mut s.default_gateways, l.max_list_items)
        + keep(&mut s.dns_servers, l.max_list_items)
}

pub fn sample(r: &Report) -> Option<Sample> {
    let s = r.ipv6.as_ref()?;
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
    Some(sample_of(Check::Ipv6, s.outcome, s.latency_ms, sig, extra))
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

/// The prefix chart's state: the /64 in force (null: none).
pub fn chart(full: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "prefix": full["prefix"].as_str().filter(|p| !p.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_bad_prefix_is_named_and_long_address_lists_are_trimmed() {
        use oqs_proto::v1::{Ipv6Address, Ipv6State, Outcome};
        let l = Limits::default();
        let mut r = Report {
            ipv6: Some(Ipv6State {
                outcome: Outcome::Ok as i32,
                prefix: "2408::/300".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(validate(&r, &l).unwrap_err().contains("ipv6.prefix"));
        let s = r.ipv6.as_mut().unwrap();
        s.prefix = "2408:210:1:2::/64".into();
        s.addresses = vec![
            Ipv6Address {
                address: "2408:210:1:2::5".into(),
                kind: AddressKind::Global as i32,
                prefix_len: 64,
                ..Default::default()
            };
            l.max_addresses + 2
        ];
        assert_eq!(trim(&mut r, &l), 2);
        validate(&r, &l).unwrap();
        assert_eq!(sample(&r).unwrap().detail["prefix"], "2408:210:1:2::/64");
    }
}
