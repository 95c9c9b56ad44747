//! Area-wide incidents end to end, through the real server: the simulator's NTT outage in one
//! prefecture (`area-outage`) opens one incident — in `GET /api/incidents`, `oqs_incident_active`
//! and `oqs_incident_sites` — listing every site of that prefecture and nothing elsewhere; it
//! survives a restart under the same id; when the sites recover it ends (and its series go). A
//! rule the stored fleet cannot meet stops the collector at start, saying which and why.

mod common;

use common::*;
use oqs_collector::server;
use oqs_fleet_sim::scenario::{Scenario, SiteProfile, OUTAGE_PREFECTURE};
use serde_json::Value;
use std::time::Duration;

const SITES: usize = 120;

fn cfg(dir: &std::path::Path) -> oqs_collector::config::CollectorConfig {
    let mut c = config(dir);
    c.flags.evaluate_every_ms = 100;
    // The simulated agents stop after their reports (10 ms apart): their silence would be an
    // incident of its own.
    c.flags.silent_intervals = 1_000_000;
    // One test process opens every site's stream at once.
    c.limits.max_pre_hello_per_source = 512;
    c
}

async fn incidents(http: std::net::SocketAddr, state: &str) -> Value {
    get_json(http, &format!("/api/incidents?state={state}")).await
}

/// The `state` incidents once there are `n`, each listing `sites` sites if given (10 s at most).
/// An incident opens once enough sites fail alike; later ones join at the flag engine's next
/// evaluation, which may come after the first answer that shows it open.
async fn until(http: std::net::SocketAddr, state: &str, n: usize, sites: Option<usize>) -> Value {
    let done = |v: &Value| {
        let list = v["incidents"].as_array().unwrap();
        list.len() == n
            && sites.is_none_or(|k| {
                list.iter()
                    .all(|i| i["sites"].as_array().map(Vec::len) == Some(k))
            })
    };
    for _ in 0..100 {
        let v = incidents(http, state).await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {n} {state} incidents of {sites:?} sites: {}",
        incidents(http, "all").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefecture_losing_ipv6_together_is_one_incident_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let c = server::start(cfg(dir.path())).await.unwrap();
    let mut hit: Vec<String> = (0..SITES)
        .map(|i| SiteProfile::new(i, "ao-", Scenario::AreaOutage, 1))
        .filter(|p| p.scenario == Scenario::AreaOutage)
        .map(|p| p.site_id)
        .collect();
    hit.sort();
    assert!(hit.len() >= 5, "{hit:?}");
    // Rounds 0 and 1 healthy, then IPv6 gone in 新潟県: raised on the second report without it.
    sim_fleet(&c, Scenario::AreaOutage, SITES, 4, "ao-").await;
    let v = until(c.http_addr, "open", 1, Some(hit.len())).await;
    assert_eq!(v["open"], 1, "{v}");
    let inc = &v["incidents"][0];
    assert_eq!(inc["kind"], "ipv6_lost", "{inc}");
    assert_eq!(inc["area"], "east");
    assert_eq!(inc["prefecture"], OUTAGE_PREFECTURE);
    assert_eq!(inc["inhibits_alert"], "Ipv6Missing");
    let sites: Vec<String> = serde_json::from_value(inc["sites"].clone()).unwrap();
    assert_eq!(sites, hit, "every site of the prefecture, none elsewhere");
    assert_eq!(inc["site_count"], hit.len());
    let title = inc["title_ja"].as_str().unwrap();
    assert!(
        title.starts_with(&format!(
            "NTT東日本 {OUTAGE_PREFECTURE}: {}拠点でIPv6未取得（",
            hit.len()
        )),
        "{title}"
    );
    let id = inc["id"].clone();
    // Each site still shows its own flag.
    let site = get_json(c.http_addr, &format!("/api/sites/{}", hit[0])).await;
    assert!(site["flags"].to_string().contains("ipv6_missing"), "{site}");
    let (_, text) = get(c.http_addr, "/metrics").await;
    let series = format!("area=\"east\",kind=\"ipv6_lost\",prefecture=\"{OUTAGE_PREFECTURE}\"");
    assert_eq!(
        metric(&text, &format!("oqs_incident_active{{{series}}}")),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("oqs_incident_sites{{{series}}}")),
        hit.len() as f64
    );
    assert_eq!(
        text.matches("\noqs_incident_active{").count(),
        1,
        "one incident"
    );

    // Kept across a restart, under the same id.
    c.stop().await.unwrap();
    let c = server::start(cfg(dir.path())).await.unwrap();
    let v = incidents(c.http_addr, "open").await;
    assert_eq!(v["incidents"][0]["id"], id, "{v}");
    assert_eq!(v["incidents"][0]["site_count"], hit.len());

    // The line comes back: two healthy reports clear every flag, and the incident ends.
    sim_fleet(&c, Scenario::Healthy, SITES, 3, "ao-").await;
    let v = until(c.http_addr, "ended", 1, None).await;
    let ended = &v["incidents"][0];
    assert_eq!(ended["id"], id);
    assert_eq!(ended["open"], false);
    assert!(ended["closed_at"].is_string(), "{ended}");
    assert_eq!(ended["peak_sites"], hit.len());
    assert_eq!(incidents(c.http_addr, "open").await["open"], 0);
    let (_, text) = get(c.http_addr, "/metrics").await;
    assert!(!text.contains("\noqs_incident_active{"), "the series goes");
    let (status, body) = get(c.http_addr, "/api/incidents?state=later").await;
    assert_eq!(status, 400);
    assert!(body.contains("open, ended, all"), "{body}");

    // A rule for 新潟県 wanting more sites than the store knows there is refused at start.
    c.stop().await.unwrap();
    let mut bad = cfg(dir.path());
    bad.incidents
        .rules
        .push(oqs_collector::incidents::IncidentRule {
            area: "east".into(),
            prefecture: Some(OUTAGE_PREFECTURE.into()),
            min_sites: Some(hit.len() as u32 + 1),
            min_share_percent: None,
            within_secs: None,
            close_below_sites: None,
        });
    let e = match server::start(bad).await {
        Ok(_) => panic!("started with a rule the fleet cannot meet"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains(&format!("incidents.rules[0] (east {OUTAGE_PREFECTURE})"))
            && e.contains(&format!("the {} sites", hit.len())),
        "{e}"
    );
}
