//! `oqs-agent check` as the engineer runs it: the exit status, the JSON document's contract, and
//! the Japanese report. The agent runs inside a network namespace of its own (`unshare --net`,
//! nothing but a downed loopback), so none of its probes can leave this machine; every check fails
//! and the tree must name a failing step.

use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new("unshare");
    c.args(["--net", "--"]).arg(env!("CARGO_BIN_EXE_oqs-agent"));
    c
}

fn config(extra: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        f.path(),
        format!("site_id = \"s\"\nterminal_id = \"t\"\narea = \"east\"\nprobe_timeout_ms = 300\n{extra}"),
    )
    .unwrap();
    f
}

#[test]
fn json_has_every_probe_the_lineauth_object_and_a_diagnosis_step() {
    let cfg = config("");
    let out = agent()
        .args(["check", "--json", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["area"], "east");
    // 6 East names × AAAA/A × (system + 2 servers).
    assert_eq!(v["dns"].as_array().unwrap().len(), 36);
    assert!(v["lineauth"]["state"].is_string());
    assert!(v["lineauth"].get("code").is_some());
    assert_eq!(v["http"].as_array().unwrap().len(), 3);
    assert_eq!(v["ntp"].as_array().unwrap().len(), 1);
    let step = v["diagnosis"]["step"].as_u64().unwrap();
    assert!((2..=6).contains(&step), "{step}");
    assert!(v["diagnosis"]["remedy_ja"].as_str().unwrap().len() > 10);
    assert!(v.get("prefix").is_some());
    let wall = v["round"]["wall_ms"].as_i64().unwrap();
    let slowest = v["round"]["slowest_probe_ms"].as_i64().unwrap();
    assert!(wall >= slowest, "a round lasts at least its slowest probe");
    // Probes run concurrently: 36 DNS probes with a 300 ms timeout finish far inside 36 × 300 ms.
    assert!(wall < 3_000, "round took {wall} ms");
}

#[test]
fn a_wrong_portal_url_is_step_1() {
    let cfg = config("[lineauth]\nurl = \"https://lineauth.example/\"\n");
    let out = agent()
        .args(["check", "--json", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["diagnosis"]["step"], 1);
    assert_eq!(v["diagnosis"]["finding"], "wrong_url");
}

#[test]
fn the_report_is_japanese_by_default_and_english_on_request() {
    let cfg = config("");
    let ja = agent()
        .args(["check", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    let ja = String::from_utf8(ja.stdout).unwrap();
    assert!(
        ja.contains("接続チェック") && ja.contains("切り分け手順") && ja.contains("0120-220-571"),
        "{ja}"
    );
    let en = agent()
        .args(["check", "--lang", "en", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    let en = String::from_utf8(en.stdout).unwrap();
    assert!(
        en.contains("troubleshooting step") && en.contains("0120-220-571"),
        "{en}"
    );
}

#[test]
fn bad_input_exits_2_with_a_message_naming_it() {
    let out = agent().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--area"));
    let out = agent()
        .args(["check", "--area", "east", "--oqs-ca", "/nonexistent/ca.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));
    let cfg = config("bogus_key = 1\n");
    let out = agent()
        .args(["check", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus_key"));
}

#[test]
fn a_reader_that_goes_away_is_not_a_panic() {
    use std::io::Read;
    let cfg = config("");
    let mut child = agent()
        .args(["check", "--json", "--config"])
        .arg(cfg.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read nothing and close the pipe, as `| head -c 0` would.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        status.code(),
        Some(1),
        "the round's verdict, not a crash: {err}"
    );
}

/// `check --connection`: off the guide's method the report says the method, no IPv6 or portal
/// check is among the failing, and the unresolved names give the off-guide finding without a
/// step (nothing resolves in the empty namespace); a method other than the config's, or an
/// unknown one, is refused naming what to do.
#[test]
fn check_connection_judges_by_the_method_given() {
    let out = agent()
        .args([
            "check",
            "--json",
            "--area",
            "east",
            "--connection",
            "ipv4_pppoe",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["connection"], "ipv4_pppoe");
    assert_eq!(doc["diagnosis"]["connection"], "ipv4_pppoe");
    assert_eq!(doc["diagnosis"]["finding"], "off_guide_dns", "{doc}");
    assert!(doc["diagnosis"]["step"].is_null(), "{doc}");
    let failing: Vec<&str> = doc["failing"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        !failing.iter().any(|f| *f == "ipv6" || *f == "lineauth"),
        "{failing:?}"
    );
    assert!(
        failing.contains(&"dns pweb.base.oqs-pdl.org (system)"),
        "{failing:?}"
    );

    let out = agent()
        .args(["check", "--area", "east", "--connection", "pppoe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ipv4_pppoe"));
    let cfg = config("connection = \"ipv4_pppoe\"\n");
    let out = agent()
        .args(["check", "--connection", "ipsec", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--connection ipsec") && err.contains("ipv4_pppoe"),
        "{err}"
    );
}
