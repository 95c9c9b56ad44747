//! Closed days and maintenance windows end to end, through the real server: a window set in the
//! API keeps `agent_silent` from firing for a site whose agent went quiet (while the same site
//! without one is flagged), shows on the site page and the overview, sets
//! `oqs_site_in_maintenance`, survives a restart; bad schedules are refused with what is wrong;
//! once the window is removed, the silence counts from its end.

mod common;

use common::*;
use oqs_collector::server::{self, Running};
use oqs_fleet_sim::scenario::Scenario;
use serde_json::{json, Value};
use std::time::Duration;

fn cfg(dir: &std::path::Path) -> oqs_collector::config::CollectorConfig {
    let mut c = config(dir);
    c.flags.default_interval_secs = 1;
    c.flags.evaluate_every_ms = 100;
    c
}

async fn send(c: &Running, method: &str, path: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("http://{}{path}", c.http_addr),
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn flags(c: &Running, site: &str) -> Value {
    get_json(c.http_addr, &format!("/api/sites/{site}")).await["flags"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_site_stays_quiet_and_its_schedule_is_kept_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(cfg(dir.path())).await.unwrap();
    // Two sites whose agents stop reporting (the clinic switched its terminals off).
    sim_fleet(&c, Scenario::Silent, 2, 3, "mt-").await;
    let now = oqs_collector::clock::now_ms();
    let (status, page) = send(
        &c,
        "POST",
        "/api/sites/mt-00000/maintenance/windows",
        json!({"start": (now - 60_000).to_string(), "end": (now + 3_600_000).to_string(),
               "reason": "PC入替", "by": "noc-tanaka"}),
    )
    .await;
    assert_eq!(status, 201, "{page}");
    assert_eq!(page["in_effect"]["kind"], "window", "{page}");
    let id = page["windows"][0]["id"].as_u64().unwrap();

    // The other site is flagged silent; the one in its window is not.
    let mut silent = false;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if flags(&c, "mt-00001").await == json!(["agent_silent"]) {
            silent = true;
            break;
        }
    }
    assert!(silent, "the site without a window is flagged");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        flags(&c, "mt-00000").await,
        json!([]),
        "no agent_silent while closed"
    );
    let site = get_json(c.http_addr, "/api/sites/mt-00000").await;
    assert_eq!(site["maintenance"]["reason"], "PC入替", "{site}");
    let overview = get_json(c.http_addr, "/api/sites").await;
    let by_id = |id: &str| {
        overview["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site_id"] == id)
            .unwrap()["in_maintenance"]
            .clone()
    };
    assert_eq!(
        (by_id("mt-00000"), by_id("mt-00001")),
        (json!(true), json!(false))
    );
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(
        metric(&m, "oqs_site_in_maintenance{site=\"mt-00000\"}"),
        1.0
    );

    // Bad input is refused with what is wrong, and nothing changes.
    for (method, path, body, says) in [
        (
            "POST",
            "/api/sites/mt-00000/maintenance/windows",
            json!({"start": (now + 7_200_000).to_string(), "end": (now + 3_600_000).to_string(), "reason": "x", "by": "y"}),
            "ends before it starts",
        ),
        (
            "POST",
            "/api/sites/mt-00000/maintenance/windows",
            json!({"start": "2056-01-01T00:00:00+09:00", "end": "2056-01-02T00:00:00+09:00", "reason": "x", "by": "y"}),
            "days ahead",
        ),
        (
            "POST",
            "/api/sites/mt-00000/maintenance/windows",
            json!({"start": (now + 60_000).to_string(), "end": (now + 120_000).to_string(), "reason": "x", "by": "y"}),
            "overlaps",
        ),
        (
            "POST",
            "/api/sites/mt-00000/maintenance/windows",
            json!({"start": "tomorrow", "end": (now + 120_000).to_string(), "reason": "x", "by": "y"}),
            "start",
        ),
        (
            "PUT",
            "/api/sites/mt-00000/maintenance",
            json!({"closed": [{"day": "thursday", "from": "13:00", "to": "24:00"}]}),
            "not a weekday",
        ),
        (
            "PUT",
            "/api/sites/mt-00000/maintenance",
            json!({"closed": [{"day": "thu", "from": "18:00", "to": "13:00"}]}),
            "end must be after",
        ),
        (
            "DELETE",
            "/api/sites/mt-00000/maintenance/windows/99",
            Value::Null,
            "no maintenance window 99",
        ),
    ] {
        let (status, body) = send(&c, method, path, body).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(says),
            "{says}: {body}"
        );
    }
    let (status, _) = send(&c, "GET", "/api/sites/nobody/maintenance", Value::Null).await;
    assert_eq!(status, 404);

    // Closed every Thursday afternoon and Sundays, and on holidays: kept across a restart.
    let (status, page) = send(
        &c,
        "PUT",
        "/api/sites/mt-00000/maintenance",
        json!({"closed": [{"day": "thu", "from": "13:00", "to": "24:00"}, {"day": "sun"}], "holidays": true}),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    c.stop().await.unwrap();
    let c = server::start(cfg(dir.path())).await.unwrap();
    let page = get_json(c.http_addr, "/api/sites/mt-00000/maintenance").await;
    assert_eq!(page["holidays"], true);
    assert_eq!(
        page["closed"][1],
        json!({"day": "sun", "from": "00:00", "to": "24:00"})
    );
    assert_eq!(page["windows"][0]["id"], id, "the window too");

    // Closed hours cleared and the window removed: nothing is in effect any more, and the site's
    // silent agent is flagged a few intervals later.
    let (status, page) = send(
        &c,
        "PUT",
        "/api/sites/mt-00000/maintenance",
        json!({"closed": [], "holidays": false}),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let (status, page) = send(
        &c,
        "DELETE",
        &format!("/api/sites/mt-00000/maintenance/windows/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page["in_effect"].is_null(), "{page}");
    assert_eq!(page["windows"], json!([]));
    let mut silent = false;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if flags(&c, "mt-00000").await == json!(["agent_silent"]) {
            silent = true;
            break;
        }
    }
    assert!(silent, "flagged once the window is gone");
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert!(
        !m.contains("oqs_site_in_maintenance{site=\"mt-00000\""),
        "a site without a schedule has no series"
    );
    c.stop().await.unwrap();
}

/// `oqs-collector admin maintenance …`: the same schedule from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_sets_closed_days_and_windows() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(cfg(dir.path())).await.unwrap();
    sim_fleet(&c, Scenario::Healthy, 1, 1, "cli-").await;
    let http = c.http_addr.to_string();
    let admin = move |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oqs-collector"))
            .args(["admin", "--http", &http, "maintenance", "cli-00000"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |args: &[&str]| {
        let admin = admin.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || admin(args))
    };
    let (ok, out, err) = run(&[
        "closed",
        "--closed",
        "thu:13:00-24:00",
        "--closed",
        "sun",
        "--holidays",
    ])
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let now = oqs_collector::clock::now_ms();
    let (ok, out, err) = run(&[
        "add-window",
        "--start",
        &(now + 3_600_000).to_string(),
        "--end",
        &(now + 7_200_000).to_string(),
        "--reason",
        "NTT工事",
        "--by",
        "noc-sato",
    ])
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(&["show"]).await.unwrap();
    assert!(ok);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        page["closed"][0],
        json!({"day": "thu", "from": "13:00", "to": "24:00"})
    );
    assert_eq!(page["holidays"], true);
    assert_eq!(page["windows"][0]["reason"], "NTT工事");
    // A bad one fails with the collector's reason.
    let (ok, out, err) = run(&["closed", "--closed", "thu:18:00-13:00"])
        .await
        .unwrap();
    assert!(!ok && out.contains("end must be after"), "{out}{err}");
    let (ok, _, _) = run(&["remove-window", "1"]).await.unwrap();
    assert!(ok);
    c.stop().await.unwrap();
}
