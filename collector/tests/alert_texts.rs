//! The shipped alert rules speak Japanese from the same facts the dashboard does: every alert's
//! `remedy_ja`, `guide_ja` and `desk_ja` annotations are the guide's (oqs-guide's verdict and desks
//! for the finding the catalogue gives the alert), `site_name` is looked up from
//! `oqs_site_info`, and `summary_ja` names the site. Alerts whose flag has no finding of the
//! guide (the collector's own, the terminal's clock) carry hand-written texts, checked present.
//!
//! `UPDATE_ALERT_TEXTS=1 cargo test -p oqs-collector --test alert_texts` writes the generated
//! annotations into `deploy/prometheus/oqs-alerts.yml` (after a change of the guide's texts).

use oqs_collector::catalog::FLAGS;
use oqs_guide::diagnosis;
use oqs_guide::support;
use std::collections::BTreeMap;
use std::path::PathBuf;

const SITE_NAME: &str = r#"'{{ with printf "oqs_site_info{site=%q}" $labels.site | query }}{{ . | first | label "site_name" }}{{ end }}'"#;

fn rules_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/oqs-alerts.yml")
}

/// The annotations the guide and the catalogue give each alert of a flag.
fn generated() -> BTreeMap<&'static str, Vec<(&'static str, String)>> {
    let mut out = BTreeMap::new();
    for info in FLAGS.iter() {
        let (step, page) = info.guide.step_and_page();
        for alert in info.alerts {
            let mut anns = Vec::new();
            let finding = info.finding_of(alert);
            let (step, page) = match finding {
                Some(f) => {
                    let v = diagnosis::verdict(f);
                    (v.step, v.guide_page)
                }
                None => (step, page),
            };
            let guide = match step {
                Some(n) => format!("接続ガイド 手順{n}（{page}）"),
                None if finding.is_some_and(diagnosis::is_off_guide) => {
                    "接続ガイド（IP-VPN接続方式）の対象外の接続方式".to_owned()
                }
                None => format!("参照: {page}"),
            };
            anns.push(("guide_ja", format!("\"{guide}\"")));
            if let Some(f) = finding {
                anns.push((
                    "remedy_ja",
                    format!("\"{}\"", diagnosis::verdict(f).remedy_ja),
                ));
                let desks: Vec<String> = support::desks_for(Some(f))
                    .iter()
                    .map(|d| format!("{} {}", d.name_ja(), d.number()))
                    .collect();
                let desks = match desks.is_empty() {
                    true => "接続方式の提供事業者（閉域網・VPN）".to_owned(),
                    false => desks.join(" / "),
                };
                anns.push(("desk_ja", format!("\"{desks}\"")));
            }
            anns.push(("site_name", SITE_NAME.to_owned()));
            out.insert(alert.name, anns);
        }
    }
    out
}

/// Each `- alert:` block's annotation lines, as (key, raw value).
fn annotations(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_annotations = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("      - alert: ") {
            current = Some(name.trim().to_owned());
            in_annotations = false;
            out.entry(name.trim().to_owned()).or_default();
        } else if line.trim() == "annotations:" {
            in_annotations = true;
        } else if in_annotations {
            match line
                .strip_prefix("          ")
                .and_then(|l| l.split_once(": "))
            {
                Some((k, v)) if !k.starts_with(' ') => {
                    if let Some(c) = &current {
                        out.get_mut(c).unwrap().insert(k.to_owned(), v.to_owned());
                    }
                }
                _ => in_annotations = false,
            }
        }
    }
    out
}

/// Writes the generated annotations into the rules text (replacing earlier ones).
fn update(text: &str, gen: &BTreeMap<&'static str, Vec<(&'static str, String)>>) -> String {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut in_annotations = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("      - alert: ") {
            current = Some(name.trim().to_owned());
            in_annotations = false;
        } else if line.trim() == "annotations:" {
            in_annotations = true;
        }
        let key = line
            .strip_prefix("          ")
            .and_then(|l| l.split_once(": "))
            .map(|(k, _)| k);
        let managed = in_annotations
            && current
                .as_deref()
                .and_then(|c| gen.get(c))
                .is_some_and(|anns| anns.iter().any(|(k, _)| Some(*k) == key));
        if !managed {
            out.push(line.to_string());
        }
        let next_leaves = lines
            .get(i + 1)
            .map(|n| !n.starts_with("          "))
            .unwrap_or(true);
        if in_annotations && next_leaves {
            if let Some(anns) = current.as_deref().and_then(|c| gen.get(c)) {
                for (k, v) in anns {
                    out.push(format!("          {k}: {v}"));
                }
            }
            in_annotations = false;
        }
    }
    out.join("\n") + "\n"
}

