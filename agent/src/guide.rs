//! The connection guide's values (接続ガイド 1.2版, DOMAIN.md §2–§7), per NTT area: DNS servers,
//! the domain table, the names to resolve, the URLs to open. These are the agent's defaults; the
//! guide says they may change, so every one of them can be overridden in configuration.
//!
//! Data only. Must never do I/O, and never hold a value that is not in the guide (our own choices
//! live in `config`).

use oqs_proto::ident::Area;
use std::net::Ipv6Addr;

/// Which resolver answers a name directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolver {
    /// The area's NGN DNS servers (flets-east.jp / flets-west.jp names).
    Ngn,
    /// The area's OQS network-base DNS servers.
    NwBase,
}

/// The line-authentication portal (P16 手順1-②).
pub const LINEAUTH_URL: &str = "https://www.lineauth.mnw/";
/// OQS web, production (P18).
pub const OQS_WEB_PRODUCTION_URL: &str = "https://hweb.oqs.onshikaku.org/web/";
/// OQS web, connection-verification environment (P18).
pub const OQS_WEB_VERIFICATION_URL: &str = "https://hweb.oqs-st.onshikaku.org/web/";
/// Certificate revocation lists (P15, 手順7-⑭).
pub const CRL_URL: &str = "http://crldownload.obn.managedpki.ne.jp/";
/// Time (P15, 手順7-⑭).
pub const NTP_SERVER: &str = "ntp.base.oqs-pdl.org";

/// Domains the router's local-domain query table sends to the NW-base servers (手順3 P7).
pub const NW_BASE_DOMAINS: [&str; 6] = [
    "onshikaku.org",
    "lineauth.mnw",
    "base.oqs-pdl.org",
    "managedpki.ne.jp",
    "cybertrust.ne.jp",
    "secomtrust.net",
];

/// The NGN domain of an area (手順3 P7).
pub fn ngn_domain(area: Area) -> &'static str {
    match area {
        Area::East => "flets-east.jp",
        Area::West => "flets-west.jp",
    }
}

/// The NGN DNS servers, primary then secondary (手順3 P7).
pub fn ngn_servers(area: Area) -> [Ipv6Addr; 2] {
    match area {
        Area::East => [
            Ipv6Addr::new(0x2404, 0x1a8, 0x7f01, 0xa, 0, 0, 0, 3),
            Ipv6Addr::new(0x2404, 0x1a8, 0x7f01, 0xb, 0, 0, 0, 3),
        ],
        Area::West => [
            Ipv6Addr::new(0x2001, 0xa7ff, 0x5f01, 0, 0, 0, 0, 0xa),
            Ipv6Addr::new(0x2001, 0xa7ff, 0x5f01, 1, 0, 0, 0, 0xa),
        ],
    }
}

/// The OQS network-base DNS servers, primary then secondary (手順3 P7, 手順5' P12).
pub fn nw_base_servers(area: Area) -> [Ipv6Addr; 2] {
    match area {
        Area::East => [
            Ipv6Addr::new(0x2404, 0x1a8, 0xf583, 0xd00, 0, 0, 0x53, 1),
            Ipv6Addr::new(0x2404, 0x1a8, 0xf583, 0xd00, 0, 0, 0x53, 2),
        ],
        Area::West => [
            Ipv6Addr::new(0x2001, 0xa7ff, 0xf014, 0xd00, 0, 0, 0x53, 1),
            Ipv6Addr::new(0x2001, 0xa7ff, 0xf014, 0xd00, 0, 0, 0x53, 2),
        ],
    }
}

/// A name the guide resolves with nslookup (手順7-⑭ P15), and who answers it directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeName {
    pub name: &'static str,
    pub resolver: Resolver,
}

/// The names to resolve for an area. The guide gives no West NGN name, so the West has none.
pub fn probe_names(area: Area) -> Vec<ProbeName> {
    let mut v = vec![ProbeName {
        name: "www.lineauth.mnw",
        resolver: Resolver::NwBase,
    }];
    if area == Area::East {
        v.push(ProbeName {
            name: "assv.asc.flets-east.jp",
            resolver: Resolver::Ngn,
        });
    }
    for name in [
        "hweb.oqs-st.onshikaku.org",
        "crldownload.obn.managedpki.ne.jp",
        "pweb.base.oqs-pdl.org",
        "ntp.base.oqs-pdl.org",
    ] {
        v.push(ProbeName {
            name,
            resolver: Resolver::NwBase,
        });
    }
    v
}

const EAST: [&str; 17] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "山梨県",
    "長野県",
];
const WEST: [&str; 30] = [
    "富山県",
    "石川県",
    "福井県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// The NTT area of a prefecture (FAQ Q18/Q19), by its full name ("東京都", "大阪府", "北海道").
pub fn prefecture_area(name: &str) -> Option<Area> {
    if EAST.contains(&name) {
        Some(Area::East)
    } else if WEST.contains(&name) {
        Some(Area::West)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_47_prefectures_map_to_one_area() {
        assert_eq!(EAST.len() + WEST.len(), 47);
        assert_eq!(prefecture_area("東京都"), Some(Area::East));
        assert_eq!(prefecture_area("長野県"), Some(Area::East));
        assert_eq!(prefecture_area("富山県"), Some(Area::West));
        assert_eq!(prefecture_area("沖縄県"), Some(Area::West));
        assert_eq!(prefecture_area("東京"), None);
    }

    #[test]
    fn servers_are_the_guides() {
        assert_eq!(
            nw_base_servers(Area::East)[0].to_string(),
            "2404:1a8:f583:d00::53:1"
        );
        assert_eq!(
            nw_base_servers(Area::West)[1].to_string(),
            "2001:a7ff:f014:d00::53:2"
        );
        assert_eq!(ngn_servers(Area::East)[1].to_string(), "2404:1a8:7f01:b::3");
        assert_eq!(ngn_servers(Area::West)[0].to_string(), "2001:a7ff:5f01::a");
    }

    #[test]
    fn west_has_no_ngn_probe_name() {
        assert!(probe_names(Area::West)
            .iter()
            .all(|p| p.resolver == Resolver::NwBase));
        assert!(probe_names(Area::East)
            .iter()
            .any(|p| p.resolver == Resolver::Ngn));
    }
}
