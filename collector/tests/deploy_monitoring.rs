//! The monitoring deployment in `deploy/` checked with the real tools (Debian's `prometheus` and
//! `prometheus-alertmanager` packages, installed by .ci/run): the scrape config and alert rules
//! load, the rules' unit tests (`deploy/prometheus/*test*.yml`) pass, a real scrape of a collector
//! fed by the fleet simulator is clean under `promtool check metrics`, the Alertmanager example
//! loads and routes per site, and every Grafana query parses and names only exported metrics.

mod common;

use common::*;
use oqs_fleet_sim::{self as sim, scenario::Scenario, SimOptions};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs a tool; panics with its output unless it succeeds.
fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{tool} must be installed (apt-get install prometheus prometheus-alertmanager, as \
                 .ci/run does): {e}"
            )
        });
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn the_scrape_config_and_rules_load_and_the_rule_tests_pass() {
    let dir = deploy().join("prometheus");
    let config = dir.join("prometheus.yml");
    run(
        "promtool",
        &["check", "config", config.to_str().unwrap()],
        None,
    );
    let mut tests = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("test") && name.ends_with(".yml") {
            let out = run("promtool", &["test", "rules", path.to_str().unwrap()], None);
            assert!(out.contains("SUCCESS"), "{out}");
            tests += 1;
        }
    }
    assert!(tests >= 1, "no rule tests found in {}", dir.display());
    // Every alert the issue names exists, with a summary and a runbook naming the guide.
    let rules = std::fs::read_to_string(dir.join("oqs-alerts.yml")).unwrap();
    for alert in [
        "PrefixChanged",
        "ReauthRequired",
        "LineAuthIneligibleLine",
        "LineAuthNoResponse",
        "DnsRouterTableWrong",
        "DnsResolutionFailing",
        "Ipv6Missing",
        "CertUntrusted",
        "AgentSilent",
        "Flapping",
        "LineAuthFailed",
        "LineAuthSystemError",
        "LineAuthPortalUnreachable",
        "LineAuthDeclined",
        "LineAuthRetryLater",
        "LineAuthUnknownPage",
    ] {
        let at = rules
            .find(&format!("alert: {alert}\n"))
            .unwrap_or_else(|| panic!("alert {alert} missing"));
        let body = &rules[at..];
        let body = &body[..body[1..]
            .find("- alert:")
            .map(|i| i + 1)
            .unwrap_or(body.len())];
        assert!(body.contains("summary:"), "{alert} has no summary");
        assert!(
            body.contains("runbook: \"Guide") || body.contains("runbook: \"DOMAIN"),
            "{alert}'s runbook does not name the guide"
        );
    }
    // The rules are the catalogue's: every alert it names exists on its flag (or the flag's
    // detail) with its severity, and no rule alerts on a flag or detail the catalogue lacks.
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    let block = |name: &str| {
        blocks
            .iter()
            .find(|b| b.starts_with(&format!("{name}\n")))
            .copied()
            .unwrap_or_else(|| panic!("the catalogue's alert {name} is not in oqs-alerts.yml"))
    };
    let mut cataloged = BTreeSet::new();
    for f in oqs_collector::catalog::FLAGS.iter() {
        for a in f.alerts {
            let b = block(a.name);
            let expr = match a.detail {
                None => format!("oqs_site_flag{{flag=\"{}\"}} == 1", f.name),
                Some(d) => format!(
                    "oqs_site_flag_detail{{flag=\"{}\", detail=\"{d}\"}} == 1",
                    f.name
                ),
            };
            assert!(
                b.contains(&expr),
                "{} does not alert on {expr}:\n{b}",
                a.name
            );
            assert!(
                b.contains(&format!("severity: {}\n", a.severity.as_str())),
                "{} is not severity {} as the catalogue says",
                a.name,
                a.severity.as_str()
            );
            cataloged.insert(a.name);
        }
    }
    for b in &blocks {
        let name = b.lines().next().unwrap();
        if b.contains("flag=") {
            assert!(
                cataloged.contains(name),
                "the rule {name} alerts on a flag but is not in the catalogue"
            );
        }
    }
    // The portal codes with their own label are the ones the catalogue alerts on.
    let codes: Vec<&str> = oqs_collector::flags::Flag::LineauthError
        .info()
        .alerts
        .iter()
        .filter_map(|a| a.detail)
        .filter(|d| *d != "other")
        .collect();
    assert_eq!(
        oqs_collector::config::FlagSettings::default().known_codes,
        codes
    );
    let dns: Vec<&str> = oqs_collector::flags::Flag::DnsFailing
        .info()
        .alerts
        .iter()
        .filter_map(|a| a.detail)
        .collect();
    assert_eq!(dns, oqs_collector::flags::DNS_CAUSES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_is_clean_and_the_grafana_queries_parse() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let opts = SimOptions {
        collector: format!("http://{}", c.grpc_addr),
        sites: 50,
        reports: 3,
        interval: Duration::from_millis(10),
        scenario: Scenario::Mixed,
        ..SimOptions::default()
    };
    let s = sim::run(opts, CancellationToken::new()).await.unwrap();
    assert!(s.all_acked(), "{s}");
    let (status, scrape) = get(c.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    c.stop().await.unwrap();
    let lint = run("promtool", &["check", "metrics"], Some(&scrape));
    assert!(
        lint.trim().is_empty(),
        "promtool check metrics found problems:\n{lint}"
    );
    // Every metric has HELP; no label carries an address.
    let families: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for f in &families {
        assert!(scrape.contains(&format!("# HELP {f} ")), "{f} has no HELP");
    }
    for l in scrape.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !l.contains("2408:") && !l.contains("2001:"),
            "address in a label: {l}"
        );
    }
    for name in [
        "oqs_site_flag",
        "oqs_ipv6_prefix_changes_total",
        "oqs_lineauth_code_total",
        "oqs_agent_last_report_timestamp_seconds",
        "oqs_check_success",
        "oqs_check_duration_seconds",
        "oqs_reports_ingested_total",
    ] {
        assert!(families.contains(name), "{name} not exported");
    }

    // Grafana: every query parses (promtool checks it as a recording rule) and names only metrics
    // the collector exports (or Prometheus' own `up`).
    let mut rules = String::from("groups:\n  - name: grafana-queries\n    rules:\n");
    let mut n = 0;
    for file in ["oqs-fleet-overview.json", "oqs-site.json"] {
        let path = deploy().join("grafana/dashboards").join(file);
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(d["uid"].is_string() && d["title"].is_string(), "{file}");
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap().replace("$site", "site-00001");
                // Metric names only: label values (in quotes) are not names.
                let unquoted: String = expr
                    .split('"')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 0)
                    .map(|(_, s)| s)
                    .collect::<Vec<_>>()
                    .join(" ");
                // Label values of flag and check are the catalogue's names.
                for (label, known) in [
                    ("flag=\"", oqs_collector::flags::Flag::names()),
                    ("check=\"", oqs_collector::samples::Check::names()),
                ] {
                    for v in expr.split(label).skip(1) {
                        let v = &v[..v.find('"').unwrap()];
                        assert!(
                            v.split('|').all(|v| known.split(", ").any(|k| k == v)),
                            "{file} panel {:?} uses {label}{v}, not a catalogue name",
                            p["title"]
                        );
                    }
                }
                for word in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if let Some(base) = word.strip_prefix("oqs_") {
                        let base = format!("oqs_{base}");
                        let family = ["_bucket", "_sum", "_count"]
                            .iter()
                            .find_map(|s| base.strip_suffix(s))
                            .unwrap_or(&base);
                        assert!(
                            families.contains(family),
                            "{file} panel {:?} uses {base}, which the collector does not export",
                            p["title"]
                        );
                    }
                }
                n += 1;
                rules.push_str(&format!(
                    "      - record: grafana:query_{n}\n        expr: {}\n",
                    serde_json::to_string(&expr).unwrap()
                ));
            }
        }
    }
    let site = std::fs::read_to_string(deploy().join("grafana/dashboards/oqs-site.json")).unwrap();
    assert!(
        site.contains("\"name\": \"site\""),
        "the site dashboard has a site variable"
    );
    let tmp = tempfile::tempdir().unwrap();
    let rules_path = tmp.path().join("grafana-queries.yml");
    std::fs::write(&rules_path, rules).unwrap();
    run(
        "promtool",
        &["check", "rules", rules_path.to_str().unwrap()],
        None,
    );
}

