//! Each condition flag's verdict on one report — where a report's content becomes "bad, with this
//! detail" or "good" for every flag judged per report ([`Flag::CONDITIONS`]). A new condition flag
//! adds its rule here; the hysteresis, events and aggregation are the engine's ([`super`]).
//!
//! Pure: must never keep state or read the clock.

use super::*;

/// At most this many characters of a page excerpt or probe error go into a flag's detail.
const DETAIL_CHARS: usize = 160;

/// `text` cut to `max` characters (never inside one), with an ellipsis when cut.
pub(super) fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A span as a NOC reads it: "12 min", "3.0 h", "2.5 days".
pub(super) fn duration_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    if secs < 3600 {
        format!("{} min", (secs + 59) / 60)
    } else if secs < 2 * 86_400 {
        format!("{:.1} h", secs as f64 / 3600.0)
    } else {
        format!("{:.1} days", secs as f64 / 86_400.0)
    }
}

/// A condition flag's verdict on one report: `Some(detail)` when bad.
pub(super) type Verdicts = BTreeMap<Flag, Option<String>>;

fn ok(o: i32) -> bool {
    o == Outcome::Ok as i32
}

/// The page state the portal showed: the verified one, or when the certificate is untrusted, the
/// one read without verification.
pub(super) fn page_state(la: &oqs_proto::v1::LineAuthProbe) -> LineAuthState {
    let s = LineAuthState::try_from(la.state).unwrap_or(LineAuthState::Unspecified);
    if s == LineAuthState::CertUntrusted {
        LineAuthState::try_from(la.unverified_page_state).unwrap_or(LineAuthState::Unspecified)
    } else {
        s
    }
}

