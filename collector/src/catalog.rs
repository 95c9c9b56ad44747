//! The catalogue: every check kind and every flag, once, with everything the rest of the product
//! says about it — the name (the serde name, the metric label, the API's word), the labels in
//! Japanese and English, the unit and how its timeline is drawn (checks), the severity, what it
//! means, the guide's step and page and the alerts that page for it (flags).
//!
//! The enums [`Check`] and [`Flag`] are generated from these tables, so a kind cannot exist without
//! its entry. Metrics HELP, the API (`GET /api/catalog`), the dashboard (which fetches the
//! catalogue and keeps no list of its own) and the deployment's tests read them.
//!
//! Data only: must never hold engine logic (when a flag is raised is `flags`; what a check's
//! sample holds is `checks`) nor change a name — names are persisted (store keys, state JSON,
//! metric labels, alert rules).

use oqs_guide::diagnosis::{self, Finding};
use serde::{Deserialize, Serialize};

/// How a flag is shown: critical flags are red in the dashboard and sort first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
}

/// What a raised flag means for a site's monthly availability (月次稼働率, `availability.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// The OQS connection is not usable (the guide's tree fails): the time is an outage.
    Down,
    /// Nothing is known of the site (its agent is silent): the time is neither up nor down.
    NoData,
    /// The connection still works (a warning about something else: the clock, the store).
    Up,
}

/// The `severity` label of a shipped alert rule (what Alertmanager routes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Critical,
    Warning,
    Info,
}

impl AlertSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Critical => "critical",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Info => "info",
        }
    }
}

/// A shipped alert rule on a flag: on the flag itself (`detail: None`, over `oqs_site_flag`) or on
/// one of its bounded details (over `oqs_site_flag_detail`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Alert {
    pub name: &'static str,
    pub detail: Option<&'static str>,
    pub severity: AlertSeverity,
    /// The guide's finding this alert stands for when it is not its flag's (a detail alert:
    /// P11019 is the ineligible line, `upstream` DNS the NW-base unreachable).
    #[serde(skip)]
    pub finding: Option<Finding>,
}

impl Alert {
    /// The same alert, standing for `f`.
    const fn because(mut self, f: Finding) -> Alert {
        self.finding = Some(f);
        self
    }
}

impl FlagInfo {
    /// The guide's finding an alert of this flag stands for (its own, else the flag's).
    pub fn finding_of(&self, alert: &Alert) -> Option<Finding> {
        alert.finding.or(match self.guide {
            Guide::Finding(f) => Some(f),
            Guide::Page { .. } => None,
        })
    }
}

/// Where the guide speaks of a flag: through the diagnosis finding it corresponds to (its step
/// and page are the finding's verdict, not restated here), or a page of its own.
#[derive(Debug, Clone, Copy)]
pub enum Guide {
    Finding(Finding),
    Page {
        step: Option<u8>,
        page: &'static str,
    },
}

impl Guide {
    /// The guide's step (1–6) and page.
    pub fn step_and_page(self) -> (Option<u8>, &'static str) {
        match self {
            Guide::Finding(f) => {
                let v = diagnosis::verdict(f);
                (v.step, v.guide_page)
            }
            Guide::Page { step, page } => (step, page),
        }
    }
}

/// One flag's entry.
#[derive(Debug, Clone, Copy)]
pub struct FlagInfo {
    pub flag: Flag,
    pub name: &'static str,
    pub severity: Severity,
    /// What the flag raised means for the site's monthly availability.
    pub availability: Availability,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    pub meaning: &'static str,
    /// The dashboard's badge shows the flag's detail after its label (the portal's code).
    pub badge_detail: bool,
    pub guide: Guide,
    pub alerts: &'static [Alert],
}

/// How the site page draws a check's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timeline {
    /// The line's /64 over time (a band per prefix), per terminal.
    Prefix,
    /// The portal's state over time, per terminal.
    States,
    /// Latency per DNS server.
    LatencyPerServer,
    /// Up/down bands and a latency line, one row per check.
    UpDown,
}

