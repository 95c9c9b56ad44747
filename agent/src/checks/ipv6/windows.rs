//! Reading the IPv6 state on Windows natively: `GetAdaptersAddresses` (iphlpapi) for every
//! adapter's unicast addresses, gateways and DNS servers, and `GetBestInterfaceEx` for the adapter
//! Windows itself would send OQS traffic through. No child process, no PowerShell: a round costs a
//! few system calls, and it works where PowerShell is locked down.
//!
//! Split in two so the judgement is testable everywhere: [`Adapter`] is a plain copy of what the
//! API returns, and [`to_observed`] (pure, unit-tested on every platform) turns it into the same
//! [`Observed`] the Linux reader gives. Only [`observe`] (in `ffi`) touches the API; it is
//! compiled for Windows only and exercised under Wine by `tests/windows/run`.
//!
//! Which adapter decides: a clinic PC may carry Hyper-V switches, VPN clients, Teredo or ISATAP
//! pseudo-interfaces, each with addresses of its own. Only the adapter that carries the route to
//! the OQS network decides the prefix, the addresses, the gateway and the DNS servers: the one
//! Windows picks for the area's first NW-base DNS server (what a query to it would leave
//! through). When Windows has no route there (no IPv6 on the line: the very failure to report), the
//! first adapter that is up, not loopback and not a tunnel, preferring one with a global address,
//! then one with a gateway; the others are left out of the snapshot.
//!
//! Must never change a setting: read-only calls.

use super::{Observed, ObservedAddress};
use std::net::{IpAddr, Ipv6Addr};

/// `NL_DAD_STATE`: where duplicate address detection stands for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DadState {
    Invalid,
    Tentative,
    Duplicate,
    Deprecated,
    Preferred,
}

impl DadState {
    /// From the API's numeric value; unknown values are treated as not usable.
    pub fn from_raw(v: i32) -> Self {
        match v {
            1 => Self::Tentative,
            2 => Self::Duplicate,
            3 => Self::Deprecated,
            4 => Self::Preferred,
            _ => Self::Invalid,
        }
    }
}

/// `NL_SUFFIX_ORIGIN`: where the interface identifier came from. `Random` is a privacy-extension
/// (temporary) address, as 手順6-⑫ shows it (一時 IPv6 アドレス).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuffixOrigin {
    Other,
    Manual,
    WellKnown,
    Dhcp,
    LinkLayer,
    Random,
}

impl SuffixOrigin {
    pub fn from_raw(v: i32) -> Self {
        match v {
            1 => Self::Manual,
            2 => Self::WellKnown,
            3 => Self::Dhcp,
            4 => Self::LinkLayer,
            5 => Self::Random,
            _ => Self::Other,
        }
    }
}

/// What kind of adapter, as far as choosing the OQS one goes (`IfType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// `IF_TYPE_SOFTWARE_LOOPBACK` (24).
    Loopback,
    /// `IF_TYPE_TUNNEL` (131): Teredo, ISATAP, 6to4, IP-HTTPS.
    Tunnel,
    /// Ethernet, Wi-Fi, and everything else.
    Other,
}

impl AdapterKind {
    pub fn from_if_type(t: u32) -> Self {
        match t {
            24 => Self::Loopback,
            131 => Self::Tunnel,
            _ => Self::Other,
        }
    }
}

/// One IPv6 unicast address of an adapter (`IP_ADAPTER_UNICAST_ADDRESS_LH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unicast {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub suffix_origin: SuffixOrigin,
    pub dad_state: DadState,
    /// Seconds; `u32::MAX` is infinite.
    pub preferred_lifetime_s: u32,
    pub valid_lifetime_s: u32,
}

/// One adapter (`IP_ADAPTER_ADDRESSES_LH`), copied out of the API's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// `Ipv6IfIndex` (0 when IPv6 is off on the adapter).
    pub ipv6_if_index: u32,
    /// `FriendlyName`, as `ipconfig` shows it (「イーサネット」).
    pub name: String,
    pub kind: AdapterKind,
    /// `OperStatus == IfOperStatusUp`.
    pub up: bool,
    pub unicast: Vec<Unicast>,
    /// IPv6 gateways (`FirstGatewayAddress`, with `GAA_FLAG_INCLUDE_GATEWAYS`).
    pub gateways: Vec<Ipv6Addr>,
    /// DNS servers of the adapter, IPv6 and IPv4, in Windows' order.
    pub dns_servers: Vec<IpAddr>,
}