impl Engine {
    /// Each condition flag's verdict on one report.
    pub(super) fn verdicts(&self, st: &SiteState, r: &Report) -> Verdicts {
        let mut v: Verdicts = Flag::CONDITIONS.iter().map(|f| (*f, None)).collect();
        let ipv6_ok = r.ipv6.as_ref().is_none_or(|s| ok(s.outcome));
        if let Some(s) = r.ipv6.as_ref().filter(|s| !ok(s.outcome)) {
            let why = if s.error.is_empty() {
                "no global IPv6 address or default route".to_owned()
            } else {
                s.error.clone()
            };
            v.insert(Flag::Ipv6Missing, Some(why));
        }
        // DNS follows IPv6: without it every query fails, and that is one problem, not two. Every
        // name counts, the NGN one too (a router table without the flets-* entry).
        let system: Vec<_> = r
            .dns
            .iter()
            .filter(|p| {
                p.record_type == oqs_proto::v1::RecordType::Aaaa as i32 && samples::is_system(p)
            })
            .collect();
        let guides = Connection::of_report(r).is_guides();
        // Off the guide's method a name counts when any record type answered it (an IPv4
        // network answers A, not AAAA), and the guide's causes do not apply.
        let off_guide_unresolved = (!guides).then(|| diagnosis::off_guide_unresolved(r));
        let dns_bad = match &off_guide_unresolved {
            Some(names) => !names.is_empty(),
            None => ipv6_ok && system.iter().any(|p| !ok(p.outcome)),
        };
        let ipv6_up = r.ipv6.as_ref().is_some_and(|s| ok(s.outcome));
        let system_resolves = !system.is_empty() && system.iter().all(|p| ok(p.outcome));
        if off_guide_unresolved.is_some() {
            if dns_bad {
                v.insert(Flag::DnsFailing, Some(DNS_CAUSES[4].to_owned()));
            }
        } else if dns_bad {
            // The guide's own order (oqs_guide::diagnosis::dns_verdict): the terminal's setting,
            // then the router's table, else upstream of the router.
            let cause = match diagnosis::dns_verdict(r, true) {
                Some(Finding::DnsSettings) => DNS_CAUSES[0],
                Some(Finding::DnsTruncated) => DNS_CAUSES[1],
                Some(Finding::RouterDnsTable) => DNS_CAUSES[2],
                _ => DNS_CAUSES[3],
            };
            v.insert(Flag::DnsFailing, Some(cause.to_owned()));
        }
        if let Some(la) = &r.lineauth {
            let page = page_state(la);
            let code = if !la.error_code.is_empty() {
                Some(la.error_code.clone())
            } else {
                match page {
                    LineAuthState::IneligibleLine => Some("P11019".to_owned()),
                    LineAuthState::NoResponse => Some("P32031".to_owned()),
                    _ => None,
                }
            };
            let portal_flag = match page {
                LineAuthState::Failed => {
                    Some((Flag::LineauthFailed, "回線認証に失敗しました".into()))
                }
                LineAuthState::SystemError => Some((
                    Flag::LineauthSystemError,
                    "システムエラーが発生しました".into(),
                )),
                LineAuthState::Declined => Some((Flag::LineauthDeclined, "declined".into())),
                LineAuthState::NotFromPortal => {
                    Some((Flag::LineauthDeclined, "not_from_portal".into()))
                }
                LineAuthState::RetryLater => Some((
                    Flag::LineauthRetryLater,
                    "時間を置いて再度試してください".into(),
                )),
                LineAuthState::UnknownPage if code.is_none() => Some((
                    Flag::LineauthUnknownPage,
                    bounded(&la.excerpt, DETAIL_CHARS),
                )),
                // No page: the portal's own problem only when the way to it works (IPv6 up, the
                // OQS names resolving); otherwise that is the flag, not this one.
                LineAuthState::Unreachable if ipv6_up && system_resolves && !dns_bad => {
                    Some((Flag::LineauthUnreachable, bounded(&la.error, DETAIL_CHARS)))
                }
                _ => None,
            };
            if let Some((flag, detail)) = portal_flag {
                v.insert(flag, Some(detail));
            }
            if code.is_some() {
                v.insert(Flag::LineauthError, code);
            }
            if la.state == LineAuthState::CertUntrusted as i32 {
                let problem = oqs_proto::v1::CertProblem::try_from(la.cert_problem)
                    .unwrap_or(oqs_proto::v1::CertProblem::Unspecified);
                let detail = oqs_guide::diagnosis::cert_problem_text(problem);
                v.insert(Flag::CertUntrusted, Some(detail.to_owned()));
            }
            if page == LineAuthState::Consent && st.authenticated_seen {
                v.insert(
                    Flag::ReauthRequired,
                    Some("the consent page is shown".into()),
                );
            }
        }
        if ipv6_ok && !dns_bad {
            let down: Vec<String> = r
                .http
                .iter()
                .filter(|h| {
                    h.target == HttpTarget::OqsWebProduction as i32
                        || h.target == HttpTarget::OqsWebVerification as i32
                })
                .filter(|h| !ok(h.outcome))
                .map(|h| oqs_proto::wire_name!(HttpTarget, h.target))
                .collect();
            if !down.is_empty() {
                v.insert(Flag::OqsWebUnreachable, Some(down.join(",")));
            }
        }
        let limit_us = i64::try_from(self.settings.ntp_skew_ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        if let Some(n) = r
            .ntp
            .iter()
            .find(|n| ok(n.outcome) && n.offset_us.saturating_abs() > limit_us)
        {
            v.insert(
                Flag::NtpSkew,
                Some(format!("offset {:+} ms", n.offset_us / 1000)),
            );
        }
        // The soonest expiry among the certificates the report read, in whole days from the
        // report's time (rounded down: 0 is "expires today", negative is expired).
        if let Some(days) = r
            .certs
            .as_ref()
            .and_then(|c| c.certs.iter().map(|c| c.not_after_ms).min())
            .map(|not_after| (not_after - r.finished_at_ms).div_euclid(86_400_000))
            .filter(|d| *d <= i64::from(self.settings.cert_warn_days))
        {
            v.insert(Flag::CertExpiring, Some(days.to_string()));
        }
        v
    }
}