/// One check kind's entry.
#[derive(Debug, Clone, Copy)]
pub struct CheckInfo {
    pub check: Check,
    pub name: &'static str,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    /// The unit of the check's latency (`oqs_check_duration_seconds` is in seconds, the API's
    /// `latency_ms` in this).
    pub unit: &'static str,
    pub timeline: Timeline,
    pub meaning: &'static str,
}

macro_rules! checks {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal {
        ja: $ja:literal, en: $en:literal, unit: $unit:literal, timeline: $tl:ident $(,)?
    } )*) => {
        /// A check kind, as the history API and the metrics name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Check { $( $(#[doc = $doc])* $variant, )* }

        impl Check {
            /// Every check kind, in the catalogue's order.
            pub const ALL: [Check; [$($name),*].len()] = [$(Check::$variant),*];
        }

        /// Every check kind's entry, in [`Check::ALL`] order.
        pub static CHECKS: [CheckInfo; [$($name),*].len()] = [$(CheckInfo {
            check: Check::$variant,
            name: $name,
            label_ja: $ja,
            label_en: $en,
            unit: $unit,
            timeline: Timeline::$tl,
            meaning: concat!($($doc),*),
        }),*];
    };
}

macro_rules! flags {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal {
        $sev:ident, avail: $avail:ident, ja: $ja:literal, en: $en:literal, $(badge_detail: $bd:literal,)? guide: $guide:expr,
        alerts: [$($alert:expr),* $(,)?] $(,)?
    } )*) => {
        /// What the NOC is told about a site. Declared most severe first: the order the overview
        /// sorts by.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Flag { $( $(#[doc = $doc])* $variant, )* }

        impl Flag {
            /// Every flag, most severe first.
            pub const ALL: [Flag; [$($name),*].len()] = [$(Flag::$variant),*];
        }

        /// Every flag's entry, in [`Flag::ALL`] order.
        pub static FLAGS: [FlagInfo; [$($name),*].len()] = [$(FlagInfo {
            flag: Flag::$variant,
            name: $name,
            severity: Severity::$sev,
            availability: Availability::$avail,
            label_ja: $ja,
            label_en: $en,
            meaning: concat!($($doc),*),
            badge_detail: false $(|| $bd)?,
            guide: $guide,
            alerts: &[$($alert),*],
        }),*];
    };
}

checks! {
    /// The terminal's IPv6 addresses, prefix and default route (guide step 4).
    Ipv6 = "ipv6" { ja: "IPv6", en: "IPv6", unit: "ms", timeline: Prefix }
    /// OQS names through the system resolver and straight at the NW-base servers (step 3).
    Dns = "dns" { ja: "DNS", en: "DNS", unit: "ms", timeline: LatencyPerServer }
    /// The line-authentication portal's page and code (steps 1, 5, 6).
    Lineauth = "lineauth" { ja: "回線認証", en: "Line authentication", unit: "ms", timeline: States }
    /// The OQS web's login page over HTTPS (3-2).
    OqsWeb = "oqs_web" { ja: "オンライン資格確認Web", en: "OQS web", unit: "ms", timeline: UpDown }
    /// The certificate revocation list download.
    Crl = "crl" { ja: "CRL", en: "CRL", unit: "ms", timeline: UpDown }
    /// SNTP against ntp.base.oqs-pdl.org: reachability and the terminal's clock offset.
    Ntp = "ntp" { ja: "NTP", en: "NTP", unit: "ms", timeline: UpDown }
    /// The certificates the OQS connection depends on (the OQS connection certificate, the
    /// terminal's electronic certificate) and when they expire.
    Certs = "certs" { ja: "証明書", en: "Certificates", unit: "ms", timeline: UpDown }
}

