//! Makes a round's free texts (error messages, the portal's excerpt, interface names) fit what
//! every collector accepts: at most [`oqs_proto::AGENT_TEXT_CHARS`] characters, control characters
//! other than newline and tab turned into spaces. An error text from the OS (a PowerShell message
//! with CRLF line ends, a long TLS chain error) must never get a whole report refused.
//!
//! Must never touch what the checks measured (states, codes, addresses, latencies): only texts
//! meant for people — and, at send time, lists longer than the collector said it keeps
//! ([`fit_lists`]), cut to their first items as the collector would cut them.

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

/// Tidies every free text of `r` in place.
pub fn report(r: &mut Report) {
    let t = AGENT_TEXT_CHARS;
    if let Some(s) = &mut r.ipv6 {
        text(&mut s.error, t);
        for a in &mut s.addresses {
            text(&mut a.interface, INTERFACE_CHARS);
        }
    }
    for p in &mut r.dns {
        text(&mut p.error, t);
    }
    if let Some(p) = &mut r.lineauth {
        text(&mut p.error, t);
        text(&mut p.excerpt, t);
    }
    for p in &mut r.http {
        text(&mut p.error, t);
    }
    for p in &mut r.ntp {
        text(&mut p.error, t);
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