/// An IPv6 default route (`::/0` in `GetIpForwardTable2`): the interface and the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub if_index: u32,
    pub next_hop: Ipv6Addr,
}

/// The adapter that decides (see the module doc): `best_if` is the `Ipv6IfIndex` Windows routes
/// the OQS network through, when it has a route there.
pub fn oqs_adapter(adapters: &[Adapter], best_if: Option<u32>) -> Option<&Adapter> {
    if let Some(i) = best_if.filter(|i| *i != 0) {
        if let Some(a) = adapters.iter().find(|a| a.ipv6_if_index == i) {
            return Some(a);
        }
    }
    let candidates: Vec<&Adapter> = adapters
        .iter()
        .filter(|a| a.up && a.kind == AdapterKind::Other && a.ipv6_if_index != 0)
        .collect();
    let global = |a: &Adapter| {
        a.unicast
            .iter()
            .any(|u| usable(u) && super::is_global_unicast(u.address))
    };
    candidates
        .iter()
        .find(|a| global(a) && !a.gateways.is_empty())
        .or_else(|| candidates.iter().find(|a| global(a)))
        .or_else(|| candidates.iter().find(|a| !a.gateways.is_empty()))
        .or_else(|| candidates.first())
        .copied()
}

/// Tentative, duplicate and invalid addresses cannot be used: left out, as `ipconfig` does.
fn usable(u: &Unicast) -> bool {
    matches!(u.dad_state, DadState::Preferred | DadState::Deprecated)
}

/// Windows' placeholders when no DNS server is configured: `fec0:0:0:ffff::1..3`.
fn is_placeholder_dns(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if a.segments()[..4] == [0xfec0, 0, 0, 0xffff])
}

/// Adds the default routes' next hops to their adapters' gateways (Windows lists them in
/// `FirstGatewayAddress` too; Wine only in the route table).
pub fn with_routes(mut adapters: Vec<Adapter>, routes: &[DefaultRoute]) -> Vec<Adapter> {
    for r in routes {
        if let Some(a) = adapters
            .iter_mut()
            .find(|a| a.ipv6_if_index == r.if_index && r.if_index != 0)
        {
            if !a.gateways.contains(&r.next_hop) {
                a.gateways.push(r.next_hop);
            }
        }
    }
    adapters
}

/// The snapshot of the OQS adapter, in the form the Linux reader gives.
pub fn to_observed(adapters: &[Adapter], best_if: Option<u32>) -> Observed {
    let Some(a) = oqs_adapter(adapters, best_if) else {
        return Observed::default();
    };
    let mut o = Observed::default();
    for u in a.unicast.iter().filter(|u| usable(u)) {
        if u.address.is_loopback() {
            continue;
        }
        o.addresses.push(ObservedAddress {
            interface: a.name.clone(),
            address: u.address,
            prefix_len: u.prefix_len.min(128),
            temporary: u.suffix_origin == SuffixOrigin::Random,
            // A preferred lifetime run out is deprecated even before the state says so.
            deprecated: u.dad_state == DadState::Deprecated || u.preferred_lifetime_s == 0,
        });
    }
    for gw in &a.gateways {
        if !gw.is_unspecified() && !o.default_gateways.contains(gw) {
            o.default_gateways.push(*gw);
        }
    }
    // Windows lists an adapter's gateways from its default routes.
    o.has_default_route = !o.default_gateways.is_empty();
    for d in &a.dns_servers {
        if !is_placeholder_dns(d) && !o.dns_servers.contains(d) {
            o.dns_servers.push(*d);
        }
    }
    o
}

/// Reads the snapshot from Windows now: the OQS adapter chosen by the route to `oqs_target`
/// (the area's first NW-base DNS server). Blocking (a few system calls): call from a blocking
/// thread.
#[cfg(windows)]
pub fn observe(oqs_target: Option<Ipv6Addr>) -> std::io::Result<Observed> {
    let adapters = with_routes(ffi::adapters()?, &ffi::default_routes());
    let best = oqs_target.and_then(ffi::best_interface);
    Ok(to_observed(&adapters, best))
}

