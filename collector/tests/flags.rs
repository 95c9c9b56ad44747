//! Every oqs-fleet-sim scenario against a real collector produces exactly the expected flags,
//! events, diagnosis step and metric values; flags clear when the condition ends; derived state
//! survives a restart.

mod common;

use common::*;
use oqs_collector::config::CollectorConfig;
use oqs_collector::server::{self, Running};
use oqs_fleet_sim::scenario::Scenario;
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn flag_config(dir: &Path) -> CollectorConfig {
    let mut c = config(dir);
    // Silence is judged on a 1 s interval (the sim's own 10 ms gaps are clamped up to 1 s).
    c.flags.default_interval_secs = 1;
    c.flags.evaluate_every_ms = 100;
    c
}

async fn run_sim(c: &Running, scenario: Scenario, reports: u64, prefix: &str) {
    sim_fleet(c, scenario, 1, reports, prefix).await;
}

/// The value of one series of `name` carrying every label pair given.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// (metric, labels besides site, value). A detail series exists only while its flag is raised, so
/// an expected 0 for `oqs_site_flag_detail` means "absent".
type MetricExpect<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

struct Expect<'a> {
    scenario: Scenario,
    flags: &'a [&'a str],
    /// (flag, action) of every event, in order.
    events: &'a [(&'a str, &'a str)],
    step: Option<u8>,
    finding: Option<&'a str>,
    metrics: &'a [MetricExpect<'a>],
}

/// The portal's failing pages: each raises its own flag alone, with the guide's step 6 finding,
/// and fails the line-auth check (checked like `EXPECTED` by the same test).
const PORTAL_PAGES: &[(Scenario, &str, &str)] = &[
    (Scenario::AuthFailed, "lineauth_failed", "auth_failed"),
    (
        Scenario::SystemError,
        "lineauth_system_error",
        "system_error",
    ),
    (Scenario::Declined, "lineauth_declined", "declined"),
    (Scenario::NotFromPortal, "lineauth_declined", "declined"),
    (Scenario::RetryLater, "lineauth_retry_later", "retry_later"),
    (
        Scenario::UnknownPage,
        "lineauth_unknown_page",
        "unknown_page",
    ),
    (
        Scenario::PortalDown,
        "lineauth_unreachable",
        "portal_unreachable",
    ),
];

