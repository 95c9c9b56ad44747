//! The guide's troubleshooting tree (P30, 「回線認証サイトに接続できない場合の切り分け方法」; DOMAIN.md
//! §9) over one round's results: the first step that fails, its remedy in Japanese and English, and
//! the guide page. FAQ Q3 (DNS settings most often, then an ineligible line) and Q17 (consent page
//! means re-authenticate) refine it.
//!
//! Pure: a report in, a diagnosis out, so every step is unit-tested. Must never invent a remedy
//! the guide does not give.

use oqs_proto::ident::Connection;
use oqs_proto::v1::{LineAuthState, Outcome, Report, ResolverRole};

/// What the tree found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Step 1: the portal URL is not https://www.lineauth.mnw.
    WrongUrl,
    /// Step 3: the system resolver fails where the NW-base servers answer: the router's
    /// local-domain table is wrong.
    RouterDnsTable,
    /// Step 3: no usable DNS server is configured on the terminal.
    DnsSettings,
    /// Step 3: the router truncates large answers (TC bit) and does not answer over TCP: names
    /// with many addresses (pweb/ntp.base.oqs-pdl.org) fail through it.
    DnsTruncated,
    /// Step 4: no global IPv6 address or no IPv6 default route.
    Ipv6Missing,
    /// Step 4 (3): IPv6 is up but neither the system resolver nor the NW-base servers answer.
    NwBaseUnreachable,
    /// Step 5: P11019, the line is not eligible.
    IneligibleLine,
    /// Step 6 (FAQ Q8): the OQS connection certificate is not installed.
    CertificateMissing,
    /// Step 6 (FAQ Q17): the consent page is shown: line authentication must be done (again).
    ReauthRequired,
    /// Step 6 (FAQ Q11): P32031, no answer from the provider.
    NoResponse,
    /// Step 6 (FAQ Q10): 希望しない was chosen or the back button used.
    Declined,
    /// Step 6 (FAQ Q12): authentication failed (customer ID or line).
    AuthFailed,
    /// Step 6 (FAQ Q13): the portal reports a system error: it may have a fault.
    SystemError,
    /// Step 6 (P17): the portal asks to retry later. (Stored states before the split said
    /// `portal_error` for this and the system error.)
    #[serde(alias = "portal_error")]
    RetryLater,
    /// Step 6: the portal shows a page none of the guide's texts match, without a code.
    UnknownPage,
    /// Step 6 (FAQ Q17): authenticated, but OQS web does not answer: the OQS side.
    OqsSide,
    /// Step 6: the portal cannot be reached although name resolution and IPv6 work.
    PortalUnreachable,
    /// Not the guide's method (`connection` ipv4_pppoe, ipsec): the terminal's resolver answers
    /// an OQS name neither with an A nor an AAAA record. The guide's tree does not apply.
    OffGuideDns,
    /// Not the guide's method: the names resolve but OQS web does not answer.
    OffGuideOqsWeb,
}

/// The tree's verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    /// 1–6, the guide's step; `None` when everything passes.
    pub step: Option<u8>,
    pub finding: Option<Finding>,
    pub remedy_ja: &'static str,
    pub remedy_en: &'static str,
    /// Where the guide says it.
    pub guide_page: &'static str,
    /// The connection method the verdict assumed: the guide's tree is FLET'S IPoE's; on another
    /// method only what applies to it is judged.
    pub connection: Connection,
}

/// The verdict when every step passes.
pub const HEALTHY: Diagnosis = Diagnosis {
    step: None,
    finding: None,
    remedy_ja: "問題は見つかりませんでした。",
    remedy_en: "No problem found.",
    guide_page: "",
    connection: Connection::FletsIpoe,
};