const fn on_flag(name: &'static str, severity: AlertSeverity) -> Alert {
    Alert {
        name,
        detail: None,
        severity,
        finding: None,
    }
}

const fn on_detail(name: &'static str, detail: &'static str, severity: AlertSeverity) -> Alert {
    Alert {
        name,
        detail: Some(detail),
        severity,
        finding: None,
    }
}

const fn page(step: Option<u8>, page: &'static str) -> Guide {
    Guide::Page { step, page }
}

use AlertSeverity::{Critical as A_CRIT, Info as A_INFO, Warning as A_WARN};

flags! {
    /// P11019, P32031 or any other code on the portal.
    LineauthError = "lineauth_error" {
        Critical, avail: Down, ja: "回線認証エラー", en: "Line-auth error", badge_detail: true,
        guide: page(Some(5), "P16-17, FAQ Q9, FAQ Q11"),
        alerts: [
            on_detail("LineAuthIneligibleLine", "P11019", A_CRIT).because(Finding::IneligibleLine),
            on_detail("LineAuthNoResponse", "P32031", A_WARN).because(Finding::NoResponse),
            on_detail("LineAuthErrorOther", "other", A_WARN).because(Finding::RetryLater),
        ],
    }
    /// An agent's Hello says the collector acknowledged more than its store holds: the store lost
    /// acknowledged reports (a damaged disk, a restore from an older backup); held like
    /// `terminal_id_conflict`.
    StoreLostReports = "store_lost_reports" {
        Critical, avail: Up, ja: "受信済みデータ消失", en: "Store lost acked reports",
        guide: page(None, "docs/SECURITY.md, README 'The store'"),
        alerts: [on_flag("StoreLostReports", A_CRIT)],
    }
    /// Another machine reports with the same site and terminal ids (a different report under a
    /// stored seq); held for `conflict_hold_secs` after the last one.
    TerminalIdConflict = "terminal_id_conflict" {
        Critical, avail: Up, ja: "端末ID重複", en: "Terminal id conflict",
        guide: page(None, "README 'Enrollment'"),
        alerts: [on_flag("TerminalIdConflict", A_CRIT)],
    }
    /// 回線認証に失敗しました (FAQ Q12): the customer ID is not registered, or another line.
    LineauthFailed = "lineauth_failed" {
        Critical, avail: Down, ja: "回線認証失敗", en: "Line-auth failed",
        guide: Guide::Finding(Finding::AuthFailed),
        alerts: [on_flag("LineAuthFailed", A_CRIT)],
    }
    /// The consent page shows where the site had been authenticated.
    ReauthRequired = "reauth_required" {
        Critical, avail: Down, ja: "再認証が必要", en: "Re-auth required",
        guide: Guide::Finding(Finding::ReauthRequired),
        alerts: [on_flag("ReauthRequired", A_CRIT)],
    }
    /// No global IPv6 address or no IPv6 default route.
    Ipv6Missing = "ipv6_missing" {
        Critical, avail: Down, ja: "IPv6未取得", en: "IPv6 missing",
        guide: Guide::Finding(Finding::Ipv6Missing),
        alerts: [on_flag("Ipv6Missing", A_CRIT)],
    }
    /// The system resolver fails for OQS names (detail: `terminal_settings`, `truncated`,
    /// `router_table` or `upstream`; `resolver` on a connection method outside the guide).
    DnsFailing = "dns_failing" {
        Critical, avail: Down, ja: "DNS異常", en: "DNS failing",
        guide: Guide::Finding(Finding::RouterDnsTable),
        alerts: [
            on_detail("DnsTerminalSettings", "terminal_settings", A_CRIT)
                .because(Finding::DnsSettings),
            on_detail("DnsAnswerTruncated", "truncated", A_CRIT).because(Finding::DnsTruncated),
            on_detail("DnsRouterTableWrong", "router_table", A_CRIT),
            on_detail("DnsResolutionFailing", "upstream", A_CRIT)
                .because(Finding::NwBaseUnreachable),
            on_detail("DnsResolverFailing", "resolver", A_CRIT).because(Finding::OffGuideDns),
        ],
    }
    /// The OQS connection certificate is not trusted (not installed, FAQ Q8).
    CertUntrusted = "cert_untrusted" {
        Critical, avail: Down, ja: "証明書未導入", en: "Cert untrusted",
        guide: Guide::Finding(Finding::CertificateMissing),
        alerts: [on_flag("CertUntrusted", A_CRIT)],
    }
    /// The line's /64 differs from the last one seen (cleared after a hold time).
    PrefixChanged = "prefix_changed" {
        Warning, avail: Up, ja: "プレフィックス変更", en: "Prefix changed",
        guide: page(Some(6), "FAQ Q17"),
        alerts: [on_flag("PrefixChanged", A_WARN)],
    }
    /// システムエラーが発生しました (FAQ Q13): the portal may have a fault.
    LineauthSystemError = "lineauth_system_error" {
        Warning, avail: Down, ja: "回線認証システムエラー", en: "Portal system error",
        guide: Guide::Finding(Finding::SystemError),
        alerts: [on_flag("LineAuthSystemError", A_WARN)],
    }
    /// The portal gives no page although IPv6 works and its name resolves.
    LineauthUnreachable = "lineauth_unreachable" {
        Warning, avail: Down, ja: "回線認証サイト不達", en: "Portal unreachable",
        guide: Guide::Finding(Finding::PortalUnreachable),
        alerts: [on_flag("LineAuthPortalUnreachable", A_WARN)],
    }
    /// OQS web does not answer although IPv6 and name resolution work.
    OqsWebUnreachable = "oqs_web_unreachable" {
        Warning, avail: Down, ja: "OQS Web不達", en: "OQS web unreachable",
        guide: Guide::Finding(Finding::OqsSide),
        alerts: [on_flag("OqsWebUnreachable", A_WARN)],
    }
    /// 希望しない was chosen, or the back button was used (FAQ Q10); detail says which.
    LineauthDeclined = "lineauth_declined" {
        Warning, avail: Down, ja: "「希望しない」選択", en: "Declined / not from portal",
        guide: Guide::Finding(Finding::Declined),
        alerts: [on_flag("LineAuthDeclined", A_WARN)],
    }
    /// 時間を置いて再度試してください (P17).
    LineauthRetryLater = "lineauth_retry_later" {
        Warning, avail: Down, ja: "回線認証 再試行待ち", en: "Portal: retry later",
        guide: Guide::Finding(Finding::RetryLater),
        alerts: [on_flag("LineAuthRetryLater", A_WARN)],
    }
    /// A page none of the guide's texts match, without a code (with one: `lineauth_error`).
    LineauthUnknownPage = "lineauth_unknown_page" {
        Warning, avail: Down, ja: "回線認証 不明な画面", en: "Portal: unknown page",
        guide: Guide::Finding(Finding::UnknownPage),
        alerts: [on_flag("LineAuthUnknownPage", A_WARN)],
    }
    /// No report for several intervals.
    AgentSilent = "agent_silent" {
        Warning, avail: NoData, ja: "エージェント無応答", en: "Agent silent",
        guide: page(None, "README 'The agent'"),
        alerts: [on_flag("AgentSilent", A_WARN)],
    }
    /// The collector refused a report of a terminal as invalid (detail: the terminal and the
    /// reason, which names the field); the agent keeps such a report and tries it again later
    /// rather than dropping report after report. Held `conflict_hold_secs` after the last one.
    ReportsRefused = "reports_refused" {
        Warning, avail: Up, ja: "報告の受付拒否", en: "Reports refused",
        guide: page(None, "docs/SECURITY.md 'Hostile or broken peers'"),
        alerts: [on_flag("ReportsRefused", A_WARN)],
    }
    /// The global address appears/disappears or changes repeatedly (FAQ Q1).
    Flapping = "flapping" {
        Warning, avail: Up, ja: "アドレス不安定", en: "Flapping",
        guide: page(Some(4), "FAQ Q1"),
        alerts: [on_flag("Flapping", A_WARN)],
    }
    /// A certificate the OQS connection depends on expires within `flags.cert_warn_days` (90,
    /// when the MPKI client starts warning); detail: the days left (0 or less: expired).
    CertExpiring = "cert_expiring" {
        Warning, avail: Up, ja: "証明書期限", en: "Cert expiring", badge_detail: true,
        guide: page(None, "FAQ Q8; 電子証明書の有効期間は3年3か月"),
        alerts: [
            on_detail("CertExpiring30d", "30", A_WARN),
            on_detail("CertExpiring7d", "7", A_CRIT),
        ],
    }
    /// The terminal's clock is off from ntp.base.oqs-pdl.org.
    NtpSkew = "ntp_skew" {
        Warning, avail: Up, ja: "時刻ずれ", en: "NTP skew",
        guide: page(None, "P18 3-2"),
        alerts: [on_flag("NtpSkew", A_INFO)],
    }
    /// A terminal's reports arrived more than `flags.late_after_secs` after they were made: its
    /// way to the collector (a proxy, the relay PC, the network) was cut or is slow, and the agent
    /// kept them meanwhile (detail: the terminal, how late, by which way). Held
    /// `flags.late_hold_secs` after the last late report.
    ReportsLate = "reports_late" {
        Warning, avail: Up, ja: "報告の遅延", en: "Reports late",
        guide: page(None, "docs/uplink.md 'When a way fails'"),
        alerts: [on_flag("ReportsLate", A_WARN)],
    }
}

