//! A collector restart raises no false alarm (issue "true alarms", item 1): after the collector
//! was down for longer than its agents' grace, every known terminal gets its grace again from the
//! restart (or its reconnect); the terminals that come back are never flagged `agent_silent`, the
//! ones that do not are flagged once their grace from the start is over, and silence that began
//! while the collector was down opens no area-wide incident. Silence that begins while it listens
//! still does.

mod common;

use common::*;
use oqs_collector::server;
use oqs_fleet_sim::scenario::Scenario;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SITES: usize = 120;
const BACK: usize = 60;

fn cfg(dir: &std::path::Path, silent_intervals: u32) -> oqs_collector::config::CollectorConfig {
    let mut c = config(dir);
    c.flags.evaluate_every_ms = 100;
    c.flags.silent_intervals = silent_intervals;
    // One test process opens every site's stream at once.
    c.limits.max_pre_hello_per_source = 512;
    c
}

/// `sites` simulated sites (`rs-00000`…) sending `reports` reports `interval` apart.
async fn fleet(grpc: std::net::SocketAddr, sites: usize, reports: u64, interval: Duration) {
    let opts = oqs_fleet_sim::SimOptions {
        collector: format!("http://{grpc}"),
        sites,
        reports,
        interval,
        scenario: Scenario::Healthy,
        site_prefix: "rs-".into(),
        terminals_per_site: 1,
        ..oqs_fleet_sim::SimOptions::default()
    };
    let s = oqs_fleet_sim::run(opts, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert!(s.all_acked(), "{s} {:?}", s.errors);
}

/// The sites with an `agent_silent` event of `action` recorded since `since_ms`.
async fn silent_events(
    http: std::net::SocketAddr,
    action: &str,
    since_ms: i64,
) -> BTreeSet<String> {
    let v = get_json(http, &format!("/api/events?since={since_ms}&limit=10000")).await;
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["flag"] == "agent_silent" && e["action"] == action)
        .map(|e| e["site"].as_str().unwrap().to_owned())
        .collect()
}

fn site(i: usize) -> String {
    format!("rs-{i:05}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_longer_than_the_grace_pages_no_site_and_opens_no_incident() {
    let dir = tempfile::tempdir().unwrap();
    // The first run flags no silence (its sites finish at different times).
    let c = server::start(cfg(dir.path(), 1_000_000)).await.unwrap();
    // Reports a second apart: each terminal's interval is learnt as about 1 s, its grace 3 s.
    fleet(c.grpc_addr, SITES, 3, Duration::from_secs(1)).await;
    c.stop().await.unwrap();
    // Down for longer than the grace.
    tokio::time::sleep(Duration::from_millis(4_500)).await;

    let started = Instant::now();
    let restart_ms = oqs_collector::clock::now_ms();
    let c = server::start(cfg(dir.path(), 3)).await.unwrap();
    // Half the fleet reconnects (within a second, as agents do) and goes on reporting for a while
    // (every second: its grace stays 3 s); the other half never comes back (PCs switched off).
    let stop_back = tokio_util::sync::CancellationToken::new();
    let back = tokio::spawn(oqs_fleet_sim::run(
        oqs_fleet_sim::SimOptions {
            collector: format!("http://{}", c.grpc_addr),
            sites: BACK,
            reports: 0,
            interval: Duration::from_secs(1),
            scenario: Scenario::Healthy,
            site_prefix: "rs-".into(),
            terminals_per_site: 1,
            ..oqs_fleet_sim::SimOptions::default()
        },
        stop_back.clone(),
    ));
    // Until every absent terminal's grace from the restart is over (3 s for most; a terminal
    // whose reports came further apart was learnt a longer interval), the returning half is never
    // flagged; the absent half is, and no incident opens although ~5 sites of every prefecture
    // fall silent within seconds of each other.
    let absent: BTreeSet<String> = (BACK..SITES).map(site).collect();
    let mut raised = BTreeSet::new();
    for _ in 0..150 {
        raised = silent_events(c.http_addr, "raised", restart_ms).await;
        let early: Vec<_> = raised.difference(&absent).collect();
        assert!(
            early.is_empty(),
            "terminals that came back were flagged silent: {early:?}"
        );
        if raised == absent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        raised, absent,
        "the terminals that did not come back are silent"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "no terminal is silent before its grace from the restart is over"
    );
    let cleared = silent_events(c.http_addr, "cleared", restart_ms).await;
    assert!(
        cleared.is_empty(),
        "no recovery that was no outage: {cleared:?}"
    );
    let v = get_json(c.http_addr, "/api/incidents?state=all").await;
    assert_eq!(v["incidents"].as_array().unwrap().len(), 0, "{v}");
    let (_, text) = get(c.http_addr, "/metrics").await;
    assert!(!text.contains("\noqs_incident_active{"), "no AreaIncident");

    // Silence that begins while the collector listens is the area's: the returning half stops
    // reporting together, and each prefecture with enough of them opens its incident.
    stop_back.cancel();
    let s = back.await.unwrap().unwrap();
    assert_eq!(s.stream_errors, 0, "{s} {:?}", s.errors);
    let mut open = Value::Null;
    for _ in 0..100 {
        open = get_json(c.http_addr, "/api/incidents?state=open").await;
        if open["open"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = open["incidents"].as_array().unwrap();
    assert!(!list.is_empty(), "{open}");
    for inc in list {
        assert_eq!(inc["kind"], "agents_silent", "{inc}");
        for s in inc["sites"].as_array().unwrap() {
            let i: usize = s.as_str().unwrap()["rs-".len()..].parse().unwrap();
            assert!(
                i < BACK,
                "{s} fell silent while the collector was down: {inc}"
            );
        }
    }
    c.stop().await.unwrap();
}