/// What a certificate that did not verify means, in one sentence: the agent's probe error and the
/// collector's `cert_untrusted` detail both say it this way (FAQ Q8 for the case the guide names).
pub fn cert_problem_text(p: oqs_proto::v1::CertProblem) -> &'static str {
    use oqs_proto::v1::CertProblem as P;
    match p {
        P::Expired => "the portal's certificate has expired",
        P::NotYetValid => "the portal's certificate is not valid yet: check the terminal's clock",
        P::NameMismatch => {
            "the portal's certificate is for another name than www.lineauth.mnw: check the URL \
             (P16 手順1-②) and the DNS answers"
        }
        P::Revoked => "the portal's certificate has been revoked",
        P::NotTrusted | P::Unspecified => {
            "the portal's certificate is not trusted: the OQS connection certificate is not \
             installed (guide FAQ Q8)"
        }
    }
}

/// What the customer ID adds to a finding, in Japanese and English: FAQ Q9's note that an ID of
/// `COP` and eight digits may be a Bフレッツ line, which is not a connection target.
pub fn customer_id_hint(f: Finding, customer_id: &str) -> Option<(&'static str, &'static str)> {
    let id = customer_id.trim();
    let b_flets = id.len() == 11
        && id.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("COP"))
        && id[3..].bytes().all(|b| b.is_ascii_digit());
    (f == Finding::IneligibleLine && b_flets).then_some((
        "お客さまIDが「COP」+数字8桁のため、Bフレッツ回線（接続対象外）の可能性があります（FAQ Q9）。",
        "The customer ID is COP and eight digits: the line may be a B FLET'S line, which cannot connect (FAQ Q9).",
    ))
}