impl Flag {
    /// This flag's catalogue entry.
    pub fn info(self) -> &'static FlagInfo {
        &FLAGS[self as usize]
    }

    /// The flag's name (its serde name and metric label).
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    pub fn severity(self) -> Severity {
        self.info().severity
    }

    /// Position in [`Flag::ALL`]: lower is more severe.
    pub fn severity_rank(self) -> usize {
        self as usize
    }

    /// Parses a flag name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Flag, String> {
        FLAGS
            .iter()
            .find(|f| f.name == s)
            .map(|f| f.flag)
            .ok_or_else(|| {
                let names: Vec<_> = FLAGS.iter().map(|f| f.name).collect();
                format!("unknown flag {s:?}; one of: {}", names.join(", "))
            })
    }

    /// The names, comma-separated (HELP texts, error messages).
    pub fn names() -> String {
        FLAGS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
    }
}

impl Check {
    /// This check's catalogue entry.
    pub fn info(self) -> &'static CheckInfo {
        &CHECKS[self as usize]
    }

    /// The check's name (its serde name and metric label).
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Parses a check name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Check, String> {
        CHECKS
            .iter()
            .find(|c| c.name == s)
            .map(|c| c.check)
            .ok_or_else(|| format!("unknown check {s:?}; one of: {}", Check::names()))
    }

    /// The names, comma-separated (HELP texts, error messages).
    pub fn names() -> String {
        CHECKS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }
}

