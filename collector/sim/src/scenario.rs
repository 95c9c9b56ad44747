//! What a simulated terminal reports, round by round, for each scenario: realistic results built
//! from the connection guide's names, servers, example answers and page texts (DOMAIN.md §3–§6).
//!
//! Pure: a report is a function of (site, terminal, round, seq, time), so a scenario's effect on the
//! collector is reproducible. Must never do I/O.

use oqs_proto::ident::Area;
use oqs_proto::v1::{
    AddressKind, CertCheck, CertInfo, CertSource, DnsProbe, DnsServerMode, HttpProbe, HttpTarget,
    Ipv6Address, Ipv6State, LineAuthProbe, LineAuthState, NtpProbe, Outcome, RecordType, Report,
    ResolverRole,
};
use std::fmt;
use std::str::FromStr;

macro_rules! scenarios {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, )*) => {
        /// A fleet behaviour to simulate.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Scenario { $( $(#[doc = $doc])* $variant, )* }

        impl Scenario {
            /// Every scenario, in the table's order.
            pub const ALL: [Scenario; [$($name),*].len()] = [$(Scenario::$variant),*];

            /// The scenario's name on the command line.
            pub fn name(self) -> &'static str {
                match self { $(Scenario::$variant => $name,)* }
            }

            /// What the scenario simulates (`--help`).
            pub fn about(self) -> &'static str {
                match self { $(Scenario::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

// The scenario table: each scenario once, its name and what it simulates.
scenarios! {
    /// Every check passes.
    Healthy = "healthy",
    /// The line's prefix changes at the third round (`CHANGE_ROUND`); the portal then shows the
    /// consent page.
    PrefixChange = "prefix-change",
    /// The line is not eligible: the portal shows P11019.
    P11019 = "p11019",
    /// The portal's provider does not answer: P32031.
    P32031 = "p32031",
    /// Authenticated at first, then the consent page (re-authentication needed), same prefix.
    Consent = "consent",
    /// The router's DNS table is wrong: the system resolver fails, direct NW-base queries work.
    DnsTable = "dns-table",
    /// No global IPv6 address and no default route.
    Ipv6Missing = "ipv6-missing",
    /// One report, then nothing.
    Silent = "silent",
    /// The global address disappears every other round (FAQ Q1, RA behind a Hikari Denwa router).
    Flapping = "flapping",
    /// The OQS certificate is not installed (FAQ Q8): the portal and OQS web do not verify; the
    /// portal's page, read without verification, says authenticated.
    CertUntrusted = "cert-untrusted",
    /// IPv6 works but the NW-base DNS servers answer neither the router nor the terminal (an
    /// upstream router's DNS, P5 注意 / P30 4-3).
    DnsUpstream = "dns-upstream",
    /// The terminal's clock is 5 s off the OQS NTP server.
    NtpSkew = "ntp-skew",
    /// Authenticated, but the OQS web login pages do not answer (the OQS side, FAQ Q17).
    WebDown = "web-down",
    /// The portal shows a code the guide does not list (P99999): kept with its excerpt.
    UnknownCode = "unknown-code",
    /// 回線認証に失敗しました (FAQ Q12).
    AuthFailed = "auth-failed",
    /// システムエラーが発生しました (FAQ Q13).
    SystemError = "system-error",
    /// 希望しない was chosen (FAQ Q10).
    Declined = "declined",
    /// The back button was used: 回線認証ポータルサイトからアクセスしてください (FAQ Q10).
    NotFromPortal = "not-from-portal",
    /// 時間を置いて再度試してください (P17).
    RetryLater = "retry-later",
    /// A page none of the guide's texts match, without a code.
    UnknownPage = "unknown-page",
    /// The portal gives no page (TLS handshake fails) while IPv6 and DNS work.
    PortalDown = "portal-down",
    /// The router truncates the large answers (pweb/ntp.base.oqs-pdl.org, about 30 addresses)
    /// and does not serve DNS over TCP: those names fail through the system resolver only.
    DnsTruncated = "dns-truncated",
    /// The terminal's electronic certificate expires in 20 days (`cert_expiring`, the 30-day
    /// alert).
    CertExpiring = "cert-expiring",
    /// An NTT outage in one prefecture (`OUTAGE_PREFECTURE`): every site of it loses IPv6 from
    /// round `CHANGE_ROUND` on, together (an area-wide incident); sites elsewhere are healthy.
    AreaOutage = "area-outage",
    /// A realistic blend of all the above, decided per site (the healthy sites of
    /// `OUTAGE_PREFECTURE` are in the area outage).
    Mixed = "mixed",
}

/// The round at which time-dependent scenarios (prefix change, consent, the area outage) change.
pub const CHANGE_ROUND: u64 = 2;

/// Where `AreaOutage` (and `Mixed`'s outage) happens: an East prefecture.
pub const OUTAGE_PREFECTURE: &str = "新潟県";

impl Scenario {
    /// The concrete scenario of site `index`: itself, or for `Mixed` a blend in which about one
    /// site in four has a problem (DNS table errors most often, as FAQ Q3 says).
    pub fn for_site(self, index: usize) -> Scenario {
        if self != Scenario::Mixed {
            return self;
        }
        match index % 100 {
            53 | 81 => Scenario::DnsTable,
            57 => Scenario::AuthFailed,
            61 => Scenario::SystemError,
            65 => Scenario::Declined,
            69 => Scenario::NotFromPortal,
            73 => Scenario::RetryLater,
            77 => Scenario::UnknownPage,
            85 => Scenario::PortalDown,
            87 => Scenario::DnsTruncated,
            89 => Scenario::Ipv6Missing,
            93 => Scenario::P32031,
            97 => Scenario::Consent,
            50..=99 => Scenario::Healthy,
            _ => Scenario::Mixed.first_half(index),
        }
    }

    /// The first 50 of every 100 sites of `Mixed`.
    fn first_half(self, index: usize) -> Scenario {
        match index % 50 {
            1 | 13 => Scenario::DnsTable,
            5 => Scenario::P11019,
            9 => Scenario::PrefixChange,
            17 => Scenario::P32031,
            21 => Scenario::Consent,
            29 => Scenario::Ipv6Missing,
            33 => Scenario::Silent,
            41 => Scenario::Flapping,
            25 => Scenario::NtpSkew,
            37 => Scenario::CertUntrusted,
            45 => Scenario::UnknownCode,
            47 => Scenario::DnsUpstream,
            43 => Scenario::CertExpiring,
            49 => Scenario::WebDown,
            _ => Scenario::Healthy,
        }
    }
}

/// `--scenario NAME`: clap lists every scenario of the table with what it simulates.
impl clap::ValueEnum for Scenario {
    fn value_variants<'a>() -> &'a [Self] {
        &Scenario::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.about()))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?}; one of: {}", names.join(", "))
            })
    }
}