/// The guide's verdict for a finding: its step, remedy and page.
pub fn verdict(f: Finding) -> Diagnosis {
    use Finding::*;
    let (step, ja, en, page) = match f {
        WrongUrl => (1, "回線認証サイトのURLを https://www.lineauth.mnw に直してください。", "Use the line-authentication URL https://www.lineauth.mnw.", "P16 手順1-②"),
        RouterDnsTable => (3, "ルータのDNS設定（ローカルドメイン問合せテーブル）に、オンライン資格確認NW基盤のドメインとDNSサーバーを設定してください。ルータの上位にルータ等（ひかり電話対応ルータ等）があり、DNSの問合せ先をそのルータにしている場合は、そのルータのDNSの接続先にNW基盤のDNSサーバーを直接指定してください。", "Fix the router's DNS table (local-domain query table): send the OQS domains to the NW-base DNS servers. If it forwards to a router above it (e.g. a Hikari Denwa router), that router's DNS must point straight at the NW-base servers.", "P7 手順3-②, P30 4-3), P5 注意"),
        DnsSettings => (3, "端末のDNSサーバー設定を確認してください（通常はルータのアドレスを自動取得）。", "Check the terminal's DNS server settings (normally the router's address, obtained automatically).", "P14 手順6-⑬, P12 手順5'"),
        DnsTruncated => (3, "ルータのDNSが大きな応答を端末に返せていません（pweb.base.oqs-pdl.org、ntp.base.oqs-pdl.org は約30件のアドレスを返します。UDPの応答が切り詰められ（TCビット）、TCPでの再問合せにも応答しません）。ルータのDNS中継でEDNS0（大きなUDP応答）とTCPを有効にするか、ルータのファームウェアを更新してください。", "The router cannot pass large DNS answers to the terminal (pweb/ntp.base.oqs-pdl.org return about 30 addresses; its UDP answer is truncated (TC bit) and it does not answer the retry over TCP): enable EDNS0 and DNS over TCP in the router's DNS relay, or update its firmware.", "P7 手順3-②, P15 手順7-⑭"),
        Ipv6Missing => (4, "端末のIPv6設定を確認してください（P8 手順4-③～⑧）。それでも取得できない場合、(1)回線にフレッツ・v6オプション契約があるか（P4 手順1。不明な場合は 0120-116-116、9:00～17:00、年末年始を除く）、(2)ルータ側の設定（P6 手順2-①、RA/DHCP-PD）、(3)オンライン資格確認接続用ルータの上位にルータ等（ひかり電話対応ルータ等）がある場合、そのルータのDNSの接続先にNW基盤のDNSサーバーを直接指定しているかを確認してください。", "Check the terminal's IPv6 settings (P8 手順4-③–⑧). If it still gets none: (1) the FLET'S v6 option contract (P4 手順1; if unsure, 0120-116-116, 9:00–17:00, closed over the New Year), (2) the router's settings (P6 手順2-①, RA / DHCP-PD), (3) if a router sits above the OQS router (e.g. a Hikari Denwa router), its DNS must point straight at the NW-base servers.", "P14 手順6-⑫, P8 手順4-③～⑧, P4 手順1, P6 手順2-①"),
        NwBaseUnreachable => (4, "IPv6は取得できていますが、NW基盤のDNSサーバーに直接問い合わせても応答がありません。回線側を確認してください：フレッツ・v6オプションの契約（P4 手順1。不明な場合は 0120-116-116）、経路上の機器（UTM、ビジネスホン主装置等）がIPv6に対応しているか（P5 注意）、接続対象の回線か（P4 手順1）。", "IPv6 is up but the NW-base DNS servers do not answer even when asked directly: check the line — the FLET'S v6 option contract (P4 手順1; if unsure, 0120-116-116), that every device on the path (UTM, business-phone unit) supports IPv6 (P5 注意), and that the line is eligible (P4 手順1).", "P4 手順1, P5 注意"),
        IneligibleLine => (5, "接続対象の回線（フレッツ 光ネクスト等）を用意し、お客さまIDを再申請のうえ、再度回線認証を行ってください。", "Get an eligible line (FLET'S Hikari Next etc.), re-apply the customer ID, then redo line authentication.", "P4 手順1, FAQ Q9"),
        CertificateMissing => (6, "オンライン資格確認接続用の証明書をインストールしてください。", "Install the OQS connection certificate.", "FAQ Q8 (P22)"),
        ReauthRequired => (6, "回線認証サイトで「希望する」を押して回線認証を行ってください（IPv6アドレスが変わった可能性があります）。", "Press 希望する on the line-authentication portal to authenticate (again); the IPv6 address may have changed.", "P16 手順1-③, FAQ Q17"),
        NoResponse => (6, "時間を置いて再度回線認証を行ってください。解決しない場合はお客さまIDとIPv6アドレスを確認のうえお問合せください。", "Retry line authentication later; if it persists, contact support with the customer ID and IPv6 address.", "FAQ Q11"),
        Declined => (6, "ブラウザの戻るボタンではなく、再度回線認証サイトにアクセスし「希望する」を選択してください。", "Open the portal again (not with the back button) and choose 希望する.", "FAQ Q10"),
        AuthFailed => (6, "お客さまID、IPv6アドレス、アクセスした日時を確認のうえ、お問合せください（申請したお客さまIDでない、または別の回線からのアクセスの可能性があります）。", "Check the customer ID, the IPv6 address and the time of access, then contact support (the customer ID may not be registered, or the access came from another line).", "FAQ Q12"),
        SystemError => (6, "回線認証サイトで障害が発生した可能性があります。お客さまIDとIPv6アドレスを用意してお問合せください（ネットワークサポートデスク 0120-220-571）。", "The portal may have a fault: contact the network support desk (0120-220-571) with the customer ID and IPv6 address ready.", "FAQ Q13"),
        RetryLater => (6, "時間を置いて再度回線認証を行ってください。解決しない場合はお客さまIDとIPv6アドレスを用意してお問合せください（ネットワークサポートデスク 0120-220-571）。", "Retry line authentication later; if it persists, contact the network support desk (0120-220-571) with the customer ID and IPv6 address.", "P17 (3-1 手順1-4)"),
        UnknownPage => (6, "回線認証サイトに接続ガイドにない画面（またはエラーコード）が表示されています。画面の内容とお客さまID、IPv6アドレスを用意してお問合せください（ネットワークサポートデスク 0120-220-571）。", "The portal shows a page (or a code) the connection guide does not describe: contact the network support desk (0120-220-571) with what it says, the customer ID and the IPv6 address.", "P16-17, P30"),
        OqsSide => (6, "回線認証済みです。オンライン資格確認側の影響が考えられるため、お問合せください。", "The line is authenticated: the problem is on the OQS side; contact support.", "FAQ Q17"),
        PortalUnreachable => (6, "お客さまIDとIPv6アドレスを用意してお問合せください（ネットワークサポートデスク 0120-220-571）。", "Contact support (Network Support Desk 0120-220-571) with the customer ID and IPv6 address ready.", "P30, FAQ Q20"),
        // Not the guide's: it names what failed and who can answer, never a guide remedy.
        OffGuideDns => return off_guide(f, "端末のDNSでオンライン資格確認のドメイン名が解決できません（AもAAAAも応答なし）。この拠点の接続方式は接続ガイド（IP-VPN接続方式）の対象外です。端末のDNS設定と、接続方式の提供事業者（閉域網・VPN）の設定手順を確認してください。", "The terminal's resolver answers an OQS name with neither an A nor an AAAA record. This site's connection method is not the guide's (IP-VPN method): check the terminal's DNS settings and the setup steps of the closed-network or VPN provider."),
        OffGuideOqsWeb => return off_guide(f, "名前解決はできていますが、オンライン資格確認のWebに接続できません。この拠点の接続方式は接続ガイドの対象外です。接続方式の提供事業者（閉域網・VPN）の回線・機器の状態と、オンライン資格確認側のお知らせを確認してください。", "The names resolve but OQS web does not answer. This site's connection method is not the guide's: check the closed-network or VPN provider's line and equipment, and the OQS side's notices."),
    };
    Diagnosis {
        step: Some(step),
        finding: Some(f),
        remedy_ja: ja,
        remedy_en: en,
        guide_page: page,
        connection: Connection::FletsIpoe,
    }
}