const EXPECTED: &[Expect<'static>] = &[
    Expect {
        scenario: Scenario::Healthy,
        flags: &[],
        events: &[],
        step: None,
        finding: None,
        metrics: &[
            ("oqs_site_flag", &[("flag", "lineauth_error")], 0.0),
            ("oqs_site_diagnosis_step", &[], 0.0),
            (
                "oqs_check_success",
                &[("terminal", "pc-1"), ("check", "lineauth")],
                1.0,
            ),
        ],
    },
    Expect {
        scenario: Scenario::PrefixChange,
        flags: &["reauth_required", "prefix_changed"],
        events: &[("prefix_changed", "raised"), ("reauth_required", "raised")],
        step: Some(6),
        finding: Some("reauth_required"),
        metrics: &[
            ("oqs_ipv6_prefix_changes_total", &[], 1.0),
            ("oqs_site_flag", &[("flag", "prefix_changed")], 1.0),
            ("oqs_site_flag", &[("flag", "reauth_required")], 1.0),
            ("oqs_site_diagnosis_step", &[], 6.0),
        ],
    },
    Expect {
        scenario: Scenario::P11019,
        flags: &["lineauth_error", "oqs_web_unreachable"],
        events: &[
            ("lineauth_error", "raised"),
            ("oqs_web_unreachable", "raised"),
        ],
        step: Some(5),
        finding: Some("ineligible_line"),
        metrics: &[
            ("oqs_lineauth_code_total", &[("code", "P11019")], 4.0),
            (
                "oqs_site_flag_detail",
                &[("flag", "lineauth_error"), ("detail", "P11019")],
                1.0,
            ),
            ("oqs_site_diagnosis_step", &[], 5.0),
            (
                "oqs_check_success",
                &[("terminal", "pc-1"), ("check", "lineauth")],
                0.0,
            ),
        ],
    },
    Expect {
        scenario: Scenario::P32031,
        flags: &["lineauth_error"],
        events: &[("lineauth_error", "raised")],
        step: Some(6),
        finding: Some("no_response"),
        metrics: &[
            ("oqs_lineauth_code_total", &[("code", "P32031")], 4.0),
            (
                "oqs_site_flag_detail",
                &[("flag", "lineauth_error"), ("detail", "P32031")],
                1.0,
            ),
            (
                "oqs_site_flag_detail",
                &[("flag", "lineauth_error"), ("detail", "P11019")],
                0.0,
            ),
        ],
    },
    Expect {
        scenario: Scenario::Consent,
        flags: &["reauth_required"],
        events: &[("reauth_required", "raised")],
        step: Some(6),
        finding: Some("reauth_required"),
        metrics: &[("oqs_site_flag", &[("flag", "reauth_required")], 1.0)],
    },
    Expect {
        scenario: Scenario::DnsTable,
        flags: &["dns_failing"],
        events: &[("dns_failing", "raised")],
        step: Some(3),
        finding: Some("router_dns_table"),
        metrics: &[
            (
                "oqs_site_flag_detail",
                &[("flag", "dns_failing"), ("detail", "router_table")],
                1.0,
            ),
            (
                "oqs_site_flag_detail",
                &[("flag", "dns_failing"), ("detail", "upstream")],
                0.0,
            ),
            ("oqs_site_diagnosis_step", &[], 3.0),
        ],
    },
    Expect {
        scenario: Scenario::Ipv6Missing,
        flags: &["ipv6_missing"],
        events: &[("ipv6_missing", "raised")],
        step: Some(4),
        finding: Some("ipv6_missing"),
        metrics: &[
            ("oqs_site_flag", &[("flag", "ipv6_missing")], 1.0),
            ("oqs_site_flag", &[("flag", "dns_failing")], 0.0),
            ("oqs_site_diagnosis_step", &[], 4.0),
        ],
    },
    Expect {
        scenario: Scenario::Flapping,
        flags: &["flapping"],
        events: &[("flapping", "raised")],
        // The latest round is one without a global address.
        step: Some(4),
        finding: Some("ipv6_missing"),
        metrics: &[
            ("oqs_site_flag", &[("flag", "flapping")], 1.0),
            ("oqs_site_flag", &[("flag", "ipv6_missing")], 0.0),
        ],
    },
    Expect {
        scenario: Scenario::CertUntrusted,
        flags: &["cert_untrusted", "oqs_web_unreachable"],
        events: &[
            ("cert_untrusted", "raised"),
            ("oqs_web_unreachable", "raised"),
        ],
        step: Some(6),
        finding: Some("certificate_missing"),
        metrics: &[
            ("oqs_site_flag", &[("flag", "cert_untrusted")], 1.0),
            ("oqs_site_flag", &[("flag", "lineauth_error")], 0.0),
            ("oqs_site_diagnosis_step", &[], 6.0),
            (
                "oqs_check_success",
                &[("terminal", "pc-1"), ("check", "lineauth")],
                0.0,
            ),
        ],
    },
    Expect {
        scenario: Scenario::DnsUpstream,
        flags: &["dns_failing"],
        events: &[("dns_failing", "raised")],
        step: Some(4),
        finding: Some("nw_base_unreachable"),
        metrics: &[
            (
                "oqs_site_flag_detail",
                &[("flag", "dns_failing"), ("detail", "upstream")],
                1.0,
            ),
            (
                "oqs_site_flag_detail",
                &[("flag", "dns_failing"), ("detail", "router_table")],
                0.0,
            ),
            ("oqs_site_flag", &[("flag", "ipv6_missing")], 0.0),
            ("oqs_site_diagnosis_step", &[], 4.0),
        ],
    },
    Expect {
        scenario: Scenario::CertExpiring,
        flags: &["cert_expiring"],
        events: &[("cert_expiring", "raised")],
        step: None,
        finding: None,
        metrics: &[
            ("oqs_site_flag", &[("flag", "cert_expiring")], 1.0),
            (
                "oqs_site_flag_detail",
                &[("flag", "cert_expiring"), ("detail", "30")],
                1.0,
            ),
            ("oqs_site_diagnosis_step", &[], 0.0),
        ],
    },
    Expect {
        scenario: Scenario::NtpSkew,
        flags: &["ntp_skew"],
        events: &[("ntp_skew", "raised")],
        step: None,
        finding: None,
        metrics: &[
            ("oqs_site_flag", &[("flag", "ntp_skew")], 1.0),
            ("oqs_site_diagnosis_step", &[], 0.0),
        ],
    },
    Expect {
        scenario: Scenario::WebDown,
        flags: &["oqs_web_unreachable"],
        events: &[("oqs_web_unreachable", "raised")],
        step: Some(6),
        finding: Some("oqs_side"),
        metrics: &[
            ("oqs_site_flag", &[("flag", "oqs_web_unreachable")], 1.0),
            (
                "oqs_check_success",
                &[("terminal", "pc-1"), ("check", "oqs_web")],
                0.0,
            ),
            (
                "oqs_check_success",
                &[("terminal", "pc-1"), ("check", "crl")],
                1.0,
            ),
            ("oqs_site_diagnosis_step", &[], 6.0),
        ],
    },
    Expect {
        scenario: Scenario::UnknownCode,
        flags: &["lineauth_error"],
        events: &[("lineauth_error", "raised")],
        step: Some(6),
        finding: Some("unknown_page"),
        metrics: &[
            ("oqs_lineauth_code_total", &[("code", "other")], 4.0),
            (
                "oqs_site_flag_detail",
                &[("flag", "lineauth_error"), ("detail", "other")],
                1.0,
            ),
            ("oqs_site_diagnosis_step", &[], 6.0),
        ],
    },
    Expect {
        scenario: Scenario::DnsTruncated,
        flags: &["dns_failing"],
        events: &[("dns_failing", "raised")],
        step: Some(3),
        finding: Some("dns_truncated"),
        metrics: &[
            (
                "oqs_site_flag_detail",
                &[("flag", "dns_failing"), ("detail", "truncated")],
                1.0,
            ),
            ("oqs_site_diagnosis_step", &[], 3.0),
        ],
    },
];