/// The catalogue as `GET /api/catalog` serves it.
#[derive(Debug, Serialize)]
pub struct CatalogView {
    pub checks: Vec<CheckView>,
    pub flags: Vec<FlagView>,
    /// The 47 prefectures in the JIS order (the overview's filter).
    pub prefectures: &'static [&'static str],
}

#[derive(Debug, Serialize)]
pub struct CheckView {
    pub name: &'static str,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    pub unit: &'static str,
    pub timeline: Timeline,
    pub meaning: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FlagView {
    pub name: &'static str,
    pub severity: Severity,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    pub meaning: &'static str,
    pub badge_detail: bool,
    pub availability: Availability,
    pub guide_step: Option<u8>,
    pub guide_page: &'static str,
    pub alerts: &'static [Alert],
}

/// The whole catalogue, for the API.
pub fn view() -> CatalogView {
    CatalogView {
        checks: CHECKS
            .iter()
            .map(|c| CheckView {
                name: c.name,
                label_ja: c.label_ja,
                label_en: c.label_en,
                unit: c.unit,
                timeline: c.timeline,
                meaning: c.meaning.trim(),
            })
            .collect(),
        flags: FLAGS
            .iter()
            .map(|f| {
                let (guide_step, guide_page) = f.guide.step_and_page();
                FlagView {
                    name: f.name,
                    severity: f.severity,
                    label_ja: f.label_ja,
                    label_en: f.label_en,
                    meaning: f.meaning.trim(),
                    badge_detail: f.badge_detail,
                    availability: f.availability,
                    guide_step,
                    guide_page,
                    alerts: f.alerts,
                }
            })
            .collect(),
        prefectures: &oqs_guide::PREFECTURES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names_and_entries_follow_the_enums() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert_eq!(f.flag as usize, i, "{}", f.name);
            assert_eq!(Flag::ALL[i], f.flag);
            assert_eq!(serde_json::to_value(f.flag).unwrap(), f.name);
            assert_eq!(Flag::parse(f.name), Ok(f.flag));
            assert!(!f.alerts.is_empty(), "{} pages nobody", f.name);
            assert!(!f.meaning.trim().is_empty(), "{}", f.name);
        }
        for (i, c) in CHECKS.iter().enumerate() {
            assert_eq!(c.check as usize, i, "{}", c.name);
            assert_eq!(serde_json::to_value(c.check).unwrap(), c.name);
            assert_eq!(Check::parse(c.name), Ok(c.check));
        }
        assert!(Check::parse("dnss").unwrap_err().contains("oqs_web"));
        assert!(Flag::parse("nope").unwrap_err().contains("ntp_skew"));
    }

