//! The HTTP side's handlers through the router alone (`tower::ServiceExt::oneshot`, no socket):
//! every refusal is one JSON error with the right status and a message naming what was wrong,
//! the one "unknown site" answer on every endpoint, commands' validation, the fleet inventory,
//! the dashboard's pages and assets. End-to-end paths that need sockets (ingest, browser, Prometheus, the lab) have
//! their own tests.

mod common;

use common::api::Api;
use oqs_fleet_sim::scenario::Scenario;

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_site_gets_the_same_answer_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    api.feed("ok-", Scenario::Healthy, 1, 2).await;
    for (method, path, body) in [
        ("GET", "/api/sites/never-seen", ""),
        ("GET", "/api/sites/never-seen/history?check=dns", ""),
        ("POST", "/api/sites/never-seen/run-now", ""),
        (
            "POST",
            "/api/sites/never-seen/config",
            r#"{"interval_seconds": 30}"#,
        ),
    ] {
        let (status, headers, text) = api
            .request(method, path, &[("content-type", "application/json")], body)
            .await;
        assert_eq!(status, 404, "{method} {path}: {text}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(
            error_of(&text),
            "site never-seen has never reported",
            "{method} {path}"
        );
    }
    // A known site with no agent connected: a command is refused, not queued.
    let (status, _, text) = api
        .request("POST", "/api/sites/ok-00000/run-now", &[], "")
        .await;
    assert_eq!(status, 409, "{text}");
    assert!(
        error_of(&text).contains("no agent of site ok-00000 is connected"),
        "{text}"
    );
    api.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    api.feed("ok-", Scenario::Healthy, 1, 2).await;
    let json = [("content-type", "application/json")];
    for (method, path, body, needle) in [
        ("GET", "/api/sites/bad%20id", "", "site"),
        ("GET", "/api/sites?limit=x", "", "limit"),
        ("GET", "/api/sites?limit=0", "", "limit must be 1..=1000"),
        ("GET", "/api/sites?nope=1", "", "nope"),
        ("GET", "/api/sites?flag=nope", "", "one of: lineauth_error"),
        ("GET", "/api/sites?area=north", "", "north"),
        ("GET", "/api/sites?state=odd", "", "one of all, flagged"),
        ("GET", "/api/sites/ok-00000/history", "", "check is required: one of ipv6, dns"),
        ("GET", "/api/sites/ok-00000/history?check=dnss", "", "unknown check \"dnss\""),
        ("GET", "/api/sites/ok-00000/history?check=dns&from=yesterday", "", "from"),
        ("GET", "/api/sites/ok-00000/history?check=dns&from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "", "from is after to"),
        ("GET", "/api/events?limit=0", "", "limit must be"),
        ("GET", "/api/events?site=bad%20id", "", "site"),
        ("POST", "/api/sites/ok-00000/config", "{not json", "JSON"),
        ("POST", "/api/sites/ok-00000/config", "{}", "nothing to change"),
        ("POST", "/api/sites/ok-00000/config", r#"{"interval_seconds": 0}"#, "interval_seconds 0: must be 1..=86400"),
        ("POST", "/api/sites/ok-00000/config", r#"{"probe_timeout_ms": 99}"#, "probe_timeout_ms 99: must be 100..=60000"),
        ("POST", "/api/sites/ok-00000/config", r#"{"lineauth_url": "http://x"}"#, "https://"),
        // A CR pasted with the URL would ride in every report and get every one refused.
        ("POST", "/api/sites/ok-00000/config", r#"{"lineauth_url": "https://www.lineauth.mnw\r"}"#, "lineauth_url \"https://www.lineauth.mnw\\r\" contains '\\r'"),
        ("POST", "/api/sites/ok-00000/config", r#"{"lineauth_url": "https:///x"}"#, "has no host"),
        ("POST", "/api/sites/ok-00000/config", r#"{"surprise": 1}"#, "surprise"),
        ("POST", "/api/admin/enrollments/bad%20id", "", "site"),
    ] {
        let (status, _, text) = api.request(method, path, &json, body).await;
        assert_eq!(status, 400, "{method} {path} {body}: {text}");
        let e = error_of(&text);
        assert!(e.contains(needle), "{method} {path} {body}: {e:?} does not name {needle:?}");
    }
    api.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_sorts_and_filters_through_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    api.feed("ok-", Scenario::Healthy, 3, 3).await;
    api.feed("bad-", Scenario::P11019, 1, 3).await;
    api.feed("pc-", Scenario::PrefixChange, 1, 4).await;
    let v = api.get_json("/api/sites").await;
    assert_eq!(v["total"], 5);
    let ids: Vec<&str> = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "bad-00000", "the critical flag first: {ids:?}");
    assert_eq!(ids[1], "pc-00000", "then the re-authentication: {ids:?}");
    assert_eq!(v["flag_counts"]["lineauth_error"], 1);
    assert_eq!(v["state_counts"]["healthy"], 3);
    let f = api.get_json("/api/sites?flag=lineauth_error").await;
    assert_eq!(f["total"], 1);
    assert_eq!(f["sites"][0]["diagnosis_step"], 5);
    let page = api
        .get_json("/api/sites?state=flagged&limit=1&offset=1")
        .await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["sites"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    let site = api.get_json("/api/sites/bad-00000").await;
    assert_eq!(site["diagnosis"]["step"], 5);
    assert_eq!(site["contact"]["last_lineauth_code"]["code"], "P11019");
    assert!(
        site["customer_id"].as_str().unwrap().contains('*'),
        "masked: {}",
        site["customer_id"]
    );
    api.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_and_assets_are_served_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    for (path, needle, ty) in [
        ("/", "data-page=\"overview\"", "text/html"),
        ("/sites/anything", "data-page=\"site\"", "text/html"),
        ("/assets/app.js", "function sitePage", "javascript"),
        ("/assets/app.css", "--red", "text/css"),
        ("/api/catalog", "\"flags\"", "application/json"),
    ] {
        let (status, headers, body) = api.request("GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{path}");
        let got = headers["content-type"].to_str().unwrap();
        assert!(got.contains(ty), "{path}: {got}");
    }
    let (status, _, _) = api.request("GET", "/assets/nope.js", &[], "").await;
    assert_eq!(status, 404);
    api.close().await;
}

/// The inventory: every terminal's agent version, OS, boot time and clock offset, the versions in
/// use with their counts, the newest one and who lags behind it; its filters; `oqs_agent_info`
/// and `oqs_agent_newest_version_info` with bounded labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_shows_versions_who_lags_and_each_machine() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    // 14 sites: the simulator's sites 3 and 13 run an older agent, 0 and 7 run Linux.
    api.feed("inv-", Scenario::Healthy, 14, 2).await;
    let current = oqs_fleet_sim::agent_version(0);
    let old = oqs_fleet_sim::OLD_AGENT_VERSION;
    let v = api.get_json("/api/inventory").await;
    assert_eq!(v["newest_version"], current, "{v}");
    assert_eq!(v["terminals_total"], 14);
    assert_eq!(v["outdated_total"], 2);
    assert_eq!(
        v["versions"],
        serde_json::json!([
            {"version": current, "terminals": 12, "newest": true},
            {"version": old, "terminals": 2, "newest": false},
        ])
    );
    assert_eq!(
        v["os_families"],
        serde_json::json!({"linux": 2, "windows": 12})
    );
    let t = &v["terminals"][0];
    assert_eq!(t["site_id"], "inv-00000");
    assert!(t["os"].as_str().unwrap().contains("Ubuntu"), "{t}");
    assert_eq!(t["os_family"], "linux");
    assert!(
        t["boot_time"].as_str().is_some_and(|b| b.starts_with("20")),
        "{t}"
    );
    assert!(t["clock_offset_ms"].as_i64().unwrap().abs() < 60_000, "{t}");
    assert!(t["interface"].as_str().is_some(), "{t}");
    assert!(
        t.get("customer_id").is_none(),
        "no customer ID in the inventory: {t}"
    );

    let lagging = api.get_json("/api/inventory?outdated=true").await;
    let ids: Vec<&str> = lagging["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["site_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["inv-00003", "inv-00013"]);
    assert!(lagging["terminals"][0]["outdated"].as_bool().unwrap());
    let linux = api.get_json("/api/inventory?os=linux").await;
    assert_eq!(linux["matched"], 2);
    let one = api
        .get_json(&format!("/api/inventory?version={old}&limit=1"))
        .await;
    assert_eq!(
        (
            one["matched"].as_u64(),
            one["terminals"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    let q = api.get_json("/api/inventory?q=OQS-7-").await;
    assert_eq!(q["matched"], 1, "by hostname: {q}");
    for (bad, says) in [
        ("/api/inventory?os=beos", "os"),
        ("/api/inventory?limit=0", "limit"),
        ("/api/inventory?outdated=maybe", "outdated"),
        ("/api/inventory?colour=red", "colour"),
    ] {
        let (status, body) = api.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(error_of(&body).contains(says), "{bad}: {body}");
    }

    let (status, m) = api.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        m.contains(&format!(
            "oqs_agent_info{{os=\"linux\",site=\"inv-00000\",terminal=\"pc-1\",version=\"{current}\"}} 1"
        )),
        "{}",
        m.lines().filter(|l| l.contains("agent_info")).collect::<Vec<_>>().join("\n")
    );
    assert!(m.contains(&format!(
        "oqs_agent_info{{os=\"windows\",site=\"inv-00003\",terminal=\"pc-1\",version=\"{old}\"}} 1"
    )));
    assert!(m.contains(&format!(
        "oqs_agent_newest_version_info{{version=\"{current}\"}} 1"
    )));
    api.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_how_much_room_the_stores_filesystem_has() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    let (status, m) = api.get("/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in the scrape"))
            .parse()
            .unwrap()
    };
    let (avail, size) = (
        value("oqs_store_filesystem_avail_bytes"),
        value("oqs_store_filesystem_size_bytes"),
    );
    // The data directory's own filesystem, as statvfs tells it now (the free space moves with
    // whatever else writes there; the size does not).
    assert_eq!(size, fs2::total_space(dir.path()).unwrap());
    assert!(avail > 0 && avail <= size, "{avail} of {size}");
    assert!(m.contains("# TYPE oqs_store_filesystem_avail_bytes gauge"));
    api.close().await;
}