async fn check_site(c: &Running, site: &str, e: &Expect<'_>) {
    let what = e.scenario;
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["sites"][0]["site_id"], site, "{what}");
    assert_eq!(sites["sites"][0]["flags"], json!(e.flags), "{what}");
    let detail = get_json(c.http_addr, &format!("/api/sites/{site}")).await;
    assert_eq!(detail["flags"], json!(e.flags), "{what}");
    assert_eq!(detail["diagnosis"]["step"], json!(e.step), "{what}");
    assert_eq!(detail["diagnosis"]["finding"], json!(e.finding), "{what}");
    let events = get_json(c.http_addr, &format!("/api/events?site={site}")).await;
    let mut got: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["flag"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.reverse(); // the API answers newest first
    let want: Vec<(String, String)> = e
        .events
        .iter()
        .map(|(f, a)| (f.to_string(), a.to_string()))
        .collect();
    assert_eq!(got, want, "{what}");
    let (_, m) = get(c.http_addr, "/metrics").await;
    for (name, labels, value) in e.metrics {
        let mut l = vec![("site", site)];
        l.extend_from_slice(labels);
        let want = if *name == "oqs_site_flag_detail" && *value == 0.0 {
            None
        } else {
            Some(*value)
        };
        assert_eq!(series(&m, name, &l), want, "{what}: {name}{labels:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scenario_gives_exactly_its_flags_events_step_and_metrics() {
    for e in EXPECTED {
        let dir = tempfile::tempdir().unwrap();
        let c = server::start(flag_config(dir.path())).await.unwrap();
        run_sim(&c, e.scenario, 4, "sc-").await;
        check_site(&c, "sc-00000", e).await;
        c.stop().await.unwrap();
    }
    for &(scenario, flag, finding) in PORTAL_PAGES {
        let dir = tempfile::tempdir().unwrap();
        let c = server::start(flag_config(dir.path())).await.unwrap();
        run_sim(&c, scenario, 4, "sc-").await;
        let own = [("flag", flag)];
        let e = Expect {
            scenario,
            flags: &[flag],
            events: &[(flag, "raised")],
            step: Some(6),
            finding: Some(finding),
            metrics: &[
                ("oqs_site_flag", &own, 1.0),
                ("oqs_site_flag", &[("flag", "lineauth_error")], 0.0),
                (
                    "oqs_check_success",
                    &[("terminal", "pc-1"), ("check", "lineauth")],
                    0.0,
                ),
                ("oqs_site_diagnosis_step", &[], 6.0),
            ],
        };
        check_site(&c, "sc-00000", &e).await;
        c.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauth_after_a_prefix_change_is_linked_to_it_and_history_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(flag_config(dir.path())).await.unwrap();
    run_sim(&c, Scenario::PrefixChange, 4, "pc-").await;
    let events = get_json(c.http_addr, "/api/events?site=pc-00000").await;
    let ev = events["events"].as_array().unwrap();
    let change = ev.iter().find(|e| e["flag"] == "prefix_changed").unwrap();
    let reauth = ev.iter().find(|e| e["flag"] == "reauth_required").unwrap();
    assert_eq!(reauth["related_event_id"], change["id"]);
    assert!(change["detail"].as_str().unwrap().contains(" → "));
    let site = get_json(c.http_addr, "/api/sites/pc-00000").await;
    let hist = site["prefix_history"].as_array().unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0]["to"], site["prefix"]);
    assert_ne!(hist[0]["from"], hist[0]["to"]);
    // The contact bundle has what the support desk asks for.
    let contact = &site["contact"];
    assert!(contact["customer_id"].as_str().unwrap().contains('*'));
    assert!(contact["ipv6_address"].as_str().unwrap().starts_with("24"));
    assert_eq!(contact["prefix"], site["prefix"]);
    assert!(contact["failing_since"].is_string());
    assert_eq!(contact["support_desk"], "0120-220-571");

    // History: the ipv6 check has its first point and the change, nothing for identical rounds.
    let h = get_json(c.http_addr, "/api/sites/pc-00000/history?check=ipv6&from=0").await;
    let kinds: Vec<&str> = h["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["first", "change"]);
    let last = &h["points"][1];
    assert_eq!(last["rollup"]["samples"], 2);
    assert_eq!(last["state"]["prefix"], site["prefix"]);
    assert!(
        last.get("detail").is_none(),
        "a chart's point is small: {last}"
    );
    // The whole point, on demand.
    let whole = get_json(
        c.http_addr,
        &format!(
            "/api/sites/pc-00000/history/point?check=ipv6&terminal=pc-1&at_ms={}&seq={}",
            last["at_ms"], last["seq"]
        ),
    )
    .await;
    assert_eq!(whole["detail"]["prefix"], site["prefix"], "{whole}");
    assert!(whole["detail"]["global"].is_array(), "{whole}");
    let (status, body) = get(
        c.http_addr,
        "/api/sites/pc-00000/history/point?check=ipv6&terminal=pc-1&at_ms=1&seq=1",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_clear_when_the_condition_ends_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(flag_config(dir.path())).await.unwrap();
    run_sim(&c, Scenario::DnsTable, 3, "cl-").await;
    let site = get_json(c.http_addr, "/api/sites/cl-00000").await;
    assert_eq!(site["flags"], json!(["dns_failing"]));
    c.stop().await.unwrap();

    // Restarted on the same store: the flag, the diagnosis and the metrics come back.
    let c = server::start(flag_config(dir.path())).await.unwrap();
    let site = get_json(c.http_addr, "/api/sites/cl-00000").await;
    assert_eq!(site["flags"], json!(["dns_failing"]));
    assert_eq!(site["diagnosis"]["step"], 3);
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(
        series(
            &m,
            "oqs_site_flag",
            &[("site", "cl-00000"), ("flag", "dns_failing")]
        ),
        Some(1.0)
    );

    // The router is fixed: two good rounds clear it.
    run_sim(&c, Scenario::Healthy, 2, "cl-").await;
    let site = get_json(c.http_addr, "/api/sites/cl-00000").await;
    assert_eq!(site["flags"], json!([]));
    assert_eq!(site["diagnosis"]["step"], Value::Null);
    let events = get_json(c.http_addr, "/api/events?site=cl-00000").await;
    assert_eq!(events["events"][0]["flag"], "dns_failing");
    assert_eq!(events["events"][0]["action"], "cleared");
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(
        series(
            &m,
            "oqs_site_flag",
            &[("site", "cl-00000"), ("flag", "dns_failing")]
        ),
        Some(0.0)
    );
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_is_flagged_after_three_intervals_and_cleared_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(flag_config(dir.path())).await.unwrap();
    run_sim(&c, Scenario::Silent, 4, "si-").await;
    let site = get_json(c.http_addr, "/api/sites/si-00000").await;
    assert_eq!(site["flags"], json!([]), "not silent yet");
    let mut flagged = false;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let site = get_json(c.http_addr, "/api/sites/si-00000").await;
        if site["flags"] == json!(["agent_silent"]) {
            flagged = true;
            break;
        }
    }
    assert!(flagged, "agent_silent within 3 intervals (3 s) and a tick");
    run_sim(&c, Scenario::Healthy, 1, "si-").await;
    let site = get_json(c.http_addr, "/api/sites/si-00000").await;
    assert_eq!(site["flags"], json!([]));
    let events = get_json(c.http_addr, "/api/events?site=si-00000").await;
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["cleared", "raised"]);
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_flagged_sites_first_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(flag_config(dir.path())).await.unwrap();
    sim_fleet(&c, Scenario::Mixed, 50, 3, "mx-").await;
    let sites = get_json(c.http_addr, "/api/sites").await;
    let list = sites["sites"].as_array().unwrap();
    assert_eq!(list.len(), 50);
    // Mixed: site 5 is P11019, the most severe; healthy sites come last.
    assert_eq!(list[0]["site_id"], "mx-00005");
    assert_eq!(list[0]["flags"][0], "lineauth_error");
    assert_eq!(list[49]["flags"], json!([]));
    let first_healthy = list.iter().position(|s| s["flags"] == json!([])).unwrap();
    assert!(list[first_healthy..]
        .iter()
        .all(|s| s["flags"] == json!([])));
    // Two router-table sites and one upstream site.
    assert_eq!(sites["flag_counts"]["dns_failing"], 3);

    let dns = get_json(c.http_addr, "/api/sites?flag=dns_failing").await;
    let ids: Vec<&str> = dns["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["mx-00001", "mx-00013", "mx-00047"]);
    // Search by part of the name, not by the customer ID without the reveal token (that is in
    // tests/http_auth.rs), and filter by prefecture.
    let five = oqs_fleet_sim::scenario::SiteProfile::new(5, "mx-", Scenario::Mixed, 1);
    let by_name = get_json(
        c.http_addr,
        &format!("/api/sites?q={}", urlencode(&five.name)),
    )
    .await;
    assert_eq!(by_name["sites"][0]["site_id"], "mx-00005", "{by_name}");
    assert_eq!(by_name["total"], 1);
    let by_id = get_json(c.http_addr, &format!("/api/sites?q={}", five.customer_id)).await;
    assert_eq!(by_id["total"], 0, "{by_id}");
    let pref = get_json(
        c.http_addr,
        &format!("/api/sites?prefecture={}", urlencode(five.prefecture)),
    )
    .await;
    let listed = pref["sites"].as_array().unwrap();
    assert!(!listed.is_empty() && listed.iter().all(|s| s["prefecture"] == five.prefecture));
    assert_eq!(
        pref["total"].as_u64().unwrap() as usize,
        (0..50)
            .filter(|i| {
                oqs_fleet_sim::scenario::SiteProfile::new(*i, "mx-", Scenario::Mixed, 1).prefecture
                    == five.prefecture
            })
            .count()
    );
    let page = get_json(c.http_addr, "/api/sites?limit=10&offset=45").await;
    assert_eq!(page["total"], 50);
    assert_eq!(page["sites"].as_array().unwrap().len(), 5);
    for bad in [
        "/api/sites?flag=nope",
        "/api/sites?limit=0",
        "/api/sites?area=north",
        "/api/sites?colour=red",
        "/api/events?since=yesterday",
        "/api/sites/mx-00001/history",
        "/api/sites/mx-00001/history?check=dnss",
        "/api/sites/mx-00001/history?check=dns&from=2027-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let (status, body) = get(c.http_addr, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("error"), "{bad}: {body}");
    }
    let (status, _) = get(c.http_addr, "/api/sites/nobody/history?check=dns").await;
    assert_eq!(status, 404);
    c.stop().await.unwrap();
}

/// Retention goes by when the collector received a report, never by the terminal's clock: a
/// spool replayed now with two days of old report times stays (raw and history) for the whole
/// retention; reports received two days ago go, however new their own times say they are; a
/// replay of a deleted report is still a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_goes_by_receive_time_and_replays_of_deleted_reports_stay_duplicates() {
    use oqs_collector::store::{CommitBatch, Store, TerminalKey, TerminalRecord};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = flag_config(dir.path());
    cfg.history.raw_retention_hours = 1;
    cfg.history.history_retention_days = 1;
    cfg.history.sweep_every_secs = 1;
    let now = oqs_collector::clock::now_ms();
    let hour = 3_600_000;
    // Stored earlier, as the collector stores them: ten reports of a terminal whose clock was
    // ahead (every report says "five minutes ago"), received over the last two days.
    let received: Vec<i64> = (0..10).map(|i| now - 48 * hour + i * 5 * hour).collect();
    let seeded = TerminalKey::new("ret-a", "pc-1");
    {
        let store = Store::open(dir.path()).unwrap();
        let mut rec = TerminalRecord::default();
        let mut b = CommitBatch::default();
        for (i, at) in received.iter().enumerate() {
            let seq = i as u64 + 1;
            let mut r = report(seq);
            r.finished_at_ms = now - 300_000;
            r.started_at_ms = r.finished_at_ms - 100;
            b.put_report(&seeded, seq, r.finished_at_ms, *at, &r.encode_to_vec());
            let samples = oqs_collector::samples::samples(&r);
            // Points keyed at their receive time (as a clock ahead is stamped), one per report.
            for (check, p) in oqs_collector::history::record(&mut rec, samples, *at, *at, 1) {
                b.put_point(&seeded, check, seq, &p);
            }
            rec.last_seq = seq;
            rec.reports_total += 1;
        }
        b.put_terminal(&seeded, &rec);
        store.commit(b).unwrap();
    }

    let c = server::start(cfg.clone()).await.unwrap();
    // Now: a spool replayed after an outage, ten reports whose own times span the last two days.
    let times: Vec<i64> = (0..10).map(|i| now - 48 * hour + i * 5 * hour).collect();
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("ret-b", "pc-1")).await;
    for (i, t) in times.iter().enumerate() {
        let mut r = report(i as u64 + 1);
        r.started_at_ms = t - 100;
        r.finished_at_ms = *t;
        s.send(r).await;
        assert!(!s.ack().await.duplicate);
    }
    drop(s);
    // Let a few retention passes run (every second).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    c.stop().await.unwrap();

    let store = Store::open(dir.path()).unwrap();
    let replayed = TerminalKey::new("ret-b", "pc-1");
    for seq in 1..=10 {
        assert!(
            store.has_report(&replayed, seq).unwrap(),
            "seq {seq} was received just now: kept whatever its own time"
        );
    }
    let (points, _) = store
        .history(
            &replayed,
            oqs_collector::samples::Check::Ipv6,
            0,
            i64::MAX,
            100,
        )
        .unwrap();
    assert_eq!(points.len(), 10, "every replayed point kept: {points:?}");
    assert_eq!(points[0].1.at_ms, times[0], "drawn when it happened");
    for (i, at) in received.iter().enumerate() {
        let kept = store.has_report(&seeded, i as u64 + 1).unwrap();
        let young = now - at < hour;
        let newest = i == received.len() - 1;
        assert_eq!(
            kept,
            young || newest,
            "seq {} received -{} h",
            i + 1,
            (now - at) / hour
        );
    }
    let (points, _) = store
        .history(
            &seeded,
            oqs_collector::samples::Check::Ipv6,
            0,
            i64::MAX,
            100,
        )
        .unwrap();
    assert!(!points.is_empty());
    assert!(
        points
            .iter()
            .all(|(_, p)| now - p.received_ms() < 25 * hour),
        "points received more than a day ago are gone: {:?}",
        points
            .iter()
            .map(|(_, p)| (now - p.received_ms()) / hour)
            .collect::<Vec<_>>()
    );
    drop(store);

    // A replay of a deleted report is a duplicate, not an out-of-order refusal.
    let c = server::start(cfg).await.unwrap();
    let (mut s, last) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("ret-a", "pc-1")).await;
    assert_eq!(last, 10);
    let mut r = report(2);
    r.finished_at_ms = now - 300_000;
    r.started_at_ms = r.finished_at_ms - 100;
    s.send(r).await;
    assert!(s.ack().await.duplicate);
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_on_one_line_see_each_other_and_the_diagnosis_speaks_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(flag_config(dir.path())).await.unwrap();
    // The simulator derives a site's line from its index: q16a-00000 and q16b-00000 share one
    // (a clinic and the pharmacy next door on one FLET'S line, FAQ Q16); other-00001 does not.
    run_sim(&c, Scenario::Healthy, 2, "q16a-").await;
    run_sim(&c, Scenario::Healthy, 2, "q16b-").await;
    sim_fleet(&c, Scenario::Healthy, 2, 2, "other-").await;
    let a = get_json(c.http_addr, "/api/sites/q16a-00000").await;
    assert_eq!(a["shares_line_with"], json!(["other-00000", "q16b-00000"]));
    let other = get_json(c.http_addr, "/api/sites/other-00001").await;
    assert_eq!(other["shares_line_with"], json!([]));

    run_sim(&c, Scenario::P11019, 3, "ja-").await;
    let d = get_json(c.http_addr, "/api/sites/ja-00000").await;
    assert!(d["diagnosis"]["remedy_ja"]
        .as_str()
        .unwrap()
        .contains("お客さまID"));
    assert!(d["diagnosis"]["remedy_en"]
        .as_str()
        .unwrap()
        .contains("customer ID"));
    assert!(d["diagnosis"]["guide_page"]
        .as_str()
        .unwrap()
        .contains("FAQ Q9"));
    assert_eq!(d["contact"]["last_lineauth_code"]["code"], "P11019");
    c.stop().await.unwrap();
}

