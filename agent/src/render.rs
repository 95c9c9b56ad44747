//! How `oqs-agent check` shows a round: a report for the engineer on site (Japanese by default,
//! English on request) that walks the guide's tree, or one JSON document for scripts.
//!
//! Must never print the customer ID in full.

use crate::diagnosis::{self, Diagnosis};
use oqs_guide::support;
use oqs_proto::ident::Connection;
use oqs_proto::v1::{self, Outcome, Report};
use oqs_proto::wire_name;
use serde_json::{json, Value};

/// Output language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Ja,
    En,
}

fn outcome(o: i32) -> String {
    wire_name!(Outcome, o)
}

/// Every probe of the round that did not pass, named for people ("ntp ntp.base.oqs-pdl.org"):
/// the troubleshooting tree stops at the portal, so a failing CRL, NTP or direct DNS probe is
/// listed here even when the tree finds nothing. `check` exits 0 only when this is empty and the
/// tree passes.
pub fn failing(r: &Report) -> Vec<String> {
    let bad = |o: i32| o != Outcome::Ok as i32;
    let mut out = Vec::new();
    // Off the guide's method: no IPv6 or portal check ran, and a name fails only when no record
    // type answered it.
    let guides = Connection::of_report(r).is_guides();
    if guides && r.ipv6.as_ref().is_none_or(|s| bad(s.outcome)) {
        out.push("ipv6".to_string());
    }
    if !guides {
        for n in diagnosis::off_guide_unresolved(r) {
            out.push(format!("dns {n} (system)"));
        }
    }
    for p in r.dns.iter().filter(|p| guides && bad(p.outcome)) {
        out.push(format!(
            "dns {} {} ({})",
            p.name,
            wire_name!(RecordType, p.record_type).to_ascii_uppercase(),
            p.server
        ));
    }
    if guides && r.lineauth.as_ref().is_none_or(|l| bad(l.outcome)) {
        out.push("lineauth".to_string());
    }
    for h in r.http.iter().filter(|h| bad(h.outcome)) {
        out.push(format!("http {}", wire_name!(HttpTarget, h.target)));
    }
    for n in r.ntp.iter().filter(|n| bad(n.outcome)) {
        out.push(format!("ntp {}", n.server));
    }
    if r.certs.as_ref().is_some_and(|c| bad(c.outcome)) {
        out.push("certs".to_string());
    }
    out
}

/// Whole days from the report's time to a certificate's end (negative: expired).
fn days_left(r: &Report, not_after_ms: i64) -> i64 {
    (not_after_ms - r.finished_at_ms).div_euclid(86_400_000)
}

