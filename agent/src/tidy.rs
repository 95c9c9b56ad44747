//! Makes a report fit what every collector accepts (`oqs_proto::report_limits`, the texts'
//! `text_limits`), whatever the machine said: free texts (error messages, the portal's excerpt,
//! interface names, certificate subjects and issuers, paths) cut to their limits with control
//! characters other than newline and tab turned into spaces; lists no longer than a report may
//! hold (the soonest-expiring certificates kept). Applied when a round is made and again before a
//! spooled report is sent (a report spooled by an older agent, or before a limit changed), and to
//! the Hello. An error text from the OS (a PowerShell message with CRLF line ends, a long TLS
//! chain error) or a certificate's subject with a control character must never get a report
//! refused: a refusal would repeat with every report.
//!
//! Must never touch what the checks measured (states, codes, addresses, latencies): only texts
//! meant for people and lists beyond the protocol's limits — and, at send time, lists longer than
//! the collector said it keeps ([`fit_lists`]), cut to their first items as it would cut them.

use oqs_proto::v1::Report;
use oqs_proto::AGENT_TEXT_CHARS;

/// Interface names the collector takes (Windows aliases can be long and localised).
const INTERFACE_CHARS: usize = oqs_proto::text_limits::INTERFACE;

/// Cuts `s` to `max` characters and replaces control characters (keeping newline and tab).
fn text(s: &mut String, max: usize) {
    let tidy =
        s.chars().count() > max || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if tidy {
        *s = s
            .replace("\r\n", "\n")
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .take(max)
            .collect();
    }
}

/// Tidies every text of `r` and cuts its lists to the protocol's limits, in place.
pub fn report(r: &mut Report) {
    use oqs_proto::report_limits as RL;
    use oqs_proto::text_limits as TL;
    let t = AGENT_TEXT_CHARS;
    let url = RL::URL_CHARS;
    if let Some(s) = &mut r.ipv6 {
        text(&mut s.error, t);
        for a in &mut s.addresses {
            text(&mut a.interface, INTERFACE_CHARS);
        }
    }
    r.dns.truncate(RL::DNS_PROBES);
    for p in &mut r.dns {
        text(&mut p.error, t);
        text(&mut p.name, TL::DNS_NAME);
        text(&mut p.rcode, TL::RCODE);
    }
    if let Some(p) = &mut r.lineauth {
        text(&mut p.error, t);
        text(&mut p.excerpt, t);
        text(&mut p.url, url);
    }
    r.http.truncate(RL::HTTP_PROBES);
    for p in &mut r.http {
        text(&mut p.error, t);
        text(&mut p.url, url);
    }
    r.ntp.truncate(RL::NTP_PROBES);
    for p in &mut r.ntp {
        text(&mut p.error, t);
        text(&mut p.server, TL::DNS_NAME);
    }
    if let Some(c) = &mut r.certs {
        text(&mut c.error, t);
        if c.certs.len() > RL::CERTS {
            // The soonest expiries are what the NOC acts on.
            c.certs.sort_by_key(|x| x.not_after_ms);
            c.certs.truncate(RL::CERTS);
        }
        for x in &mut c.certs {
            text(&mut x.subject, TL::CERT_TEXT);
            text(&mut x.issuer, TL::CERT_TEXT);
            text(&mut x.location, TL::CERT_TEXT);
            text(&mut x.matched_by, TL::CERT_TEXT);
        }
    }
    if let Some(a) = &mut r.agent {
        text(&mut a.config_refused, t);
        text(&mut a.last_refusal, t);
    }
}

/// Tidies the Hello's texts read from the machine (host name, OS) to what a collector accepts.
pub fn hello(h: &mut oqs_proto::v1::Hello) {
    use oqs_proto::text_limits as TL;
    text(&mut h.hostname, TL::HOSTNAME);
    text(&mut h.os, TL::OS);
    text(&mut h.boot_id, TL::BOOT_ID);
    text(&mut h.agent_version, TL::AGENT_VERSION);
    // One line each: newline and tab are not allowed there.
    for v in [&mut h.hostname, &mut h.os] {
        if v.contains(['\n', '\t']) {
            *v = v.replace(['\n', '\t'], " ");
        }
    }
}