/// A finding outside the guide: no step, no page. The method itself is set by [`diagnose`].
fn off_guide(f: Finding, ja: &'static str, en: &'static str) -> Diagnosis {
    Diagnosis {
        step: None,
        finding: Some(f),
        remedy_ja: ja,
        remedy_en: en,
        guide_page: "",
        connection: Connection::Ipv4Pppoe,
    }
}

/// Whether a finding is one of the guide's tree (it has a step) or a method's outside it.
pub fn is_off_guide(f: Finding) -> bool {
    matches!(f, Finding::OffGuideDns | Finding::OffGuideOqsWeb)
}

/// OQS names through the terminal's own resolver on a method outside the guide: a name counts as
/// resolved when any record type answered it (an IPv4 network answers A, not AAAA).
pub fn off_guide_unresolved(r: &Report) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for p in r
        .dns
        .iter()
        .filter(|p| p.role == ResolverRole::System as i32)
    {
        if !names.contains(&p.name.as_str()) {
            names.push(&p.name);
        }
    }
    names.retain(|n| {
        !r.dns
            .iter()
            .any(|p| p.role == ResolverRole::System as i32 && p.name == *n && ok(p.outcome))
    });
    names
}

/// The verdict on a report of a method outside the guide: the names, then OQS web.
fn diagnose_off_guide(r: &Report, connection: Connection) -> Diagnosis {
    let web_down = r
        .http
        .iter()
        .filter(|h| h.target != oqs_proto::v1::HttpTarget::Crl as i32)
        .any(|h| !ok(h.outcome));
    let f = if !off_guide_unresolved(r).is_empty() {
        Some(Finding::OffGuideDns)
    } else if web_down {
        Some(Finding::OffGuideOqsWeb)
    } else {
        None
    };
    Diagnosis {
        connection,
        ..f.map(verdict).unwrap_or(HEALTHY)
    }
}

fn ok(o: i32) -> bool {
    o == Outcome::Ok as i32
}

/// AAAA probes through the terminal's own resolver, and asked of the area's servers directly.
fn aaaa(r: &Report, direct: bool) -> impl Iterator<Item = &oqs_proto::v1::DnsProbe> {
    r.dns.iter().filter(move |p| {
        p.record_type == oqs_proto::v1::RecordType::Aaaa as i32
            && (p.role == ResolverRole::System as i32) != direct
            && p.role != ResolverRole::Unspecified as i32
    })
}