#[test]
fn the_alertmanager_example_loads_and_groups_per_site() {
    let config = deploy().join("alertmanager/alertmanager.yml");
    let config = config.to_str().unwrap();
    run("amtool", &["check-config", config], None);
    let route = |labels: &[&str]| {
        let mut args = vec!["config", "routes", "test", "--config.file", config];
        args.extend_from_slice(labels);
        run("amtool", &args, None)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    assert_eq!(
        route(&[
            "site=clinic-a",
            "alertname=DnsRouterTableWrong",
            "severity=critical"
        ]),
        "noc-pager"
    );
    assert_eq!(
        route(&[
            "site=clinic-a",
            "alertname=PrefixChanged",
            "severity=warning"
        ]),
        "noc-default"
    );
    assert_eq!(
        route(&["alertname=CollectorDown", "severity=critical"]),
        "noc-pager"
    );
    // The collector's disk: paged when almost full, told a day ahead.
    assert_eq!(
        route(&["alertname=CollectorDiskFull", "severity=critical"]),
        "noc-pager"
    );
    assert_eq!(
        route(&["alertname=CollectorDiskFilling", "severity=warning"]),
        "noc-default"
    );
    // A closed clinic's maintenance alert is told to nobody (it inhibits the site's alerts).
    assert_eq!(
        route(&[
            "alertname=SiteInMaintenance",
            "site=clinic-a",
            "severity=info"
        ]),
        "null"
    );
    // An area-wide incident pages once, grouped by its area rather than a site.
    assert_eq!(
        route(&[
            "alertname=AreaIncident",
            "area=east",
            "prefecture=新潟県",
            "kind=ipv6_lost",
            "severity=critical"
        ]),
        "noc-pager"
    );
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("group_by: [\"site\"]"));
    assert!(text.contains("group_by: [\"area\", \"prefecture\", \"kind\"]"));
}