    #[test]
    fn critical_flags_sort_before_warnings() {
        let first_warning = FLAGS
            .iter()
            .position(|f| f.severity == Severity::Warning)
            .unwrap();
        assert!(FLAGS[first_warning..]
            .iter()
            .all(|f| f.severity == Severity::Warning));
        // A flag's strongest page is at least as loud as how the dashboard shows it.
        for f in &FLAGS {
            let loudest = f
                .alerts
                .iter()
                .map(|a| a.severity)
                .fold(A_INFO, |m, s| match (m, s) {
                    (A_CRIT, _) | (_, A_CRIT) => A_CRIT,
                    (A_WARN, _) | (_, A_WARN) => A_WARN,
                    _ => A_INFO,
                });
            if f.severity == Severity::Critical {
                assert_eq!(loudest, A_CRIT, "{} is critical but never pages so", f.name);
            }
        }
    }

    #[test]
    fn flags_with_a_finding_take_its_step_and_page() {
        let (step, page) = Flag::LineauthFailed.info().guide.step_and_page();
        let v = diagnosis::verdict(Finding::AuthFailed);
        assert_eq!((step, page), (v.step, v.guide_page));
        for f in &FLAGS {
            let (_, page) = f.guide.step_and_page();
            assert!(!page.is_empty(), "{} names no page", f.name);
        }
    }

    #[test]
    fn the_view_serializes_every_entry() {
        let v = serde_json::to_value(view()).unwrap();
        assert_eq!(v["flags"].as_array().unwrap().len(), FLAGS.len());
        assert_eq!(v["checks"].as_array().unwrap().len(), CHECKS.len());
        assert_eq!(v["flags"][0]["severity"], "critical");
        assert_eq!(v["checks"][0]["timeline"], "prefix");
        assert_eq!(v["prefectures"].as_array().unwrap().len(), 47);
    }
}