/// Steps 3 and 4 when a name does not resolve through the system: `None` when every name does.
/// The order is the guide's: IPv6 first (without it nothing resolves), then the terminal's own DNS
/// setting (手順5/5', 手順6-⑬: no server, or one that is neither the router nor the NW-base
/// servers), then the router's table (a name the area's server answers directly but the router
/// does not), else the line.
pub fn dns_verdict(r: &Report, ipv6_ok: bool) -> Option<Finding> {
    let failing: Vec<&str> = aaaa(r, false)
        .filter(|p| !ok(p.outcome))
        .map(|p| p.name.as_str())
        .collect();
    if failing.is_empty() && aaaa(r, false).next().is_some() {
        return None;
    }
    if !ipv6_ok {
        return Some(Finding::Ipv6Missing);
    }
    let mode = r.ipv6.as_ref().map(|s| s.dns_mode).unwrap_or(0);
    if mode == oqs_proto::v1::DnsServerMode::None as i32
        || mode == oqs_proto::v1::DnsServerMode::Other as i32
    {
        return Some(Finding::DnsSettings);
    }
    // A truncated answer is the router's relay, whatever the direct queries say (they would get
    // the whole answer by TCP).
    if aaaa(r, false).any(|p| !ok(p.outcome) && p.truncated) {
        return Some(Finding::DnsTruncated);
    }
    let answered_directly =
        aaaa(r, true).any(|p| ok(p.outcome) && failing.contains(&p.name.as_str()));
    if answered_directly {
        return Some(Finding::RouterDnsTable);
    }
    Some(Finding::NwBaseUnreachable)
}