/// Unsafe code, as little as can be: walking the linked lists `GetAdaptersAddresses` writes into
/// our buffer, and one `GetBestInterfaceEx`. Every pointer read is bounded by that buffer's
/// lifetime; nothing is kept past it.
#[cfg(windows)]
#[allow(unsafe_code)]
mod ffi {
    use super::{Adapter, AdapterKind, DadState, SuffixOrigin, Unicast};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use windows_sys::Win32::Foundation::{ERROR_BUFFER_OVERFLOW, ERROR_NO_DATA, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        FreeMibTable, GetAdaptersAddresses, GetBestInterfaceEx, GetIpForwardTable2,
        GAA_FLAG_INCLUDE_GATEWAYS, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_MULTICAST,
        IP_ADAPTER_ADDRESSES_LH, MIB_IPFORWARD_TABLE2,
    };
    use windows_sys::Win32::NetworkManagement::Ndis::IfOperStatusUp;
    use windows_sys::Win32::Networking::WinSock::{
        AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKET_ADDRESS,
    };

    /// Adapters change between the sizing call and the reading call; three tries is plenty.
    const TRIES: usize = 3;

    pub fn adapters() -> std::io::Result<Vec<Adapter>> {
        // u64 elements: the API's structures need 8-byte alignment.
        let mut size: u32 = 16 * 1024;
        for _ in 0..TRIES {
            let mut buf = vec![0u64; (size as usize).div_ceil(8)];
            let first = buf.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
            // SAFETY: `first` points at `size` writable, aligned bytes owned by `buf`.
            let rc = unsafe {
                GetAdaptersAddresses(
                    u32::from(AF_UNSPEC),
                    GAA_FLAG_INCLUDE_GATEWAYS | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST,
                    std::ptr::null(),
                    first,
                    &mut size,
                )
            };
            match rc {
                NO_ERROR => {
                    // SAFETY: on success the buffer holds a well-formed list starting at `first`.
                    return Ok(unsafe { walk(first) });
                }
                ERROR_NO_DATA => return Ok(Vec::new()),
                ERROR_BUFFER_OVERFLOW => continue, // `size` now says how much is needed
                other => {
                    return Err(std::io::Error::other(format!(
                        "GetAdaptersAddresses failed with error {other}"
                    )))
                }
            }
        }
        Err(std::io::Error::other(
            "GetAdaptersAddresses: the adapter list kept changing while it was read",
        ))
    }

    /// # Safety
    /// `first` is the head of a list `GetAdaptersAddresses` wrote and whose buffer is alive.
    unsafe fn walk(first: *const IP_ADAPTER_ADDRESSES_LH) -> Vec<Adapter> {
        let mut out = Vec::new();
        let mut p = first;
        while let Some(a) = unsafe { p.as_ref() } {
            let mut unicast = Vec::new();
            let mut u = a.FirstUnicastAddress;
            while let Some(ua) = unsafe { u.as_ref() } {
                if let Some(IpAddr::V6(address)) = unsafe { sockaddr(&ua.Address) } {
                    unicast.push(Unicast {
                        address,
                        prefix_len: ua.OnLinkPrefixLength,
                        suffix_origin: SuffixOrigin::from_raw(ua.SuffixOrigin),
                        dad_state: DadState::from_raw(ua.DadState),
                        preferred_lifetime_s: ua.PreferredLifetime,
                        valid_lifetime_s: ua.ValidLifetime,
                    });
                }
                u = ua.Next;
            }
            let mut gateways = Vec::new();
            let mut g = a.FirstGatewayAddress;
            while let Some(ga) = unsafe { g.as_ref() } {
                if let Some(IpAddr::V6(gw)) = unsafe { sockaddr(&ga.Address) } {
                    gateways.push(gw);
                }
                g = ga.Next;
            }
            let mut dns_servers = Vec::new();
            let mut d = a.FirstDnsServerAddress;
            while let Some(da) = unsafe { d.as_ref() } {
                if let Some(ip) = unsafe { sockaddr(&da.Address) } {
                    dns_servers.push(ip);
                }
                d = da.Next;
            }
            // Wine leaves Ipv6IfIndex 0; Windows gives one interface the same index for both.
            let if_index = if a.Ipv6IfIndex != 0 {
                a.Ipv6IfIndex
            } else {
                unsafe { a.Anonymous1.Anonymous.IfIndex }
            };
            out.push(Adapter {
                ipv6_if_index: if_index,
                name: unsafe { wide(a.FriendlyName) },
                kind: AdapterKind::from_if_type(a.IfType),
                up: a.OperStatus == IfOperStatusUp,
                unicast,
                gateways,
                dns_servers,
            });
            p = a.Next;
        }
        out
    }

