//! The IPv6 check (guide 手順6-⑫/⑬, P14): the terminal's addresses by kind, the /64 prefix in
//! use, the default route, and whether the DNS servers are the router (手順5) or the NW-base
//! servers directly (手順5').
//!
//! The judgement here is pure, over an [`Observed`] snapshot; reading the snapshot from the OS is
//! per platform (`linux.rs`: procfs; `windows.rs`: `GetAdaptersAddresses`, its conversion tested on
//! every platform). Must never change the terminal's settings.

#[cfg(target_os = "linux")]
pub mod linux;
pub mod windows;

use oqs_proto::v1::{AddressKind, DnsServerMode, Ipv6Address, Ipv6State, Outcome};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// One address as the OS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedAddress {
    pub interface: String,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub temporary: bool,
    pub deprecated: bool,
}

/// What the OS says, before judgement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub addresses: Vec<ObservedAddress>,
    /// Next hops of IPv6 default routes (fe80:: per the guide).
    pub default_gateways: Vec<Ipv6Addr>,
    /// Whether any IPv6 default route exists (a route can exist without a listed next hop).
    pub has_default_route: bool,
    pub dns_servers: Vec<IpAddr>,
}

/// A /64 (or other length) prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub network: Ipv6Addr,
    pub len: u8,
}

impl Prefix {
    pub fn of(addr: Ipv6Addr, len: u8) -> Self {
        let bits = u128::from(addr);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len.min(128)))
        };
        Self {
            network: Ipv6Addr::from(bits & mask),
            len,
        }
    }
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        Prefix::of(addr, self.len) == *self
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// A global unicast address the line can carry (the guide's 2408: / 2001: examples): 2000::/3,
/// but not Teredo (2001:0::/32) or 6to4 (2002::/16), tunnels that never reach the closed OQS
/// network, nor the documentation ranges (2001:db8::/32, 3fff::/20). ULA (fc00::/7) and
/// link-local lie outside 2000::/3 anyway. Only these count as "IPv6 acquired" (手順6-⑫).
pub fn is_global_unicast(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && s[1] == 0)
        && s[0] != 0x2002
        && !(s[0] == 0x2001 && s[1] == 0x0db8)
        && (s[0] & 0xfff0) != 0x3ff0
}

/// The kind of an address.
pub fn kind(a: &ObservedAddress) -> AddressKind {
    if is_link_local(a.address) {
        AddressKind::LinkLocal
    } else if is_global_unicast(a.address) {
        if a.temporary {
            AddressKind::Temporary
        } else {
            AddressKind::Global
        }
    } else {
        AddressKind::Other
    }
}

/// The /64 in use: from preferred (not deprecated) global addresses, non-temporary first.
pub fn prefix_in_use(addrs: &[ObservedAddress]) -> Option<Prefix> {
    let preferred = |want_temp: bool| {
        addrs
            .iter()
            .filter(|a| !a.deprecated && a.temporary == want_temp && is_global_unicast(a.address))
            .map(|a| Prefix::of(a.address, 64))
            .min()
    };
    preferred(false).or_else(|| preferred(true))
}