/// A simulated site.
#[derive(Debug, Clone)]
pub struct SiteProfile {
    pub index: usize,
    pub site_id: String,
    pub area: Area,
    pub scenario: Scenario,
    pub terminals: usize,
    pub customer_id: String,
    pub prefecture: &'static str,
    pub name: String,
}

/// Prefectures the simulated sites are spread over, by area (DOMAIN.md §2).
const EAST_PREFECTURES: [&str; 6] = ["東京都", "神奈川県", "埼玉県", "千葉県", "北海道", "新潟県"];
const WEST_PREFECTURES: [&str; 6] = ["大阪府", "愛知県", "京都府", "兵庫県", "福岡県", "広島県"];
const NAMES: [&str; 5] = ["クリニック", "医院", "薬局", "歯科", "内科"];

impl SiteProfile {
    /// Site `index` of a fleet: about 60% East, 40% West; some sites with two terminals.
    pub fn new(index: usize, prefix: &str, scenario: Scenario, terminals: usize) -> Self {
        let area = if mix(index as u64, 1) % 10 < 6 {
            Area::East
        } else {
            Area::West
        };
        let terminals = if terminals == 0 {
            if index % 7 == 3 {
                2
            } else {
                1
            }
        } else {
            terminals
        };
        let prefecture = match area {
            Area::East => EAST_PREFECTURES[(mix(index as u64, 3) % 6) as usize],
            Area::West => WEST_PREFECTURES[(mix(index as u64, 3) % 6) as usize],
        };
        let outage = prefecture == OUTAGE_PREFECTURE;
        let scenario = match (scenario, scenario.for_site(index)) {
            (Scenario::AreaOutage, _) if !outage => Scenario::Healthy,
            (Scenario::Mixed, Scenario::Healthy) if outage => Scenario::AreaOutage,
            (_, s) => s,
        };
        Self {
            index,
            site_id: format!("{prefix}{index:05}"),
            area,
            scenario,
            terminals,
            customer_id: format!("CAF{:010}", mix(index as u64, 2) % 10_000_000_000),
            prefecture,
            name: format!(
                "シミュレーション{}{index}",
                NAMES[(mix(index as u64, 4) % 5) as usize]
            ),
        }
    }

