//! The connection guide's values (接続ガイド 1.2版, DOMAIN.md §2–§7), per NTT area: DNS servers,
//! the domain table, the names to resolve, the URLs to open, the prefectures' areas. These are the
//! agent's defaults (the guide says they may change, so the agent's configuration can override every
//! one of them) and the collector's knowledge of the same facts (the portal URL, the prefectures).
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
/// The entries of a kitting script's proxy bypass list for the OQS network (DOMAIN.md §12), each
/// with the name a terminal reaches under it (the guide's where it names one): that name must go
/// around the OQS proxy. `pweb.base.oqs-pdl.org` is a name, not a domain, in that list.
pub const PROXY_BYPASS: [(&str, &str); 8] = [
    ("onshikaku.org", "hweb.oqs.onshikaku.org"),
    ("flets-east.jp", "assv.asc.flets-east.jp"),
    ("flets-west.jp", "assv.asc.flets-west.jp"),
    ("lineauth.mnw", "www.lineauth.mnw"),
    ("obn.managedpki.ne.jp", "crldownload.obn.managedpki.ne.jp"),
    ("cybertrust.ne.jp", "www.cybertrust.ne.jp"),
    ("secomtrust.net", "www.secomtrust.net"),
    ("pweb.base.oqs-pdl.org", "pweb.base.oqs-pdl.org"),
];

/// The portal's host (the name the guide resolves first, 手順7-⑭).
pub const LINEAUTH_HOST: &str = "www.lineauth.mnw";
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

/// A name the guide resolves with nslookup (手順7-⑭ P15), who answers it directly, and (some of)
/// the answers the guide's example shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeName {
    pub name: &'static str,
    pub resolver: Resolver,
    pub example_answers: &'static [&'static str],
}

/// Who answers `name` directly: the NGN servers for names under the NGN domains
/// (flets-east.jp, flets-west.jp), the NW-base servers for everything else (手順3 P7).
pub fn resolver_for(name: &str) -> Resolver {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let ngn = [Area::East, Area::West].into_iter().any(|a| {
        let d = ngn_domain(a);
        name == d || name.ends_with(&format!(".{d}"))
    });
    if ngn {
        Resolver::Ngn
    } else {
        Resolver::NwBase
    }
}

/// The names to resolve for an area. The guide names `assv.asc.flets-east.jp` for the East and no
/// West NGN name; vendors' own checkers probe `assv.asc.flets-west.jp` in the West (DOMAIN.md §12),
/// whose address is not published: no example answer, any AAAA answer from the West's NGN servers
/// counts. So a West router table without its `flets-west.jp` entry is found as in the East.
pub fn probe_names(area: Area) -> Vec<ProbeName> {
    let mut names = vec![("www.lineauth.mnw", &["2404:1a8:f583:af0::1"][..])];
    match area {
        Area::East => names.push(("assv.asc.flets-east.jp", &["2404:1a8:ff43:1612::f"][..])),
        Area::West => names.push(("assv.asc.flets-west.jp", &[][..])),
    }
    names.extend([
        (
            "hweb.oqs-st.onshikaku.org",
            &["2404:1a8:f583:1b00:ad7d:7594:6198:6ce0"][..],
        ),
        (
            "crldownload.obn.managedpki.ne.jp",
            &[
                "2404:1a8:f583:4a06:a0c6:842b:cc00:fa1f",
                "2404:1a8:f583:4a07:6905:9f85:2d17:d650",
            ][..],
        ),
        (
            "pweb.base.oqs-pdl.org",
            &["2408:210:9c0::1", "2408:210:9c0::2", "2408:210:9c0::3"][..],
        ),
        (
            "ntp.base.oqs-pdl.org",
            &["2408:210:9c0::1", "2408:210:9c0::2", "2408:210:9c0::3"][..],
        ),
    ]);
    names
        .into_iter()
        .map(|(name, example_answers)| ProbeName {
            name,
            resolver: resolver_for(name),
            example_answers,
        })
        .collect()
}