/// One JSON document with every probe result, the line-auth state and code, the prefix and the
/// diagnosis.
/// `customer_id` is the configured one: it adds the guide's notes that depend on it (FAQ Q9).
pub fn json(r: &Report, area: &str, d: &Diagnosis, customer_id: Option<&str>) -> Value {
    let hint = d
        .finding
        .zip(customer_id)
        .and_then(|(f, c)| diagnosis::customer_id_hint(f, c));
    let ipv6 = r.ipv6.clone().unwrap_or_default();
    let la = r.lineauth.clone().unwrap_or_default();
    let state = |s: i32| wire_name!(LineAuthState, s);
    let slowest = r
        .dns
        .iter()
        .map(|p| p.latency_ms)
        .chain(r.http.iter().map(|h| h.latency_ms))
        .chain(r.ntp.iter().map(|n| n.latency_ms))
        .chain([ipv6.latency_ms, la.latency_ms])
        .max()
        .unwrap_or(0);
    json!({
        "area": area,
        "connection": Connection::of_report(r),
        "round": {
            "started_at_ms": r.started_at_ms,
            "finished_at_ms": r.finished_at_ms,
            "wall_ms": r.finished_at_ms - r.started_at_ms,
            "slowest_probe_ms": slowest,
        },
        "prefix": if ipv6.prefix.is_empty() { Value::Null } else { json!(ipv6.prefix) },
        "ipv6": {
            "outcome": outcome(ipv6.outcome),
            "error": ipv6.error,
            "addresses": ipv6.addresses.iter().map(|a| json!({
                "interface": a.interface,
                "address": a.address,
                "prefix_len": a.prefix_len,
                "kind": wire_name!(AddressKind, a.kind),
                "deprecated": a.deprecated,
            })).collect::<Vec<_>>(),
            "has_default_route": ipv6.has_default_route,
            "default_gateways": ipv6.default_gateways,
            "dns_servers": ipv6.dns_servers,
            "dns_mode": wire_name!(DnsServerMode, ipv6.dns_mode),
            "latency_ms": ipv6.latency_ms,
        },
        "dns": r.dns.iter().map(|p| json!({
            "name": p.name,
            "record_type": wire_name!(RecordType, p.record_type),
            "resolver": wire_name!(ResolverRole, p.role),
            "server": p.server,
            "outcome": outcome(p.outcome),
            "rcode": p.rcode,
            "answers": p.answers,
            "latency_ms": p.latency_ms,
            "error": p.error,
            "truncated": p.truncated,
        })).collect::<Vec<_>>(),
        "lineauth": {
            "url": la.url,
            "state": state(la.state),
            "code": if la.error_code.is_empty() { Value::Null } else { json!(la.error_code) },
            "outcome": outcome(la.outcome),
            "http_status": la.http_status,
            "tls_trusted": la.tls_trusted,
            "fetched_without_verification": la.fetched_without_verification,
            "unverified_page_state": if la.fetched_without_verification { json!(state(la.unverified_page_state)) } else { Value::Null },
            "excerpt": la.excerpt,
            "error": la.error,
            "latency_ms": la.latency_ms,
        },
        "http": r.http.iter().map(|h| json!({
            "target": wire_name!(HttpTarget, h.target),
            "url": h.url,
            "outcome": outcome(h.outcome),
            "status": h.status,
            "latency_ms": h.latency_ms,
            "error": h.error,
        })).collect::<Vec<_>>(),
        "ntp": r.ntp.iter().map(|n| json!({
            "server": n.server,
            "outcome": outcome(n.outcome),
            "offset_us": n.offset_us,
            "stratum": n.stratum,
            "error": n.error,
        })).collect::<Vec<_>>(),
        "certs": r.certs.as_ref().map(|c| json!({
            "outcome": outcome(c.outcome),
            "error": c.error,
            "certs": c.certs.iter().map(|x| json!({
                "source": wire_name!(CertSource, x.source),
                "subject": x.subject,
                "issuer": x.issuer,
                "not_after_ms": x.not_after_ms,
                "days_left": days_left(r, x.not_after_ms),
                "location": x.location,
                "matched_by": x.matched_by,
            })).collect::<Vec<_>>(),
        })),
        "failing": failing(r),
        "diagnosis": {
            "step": d.step,
            "finding": d.finding,
            "remedy_ja": d.remedy_ja,
            "remedy_en": d.remedy_en,
            "guide_page": d.guide_page,
            // The method the verdict assumed (the guide's tree is FLET'S IPoE's).
            "connection": d.connection,
            "hint_ja": hint.map(|h| h.0),
            "hint_en": hint.map(|h| h.1),
        },
        // Whom to call, each with whether it answers at the round's end (Japan time).
        "desks": support::desks_now(d.finding, r.finished_at_ms),
    })
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "NG"
    }
}