#[test]
fn every_alert_speaks_japanese_from_the_guide() {
    let path = rules_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let gen = generated();
    if std::env::var_os("UPDATE_ALERT_TEXTS").is_some() {
        std::fs::write(&path, update(&text, &gen)).unwrap();
        return;
    }
    let found = annotations(&text);
    // Every catalogue alert, and the five that are not a flag's: the collector's own (CollectorDown,
    // CollectorDiskFilling, CollectorDiskFull), AreaIncident and SiteInMaintenance.
    let catalogued: usize = FLAGS.iter().map(|f| f.alerts.len()).sum();
    assert_eq!(found.len(), catalogued + 5, "{:?}", found.keys());
    // Not about one site: the collector itself, and an area-wide incident.
    let siteless = |a: &str| a.starts_with("Collector") || a == "AreaIncident";
    for (alert, anns) in &found {
        for key in [
            "summary_ja",
            "remedy_ja",
            "guide_ja",
            "desk_ja",
            "site_name",
        ] {
            let v = anns.get(key).map(|v| v.trim_matches('"')).unwrap_or("");
            assert!(
                !v.is_empty() || (key == "site_name" && siteless(alert)),
                "{alert}: no {key} (UPDATE_ALERT_TEXTS=1 writes the generated ones)"
            );
        }
        assert!(
            anns["summary_ja"].contains("{{ $labels.site }}") || siteless(alert),
            "{alert}: summary_ja names the site"
        );
        if let Some(expected) = gen.get(alert.as_str()) {
            for (k, v) in expected {
                assert_eq!(
                    anns.get(*k),
                    Some(v),
                    "{alert}: {k} is not the guide's (UPDATE_ALERT_TEXTS=1 rewrites it)"
                );
            }
        }
    }
    // The guide's texts reached the rules: P11019's remedy and the FLET'S desk first.
    let p11019 = &found["LineAuthIneligibleLine"];
    assert!(p11019["remedy_ja"].contains("お客さまIDを再申請"));
    assert!(
        p11019["desk_ja"].starts_with("\"フレッツ光") && p11019["desk_ja"].contains("0120-220-571")
    );
    assert!(
        found["LineAuthNoResponse"]["desk_ja"].contains("ネットワークサポートデスク 0120-220-571")
    );
}