/// Router (on the terminal's own /64 or link-local), NW-base (the area's servers), or other.
pub fn dns_mode(servers: &[IpAddr], own: &[Prefix], nw_base: &[Ipv6Addr]) -> DnsServerMode {
    if servers.is_empty() {
        return DnsServerMode::None;
    }
    let v6: Vec<Ipv6Addr> = servers
        .iter()
        .filter_map(|s| match s {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();
    if !v6.is_empty() && v6.iter().all(|a| nw_base.contains(a)) {
        return DnsServerMode::NwBase;
    }
    if v6
        .iter()
        .any(|a| is_link_local(*a) || own.iter().any(|p| p.contains(*a)))
    {
        return DnsServerMode::Router;
    }
    DnsServerMode::Other
}

/// Judges a snapshot: "IPv6 acquired" is at least one global unicast address plus a default route
/// (DOMAIN.md §4).
pub fn judge(o: &Observed, nw_base: &[Ipv6Addr], latency_ms: u32) -> Ipv6State {
    let prefix = prefix_in_use(&o.addresses);
    let own: Vec<Prefix> = o
        .addresses
        .iter()
        .filter(|a| is_global_unicast(a.address))
        .map(|a| Prefix::of(a.address, a.prefix_len.min(128)))
        .collect();
    let has_global = o
        .addresses
        .iter()
        .any(|a| is_global_unicast(a.address) && !a.deprecated);
    let mut missing = Vec::new();
    if !has_global {
        missing.push("no preferred global IPv6 address");
    }
    if !o.has_default_route {
        missing.push("no IPv6 default route");
    }
    Ipv6State {
        outcome: if missing.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Failed
        } as i32,
        error: missing.join("; "),
        addresses: o
            .addresses
            .iter()
            .map(|a| Ipv6Address {
                interface: a.interface.clone(),
                address: a.address.to_string(),
                prefix_len: u32::from(a.prefix_len),
                kind: kind(a) as i32,
                deprecated: a.deprecated,
            })
            .collect(),
        prefix: prefix.map(|p| p.to_string()).unwrap_or_default(),
        has_default_route: o.has_default_route,
        default_gateways: o.default_gateways.iter().map(|g| g.to_string()).collect(),
        dns_servers: o.dns_servers.iter().map(|s| s.to_string()).collect(),
        dns_mode: dns_mode(&o.dns_servers, &own, nw_base) as i32,
        latency_ms,
    }
}

/// The `ipv6` check of a round: the terminal's state, read and judged within the probe timeout.
pub async fn run(ctx: &super::Context<'_>) -> Ipv6State {
    observe_and_judge(&ctx.probes.nw_base_servers, ctx.timeout).await
}

/// Reads and judges the terminal's IPv6 state within the probe timeout (a reader that hangs must
/// not stall the rounds). On Windows the route to the area's first NW-base DNS server picks the
/// adapter that decides (`windows.rs`).
pub async fn observe_and_judge(nw_base: &[Ipv6Addr], probe_timeout: Duration) -> Ipv6State {
    let timeout = probe_timeout;
    let started = Instant::now();
    #[cfg(target_os = "linux")]
    let observe = tokio::task::spawn_blocking(linux::observe);
    #[cfg(windows)]
    let observe = {
        let target = nw_base.first().copied();
        tokio::task::spawn_blocking(move || windows::observe(target))
    };
    #[cfg(not(any(target_os = "linux", windows)))]
    let observe = async {
        Ok::<std::io::Result<Observed>, String>(Err(std::io::Error::other(
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
        Ok(Ok(Ok(o))) => judge(&o, nw_base, ms),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str, temporary: bool, deprecated: bool) -> ObservedAddress {
        ObservedAddress {
            interface: "eth0".into(),
            address: s.parse().unwrap(),
            prefix_len: 64,
            temporary,
            deprecated,
        }
    }

    fn nw() -> Vec<Ipv6Addr> {
        crate::guide::nw_base_servers(oqs_proto::ident::Area::East).to_vec()
    }

    #[test]
    fn the_guides_three_addresses_are_acquired() {
        let o = Observed {
            addresses: vec![
                addr("2408:210:1:2:a00:27ff:fe5e:1c5e", false, false),
                addr("2408:210:1:2:1d2c:3b4a:5e6f:7081", true, false),
                addr("fe80::a00:27ff:fe5e:1c5e", false, false),
            ],
            default_gateways: vec!["fe80::1".parse().unwrap()],
            has_default_route: true,
            dns_servers: vec!["2408:210:1:2::1".parse().unwrap()],
        };
        let s = judge(&o, &nw(), 1);
        assert_eq!(s.outcome, Outcome::Ok as i32, "{}", s.error);
        assert_eq!(s.prefix, "2408:210:1:2::/64");
        let kinds: Vec<i32> = s.addresses.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![
                AddressKind::Global as i32,
                AddressKind::Temporary as i32,
                AddressKind::LinkLocal as i32
            ]
        );
        assert_eq!(s.dns_mode, DnsServerMode::Router as i32);
    }

    #[test]
    fn renumbering_uses_the_preferred_prefix_not_the_deprecated_one() {
        let o = Observed {
            addresses: vec![
                addr("2408:210:1:2::10", false, true),
                addr("2408:210:9:9::10", false, false),
            ],
            has_default_route: true,
            ..Observed::default()
        };
        assert_eq!(
            prefix_in_use(&o.addresses).unwrap().to_string(),
            "2408:210:9:9::/64"
        );
    }

    #[test]
    fn tunnel_documentation_and_ula_addresses_are_not_ipv6_of_the_line() {
        for a in [
            "2001:0:348b:fb58:1c:2e6f:a1b2:c3d4", // Teredo
            "2002:c000:204::1",                   // 6to4
            "2001:db8:1:2::10",                   // documentation
            "3fff:1::10",                         // documentation (RFC 9637)
            "fd12:3456:789a:1::10",               // ULA
        ] {
            let o = Observed {
                addresses: vec![addr(a, false, false), addr("fe80::1", false, false)],
                default_gateways: vec!["fe80::1".parse().unwrap()],
                has_default_route: true,
                ..Observed::default()
            };
            let s = judge(&o, &nw(), 1);
            assert_eq!(s.outcome, Outcome::Failed as i32, "{a}");
            assert_eq!(s.prefix, "", "{a}");
            assert_eq!(s.addresses[0].kind, AddressKind::Other as i32, "{a}");
        }
        assert!(is_global_unicast("2408:210:1:2::10".parse().unwrap()));
        assert!(is_global_unicast("2001:a7ff:5f01::a".parse().unwrap()));
        assert!(is_global_unicast("2001:f70:1::5".parse().unwrap()));
    }

    #[test]
    fn missing_ipv6_says_what_is_missing() {
        let o = Observed {
            addresses: vec![addr("fe80::1", false, false)],
            ..Observed::default()
        };
        let s = judge(&o, &nw(), 1);
        assert_eq!(s.outcome, Outcome::Failed as i32);
        assert!(s.error.contains("no preferred global") && s.error.contains("default route"));
        assert_eq!(s.prefix, "");
        assert_eq!(s.dns_mode, DnsServerMode::None as i32);
    }

    #[test]
    fn dns_servers_set_to_the_nw_base_directly_is_the_alternative_setup() {
        let own = [Prefix::of("2408:210:1:2::".parse().unwrap(), 64)];
        let v = |s: &[&str]| {
            s.iter()
                .map(|x| x.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert_eq!(
            dns_mode(
                &v(&["2404:1a8:f583:d00::53:1", "2404:1a8:f583:d00::53:2"]),
                &own,
                &nw()
            ),
            DnsServerMode::NwBase
        );
        assert_eq!(
            dns_mode(&v(&["fe80::1"]), &own, &nw()),
            DnsServerMode::Router
        );
        assert_eq!(
            dns_mode(&v(&["8.8.8.8"]), &own, &nw()),
            DnsServerMode::Other
        );
        assert_eq!(
            dns_mode(&v(&["2001:db8::53"]), &own, &nw()),
            DnsServerMode::Other
        );
    }
}