/// Keeps the first `max_addresses` addresses and the first `max_items` items of every other list
/// (DNS answers, DNS servers, gateways) — what the collector's Welcome says it keeps (0: not
/// said, nothing cut). Returns how many items were cut.
pub fn fit_lists(r: &mut Report, max_addresses: usize, max_items: usize) -> usize {
    fn keep<T>(v: &mut Vec<T>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let extra = v.len().saturating_sub(max);
        v.truncate(max);
        extra
    }
    let mut cut = 0;
    if let Some(s) = &mut r.ipv6 {
        cut += keep(&mut s.addresses, max_addresses);
        cut += keep(&mut s.default_gateways, max_items);
        cut += keep(&mut s.dns_servers, max_items);
    }
    for p in &mut r.dns {
        cut += keep(&mut p.answers, max_items);
    }
    cut
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_are_cut_to_what_the_collector_keeps_and_zero_cuts_nothing() {
        use oqs_proto::v1::{DnsProbe, Ipv6State, Report};
        let mut r = Report {
            ipv6: Some(Ipv6State {
                dns_servers: vec!["::1".into(); 5],
                ..Default::default()
            }),
            dns: vec![DnsProbe {
                answers: (0..30).map(|i| format!("2408::{i}")).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(super::fit_lists(&mut r.clone(), 0, 0), 0);
        assert_eq!(super::fit_lists(&mut r, 64, 8), 22);
        assert_eq!(r.dns[0].answers.len(), 8);
        assert_eq!(r.dns[0].answers[0], "2408::0", "the first ones are kept");
        assert_eq!(r.ipv6.as_ref().unwrap().dns_servers.len(), 5);
    }

    use super::*;
    use oqs_proto::v1::{Ipv6Address, Ipv6State, LineAuthProbe};

    /// What the machine says can hold anything; the report never gets refused for it (issue "true
    /// alarms", item 8): a certificate subject with a control character, more certificates and
    /// probes than a report holds, over-long names.
    #[test]
    fn texts_and_lists_from_the_machine_fit_what_every_collector_accepts() {
        use oqs_proto::v1::{CertCheck, CertInfo, NtpProbe};
        let cert = |i: i64| CertInfo {
            source: 2,
            subject: format!("CN=Clinic\u{7}{i}\r\nO=x"),
            issuer: "CN=".to_string() + &"I".repeat(400),
            not_after_ms: 2_000_000_000_000 - i,
            location: "LocalMachine\\My".into(),
            matched_by: String::new(),
        };
        let mut r = Report {
            certs: Some(CertCheck {
                outcome: 1,
                error: String::new(),
                certs: (0..40).map(cert).collect(),
            }),
            ntp: (0..9)
                .map(|i| NtpProbe {
                    server: format!("ntp{i}.example"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        report(&mut r);
        let c = r.certs.as_ref().unwrap();
        assert_eq!(c.certs.len(), oqs_proto::report_limits::CERTS);
        assert_eq!(
            c.certs[0].not_after_ms,
            2_000_000_000_000 - 39,
            "the soonest kept"
        );
        assert!(c
            .certs
            .iter()
            .all(|x| !x.subject.chars().any(|ch| ch.is_control() && ch != '\n')));
        assert!(c
            .certs
            .iter()
            .all(|x| x.issuer.chars().count() <= oqs_proto::text_limits::CERT_TEXT));
        assert_eq!(r.ntp.len(), oqs_proto::report_limits::NTP_PROBES);
        let mut h = oqs_proto::v1::Hello {
            hostname: "PC\r\n01".into(),
            os: "windows\u{0}x86_64".into(),
            ..Default::default()
        };
        hello(&mut h);
        assert_eq!(h.hostname, "PC 01");
        assert_eq!(h.os, "windows x86_64");
    }

    #[test]
    fn long_and_multi_line_os_errors_are_cut_and_cleaned_measurements_untouched() {
        let mut r = Report {
            ipv6: Some(Ipv6State {
                error: "powershell exited with 1:\r\nGet-NetIPAddress : アクセスが拒否されました。\r\n\u{1b}[31m".repeat(20),
                prefix: "2408:210:1:2::/64".into(),
                addresses: vec![Ipv6Address {
                    interface: "イーサネット".repeat(20),
                    address: "2408:210:1:2::1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            lineauth: Some(LineAuthProbe {
                excerpt: "回線認証に成功しました。".into(),
                error_code: "P11019".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        report(&mut r);
        let s = r.ipv6.as_ref().unwrap();
        assert_eq!(s.error.chars().count(), AGENT_TEXT_CHARS);
        assert!(!s.error.chars().any(|c| c == '\r' || c == '\u{1b}'));
        assert!(s
            .error
            .starts_with("powershell exited with 1:\nGet-NetIPAddress"));
        assert_eq!(s.addresses[0].interface.chars().count(), INTERFACE_CHARS);
        assert_eq!(s.prefix, "2408:210:1:2::/64");
        assert_eq!(s.addresses[0].address, "2408:210:1:2::1");
        let l = r.lineauth.as_ref().unwrap();
        assert_eq!(l.excerpt, "回線認証に成功しました。");
        assert_eq!(l.error_code, "P11019");
    }
}