/// The engineer's report.
pub fn text(
    r: &Report,
    area_label: &str,
    d: &Diagnosis,
    lang: Lang,
    customer_id: Option<&str>,
) -> String {
    let ja = lang == Lang::Ja;
    let ok = |o: i32| o == Outcome::Ok as i32;
    let mut s = String::new();
    let title = if ja {
        "オンライン資格確認 接続チェック"
    } else {
        "OQS connection check"
    };
    s.push_str(&format!("{title} ({area_label})\n"));
    let connection = Connection::of_report(r);
    s.push_str(&format!(
        "{}: {}\n\n",
        if ja { "接続方式" } else { "Connection" },
        if ja {
            connection.label_ja()
        } else {
            connection.label_en()
        }
    ));
    if !connection.is_guides() {
        s.push_str(if ja {
            "     接続ガイド（IP-VPN接続方式）の対象外: IPv6・回線認証の確認は行いません。\n"
        } else {
            "     Not the guide's method (IP-VPN): the IPv6 and line-authentication checks are not run.\n"
        });
    }
    let ipv6 = r.ipv6.clone().unwrap_or_default();
    if r.ipv6.is_some() {
        s.push_str(&format!(
            "[{}] {} {}\n",
            mark(ok(ipv6.outcome)),
            if ja {
                "IPv6アドレス (手順6-⑫):"
            } else {
                "IPv6 address (step 6-⑫):"
            },
            if ipv6.prefix.is_empty() {
                ipv6.error.clone()
            } else {
                format!("{} ({} addr)", ipv6.prefix, ipv6.addresses.len())
            }
        ));
        s.push_str(&format!(
            "     {} {}\n",
            if ja {
                "DNSサーバー (手順6-⑬):"
            } else {
                "DNS servers (step 6-⑬):"
            },
            if ipv6.dns_servers.is_empty() {
                "-".to_string()
            } else {
                ipv6.dns_servers.join(", ")
            }
        ));
    }
    // Every AAAA probe; an A probe only when it fails (the guide lists A answers for some names
    // only, and "no A record" is fine).
    for p in r
        .dns
        .iter()
        .filter(|p| p.record_type == v1::RecordType::Aaaa as i32 || !ok(p.outcome))
    {
        let who = if p.server == "system" {
            if ja {
                "端末の設定"
            } else {
                "system"
            }
        } else {
            p.server.as_str()
        };
        let detail = if ok(p.outcome) {
            p.answers.join(", ")
        } else {
            format!("{} {}", p.rcode, p.error)
        };
        let a = if p.record_type == v1::RecordType::A as i32 {
            " A"
        } else {
            ""
        };
        s.push_str(&format!(
            "[{}] nslookup{a} {} ({who}): {}\n",
            mark(ok(p.outcome)),
            p.name,
            detail.trim()
        ));
    }
    let la = r.lineauth.clone().unwrap_or_default();
    if r.lineauth.is_some() {
        s.push_str(&format!(
            "[{}] {} {}{}\n",
            mark(ok(la.outcome)),
            if ja {
                "回線認証サイト:"
            } else {
                "Line-authentication portal:"
            },
            wire_name!(LineAuthState, la.state),
            if la.error_code.is_empty() {
                String::new()
            } else {
                format!(" ({})", la.error_code)
            }
        ));
    }
    for h in &r.http {
        s.push_str(&format!(
            "[{}] {} {}\n",
            mark(ok(h.outcome)),
            h.url,
            if ok(h.outcome) {
                h.status.to_string()
            } else {
                h.error.clone()
            }
        ));
    }
    for n in &r.ntp {
        s.push_str(&format!(
            "[{}] NTP {}: {}\n",
            mark(ok(n.outcome)),
            n.server,
            if ok(n.outcome) {
                format!(
                    "offset {:.3} s, stratum {}",
                    n.offset_us as f64 / 1e6,
                    n.stratum
                )
            } else {
                n.error.clone()
            }
        ));
    }
    if let Some(c) = &r.certs {
        for x in &c.certs {
            let left = days_left(r, x.not_after_ms);
            s.push_str(&format!(
                "[{}] 証明書 / certificate {} ({}): 残り {} 日 / {} days left\n",
                mark(left > 30),
                x.subject,
                x.location,
                left,
                left
            ));
        }
        if !c.error.is_empty() {
            s.push_str(&format!(
                "[{}] 証明書 / certificates: {}\n",
                mark(false),
                c.error
            ));
        }
    }
    s.push('\n');
    let failing = failing(r);
    match d.step {
        // A finding outside the guide (another connection method): what failed, no step.
        None if d.finding.is_some() => {
            let remedy = if ja { d.remedy_ja } else { d.remedy_en };
            s.push_str(&if ja {
                format!("結果: NG（{}）\n対処: {remedy}\n", failing.join(", "))
            } else {
                format!("Result: fails ({})\nRemedy: {remedy}\n", failing.join(", "))
            });
        }
        None if failing.is_empty() => s.push_str(if ja {
            "結果: 問題は見つかりませんでした。\n"
        } else {
            "Result: no problem found.\n"
        }),
        None => {
            if ja {
                s.push_str(&format!(
                    "結果: 切り分け手順（P30）はすべて OK ですが、次の確認が NG です: {}\n\
                     回線認証サイトとオンライン資格確認の接続には影響しない場合もあります。続く場合はネットワークサポートデスク 0120-220-571 へ。\n",
                    failing.join(", ")
                ));
            } else {
                s.push_str(&format!(
                    "Result: every troubleshooting step (P30) passes, but these checks fail: {}\n\
                     They may not stop line authentication or OQS; if they persist, call the Network Support Desk 0120-220-571.\n",
                    failing.join(", ")
                ));
            }
        }
        Some(step) => {
            let remedy = if ja { d.remedy_ja } else { d.remedy_en };
            if ja {
                s.push_str(&format!(
                    "結果: 切り分け手順 {step} で NG\n対処: {remedy}\n参照: 接続ガイド {}\n",
                    d.guide_page
                ));
            } else {
                s.push_str(&format!("Result: troubleshooting step {step} fails\nRemedy: {remedy}\nSee: connection guide {}\n", d.guide_page));
            }
            if let Some((hint_ja, hint_en)) = d
                .finding
                .zip(customer_id)
                .and_then(|(f, c)| diagnosis::customer_id_hint(f, c))
            {
                s.push_str(&format!(
                    "{}: {}\n",
                    if ja { "注意" } else { "Note" },
                    if ja { hint_ja } else { hint_en }
                ));
            }
            // Whom to call, the desk that can act on it first, and whether it answers now.
            for desk in support::desks_now(d.finding, r.finished_at_ms) {
                let (name, purpose, state, hours) = if ja {
                    let state = if desk.open_now {
                        "受付中"
                    } else {
                        "受付時間外"
                    };
                    (
                        desk.name_ja,
                        desk.for_ja,
                        state,
                        desk.hours_today.unwrap_or("休業"),
                    )
                } else {
                    let state = if desk.open_now {
                        "open now"
                    } else {
                        "closed now"
                    };
                    (
                        desk.name_en,
                        desk.for_en,
                        state,
                        desk.hours_today.unwrap_or("closed"),
                    )
                };
                s.push_str(&if ja {
                    format!(
                        "問合せ先: {name} {}（{purpose}）— {state}（本日 {hours}）\n",
                        desk.number
                    )
                } else {
                    format!(
                        "Support: {name} {} ({purpose}) — {state} (today {hours})\n",
                        desk.number
                    )
                });
            }
        }
    }
    s
}

