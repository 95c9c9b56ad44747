//! The guide's troubleshooting tree (P30, 「回線認証サイトに接続できない場合の切り分け方法」; DOMAIN.md
//! §9) over one round's results: the first step that fails, its remedy in Japanese and English, and
//! the guide page. FAQ Q3 (DNS settings most often, then an ineligible line) and Q17 (consent page
//! means re-authenticate) refine it.
//!
//! Pure: a report in, a diagnosis out, so every step is unit-tested. Must never invent a remedy
//! the guide does not give.

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
    /// Step 6 (FAQ Q13, P17): the portal reports a system error or asks to retry later.
    PortalError,
    /// Step 6 (FAQ Q17): authenticated, but OQS web does not answer: the OQS side.
    OqsSide,
    /// Step 6: the portal cannot be reached although name resolution and IPv6 work.
    PortalUnreachable,
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
}

/// The verdict when every step passes.
pub const HEALTHY: Diagnosis = Diagnosis {
    step: None,
    finding: None,
    remedy_ja: "問題は見つかりませんでした。",
    remedy_en: "No problem found.",
    guide_page: "",
};

/// The guide's verdict for a finding: its step, remedy and page.
pub fn verdict(f: Finding) -> Diagnosis {
    use Finding::*;
    let (step, ja, en, page) = match f {
        WrongUrl => (1, "回線認証サイトのURLを https://www.lineauth.mnw に直してください。", "Use the line-authentication URL https://www.lineauth.mnw.", "P16 手順1-②"),
        RouterDnsTable => (3, "ルータのDNS設定（ローカルドメイン問合せテーブル）に、オンライン資格確認NW基盤のドメインとDNSサーバーを設定してください。", "Fix the router's DNS table (local-domain query table): send the OQS domains to the NW-base DNS servers.", "P7 手順3-②"),
        DnsSettings => (3, "端末のDNSサーバー設定を確認してください（通常はルータのアドレスを自動取得）。", "Check the terminal's DNS server settings (normally the router's address, obtained automatically).", "P13 手順6-⑬"),
        Ipv6Missing => (4, "端末のIPv6設定を確認してください。続いて(1)フレッツ・v6オプションの契約、(2)ルータのIPv6再配布設定（RA/DHCP-PD）を確認してください。", "Check the terminal's IPv6 settings; then (1) the FLET'S v6 option contract, (2) the router's IPv6 re-distribution (RA / DHCP-PD).", "P8 手順4, P6 手順2"),
        NwBaseUnreachable => (4, "IPv6は取得できていますがDNSに応答がありません。フレッツ・v6オプションの契約、ルータの再配布設定、上位ルータのDNSがNW基盤のDNSサーバーを直接向いているかを確認してください。", "IPv6 is up but no DNS server answers: check the v6 option contract, the router's re-distribution, and that an upstream router's DNS points straight at the NW-base servers.", "P30 4-3, P5 注意"),
        IneligibleLine => (5, "接続対象の回線（フレッツ 光ネクスト等）を用意し、お客さまIDを再申請のうえ、再度回線認証を行ってください。", "Get an eligible line (FLET'S Hikari Next etc.), re-apply the customer ID, then redo line authentication.", "P4 手順1, FAQ Q9"),
        CertificateMissing => (6, "オンライン資格確認接続用の証明書をインストールしてください。", "Install the OQS connection certificate.", "FAQ Q8 (P22)"),
        ReauthRequired => (6, "回線認証サイトで「希望する」を押して回線認証を行ってください（IPv6アドレスが変わった可能性があります）。", "Press 希望する on the line-authentication portal to authenticate (again); the IPv6 address may have changed.", "P16 手順1-③, FAQ Q17"),
        NoResponse => (6, "時間を置いて再度回線認証を行ってください。解決しない場合はお客さまIDとIPv6アドレスを確認のうえお問合せください。", "Retry line authentication later; if it persists, contact support with the customer ID and IPv6 address.", "FAQ Q11"),
        Declined => (6, "ブラウザの戻るボタンではなく、再度回線認証サイトにアクセスし「希望する」を選択してください。", "Open the portal again (not with the back button) and choose 希望する.", "FAQ Q10"),
        AuthFailed => (6, "申請したお客さまIDと回線を確認してください。", "Check the customer ID applied for and the line in use.", "FAQ Q12"),
        PortalError => (6, "時間を置いて再度試し、解決しない場合はお問合せください。", "Retry later; if it persists, contact support.", "P17, FAQ Q13"),
        OqsSide => (6, "回線認証済みです。オンライン資格確認側の影響が考えられるため、お問合せください。", "The line is authenticated: the problem is on the OQS side; contact support.", "FAQ Q17"),
        PortalUnreachable => (6, "お客さまIDとIPv6アドレスを用意してお問合せください（ネットワークサポートデスク 0120-220-571）。", "Contact support (Network Support Desk 0120-220-571) with the customer ID and IPv6 address ready.", "P30, FAQ Q20"),
    };
    Diagnosis {
        step: Some(step),
        finding: Some(f),
        remedy_ja: ja,
        remedy_en: en,
        guide_page: page,
    }
}

fn ok(o: i32) -> bool {
    o == Outcome::Ok as i32
}

/// Walks the tree over one round. `lineauth_host` is the host of the configured portal URL.
pub fn diagnose(r: &Report, lineauth_url: &str) -> Diagnosis {
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
    let nw_aaaa = |role: ResolverRole| {
        r.dns
            .iter()
            .filter(|p| {
                p.role == role as i32 && p.record_type == oqs_proto::v1::RecordType::Aaaa as i32
            })
            .filter(|p| !p.name.contains("flets-"))
            .collect::<Vec<_>>()
    };
    let system = nw_aaaa(ResolverRole::System);
    let direct = nw_aaaa(ResolverRole::NwBase);
    // 2. Does name resolution work (手順7-⑭)?
    let resolution_ok = !system.is_empty() && system.iter().all(|p| ok(p.outcome));
    if !resolution_ok {
        // 3. Are the DNS settings right? 4. Is IPv6 acquired?
        if !ipv6_ok {
            return verdict(Finding::Ipv6Missing);
        }
        if !direct.is_empty() && direct.iter().any(|p| ok(p.outcome)) {
            return verdict(Finding::RouterDnsTable);
        }
        let mode = r.ipv6.as_ref().map(|s| s.dns_mode).unwrap_or(0);
        if mode == oqs_proto::v1::DnsServerMode::None as i32
            || mode == oqs_proto::v1::DnsServerMode::Other as i32
        {
            return verdict(Finding::DnsSettings);
        }
        return verdict(Finding::NwBaseUnreachable);
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
        LineAuthState::SystemError | LineAuthState::RetryLater => Some(Finding::PortalError),
        LineAuthState::Unreachable | LineAuthState::UnknownPage => Some(Finding::PortalUnreachable),
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
            (LineAuthState::SystemError, Finding::PortalError),
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
            Ipv6Missing,
            NwBaseUnreachable,
            IneligibleLine,
            CertificateMissing,
            ReauthRequired,
            NoResponse,
            Declined,
            AuthFailed,
            PortalError,
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
}