/// The Japanese notification (deploy/alertmanager/templates/oqs-ja.tmpl), rendered by the real
/// `amtool` from what the rules' annotations say for a P11019 site: the site and its name, the
/// summary, the guide's step, the remedy, the desks with their numbers, the time in Japan time,
/// and the resolved ones.
#[test]
fn the_japanese_notification_carries_the_site_the_step_the_remedy_and_the_desk() {
    let rules = std::fs::read_to_string(rules_path()).unwrap();
    let found = annotations(&rules);
    let anns = |alert: &str, site: &str| -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &found[alert] {
            if k == "site_name" {
                continue;
            }
            let v = v.trim_matches('"').replace("{{ $labels.site }}", site);
            m.insert(k.clone(), serde_json::Value::String(v));
        }
        m.insert("site_name".into(), "山田クリニック".into());
        serde_json::Value::Object(m)
    };
    let data = serde_json::json!({
        "receiver": "noc-pager", "status": "firing", "externalURL": "http://127.0.0.1:9093",
        "groupLabels": {"site": "clinic-a"},
        "commonLabels": {"site": "clinic-a"}, "commonAnnotations": {},
        "alerts": [
            {"status": "firing", "labels": {"alertname": "LineAuthIneligibleLine", "site": "clinic-a"},
             "annotations": anns("LineAuthIneligibleLine", "clinic-a"),
             "startsAt": "2026-12-01T01:06:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "1"},
            {"status": "resolved", "labels": {"alertname": "Ipv6Missing", "site": "clinic-a"},
             "annotations": anns("Ipv6Missing", "clinic-a"),
             "startsAt": "2026-12-01T00:50:00Z", "endsAt": "2026-12-01T01:05:00Z", "fingerprint": "2"}
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.json");
    std::fs::write(&file, data.to_string()).unwrap();
    let glob =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/alertmanager/templates/*.tmpl");
    let out = std::process::Command::new("amtool")
        .args(["template", "render"])
        .arg(format!("--template.glob={}", glob.display()))
        .arg("--template.text={{ template \"oqs.ja.title\" . }}\n{{ template \"oqs.ja.text\" . }}")
        .arg(format!("--template.data={}", file.display()))
        .output()
        .expect(
            "amtool must be installed (apt-get install prometheus-alertmanager, as .ci/run does)",
        );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remedy = diagnosis::verdict(diagnosis::Finding::IneligibleLine).remedy_ja;
    for needle in [
        "[発生 1件] 拠点 clinic-a（山田クリニック）",
        "■ 拠点 clinic-a: 回線が接続対象外です（P11019）",
        "手順: 接続ガイド 手順5（P4 手順1, FAQ Q9）",
        &format!("対処: {remedy}"),
        "0120-116-116",
        "ネットワークサポートデスク 0120-220-571",
        "発生: 2026-12-01 10:06 JST",
        "【解消】",
        "・拠点 clinic-a: 端末にIPv6アドレスがありません（12-01 10:05 JST）",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

/// What a site's agent says goes into chat as text, never as markup: a site named `<!channel>`
/// (Slack's mention of everyone) with `<@U123>` and an `&` renders escaped in the chat templates
/// Slack and Teams use (rendered by the real `amtool`), while email keeps the name as it is.
#[test]
fn a_site_name_from_an_agent_mentions_nobody_in_chat() {
    let rules = std::fs::read_to_string(rules_path()).unwrap();
    let found = annotations(&rules);
    let mut anns = serde_json::Map::new();
    for (k, v) in &found["AgentSilent"] {
        if k != "site_name" {
            let v = v
                .trim_matches('"')
                .replace("{{ $labels.site }}", "clinic-x");
            anns.insert(k.clone(), serde_json::Value::String(v));
        }
    }
    anns.insert("site_name".into(), "<!channel> A&B薬局 <@U123>".into());
    let data = serde_json::json!({
        "receiver": "noc-slack", "status": "firing", "externalURL": "http://127.0.0.1:9093",
        "groupLabels": {"site": "clinic-x"}, "commonLabels": {"site": "clinic-x"},
        "commonAnnotations": {},
        "alerts": [{"status": "firing", "labels": {"alertname": "AgentSilent", "site": "clinic-x"},
            "annotations": anns, "startsAt": "2026-12-01T01:06:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "1"}]
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.json");
    std::fs::write(&file, data.to_string()).unwrap();
    let glob =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/alertmanager/templates/*.tmpl");
    let render = |text: &str| {
        let out = std::process::Command::new("amtool")
            .args(["template", "render"])
            .arg(format!("--template.glob={}", glob.display()))
            .arg(format!("--template.text={text}"))
            .arg(format!("--template.data={}", file.display()))
            .output()
            .expect("amtool must be installed (as .ci/run does)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chat =
        render("{{ template \"oqs.ja.chat.title\" . }}\n{{ template \"oqs.ja.chat.text\" . }}");
    assert!(
        chat.contains("（&lt;!channel&gt; A&amp;B薬局 &lt;@U123&gt;）"),
        "escaped for chat:\n{chat}"
    );
    assert!(
        !chat.contains("<!channel>") && !chat.contains("<@U"),
        "{chat}"
    );
    assert!(chat.contains("■ 拠点 clinic-x:"), "{chat}");
    let email = render("{{ template \"oqs.ja.title\" . }}");
    assert!(
        email.contains("<!channel> A&B薬局"),
        "email keeps the name: {email}"
    );
    // The shipped Slack receiver uses the chat templates.
    let am = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/alertmanager/alertmanager.yml"),
    )
    .unwrap();
    let slack = am
        .split("- name: noc-slack")
        .nth(1)
        .unwrap()
        .split("- name:")
        .next()
        .unwrap();
    assert!(
        slack.contains("oqs.ja.chat.title") && slack.contains("oqs.ja.chat.text"),
        "{slack}"
    );
}