/// Percent-encodes a query value (UTF-8 site names and prefectures).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Each condition flag, once raised by its scenario, clears when the terminal reports healthy
/// rounds again (two, the hysteresis), with a "cleared" event per flag; `flapping` clears once its
/// window has no address changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_clears_when_its_condition_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = flag_config(dir.path());
    cfg.flags.flapping_window_secs = 1;
    let c = server::start(cfg).await.unwrap();
    let cases: &[(Scenario, &[&str])] = &[
        (Scenario::Ipv6Missing, &["ipv6_missing"]),
        (
            Scenario::CertUntrusted,
            &["cert_untrusted", "oqs_web_unreachable"],
        ),
        (Scenario::NtpSkew, &["ntp_skew"]),
        (Scenario::CertExpiring, &["cert_expiring"]),
        (Scenario::WebDown, &["oqs_web_unreachable"]),
        (Scenario::UnknownCode, &["lineauth_error"]),
        (Scenario::P32031, &["lineauth_error"]),
        (Scenario::Consent, &["reauth_required"]),
        (Scenario::DnsUpstream, &["dns_failing"]),
        (Scenario::Flapping, &["flapping"]),
    ];
    let portal: Vec<(Scenario, [&str; 1])> = PORTAL_PAGES
        .iter()
        .map(|&(scenario, flag, _)| (scenario, [flag]))
        .collect();
    let cases = cases
        .iter()
        .map(|(sc, raised)| (*sc, *raised))
        .chain(portal.iter().map(|(sc, raised)| (*sc, &raised[..])));
    for (i, (scenario, raised)) in cases.enumerate() {
        let prefix = format!("clr{i}-");
        let site = format!("{prefix}00000");
        run_sim(&c, scenario, 4, &prefix).await;
        let s = get_json(c.http_addr, &format!("/api/sites/{site}")).await;
        assert_eq!(s["flags"], json!(raised), "{scenario} raises");
        if scenario == Scenario::Flapping {
            // Let the 1 s window empty of address changes.
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
        run_sim(&c, Scenario::Healthy, 2, &prefix).await;
        let s = get_json(c.http_addr, &format!("/api/sites/{site}")).await;
        assert_eq!(s["flags"], json!([]), "{scenario} clears: {s}");
        assert_eq!(s["diagnosis"]["step"], Value::Null, "{scenario}");
        let events = get_json(c.http_addr, &format!("/api/events?site={site}")).await;
        for flag in raised {
            assert!(
                events["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["flag"] == *flag && e["action"] == "cleared"),
                "{scenario}: {flag} cleared event: {events}"
            );
        }
        let (_, m) = get(c.http_addr, "/metrics").await;
        for flag in raised {
            assert_eq!(
                series(&m, "oqs_site_flag", &[("site", &site), ("flag", flag)]),
                Some(0.0),
                "{scenario}: {flag}"
            );
        }
    }
    c.stop().await.unwrap();
}

/// A window with more points than `history.max_points_per_query` answers its newest points (the
/// recent end is what an engineer on the phone needs), says it is truncated and from when it is
/// complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_history_keeps_the_newest_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = flag_config(dir.path());
    cfg.history.max_points_per_query = 3;
    let c = server::start(cfg).await.unwrap();
    // Flapping: the global address comes and goes every round, so every round is a point.
    run_sim(&c, Scenario::Flapping, 8, "tr-").await;
    let h = get_json(c.http_addr, "/api/sites/tr-00000/history?check=ipv6&from=0").await;
    assert_eq!(h["truncated"], true, "{h}");
    let points = h["points"].as_array().unwrap();
    let seqs: Vec<u64> = points.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![6, 7, 8], "the newest, oldest first: {h}");
    assert_eq!(h["complete_from"], points[0]["at"]);
    let all = get_json(
        c.http_addr,
        "/api/sites/tr-00000/history?check=ipv6&from=0&terminal=pc-2",
    )
    .await;
    assert_eq!(all["points"], json!([]), "another terminal's filter: none");
    assert_eq!(all["truncated"], false);
    c.stop().await.unwrap();
}

/// The portal flags' details say which page: declined or the back button (FAQ Q10), the excerpt
/// of an unknown page, the probe's error when the portal gives no page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_flags_carry_what_the_page_said() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(flag_config(dir.path())).await.unwrap();
    for (i, (scenario, flag, detail)) in [
        (Scenario::Declined, "lineauth_declined", "declined"),
        (
            Scenario::NotFromPortal,
            "lineauth_declined",
            "not_from_portal",
        ),
        (
            Scenario::UnknownPage,
            "lineauth_unknown_page",
            "メンテナンス中",
        ),
        (
            Scenario::PortalDown,
            "lineauth_unreachable",
            "TLS handshake failed",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let prefix = format!("pd{i}-");
        run_sim(&c, scenario, 4, &prefix).await;
        let s = get_json(c.http_addr, &format!("/api/sites/{prefix}00000")).await;
        let active = s["active_flags"].as_array().unwrap();
        let f = active.iter().find(|a| a["flag"] == flag).unwrap();
        assert!(
            f["detail"].as_str().unwrap().contains(detail),
            "{scenario}: {f}"
        );
    }
    c.stop().await.unwrap();
}