/// The machine's proxy as `check` shows it: where it was read, the proxy, and each of the guide's
/// names reached through it or around it (`facts` from [`crate::uplink::SystemProxy::facts`]).
pub fn system_proxy(facts: &Value, lang: Lang) -> String {
    let ja = lang == Lang::Ja;
    let source = facts["source"].as_str().unwrap_or("");
    let mut s = String::new();
    match facts["proxy"].as_str() {
        None => s.push_str(&if ja {
            format!("\nマシンのプロキシ ({source}): なし（直接接続）\n")
        } else {
            format!("\nMachine proxy ({source}): none (direct)\n")
        }),
        Some(p) => {
            s.push_str(&if ja {
                format!("\nマシンのプロキシ ({source}): {p}\n")
            } else {
                format!("\nMachine proxy ({source}): {p}\n")
            });
            for h in facts["hosts"].as_array().into_iter().flatten() {
                let around = h["bypassed"].as_bool().unwrap_or(false);
                let how = match (ja, around) {
                    (true, true) => "プロキシを使わない（例外）",
                    (true, false) => "プロキシ経由",
                    (false, true) => "around the proxy (bypass list)",
                    (false, false) => "through the proxy",
                };
                s.push_str(&format!("  {}: {how}\n", h["host"].as_str().unwrap_or("")));
            }
        }
    }
    if let Some(p) = facts["problem"].as_str() {
        s.push_str(&if ja {
            format!("  設定を読めません: {p}\n")
        } else {
            format!("  not understood: {p}\n")
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_proxy_is_shown_with_each_name_through_or_around_it() {
        let sys = crate::uplink::SystemProxy::from_winhttp(
            "proxy.base.oqs-pdl.org:8080",
            "*.lineauth.mnw",
        );
        let f = sys.facts(&["www.lineauth.mnw", "hweb.oqs-st.onshikaku.org"]);
        let ja = system_proxy(&f, Lang::Ja);
        assert!(
            ja.contains("マシンのプロキシ (WinHTTP): proxy.base.oqs-pdl.org:8080"),
            "{ja}"
        );
        assert!(
            ja.contains("www.lineauth.mnw: プロキシを使わない（例外）"),
            "{ja}"
        );
        assert!(
            ja.contains("hweb.oqs-st.onshikaku.org: プロキシ経由"),
            "{ja}"
        );
        let none = crate::uplink::SystemProxy::from_env(|_| None).facts(&["www.lineauth.mnw"]);
        assert!(system_proxy(&none, Lang::En).contains("none (direct)"));
    }
    use oqs_proto::v1::{
        AddressKind, DnsProbe, HttpProbe, HttpTarget, Ipv6Address, Ipv6State, LineAuthProbe,
        LineAuthState, NtpProbe, RecordType, ResolverRole,
    };

    const OK: i32 = Outcome::Ok as i32;

    /// A round where the guide's tree passes: IPv6, every name through the system resolver, the
    /// portal already authenticated, OQS web answering.
    fn tree_passes() -> Report {
        let dns = |name: &str| DnsProbe {
            outcome: OK,
            name: name.into(),
            record_type: RecordType::Aaaa as i32,
            role: ResolverRole::System as i32,
            server: "system".into(),
            rcode: "NOERROR".into(),
            answers: vec!["2404:1a8:f583:af0::1".into()],
            ..Default::default()
        };
        Report {
            seq: 1,
            started_at_ms: 1,
            finished_at_ms: 2,
            ipv6: Some(Ipv6State {
                outcome: OK,
                prefix: "2408:210:1:2::/64".into(),
                addresses: vec![Ipv6Address {
                    address: "2408:210:1:2::10".into(),
                    kind: AddressKind::Global as i32,
                    prefix_len: 64,
                    ..Default::default()
                }],
                has_default_route: true,
                ..Default::default()
            }),
            dns: vec![dns("www.lineauth.mnw"), dns("hweb.oqs-st.onshikaku.org")],
            lineauth: Some(LineAuthProbe {
                outcome: OK,
                state: LineAuthState::AlreadyAuthenticated as i32,
                tls_trusted: true,
                url: "https://www.lineauth.mnw/".into(),
                ..Default::default()
            }),
            http: vec![
                HttpProbe {
                    outcome: OK,
                    target: HttpTarget::OqsWebProduction as i32,
                    status: 200,
                    ..Default::default()
                },
                HttpProbe {
                    outcome: Outcome::Failed as i32,
                    target: HttpTarget::Crl as i32,
                    error: "connection refused".into(),
                    ..Default::default()
                },
            ],
            ntp: vec![NtpProbe {
                outcome: Outcome::TimedOut as i32,
                server: "ntp.base.oqs-pdl.org".into(),
                error: "no answer within 2000 ms".into(),
                ..Default::default()
            }],
            spool_dropped_total: 0,
            certs: None,
            agent: None,
            connection: 0,
        }
    }

    /// An IPv4 (PPPoE) terminal: no IPv6 or portal line, the method said, A answers enough; a
    /// name with no answer at all fails the check without a guide step.
    #[test]
    fn another_connection_method_shows_only_what_applies() {
        let mut r = tree_passes();
        r.connection = v1::ConnectionMethod::Ipv4Pppoe as i32;
        r.ipv6 = None;
        r.lineauth = None;
        r.http.retain(|h| h.outcome == OK);
        r.ntp.clear();
        for p in &mut r.dns {
            p.outcome = Outcome::Failed as i32;
        }
        let mut a = r.dns[1].clone();
        a.record_type = RecordType::A as i32;
        a.outcome = OK;
        a.answers = vec!["10.1.2.3".into()];
        r.dns.push(a);
        r.dns.remove(0);
        let d = crate::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
        assert_eq!(d.finding, None, "{d:?}");
        assert!(failing(&r).is_empty(), "{:?}", failing(&r));
        let ja = text(&r, "東日本", &d, Lang::Ja, None);
        assert!(ja.contains("接続方式: IPv4 閉域網（PPPoE）"), "{ja}");
        assert!(
            !ja.contains("IPv6アドレス (手順6-⑫)") && !ja.contains("回線認証サイト:"),
            "{ja}"
        );
        assert!(ja.contains("問題は見つかりませんでした"), "{ja}");
        assert_eq!(json(&r, "east", &d, None)["connection"], "ipv4_pppoe");

        r.dns[1].outcome = Outcome::TimedOut as i32;
        let d = crate::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
        assert_eq!(failing(&r), ["dns hweb.oqs-st.onshikaku.org (system)"]);
        let en = text(&r, "NTT East", &d, Lang::En, None);
        assert!(
            en.contains("Result: fails (dns hweb.oqs-st.onshikaku.org (system))"),
            "{en}"
        );
        assert!(en.contains("not the guide's"), "{en}");
    }

    #[test]
    fn probes_outside_the_tree_still_fail_the_check_and_are_named() {
        let r = tree_passes();
        let d = crate::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
        assert_eq!(d.step, None, "the tree passes: {d:?}");
        assert_eq!(failing(&r), ["http crl", "ntp ntp.base.oqs-pdl.org"]);
        let ja = text(&r, "東日本", &d, Lang::Ja, None);
        assert!(
            ja.contains("次の確認が NG です: http crl, ntp ntp.base.oqs-pdl.org"),
            "{ja}"
        );
        assert!(!ja.contains("問題は見つかりませんでした"), "{ja}");
        let en = text(&r, "NTT East", &d, Lang::En, None);
        assert!(en.contains("these checks fail: http crl"), "{en}");
        assert_eq!(
            json(&r, "east", &d, None)["failing"],
            serde_json::json!(["http crl", "ntp ntp.base.oqs-pdl.org"])
        );
    }

    #[test]
    fn a_failing_step_names_the_desk_to_call_and_whether_it_is_open() {
        let mut r = tree_passes();
        let la = r.lineauth.as_mut().unwrap();
        la.state = LineAuthState::IneligibleLine as i32;
        la.error_code = "P11019".into();
        // Sunday 2026-11-29, 10:00 JST: the FLET'S desk answers, the network desk does not.
        r.finished_at_ms = 1_795_914_000_000;
        let d = crate::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
        assert_eq!(d.step, Some(5));
        let ja = text(&r, "東日本", &d, Lang::Ja, Some("COP01234567"));
        let flets = ja.find("0120-116-116").expect("the FLET'S desk");
        let network = ja.find("0120-220-571").expect("the network desk");
        assert!(flets < network, "the line's desk first: {ja}");
        assert!(ja.contains("0120-116-116（回線のタイプ"), "{ja}");
        assert!(ja[flets..network].contains("受付中"), "{ja}");
        assert!(ja[network..].contains("受付時間外"), "{ja}");
        assert!(ja.contains("Bフレッツ"), "the COP note: {ja}");
        let doc = json(&r, "east", &d, Some("COP01234567"));
        assert_eq!(doc["desks"][0]["number"], "0120-116-116");
        assert_eq!(doc["desks"][0]["open_now"], true);
        assert_eq!(doc["desks"][1]["open_now"], false);
        assert!(doc["diagnosis"]["hint_en"]
            .as_str()
            .unwrap()
            .contains("B FLET'S"));
        assert!(!ja.contains("COP01234567"), "never the customer ID in full");
    }

    #[test]
    fn a_round_where_everything_passes_says_so() {
        let mut r = tree_passes();
        r.http.retain(|h| h.outcome == OK);
        r.ntp[0].outcome = OK;
        let d = crate::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
        assert!(failing(&r).is_empty());
        assert!(text(&r, "東日本", &d, Lang::Ja, None).contains("問題は見つかりませんでした"));
    }
}