    /// The /64 the line has in `epoch` (0 before a prefix change, 1 after).
    fn prefix(&self, epoch: u64) -> [u16; 4] {
        let h = mix(self.index as u64, 10 + epoch);
        let lead = match self.area {
            Area::East => 0x2408,
            Area::West => 0x2001,
        };
        let second = match self.area {
            Area::East => 0x0210 + (h & 0xff) as u16,
            Area::West => 0x0f70 + (h & 0xff) as u16,
        };
        [lead, second, (h >> 16) as u16, (h >> 32) as u16]
    }
}

/// splitmix64 over two inputs: cheap deterministic variety.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn addr(p: [u16; 4], iid: u64) -> String {
    std::net::Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        (iid >> 48) as u16,
        (iid >> 32) as u16,
        (iid >> 16) as u16,
        iid as u16,
    )
    .to_string()
}

fn prefix_text(p: [u16; 4]) -> String {
    format!(
        "{}/64",
        std::net::Ipv6Addr::new(p[0], p[1], p[2], p[3], 0, 0, 0, 0)
    )
}

/// The guide's probe names (手順7-⑭), who answers each directly, and the example answers it
/// prints (`oqs_guide::targets`, which the agent's defaults come from too).
fn probe_names(area: Area) -> Vec<(&'static str, ResolverRole, &'static [&'static str])> {
    oqs_guide::targets::probe_names(area)
        .into_iter()
        .map(|n| {
            let role = match n.resolver {
                oqs_guide::targets::Resolver::Ngn => ResolverRole::Ngn,
                oqs_guide::targets::Resolver::NwBase => ResolverRole::NwBase,
            };
            (n.name, role, n.example_answers)
        })
        .collect()
}

fn servers(area: Area, role: ResolverRole) -> &'static str {
    match (area, role) {
        (Area::East, ResolverRole::Ngn) => "2404:1a8:7f01:a::3",
        (Area::West, ResolverRole::Ngn) => "2001:a7ff:5f01::a",
        (Area::East, _) => "2404:1a8:f583:d00::53:1",
        (Area::West, _) => "2001:a7ff:f014:d00::53:1",
    }
}