    /// # Safety
    /// `s` comes from the API's list: its pointer is null or points at `iSockaddrLength` bytes.
    unsafe fn sockaddr(s: &SOCKET_ADDRESS) -> Option<IpAddr> {
        let sa = s.lpSockaddr;
        if sa.is_null() {
            return None;
        }
        let len = usize::try_from(s.iSockaddrLength).ok()?;
        let family = unsafe { (*sa).sa_family };
        if family == AF_INET6 && len >= std::mem::size_of::<SOCKADDR_IN6>() {
            let v6 = unsafe { &*sa.cast::<SOCKADDR_IN6>() };
            Some(IpAddr::V6(Ipv6Addr::from(unsafe { v6.sin6_addr.u.Byte })))
        } else if family == AF_INET && len >= std::mem::size_of::<SOCKADDR_IN>() {
            let v4 = unsafe { &*sa.cast::<SOCKADDR_IN>() };
            // S_addr is in network order: its bytes in memory are the address's.
            let raw = unsafe { v4.sin_addr.S_un.S_addr };
            Some(IpAddr::V4(Ipv4Addr::from(raw.to_ne_bytes())))
        } else {
            None
        }
    }

    /// # Safety
    /// `p` is null or a NUL-terminated UTF-16 string.
    unsafe fn wide(p: *const u16) -> String {
        if p.is_null() {
            return String::new();
        }
        let mut len = 0;
        // Adapter names are short; the bound guards against a missing terminator.
        while len < 1024 && unsafe { *p.add(len) } != 0 {
            len += 1;
        }
        String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
    }

    /// The IPv6 default routes (`::/0`) with their interface and next hop; none when the table
    /// cannot be read (the adapters' own gateway lists still count).
    pub fn default_routes() -> Vec<super::DefaultRoute> {
        let mut table: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
        // SAFETY: `table` receives a system-allocated table, freed with FreeMibTable below.
        if unsafe { GetIpForwardTable2(AF_INET6, &mut table) } != NO_ERROR || table.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // SAFETY: the table holds NumEntries rows laid out after its header.
        unsafe {
            let n = (*table).NumEntries as usize;
            let rows = std::slice::from_raw_parts((*table).Table.as_ptr(), n);
            for r in rows {
                // Wine leaves the families of ::/0 rows unset: only a v4 one is skipped.
                if r.DestinationPrefix.PrefixLength != 0
                    || r.DestinationPrefix.Prefix.si_family == AF_INET
                    || r.NextHop.si_family == AF_INET
                {
                    continue;
                }
                out.push(super::DefaultRoute {
                    if_index: r.InterfaceIndex,
                    next_hop: Ipv6Addr::from(r.NextHop.Ipv6.sin6_addr.u.Byte),
                });
            }
            FreeMibTable(table.cast());
        }
        out
    }