/// Walks the tree over one round. `lineauth_host` is the host of the configured portal URL.
pub fn diagnose(r: &Report, lineauth_url: &str) -> Diagnosis {
    let connection = Connection::of_report(r);
    if !connection.is_guides() {
        return diagnose_off_guide(r, connection);
    }
    // 1. Is the URL right?
    let host = lineauth_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    if !lineauth_url.starts_with("https://") || host != "www.lineauth.mnw" {
        return verdict(Finding::WrongUrl);
    }
    let ipv6_ok = r.ipv6.as_ref().is_some_and(|s| ok(s.outcome));
    // 2. Does name resolution work (手順7-⑭)? Every name the guide resolves counts, the NGN one
    // (assv.asc.flets-east.jp, in the West assv.asc.flets-west.jp) too: a router table without
    // the flets-* entry fails it.
    let dns_step = dns_verdict(r, ipv6_ok);
    if let Some(f) = dns_step {
        return verdict(f);
    }
    if !ipv6_ok {
        return verdict(Finding::Ipv6Missing);
    }
    // 5. Is the line eligible? Then 6, by what the portal shows.
    let Some(la) = &r.lineauth else {
        return HEALTHY;
    };
    let state = LineAuthState::try_from(la.state).unwrap_or(LineAuthState::Unspecified);
    let page = if state == LineAuthState::CertUntrusted {
        LineAuthState::try_from(la.unverified_page_state).unwrap_or(LineAuthState::Unspecified)
    } else {
        state
    };
    if page == LineAuthState::IneligibleLine || la.error_code == "P11019" {
        return verdict(Finding::IneligibleLine);
    }
    if state == LineAuthState::CertUntrusted {
        return verdict(Finding::CertificateMissing);
    }
    let f = match state {
        LineAuthState::Consent => Some(Finding::ReauthRequired),
        LineAuthState::NoResponse => Some(Finding::NoResponse),
        LineAuthState::Declined | LineAuthState::NotFromPortal => Some(Finding::Declined),
        LineAuthState::Failed => Some(Finding::AuthFailed),
        LineAuthState::SystemError => Some(Finding::SystemError),
        LineAuthState::RetryLater => Some(Finding::RetryLater),
        // With or without a code the guide does not list: contact, with what the page says.
        LineAuthState::UnknownPage => Some(Finding::UnknownPage),
        LineAuthState::Unreachable => Some(Finding::PortalUnreachable),
        _ => None,
    };
    if let Some(f) = f {
        return verdict(f);
    }
    // Authenticated: if OQS web still fails, it is the OQS side (FAQ Q17).
    let web_down = r
        .http
        .iter()
        .filter(|h| h.target != oqs_proto::v1::HttpTarget::Crl as i32)
        .any(|h| !ok(h.outcome));
    if web_down {
        return verdict(Finding::OqsSide);
    }
    HEALTHY
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::*;

    const URL: &str = "https://www.lineauth.mnw/";

    fn dns(role: ResolverRole, ok: bool) -> DnsProbe {
        DnsProbe {
            outcome: if ok { Outcome::Ok } else { Outcome::Failed } as i32,
            name: "www.lineauth.mnw".into(),
            record_type: RecordType::Aaaa as i32,
            role: role as i32,
            server: "system".into(),
            ..Default::default()
        }
    }

    fn healthy() -> Report {
        Report {
            seq: 1,
            ipv6: Some(Ipv6State {
                outcome: Outcome::Ok as i32,
                dns_mode: DnsServerMode::Router as i32,
                ..Default::default()
            }),
            dns: vec![
                dns(ResolverRole::System, true),
                dns(ResolverRole::NwBase, true),
            ],
            lineauth: Some(LineAuthProbe {
                outcome: Outcome::Ok as i32,
                state: LineAuthState::AlreadyAuthenticated as i32,
                tls_trusted: true,
                ..Default::default()
            }),
            http: vec![HttpProbe {
                outcome: Outcome::Ok as i32,
                target: HttpTarget::OqsWebProduction as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn step(r: &Report) -> (Option<u8>, Option<Finding>) {
        let d = diagnose(r, URL);
        (d.step, d.finding)
    }

    #[test]
    fn remedies_name_what_the_guide_names() {
        let v4 = verdict(Finding::Ipv6Missing);
        for needle in [
            "v6オプション",
            "P6 手順2-①",
            "上位",
            "0120-116-116",
            "P4 手順1",
        ] {
            assert!(v4.remedy_ja.contains(needle), "step 4 lacks {needle}");
        }
        assert!(verdict(Finding::DnsSettings)
            .guide_page
            .contains("P14 手順6-⑬"));
        assert!(verdict(Finding::RouterDnsTable)
            .remedy_ja
            .contains("ひかり電話"));
        let line = verdict(Finding::NwBaseUnreachable);
        assert!(line.remedy_ja.contains("UTM") && !line.remedy_ja.contains("上位"));
        let q12 = verdict(Finding::AuthFailed);
        assert!(q12.remedy_ja.contains("IPv6アドレス") && q12.remedy_ja.contains("日時"));
    }

    #[test]
    fn a_cop_customer_id_with_p11019_may_be_b_flets() {
        assert!(customer_id_hint(Finding::IneligibleLine, "COP01234567")
            .unwrap()
            .0
            .contains("Bフレッツ"));
        assert!(customer_id_hint(Finding::IneligibleLine, "CAF0123456789").is_none());
        assert!(customer_id_hint(Finding::IneligibleLine, "COP0123").is_none());
        assert!(customer_id_hint(Finding::AuthFailed, "COP01234567").is_none());
        assert!(customer_id_hint(Finding::IneligibleLine, "COPあいうえ").is_none());
    }

    #[test]
    fn healthy_has_no_step() {
        assert_eq!(step(&healthy()), (None, None));
    }

    #[test]
    fn step_1_wrong_url() {
        assert_eq!(
            diagnose(&healthy(), "https://lineauth.example/").step,
            Some(1)
        );
        assert_eq!(
            diagnose(&healthy(), "http://www.lineauth.mnw/").step,
            Some(1)
        );
    }

    #[test]
    fn step_3_router_table_when_only_the_system_resolver_fails() {
        let mut r = healthy();
        r.dns = vec![
            dns(ResolverRole::System, false),
            dns(ResolverRole::NwBase, true),
        ];
        assert_eq!(step(&r), (Some(3), Some(Finding::RouterDnsTable)));
    }

    #[test]
    fn step_3_dns_settings_when_no_server_is_configured() {
        let mut r = healthy();
        r.dns = vec![
            dns(ResolverRole::System, false),
            dns(ResolverRole::NwBase, false),
        ];
        r.ipv6.as_mut().unwrap().dns_mode = DnsServerMode::None as i32;
        assert_eq!(step(&r), (Some(3), Some(Finding::DnsSettings)));
    }

    #[test]
    fn step_3_a_router_table_without_the_ngn_entry_is_a_dns_failure() {
        let mut r = healthy();
        let ngn = |role, ok| DnsProbe {
            name: "assv.asc.flets-east.jp".into(),
            ..dns(role, ok)
        };
        r.dns.push(ngn(ResolverRole::System, false));
        r.dns.push(DnsProbe {
            role: ResolverRole::Ngn as i32,
            ..ngn(ResolverRole::Ngn, true)
        });
        assert_eq!(step(&r), (Some(3), Some(Finding::RouterDnsTable)));
    }

    #[test]
    fn step_3_the_terminals_own_setting_comes_before_the_router_table() {
        // A public resolver configured on the terminal: the NW-base servers answer directly, yet
        // the router's table is not what is wrong (手順5', 手順6-⑬).
        let mut r = healthy();
        r.dns = vec![
            dns(ResolverRole::System, false),
            dns(ResolverRole::NwBase, true),
        ];
        r.ipv6.as_mut().unwrap().dns_mode = DnsServerMode::Other as i32;
        assert_eq!(step(&r), (Some(3), Some(Finding::DnsSettings)));
        r.ipv6.as_mut().unwrap().dns_mode = DnsServerMode::Router as i32;
        assert_eq!(step(&r), (Some(3), Some(Finding::RouterDnsTable)));
    }

    #[test]
    fn step_3_a_truncated_answer_is_the_routers_relay() {
        let mut r = healthy();
        r.dns = vec![
            DnsProbe {
                truncated: true,
                name: "pweb.base.oqs-pdl.org".into(),
                ..dns(ResolverRole::System, false)
            },
            dns(ResolverRole::System, true),
            DnsProbe {
                name: "pweb.base.oqs-pdl.org".into(),
                ..dns(ResolverRole::NwBase, true)
            },
        ];
        assert_eq!(step(&r), (Some(3), Some(Finding::DnsTruncated)));
        assert!(verdict(Finding::DnsTruncated).remedy_ja.contains("EDNS0"));
    }

    #[test]
    fn step_4_ipv6_missing_and_nw_base_unreachable() {
        let mut r = healthy();
        r.ipv6.as_mut().unwrap().outcome = Outcome::Failed as i32;
        r.dns = vec![
            dns(ResolverRole::System, false),
            dns(ResolverRole::NwBase, false),
        ];
        assert_eq!(step(&r), (Some(4), Some(Finding::Ipv6Missing)));
        let mut r = healthy();
        r.dns = vec![
            dns(ResolverRole::System, false),
            dns(ResolverRole::NwBase, false),
        ];
        assert_eq!(step(&r), (Some(4), Some(Finding::NwBaseUnreachable)));
    }

    #[test]
    fn step_5_p11019_even_behind_a_missing_certificate() {
        let mut r = healthy();
        let la = r.lineauth.as_mut().unwrap();
        la.state = LineAuthState::IneligibleLine as i32;
        la.error_code = "P11019".into();
        assert_eq!(step(&r), (Some(5), Some(Finding::IneligibleLine)));
        let la = r.lineauth.as_mut().unwrap();
        la.state = LineAuthState::CertUntrusted as i32;
        la.unverified_page_state = LineAuthState::IneligibleLine as i32;
        assert_eq!(step(&r).0, Some(5));
    }

    #[test]
    fn step_6_by_what_the_portal_shows() {
        for (state, finding) in [
            (LineAuthState::Consent, Finding::ReauthRequired),
            (LineAuthState::NoResponse, Finding::NoResponse),
            (LineAuthState::CertUntrusted, Finding::CertificateMissing),
            (LineAuthState::Declined, Finding::Declined),
            (LineAuthState::Failed, Finding::AuthFailed),
            (LineAuthState::SystemError, Finding::SystemError),
            (LineAuthState::RetryLater, Finding::RetryLater),
            (LineAuthState::UnknownPage, Finding::UnknownPage),
            (LineAuthState::NotFromPortal, Finding::Declined),
            (LineAuthState::Unreachable, Finding::PortalUnreachable),
        ] {
            let mut r = healthy();
            r.lineauth.as_mut().unwrap().state = state as i32;
            assert_eq!(step(&r), (Some(6), Some(finding)), "{state:?}");
        }
        let mut r = healthy();
        r.http[0].outcome = Outcome::TimedOut as i32;
        assert_eq!(step(&r), (Some(6), Some(Finding::OqsSide)));
    }

    #[test]
    fn every_verdict_names_a_page_and_both_languages() {
        use Finding::*;
        for f in [
            WrongUrl,
            RouterDnsTable,
            DnsSettings,
            DnsTruncated,
            Ipv6Missing,
            NwBaseUnreachable,
            IneligibleLine,
            CertificateMissing,
            ReauthRequired,
            NoResponse,
            Declined,
            AuthFailed,
            SystemError,
            RetryLater,
            UnknownPage,
            OqsSide,
            PortalUnreachable,
        ] {
            let d = verdict(f);
            assert!(
                !d.guide_page.is_empty() && !d.remedy_ja.is_empty() && !d.remedy_en.is_empty(),
                "{f:?}"
            );
        }
    }

    /// An IPv4 (PPPoE) site: no IPv6 state, no portal, names answered with A records only. The
    /// guide's tree would say step 4 (no IPv6); the method's verdict is healthy, and says the
    /// method. A name answered by neither type, then OQS web down, are found without a step.
    #[test]
    fn another_connection_method_is_judged_only_by_what_applies_to_it() {
        let name = |n: &str, rtype: RecordType, ok: bool| DnsProbe {
            outcome: if ok { Outcome::Ok } else { Outcome::Failed } as i32,
            name: n.into(),
            record_type: rtype as i32,
            role: ResolverRole::System as i32,
            server: "system".into(),
            ..Default::default()
        };
        let mut r = Report {
            seq: 1,
            connection: ConnectionMethod::Ipv4Pppoe as i32,
            dns: vec![
                name("pweb.base.oqs-pdl.org", RecordType::Aaaa, false),
                name("pweb.base.oqs-pdl.org", RecordType::A, true),
            ],
            http: vec![HttpProbe {
                outcome: Outcome::Ok as i32,
                target: HttpTarget::OqsWebProduction as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = diagnose(&r, URL);
        assert_eq!((d.step, d.finding), (None, None));
        assert_eq!(d.connection, Connection::Ipv4Pppoe);
        // The same report as the guide's method is step 4: what the method changes.
        r.connection = ConnectionMethod::Unspecified as i32;
        assert_eq!(step(&r), (Some(4), Some(Finding::Ipv6Missing)));
        assert_eq!(diagnose(&r, URL).connection, Connection::FletsIpoe);

        r.connection = ConnectionMethod::Ipsec as i32;
        r.http[0].outcome = Outcome::Failed as i32;
        let d = diagnose(&r, URL);
        assert_eq!((d.step, d.finding), (None, Some(Finding::OffGuideOqsWeb)));
        assert_eq!((d.connection, d.guide_page), (Connection::Ipsec, ""));
        r.dns[1].outcome = Outcome::TimedOut as i32;
        let d = diagnose(&r, URL);
        assert_eq!(d.finding, Some(Finding::OffGuideDns));
        assert!(d.remedy_ja.contains("対象外") && d.remedy_en.contains("not the guide's"));
        assert_eq!(off_guide_unresolved(&r), vec!["pweb.base.oqs-pdl.org"]);
        assert!(is_off_guide(Finding::OffGuideDns) && !is_off_guide(Finding::Ipv6Missing));
    }
}