/// One round of one terminal of `site`.
pub fn report(site: &SiteProfile, terminal: usize, round: u64, seq: u64, now_ms: i64) -> Report {
    let sc = site.scenario;
    let salt = mix(site.index as u64, mix(terminal as u64, round));
    let jitter = |k: u64, lo: u32, span: u32| lo + (mix(salt, k) % span as u64) as u32;
    let changed = round >= CHANGE_ROUND;
    let epoch = u64::from(sc == Scenario::PrefixChange && changed);
    let prefix = site.prefix(epoch);
    let iid = mix(site.index as u64, 100 + terminal as u64) | 0x0200_0000_0000_0000;
    let no_global = sc == Scenario::Ipv6Missing
        || (sc == Scenario::Flapping && round % 2 == 1)
        || (sc == Scenario::AreaOutage && changed);

    // IPv6 state (手順6-⑫/⑬).
    let nic = "Ethernet".to_string();
    let mut addresses = vec![Ipv6Address {
        interface: nic.clone(),
        address: format!("fe80::{:x}:{:x}", (iid >> 16) as u16, iid as u16),
        prefix_len: 64,
        kind: AddressKind::LinkLocal as i32,
        deprecated: false,
    }];
    if !no_global {
        addresses.push(Ipv6Address {
            interface: nic.clone(),
            address: addr(prefix, iid),
            prefix_len: 64,
            kind: AddressKind::Global as i32,
            deprecated: false,
        });
        // Temporary addresses rotate (daily on Windows); rotation is not a prefix change.
        addresses.push(Ipv6Address {
            interface: nic.clone(),
            address: addr(prefix, mix(iid, round / 24)),
            prefix_len: 64,
            kind: AddressKind::Temporary as i32,
            deprecated: false,
        });
    }
    let router = addr(prefix, 1);
    let ipv6 = Ipv6State {
        outcome: if no_global {
            Outcome::Failed
        } else {
            Outcome::Ok
        } as i32,
        error: if no_global {
            "no global IPv6 address and no IPv6 default route".into()
        } else {
            String::new()
        },
        addresses,
        prefix: if no_global {
            String::new()
        } else {
            prefix_text(prefix)
        },
        has_default_route: !no_global,
        default_gateways: if no_global {
            vec![]
        } else {
            vec!["fe80::1".into()]
        },
        dns_servers: if no_global { vec![] } else { vec![router] },
        dns_mode: if no_global {
            DnsServerMode::None
        } else {
            DnsServerMode::Router
        } as i32,
        latency_ms: jitter(1, 1, 4),
    };

    // Name resolution (手順7-⑭): system resolver and direct, AAAA.
    let mut dns = Vec::new();
    for (i, (name, role, answers)) in probe_names(site.area).into_iter().enumerate() {
        for direct in [false, true] {
            let (outcome, rcode, error, ans) = if no_global {
                (
                    Outcome::TimedOut,
                    "",
                    "no answer within 2000 ms (no IPv6 route)".to_string(),
                    vec![],
                )
            } else if sc == Scenario::DnsUpstream && role == ResolverRole::NwBase {
                (
                    Outcome::TimedOut,
                    "",
                    "no answer within 2000 ms".to_string(),
                    vec![],
                )
            } else if sc == Scenario::DnsTruncated && !direct && name.ends_with(".base.oqs-pdl.org")
            {
                (
                    Outcome::Failed,
                    "",
                    "the answer from 192.168.1.1:53 is truncated (TC bit) and the retry over TCP failed"
                        .to_string(),
                    vec![],
                )
            } else if sc == Scenario::DnsTable && !direct && role == ResolverRole::NwBase {
                (
                    Outcome::Failed,
                    "NXDOMAIN",
                    "the system resolver does not know this OQS name".to_string(),
                    vec![],
                )
            } else {
                // The West's NGN name has no published answer: one made up in the West NGN's range.
                let answers: Vec<String> = if answers.is_empty() {
                    vec!["2001:a7ff:5f00::f".to_string()]
                } else {
                    answers.iter().map(|s| s.to_string()).collect()
                };
                (Outcome::Ok, "NOERROR", String::new(), answers)
            };
            dns.push(DnsProbe {
                outcome: outcome as i32,
                error,
                name: name.to_string(),
                record_type: RecordType::Aaaa as i32,
                role: if direct { role } else { ResolverRole::System } as i32,
                server: if direct {
                    servers(site.area, role).to_string()
                } else {
                    "system".to_string()
                },
                rcode: rcode.to_string(),
                truncated: sc == Scenario::DnsTruncated && !direct && outcome != Outcome::Ok,
                answers: ans,
                latency_ms: if outcome == Outcome::TimedOut {
                    2000
                } else {
                    jitter(10 + i as u64 * 2 + u64::from(direct), 3, 25)
                },
            });
        }
    }

    // Line authentication (3-1): the page the portal shows.
    let unreachable = no_global
        || sc == Scenario::DnsTable
        || sc == Scenario::DnsUpstream
        || sc == Scenario::PortalDown;
    let cert_missing = sc == Scenario::CertUntrusted;
    let (state, code, excerpt) = if unreachable {
        (LineAuthState::Unreachable, "", "")
    } else {
        match sc {
            Scenario::P11019 => (
                LineAuthState::IneligibleLine,
                "P11019",
                "回線情報通知処理を中断しました エラーコード：P11019",
            ),
            Scenario::P32031 => (
                LineAuthState::NoResponse,
                "P32031",
                "サービス提供者からの応答がありません エラーコード： P32031",
            ),
            Scenario::UnknownCode => (
                LineAuthState::UnknownPage,
                "P99999",
                "処理を継続できません エラーコード：P99999",
            ),
            Scenario::AuthFailed => (LineAuthState::Failed, "", "回線認証に失敗しました。"),
            Scenario::SystemError => (
                LineAuthState::SystemError,
                "",
                "システムエラーが発生しました。",
            ),
            Scenario::Declined => (
                LineAuthState::Declined,
                "",
                "回線認証に失敗しました。認証を行うには通知意思確認画面にて「希望する」を選択してください",
            ),
            Scenario::NotFromPortal => (
                LineAuthState::NotFromPortal,
                "",
                "回線認証ポータルサイトからアクセスしてください。",
            ),
            Scenario::RetryLater => (
                LineAuthState::RetryLater,
                "",
                "時間を置いて再度試してください",
            ),
            Scenario::UnknownPage => (
                LineAuthState::UnknownPage,
                "",
                "ただいまメンテナンス中です。しばらくお待ちください。",
            ),
            Scenario::CertUntrusted => (LineAuthState::CertUntrusted, "", "回線認証済みです。"),
            Scenario::Consent if round >= 1 => (LineAuthState::Consent, "", "希望する 希望しない"),
            Scenario::PrefixChange if changed => {
                (LineAuthState::Consent, "", "希望する 希望しない")
            }
            _ => (
                LineAuthState::AlreadyAuthenticated,
                "",
                "回線認証済みです。",
            ),
        }
    };
    let la_ok = matches!(
        state,
        LineAuthState::AlreadyAuthenticated | LineAuthState::Success
    );
    let lineauth = LineAuthProbe {
        outcome: if la_ok { Outcome::Ok } else { Outcome::Failed } as i32,
        error: match state {
            LineAuthState::Unreachable if no_global => "no IPv6 route to www.lineauth.mnw".into(),
            LineAuthState::Unreachable if sc == Scenario::PortalDown => {
                "https://www.lineauth.mnw/: TLS handshake failed: connection reset by peer".into()
            }
            LineAuthState::Unreachable => "www.lineauth.mnw did not resolve".into(),
            LineAuthState::Consent => {
                "the consent page is shown: line authentication needed".into()
            }
            LineAuthState::CertUntrusted => {
                "the certificate is not trusted by the OQS CA bundle; the page was read without verification".into()
            }
            _ if !la_ok && code.is_empty() => format!("the portal shows: {excerpt}"),
            _ if !la_ok => format!("the portal shows error {code}"),
            _ => String::new(),
        },
        url: "https://www.lineauth.mnw/".into(),
        state: state as i32,
        error_code: code.into(),
        http_status: if unreachable { 0 } else { 200 },
        tls_trusted: !unreachable && !cert_missing,
        excerpt: excerpt.into(),
        latency_ms: jitter(30, 40, 200),
        fetched_without_verification: cert_missing,
        unverified_page_state: if cert_missing {
            LineAuthState::AlreadyAuthenticated as i32
        } else {
            0
        },
        cert_problem: if cert_missing {
            oqs_proto::v1::CertProblem::NotTrusted as i32
        } else {
            0
        },
    };

    // OQS web and CRL (3-2).
    // A portal down on its own leaves OQS web answering.
    let web_down = (unreachable && sc != Scenario::PortalDown) || sc == Scenario::P11019;
    let web_only_down = sc == Scenario::WebDown;
    let http = [
        (
            HttpTarget::OqsWebProduction,
            "https://hweb.oqs.onshikaku.org/web/",
        ),
        (
            HttpTarget::OqsWebVerification,
            "https://hweb.oqs-st.onshikaku.org/web/",
        ),
        (HttpTarget::Crl, "http://crldownload.obn.managedpki.ne.jp/"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (target, url))| {
        let web = target != HttpTarget::Crl;
        let timed_out = web_down || (web_only_down && web);
        let untrusted = cert_missing && web;
        HttpProbe {
            outcome: if timed_out {
                Outcome::TimedOut
            } else if untrusted {
                Outcome::Failed
            } else {
                Outcome::Ok
            } as i32,
            error: if timed_out {
                "no answer within 5000 ms".into()
            } else if untrusted {
                "the certificate is not trusted by the OQS CA bundle".into()
            } else {
                String::new()
            },
            target: target as i32,
            url: url.into(),
            status: if timed_out || untrusted { 0 } else { 200 },
            tls_trusted: !timed_out && !untrusted && web,
            latency_ms: if timed_out {
                5000
            } else {
                jitter(40 + i as u64, 30, 150)
            },
        }
    })
    .collect();

    let ntp = vec![NtpProbe {
        outcome: if unreachable {
            Outcome::TimedOut
        } else {
            Outcome::Ok
        } as i32,
        error: if unreachable {
            "no answer within 2000 ms".into()
        } else {
            String::new()
        },
        server: "ntp.base.oqs-pdl.org".into(),
        offset_us: if unreachable {
            0
        } else if sc == Scenario::NtpSkew {
            5_000_000 + i64::from(jitter(50, 0, 40_000))
        } else {
            i64::from(jitter(50, 0, 40_000)) - 20_000
        },
        stratum: if unreachable { 0 } else { 2 },
        latency_ms: jitter(51, 5, 30),
    }];

    // Certificates (the OQS connection certificate, the terminal's electronic certificate): the
    // client certificate's expiry is fixed per site, so it comes closer as time passes; in
    // `CertExpiring` it is 20 days after the report.
    // A certificate's end is a fixed moment (its history does not change with every report):
    // here, per site, counted from the current 30-day block (from the current day for
    // `CertExpiring`, so it stays about 20 days ahead).
    const DAY: i64 = 86_400_000;
    let client_not_after = if sc == Scenario::CertExpiring {
        now_ms.div_euclid(DAY) * DAY + 21 * DAY
    } else {
        now_ms.div_euclid(30 * DAY) * 30 * DAY
            + (200 + (mix(site.index as u64, 70) % 900) as i64) * DAY
    };
    let anchor_not_after = now_ms.div_euclid(365 * DAY) * 365 * DAY + 3650 * DAY;
    let certs = CertCheck {
        outcome: Outcome::Ok as i32,
        error: String::new(),
        certs: vec![
            CertInfo {
                source: CertSource::TrustAnchor as i32,
                subject: "CN=OQS Connection Root CA (simulated)".into(),
                issuer: "CN=OQS Connection Root CA (simulated)".into(),
                not_after_ms: anchor_not_after,
                location: "oqs_ca".into(),
                matched_by: String::new(),
            },
            CertInfo {
                source: CertSource::Client as i32,
                subject: format!("CN={}", site.site_id),
                issuer: "CN=Online Claims Electronic Certificate CA (simulated)".into(),
                not_after_ms: client_not_after,
                location: "LocalMachine\\My".into(),
                matched_by: "issuer contains \"Online Claims\"".into(),
            },
        ],
    };

    let took = 250 + i64::from(jitter(60, 0, 300));
    Report {
        seq,
        started_at_ms: now_ms - took,
        finished_at_ms: now_ms,
        ipv6: Some(ipv6),
        dns,
        lineauth: Some(lineauth),
        http,
        ntp,
        spool_dropped_total: 0,
        certs: Some(certs),
        agent: None,
        connection: oqs_proto::v1::ConnectionMethod::FletsIpoe as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_collector::config::Limits;

    #[test]
    fn every_scenario_parses_by_name() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        assert!("nope"
            .parse::<Scenario>()
            .unwrap_err()
            .contains("dns-table"));
    }

    #[test]
    fn every_scenario_produces_reports_the_collector_accepts() {
        let now = crate::now_ms();
        for s in Scenario::ALL {
            for i in 0..50 {
                let site = SiteProfile::new(i, "s", s, 0);
                for round in 0..4 {
                    let r = report(&site, 0, round, round + 1, now);
                    oqs_collector::validate::report(&r, &Limits::default())
                        .unwrap_or_else(|e| panic!("{s} site {i} round {round}: {e}"));
                }
            }
        }
    }

    #[test]
    fn prefix_change_changes_the_prefix_and_shows_consent() {
        let site = SiteProfile::new(0, "s", Scenario::PrefixChange, 1);
        let before = report(&site, 0, 0, 1, 1);
        let after = report(&site, 0, CHANGE_ROUND, 3, 1);
        let p = |r: &Report| r.ipv6.as_ref().unwrap().prefix.clone();
        assert_ne!(p(&before), p(&after));
        assert!(p(&before).starts_with("2408:") || p(&before).starts_with("2001:"));
        assert_eq!(after.lineauth.unwrap().state, LineAuthState::Consent as i32);
    }

    #[test]
    fn dns_table_fails_only_the_system_resolver() {
        let site = SiteProfile::new(0, "s", Scenario::DnsTable, 1);
        let r = report(&site, 0, 0, 1, 1);
        let lineauth: Vec<_> = r
            .dns
            .iter()
            .filter(|p| p.name == "www.lineauth.mnw")
            .collect();
        assert_eq!(lineauth.len(), 2);
        for p in lineauth {
            let system = p.role == ResolverRole::System as i32;
            assert_eq!(p.outcome == Outcome::Ok as i32, !system, "{p:?}");
        }
    }

    #[test]
    fn mixed_is_mostly_healthy_with_every_problem_present() {
        let kinds: Vec<Scenario> = (0..100).map(|i| Scenario::Mixed.for_site(i)).collect();
        let healthy = kinds.iter().filter(|s| **s == Scenario::Healthy).count();
        assert!((70..=80).contains(&healthy), "{healthy}");
        let sites: Vec<SiteProfile> = (0..200)
            .map(|i| SiteProfile::new(i, "s", Scenario::Mixed, 1))
            .collect();
        for s in Scenario::ALL {
            if s != Scenario::Mixed {
                assert!(
                    sites.iter().any(|p| p.scenario == s),
                    "{s} missing from mixed"
                );
            }
        }
    }

    #[test]
    fn the_area_outage_takes_one_prefectures_ipv6_at_the_change_round() {
        let sites: Vec<SiteProfile> = (0..200)
            .map(|i| SiteProfile::new(i, "s", Scenario::AreaOutage, 1))
            .collect();
        let hit: Vec<&SiteProfile> = sites
            .iter()
            .filter(|p| p.scenario == Scenario::AreaOutage)
            .collect();
        assert!(hit.len() >= 10, "{}", hit.len());
        assert!(hit.iter().all(|p| p.prefecture == OUTAGE_PREFECTURE));
        let globals = |p: &SiteProfile, round| {
            report(p, 0, round, round + 1, 1)
                .ipv6
                .unwrap()
                .addresses
                .iter()
                .filter(|a| a.kind == AddressKind::Global as i32)
                .count()
        };
        assert_eq!(globals(hit[0], 0), 1);
        assert_eq!(globals(hit[0], CHANGE_ROUND), 0);
        let elsewhere = sites
            .iter()
            .find(|p| p.prefecture != OUTAGE_PREFECTURE)
            .unwrap();
        assert_eq!(elsewhere.scenario, Scenario::Healthy);
        assert_eq!(globals(elsewhere, CHANGE_ROUND), 1);
        // In the demo's mix, the outage's sites are the prefecture's healthy ones.
        let mixed = (0..200)
            .map(|i| SiteProfile::new(i, "s", Scenario::Mixed, 1))
            .filter(|p| p.scenario == Scenario::AreaOutage)
            .count();
        assert!(mixed >= 5, "{mixed}");
    }
}
