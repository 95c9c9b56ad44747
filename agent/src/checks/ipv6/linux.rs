//! Reads the IPv6 snapshot on Linux from procfs (`/proc/net/if_inet6`, `/proc/net/ipv6_route`) and
//! `/etc/resolv.conf`. The parsers take text, so they are tested on fixtures; the real files are
//! exercised in the network lab. Must never write anything.

use super::{Observed, ObservedAddress};
use std::net::{IpAddr, Ipv6Addr};

const IFA_F_TEMPORARY: u32 = 0x01;
const IFA_F_DEPRECATED: u32 = 0x20;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;

fn hex_addr(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

/// Parses `/proc/net/if_inet6`: address, ifindex, prefix length, scope, flags, name (hex fields).
/// Loopback is left out; malformed lines are skipped.
pub fn parse_if_inet6(text: &str) -> Vec<ObservedAddress> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let address = hex_addr(f[0])?;
            if address.is_loopback() {
                return None;
            }
            let prefix_len = u8::from_str_radix(f[2], 16).ok()?;
            let flags = u32::from_str_radix(f[4], 16).ok()?;
            Some(ObservedAddress {
                interface: f[5].to_string(),
                address,
                prefix_len,
                temporary: flags & IFA_F_TEMPORARY != 0,
                deprecated: flags & IFA_F_DEPRECATED != 0,
            })
        })
        .collect()
}

/// Parses `/proc/net/ipv6_route` for default routes: (has one, their next hops).
pub fn parse_ipv6_route(text: &str) -> (bool, Vec<Ipv6Addr>) {
    let mut has = false;
    let mut gateways = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Some(dest), Ok(plen), Ok(flags)) = (
            hex_addr(f[0]),
            u8::from_str_radix(f[1], 16),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        if !dest.is_unspecified() || plen != 0 || flags & RTF_REJECT != 0 || f[9] == "lo" {
            continue;
        }
        has = true;
        if flags & RTF_GATEWAY != 0 {
            if let Some(gw) = hex_addr(f[4]) {
                if !gw.is_unspecified() && !gateways.contains(&gw) {
                    gateways.push(gw);
                }
            }
        }
    }
    (has, gateways)
}

/// Parses `nameserver` lines of resolv.conf (a `%scope` suffix is dropped).
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            w.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

/// Reads the snapshot from the running system. Blocking file reads: call from a blocking thread.
pub fn observe() -> std::io::Result<Observed> {
    let addrs = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let routes = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (has_default_route, default_gateways) = parse_ipv6_route(&routes);
    Ok(Observed {
        addresses: parse_if_inet6(&addrs),
        default_gateways,
        has_default_route,
        dns_servers: parse_resolv_conf(&resolv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // As printed by a Linux terminal after SLAAC with privacy extensions (手順6-⑫'s three addresses).
    const IF_INET6: &str = "\
24080210000100020a0027fffe5e1c5e 02 40 00 00     eth0
2408021000010002d1c23b4a5e6f7081 02 40 00 01     eth0
fe800000000000000a0027fffe5e1c5e 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
240802100009000a0000000000000010 02 40 00 20     eth0
";

    const ROUTES: &str = "\
24080210000100020000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn if_inet6_gives_kinds_and_flags() {
        let a = parse_if_inet6(IF_INET6);
        assert_eq!(a.len(), 4, "loopback left out");
        assert_eq!(a[0].address.to_string(), "2408:210:1:2:a00:27ff:fe5e:1c5e");
        assert!(!a[0].temporary && !a[0].deprecated);
        assert!(a[1].temporary);
        assert_eq!(a[2].address.to_string(), "fe80::a00:27ff:fe5e:1c5e");
        assert!(a[3].deprecated);
        assert_eq!(a[3].prefix_len, 64);
    }

    #[test]
    fn default_route_and_gateway_come_from_ipv6_route() {
        let (has, gws) = parse_ipv6_route(ROUTES);
        assert!(has);
        assert_eq!(gws, vec!["fe80::1".parse::<Ipv6Addr>().unwrap()]);
        let (has, _) = parse_ipv6_route(&ROUTES.lines().next().map(|l| format!("{l}\n")).unwrap());
        assert!(!has, "an on-link /64 is not a default route");
    }

    #[test]
    fn resolv_conf_nameservers_parse_with_scopes() {
        let s = parse_resolv_conf("# c\nsearch x\nnameserver 2408:210:1:2::1\nnameserver fe80::1%eth0\nnameserver 192.168.1.1\nnameserver bogus\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].to_string(), "fe80::1");
    }

    #[test]
    fn garbage_never_panics() {
        for t in [
            "",
            "zz",
            "0 0 0 0 0 0",
            &"f".repeat(40),
            "ffffffffffffffffffffffffffffffff zz 40 00 00 eth0",
        ] {
            let _ = parse_if_inet6(t);
            let _ = parse_ipv6_route(t);
            let _ = parse_resolv_conf(t);
        }
    }
}