/// The real Alertmanager (Debian's `prometheus-alertmanager`) on loopback with the shipped
/// config: an open AreaIncident holds back its kind's per-site alerts in the same area and
/// prefecture only; a site in maintenance has its line alerts held back, its integrity alerts not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_alertmanager_inhibits_what_an_incident_or_a_window_explains() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = deploy().join("alertmanager/alertmanager.yml");
    let mut am = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prometheus-alertmanager must be installed (.ci/run installs it)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = am.stderr.take();
    let _am = Kill(am);
    let base = format!("http://127.0.0.1:{port}/api/v2");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        let mut log = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut log);
        }
        panic!("alertmanager did not start: {log}");
    }
    let alert = |labels: serde_json::Value| serde_json::json!({ "labels": labels });
    let alerts = serde_json::json!([
        alert(
            serde_json::json!({"alertname": "AreaIncident", "severity": "critical",
            "area": "east", "prefecture": "新潟県", "kind": "ipv6_lost"})
        ),
        alert(
            serde_json::json!({"alertname": "Ipv6Missing", "severity": "critical",
            "flag": "ipv6_missing", "site": "in-niigata", "area": "east", "prefecture": "新潟県"})
        ),
        alert(
            serde_json::json!({"alertname": "Ipv6Missing", "severity": "critical",
            "flag": "ipv6_missing", "site": "in-tokyo", "area": "east", "prefecture": "東京都"})
        ),
        alert(
            serde_json::json!({"alertname": "AgentSilent", "severity": "warning",
            "flag": "agent_silent", "site": "silent-niigata", "area": "east", "prefecture": "新潟県"})
        ),
        alert(
            serde_json::json!({"alertname": "SiteInMaintenance", "severity": "info",
            "site": "closed"})
        ),
        alert(
            serde_json::json!({"alertname": "LineAuthFailed", "severity": "critical",
            "flag": "lineauth_failed", "site": "closed"})
        ),
        alert(
            serde_json::json!({"alertname": "StoreLostReports", "severity": "critical",
            "flag": "store_lost_reports", "site": "closed"})
        ),
    ]);
    let r = http
        .post(format!("{base}/alerts"))
        .header("content-type", "application/json")
        .body(alerts.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut state = std::collections::BTreeMap::new();
    for _ in 0..50 {
        let got: serde_json::Value = serde_json::from_str(
            &http
                .get(format!("{base}/alerts"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        state = got
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let l = &a["labels"];
                let who = format!(
                    "{}/{}",
                    l["alertname"].as_str().unwrap(),
                    l["site"].as_str().unwrap_or("-")
                );
                let inhibited = !a["status"]["inhibitedBy"]
                    .as_array()
                    .is_none_or(|v| v.is_empty());
                (who, inhibited)
            })
            .collect();
        if state.len() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expect: std::collections::BTreeMap<String, bool> = [
        ("AreaIncident/-", false),
        ("Ipv6Missing/in-niigata", true),
        ("Ipv6Missing/in-tokyo", false),
        ("AgentSilent/silent-niigata", false),
        ("SiteInMaintenance/closed", false),
        ("LineAuthFailed/closed", true),
        ("StoreLostReports/closed", false),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(state, expect, "alert → inhibited");
}