    /// The `Ipv6IfIndex` Windows would send a packet to `dest` through, if it has a route.
    pub fn best_interface(dest: Ipv6Addr) -> Option<u32> {
        let mut sa: SOCKADDR_IN6 = SOCKADDR_IN6::default();
        sa.sin6_family = AF_INET6;
        sa.sin6_addr.u.Byte = dest.octets();
        let mut index = 0u32;
        // SAFETY: `sa` is a valid SOCKADDR_IN6 for the call's duration; `index` is writable.
        let rc =
            unsafe { GetBestInterfaceEx(std::ptr::from_ref(&sa).cast::<SOCKADDR>(), &mut index) };
        (rc == NO_ERROR && index != 0).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(addr: &str, suffix: SuffixOrigin, dad: DadState) -> Unicast {
        Unicast {
            address: addr.parse().unwrap(),
            prefix_len: 64,
            suffix_origin: suffix,
            dad_state: dad,
            preferred_lifetime_s: 600,
            valid_lifetime_s: 1200,
        }
    }

    /// As a Windows 11 terminal behind a FLET'S router reads: a preferred global address, a
    /// temporary one, a deprecated old prefix during renumbering, link-local, a tentative one.
    fn ethernet() -> Adapter {
        Adapter {
            ipv6_if_index: 12,
            name: "イーサネット".into(),
            kind: AdapterKind::Other,
            up: true,
            unicast: vec![
                u(
                    "2408:210:1:2:5d2c:1a:bb:3",
                    SuffixOrigin::LinkLayer,
                    DadState::Preferred,
                ),
                u(
                    "2408:210:1:2:9a1:77:e2:10",
                    SuffixOrigin::Random,
                    DadState::Preferred,
                ),
                u(
                    "2408:210:9:9:5d2c:1a:bb:3",
                    SuffixOrigin::LinkLayer,
                    DadState::Deprecated,
                ),
                u(
                    "fe80::5d2c:1a:bb:3",
                    SuffixOrigin::LinkLayer,
                    DadState::Preferred,
                ),
                u(
                    "2408:210:1:2::dead",
                    SuffixOrigin::Dhcp,
                    DadState::Tentative,
                ),
            ],
            gateways: vec!["fe80::1".parse().unwrap()],
            dns_servers: vec![
                "2408:210:1:2::1".parse().unwrap(),
                "fec0:0:0:ffff::1".parse().unwrap(),
                "192.168.1.1".parse().unwrap(),
            ],
        }
    }

    fn loopback() -> Adapter {
        Adapter {
            ipv6_if_index: 1,
            name: "Loopback Pseudo-Interface 1".into(),
            kind: AdapterKind::Loopback,
            up: true,
            unicast: vec![u("::1", SuffixOrigin::WellKnown, DadState::Preferred)],
            gateways: vec![],
            dns_servers: vec![],
        }
    }

    /// Teredo with its 2001:0::/32 address and a gateway of its own.
    fn teredo() -> Adapter {
        Adapter {
            ipv6_if_index: 14,
            name: "Teredo Tunneling Pseudo-Interface".into(),
            kind: AdapterKind::Tunnel,
            up: true,
            unicast: vec![u(
                "2001:0:348b:fb58:1c:2e6f:a1b2:c3d4",
                SuffixOrigin::Other,
                DadState::Preferred,
            )],
            gateways: vec!["::".parse().unwrap()],
            dns_servers: vec![],
        }
    }

    /// A Hyper-V switch: up, with a global address of a lab network, no gateway.
    fn hyperv() -> Adapter {
        Adapter {
            ipv6_if_index: 7,
            name: "vEthernet (Default Switch)".into(),
            kind: AdapterKind::Other,
            up: true,
            unicast: vec![u(
                "2001:f70:99::5",
                SuffixOrigin::Manual,
                DadState::Preferred,
            )],
            gateways: vec![],
            dns_servers: vec!["2001:f70:99::1".parse().unwrap()],
        }
    }

    #[test]
    fn a_clinic_terminal_reads_like_linux_does() {
        let o = to_observed(&[loopback(), ethernet()], Some(12));
        assert_eq!(o.addresses.len(), 4, "the tentative address is left out");
        assert_eq!(o.addresses.iter().filter(|a| a.temporary).count(), 1);
        let old = o.addresses.iter().find(|a| a.deprecated).unwrap();
        assert_eq!(
            old.address,
            "2408:210:9:9:5d2c:1a:bb:3".parse::<Ipv6Addr>().unwrap()
        );
        assert!(o.addresses.iter().all(|a| a.interface == "イーサネット"));
        assert!(o.has_default_route);
        assert_eq!(
            o.default_gateways,
            vec!["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            o.dns_servers,
            vec![
                "2408:210:1:2::1".parse::<IpAddr>().unwrap(),
                "192.168.1.1".parse::<IpAddr>().unwrap()
            ],
            "the fec0:0:0:ffff:: placeholder is not a server"
        );
        let prefix = super::super::prefix_in_use(&o.addresses).unwrap();
        assert_eq!(prefix.to_string(), "2408:210:1:2::/64");
        // The three kinds of 手順6-⑫ through the same judgement as on Linux.
        let nw = crate::guide::nw_base_servers(oqs_proto::ident::Area::East);
        let s = super::super::judge(&o, &nw, 1);
        assert_eq!(s.outcome, oqs_proto::v1::Outcome::Ok as i32, "{}", s.error);
        assert_eq!(s.dns_mode, oqs_proto::v1::DnsServerMode::Router as i32);
    }

    #[test]
    fn only_the_adapter_with_the_oqs_route_decides() {
        // Windows routes the OQS network through the Ethernet: the Hyper-V switch's and Teredo's
        // addresses must not become the prefix, whatever order the adapters come in.
        let all = [hyperv(), teredo(), loopback(), ethernet()];
        let o = to_observed(&all, Some(12));
        assert!(o.addresses.iter().all(|a| a.interface == "イーサネット"));
        // No route to the OQS network (the line's IPv6 is gone): the adapter with a global
        // address and a gateway, never a tunnel or loopback.
        let o = to_observed(&all, None);
        assert!(o.addresses.iter().all(|a| a.interface == "イーサネット"));
        // A route through an index no adapter has (raced with an unplug): the same rule.
        let o = to_observed(&all, Some(99));
        assert!(o.addresses.iter().all(|a| a.interface == "イーサネット"));
    }

    #[test]
    fn a_terminal_without_ipv6_on_its_line_reads_as_missing_not_as_teredo() {
        let mut eth = ethernet();
        eth.unicast
            .retain(|u| u.address.segments()[0] == 0xfe80 && u.dad_state == DadState::Preferred);
        eth.gateways.clear();
        let o = to_observed(&[teredo(), loopback(), eth], None);
        assert_eq!(o.addresses.len(), 1, "{o:?}");
        assert_eq!(o.addresses[0].interface, "イーサネット");
        assert!(!o.has_default_route);
        let nw = crate::guide::nw_base_servers(oqs_proto::ident::Area::East);
        let s = super::super::judge(&o, &nw, 1);
        assert_eq!(s.outcome, oqs_proto::v1::Outcome::Failed as i32);
    }

    #[test]
    fn default_routes_give_their_adapter_its_gateway() {
        let mut eth = ethernet();
        eth.gateways.clear();
        let routes = [
            DefaultRoute {
                if_index: 12,
                next_hop: "fe80::1".parse().unwrap(),
            },
            // An interface no adapter has (unplugged meanwhile), and a duplicate: neither adds
            // anything.
            DefaultRoute {
                if_index: 99,
                next_hop: "fe80::99".parse().unwrap(),
            },
            DefaultRoute {
                if_index: 12,
                next_hop: "fe80::1".parse().unwrap(),
            },
        ];
        let adapters = with_routes(vec![hyperv(), eth], &routes);
        let o = to_observed(&adapters, None);
        assert!(o.has_default_route);
        assert_eq!(
            o.default_gateways,
            vec!["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
        assert!(o.addresses.iter().all(|a| a.interface == "イーサネット"));
    }

    #[test]
    fn a_preferred_lifetime_run_out_is_deprecated() {
        let mut eth = ethernet();
        eth.unicast[0].preferred_lifetime_s = 0;
        let o = to_observed(&[eth], Some(12));
        assert!(o.addresses[0].deprecated);
        assert!(!o.addresses[1].deprecated);
    }

    #[test]
    fn no_adapter_or_only_pseudo_interfaces_is_an_empty_snapshot() {
        assert_eq!(to_observed(&[], None), Observed::default());
        assert_eq!(
            to_observed(&[loopback(), teredo()], None),
            Observed::default()
        );
        let mut down = ethernet();
        down.up = false;
        assert_eq!(to_observed(&[down], None), Observed::default());
    }

    /// The real call (Windows, or Wine in the test's namespace): it answers, and the loopback
    /// pseudo-interface is among the adapters, with every address of the right family.
    #[cfg(windows)]
    #[test]
    fn the_real_adapter_list_is_read() {
        let adapters = ffi::adapters().unwrap();
        eprintln!("{adapters:#?}");
        eprintln!("default routes: {:?}", ffi::default_routes());
        eprintln!(
            "best interface to the NW-base: {:?}",
            ffi::best_interface("2404:1a8:f583:d00::53:1".parse().unwrap())
        );
        assert!(!adapters.is_empty());
        assert!(
            adapters
                .iter()
                .any(|a| a.kind == AdapterKind::Loopback || a.name.contains("Loopback")),
            "{adapters:#?}"
        );
    }

    #[test]
    fn raw_values_map_to_the_guide_s_kinds() {
        assert_eq!(SuffixOrigin::from_raw(5), SuffixOrigin::Random);
        assert_eq!(SuffixOrigin::from_raw(4), SuffixOrigin::LinkLayer);
        assert_eq!(SuffixOrigin::from_raw(-7), SuffixOrigin::Other);
        assert_eq!(DadState::from_raw(4), DadState::Preferred);
        assert_eq!(DadState::from_raw(3), DadState::Deprecated);
        assert_eq!(DadState::from_raw(99), DadState::Invalid);
        assert_eq!(AdapterKind::from_if_type(131), AdapterKind::Tunnel);
        assert_eq!(AdapterKind::from_if_type(24), AdapterKind::Loopback);
        assert_eq!(AdapterKind::from_if_type(6), AdapterKind::Other);
    }
}