/// The 47 prefectures in the JIS X 0401 order, each with its NTT area (FAQ Q18/Q19: NTT East
/// serves the 17 prefectures from 北海道 to 新潟県 and 山梨県, 長野県; NTT West the other 30).
pub const PREFECTURE_AREAS: [(&str, Area); 47] = [
    ("北海道", Area::East),
    ("青森県", Area::East),
    ("岩手県", Area::East),
    ("宮城県", Area::East),
    ("秋田県", Area::East),
    ("山形県", Area::East),
    ("福島県", Area::East),
    ("茨城県", Area::East),
    ("栃木県", Area::East),
    ("群馬県", Area::East),
    ("埼玉県", Area::East),
    ("千葉県", Area::East),
    ("東京都", Area::East),
    ("神奈川県", Area::East),
    ("新潟県", Area::East),
    ("富山県", Area::West),
    ("石川県", Area::West),
    ("福井県", Area::West),
    ("山梨県", Area::East),
    ("長野県", Area::East),
    ("岐阜県", Area::West),
    ("静岡県", Area::West),
    ("愛知県", Area::West),
    ("三重県", Area::West),
    ("滋賀県", Area::West),
    ("京都府", Area::West),
    ("大阪府", Area::West),
    ("兵庫県", Area::West),
    ("奈良県", Area::West),
    ("和歌山県", Area::West),
    ("鳥取県", Area::West),
    ("島根県", Area::West),
    ("岡山県", Area::West),
    ("広島県", Area::West),
    ("山口県", Area::West),
    ("徳島県", Area::West),
    ("香川県", Area::West),
    ("愛媛県", Area::West),
    ("高知県", Area::West),
    ("福岡県", Area::West),
    ("佐賀県", Area::West),
    ("長崎県", Area::West),
    ("熊本県", Area::West),
    ("大分県", Area::West),
    ("宮崎県", Area::West),
    ("鹿児島県", Area::West),
    ("沖縄県", Area::West),
];

/// The prefectures' names in the JIS order (a filter's options).
pub const PREFECTURES: [&str; 47] = {
    let mut names = [""; 47];
    let mut i = 0;
    while i < 47 {
        names[i] = PREFECTURE_AREAS[i].0;
        i += 1;
    }
    names
};

/// The NTT area of a prefecture (FAQ Q18/Q19), by its full name ("東京都", "大阪府", "北海道").
pub fn prefecture_area(name: &str) -> Option<Area> {
    PREFECTURE_AREAS
        .iter()
        .find(|(p, _)| *p == name)
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_47_prefectures_map_to_one_area() {
        let east = PREFECTURE_AREAS
            .iter()
            .filter(|(_, a)| *a == Area::East)
            .count();
        assert_eq!((east, 47 - east), (17, 30));
        let mut names = PREFECTURES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 47);
        assert_eq!((PREFECTURES[0], PREFECTURES[46]), ("北海道", "沖縄県"));
        assert_eq!(prefecture_area("東京都"), Some(Area::East));
        assert_eq!(prefecture_area("長野県"), Some(Area::East));
        assert_eq!(prefecture_area("富山県"), Some(Area::West));
        assert_eq!(prefecture_area("沖縄県"), Some(Area::West));
        assert_eq!(prefecture_area("東京"), None);
    }

    #[test]
    fn ngn_names_go_to_the_ngn_servers_and_the_rest_to_nw_base() {
        assert_eq!(resolver_for("assv.asc.flets-east.jp"), Resolver::Ngn);
        assert_eq!(resolver_for("x.FLETS-WEST.JP."), Resolver::Ngn);
        assert_eq!(resolver_for("flets-east.jp.example.org"), Resolver::NwBase);
        assert_eq!(resolver_for("notflets-east.jp"), Resolver::NwBase);
        assert_eq!(resolver_for("www.lineauth.mnw"), Resolver::NwBase);
        let east = probe_names(Area::East);
        assert_eq!(east.len(), 6);
        assert!(east.iter().all(|n| !n.example_answers.is_empty()));
        assert_eq!(probe_names(Area::West).len(), 6);
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
    fn each_area_probes_its_own_ngn_name() {
        for (area, name) in [
            (Area::East, "assv.asc.flets-east.jp"),
            (Area::West, "assv.asc.flets-west.jp"),
        ] {
            let ngn: Vec<_> = probe_names(area)
                .into_iter()
                .filter(|p| p.resolver == Resolver::Ngn)
                .collect();
            assert_eq!(ngn.len(), 1, "{area:?}");
            assert_eq!(ngn[0].name, name);
        }
        let west = probe_names(Area::West);
        let assv = west.iter().find(|p| p.resolver == Resolver::Ngn).unwrap();
        assert!(
            assv.example_answers.is_empty(),
            "its address is not published"
        );
    }
}
