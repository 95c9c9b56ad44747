//! `oqs-agent run` against a real collector: with the collector down the agent spools; killed with
//! SIGKILL and restarted, it replays everything once the collector is up — nothing lost, nothing
//! stored twice. All probes point at loopback ports where nothing listens (no traffic leaves).

use oqs_collector::config::CollectorConfig;
use std::net::TcpListener;
use std::path::Path;
mod common;

use common::{start_agent, write_config};
use std::process::Command;
use std::time::{Duration, Instant};

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".report")
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_reports_survive_sigkill_and_are_replayed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("agent.toml");
    write_config(
        &config,
        "clinic-d",
        &format!("http://127.0.0.1:{port}"),
        "",
        &spool,
        1,
    );

    // Collector down: the agent spools.
    let mut agent = start_agent(&config);
    let deadline = Instant::now() + Duration::from_secs(15);
    while spooled(&spool) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        spooled(&spool) >= 3,
        "the agent spools while the collector is down"
    );
    agent.0.kill().unwrap(); // SIGKILL
    agent.0.wait().unwrap();
    let held = spooled(&spool);

    // Collector up, agent restarted: everything is replayed.
    let collector = oqs_collector::server::start(CollectorConfig {
        data_dir: tmp.path().join("collector"),
        grpc_listen: format!("127.0.0.1:{port}").parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..CollectorConfig::default()
    })
    .await
    .unwrap();
    let _agent = start_agent(&config);
    let key = oqs_collector::store::TerminalKey::new("clinic-d", "pc-1");
    let last = common::wait_site(collector.http_addr, "clinic-d", 20, |v| {
        v["terminals"][0]["last_seq"].as_u64().unwrap_or(0) > held as u64 && spooled(&spool) <= 1
    })
    .await;
    let t = &last["terminals"][0];
    let last_seq = t["last_seq"].as_u64().unwrap();
    assert!(last_seq > held as u64, "replayed and continued: {last}");
    assert_eq!(
        t["reports_total"].as_u64().unwrap(),
        last_seq,
        "every seq from 1 stored exactly once: {last}"
    );
    drop(_agent);
    collector.stop().await.unwrap();
    let store = oqs_collector::store::Store::open(&tmp.path().join("collector")).unwrap();
    assert!(
        store.report(&key, 1).unwrap().is_some(),
        "the first spooled report arrived"
    );
}

#[test]
fn run_without_a_collector_url_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        "site_id = \"s\"\nterminal_id = \"t\"\narea = \"east\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oqs-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("collector.url"));
}

/// The NOC's "run now" and a config change reach a running agent over its own stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_and_config_update_from_the_collector_take_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = oqs_collector::server::start(common::collector_config(tmp.path()))
        .await
        .unwrap();
    let config = tmp.path().join("agent.toml");
    // An hour between rounds: any second report within the test is the collector's doing.
    write_config(
        &config,
        "clinic-cmd",
        &format!("http://{}", collector.grpc_addr),
        "",
        &tmp.path().join("spool"),
        3600,
    );
    let http = collector.http_addr;
    let client = reqwest::Client::new();
    let last_seq = || async {
        let body = reqwest::get(format!("http://{http}/api/sites/clinic-cmd"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            v["terminals"][0]["last_seq"].as_u64().unwrap_or(0),
            v["terminals"][0]["connected"].as_bool().unwrap_or(false),
        )
    };
    let wait_for = |min: u64, secs: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (seq, connected) = last_seq().await;
            if (seq >= min && connected) || Instant::now() > deadline {
                return seq;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (status, _) = post(&client, http, "/api/sites/clinic-cmd/run-now", "").await;
    assert_eq!(status, 404, "an unknown site");

    let _agent = start_agent(&config);
    assert_eq!(
        wait_for(1, 15).await,
        1,
        "the first round, then an hour's wait"
    );
    let (status, body) = post(&client, http, "/api/sites/clinic-cmd/run-now", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("pc-1"), "{body}");
    assert!(wait_for(2, 10).await >= 2, "run now made a round");

    let (status, body) = post(
        &client,
        http,
        "/api/sites/clinic-cmd/config",
        "{\"interval_seconds\": 0}",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("interval_seconds"), "{body}");
    let (status, body) = post(
        &client,
        http,
        "/api/sites/clinic-cmd/config",
        "{\"interval_seconds\": 1}",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let before = last_seq().await.0;
    assert!(
        wait_for(before + 3, 15).await >= before + 3,
        "rounds every second after the config update"
    );
    drop(_agent);
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_seq().await.1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = post(&client, http, "/api/sites/clinic-cmd/run-now", "").await;
    assert_eq!(status, 409, "nobody connected: {body}");
    collector.stop().await.unwrap();
}

async fn post(
    client: &reqwest::Client,
    http: std::net::SocketAddr,
    path: &str,
    json: &str,
) -> (u16, String) {
    let mut req = client.post(format!("http://{http}{path}"));
    if !json.is_empty() {
        req = req
            .header("content-type", "application/json")
            .body(json.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// A long outage leaves more in the spool than the collector takes from a terminal in one rate
/// window (`limits.max_reports_per_minute`): the agent replays it over several windows and loses
/// nothing (a rate-limited report is not `Rejected`, so it stays in the spool), and it waits for
/// the window the collector's pushback names instead of knocking every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_larger_than_the_rate_limit_is_replayed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    {
        let mut s = oqs_agent::spool::Spool::open(&spool, 64 * 1024 * 1024).unwrap();
        let now = oqs_collector::clock::now_ms();
        for i in 0..14i64 {
            s.push(oqs_proto::v1::Report {
                started_at_ms: now - (20 - i) * 60_000,
                finished_at_ms: now - (20 - i) * 60_000 + 500,
                ..Default::default()
            })
            .unwrap();
        }
    }
    let mut cfg = common::collector_config(tmp.path());
    cfg.limits.max_reports_per_minute = 4;
    cfg.limits.rate_window_secs = 2;
    let collector = oqs_collector::server::start(cfg).await.unwrap();
    let config = tmp.path().join("agent.toml");
    write_config(
        &config,
        "clinic-rl",
        &format!("http://{}", collector.grpc_addr),
        "",
        &spool,
        30,
    );
    let agent = start_agent(&config);
    let http = collector.http_addr;
    let last = common::wait_site(http, "clinic-rl", 30, |v| {
        v["terminals"][0]["last_seq"].as_u64().unwrap_or(0) >= 15
    })
    .await;
    drop(agent);
    let t = &last["terminals"][0];
    assert!(
        t["last_seq"].as_u64().unwrap_or(0) >= 15,
        "the 14 spooled reports and the first live round arrived: {last}"
    );
    assert_eq!(
        t["reports_total"], t["last_seq"],
        "every seq from 1 stored exactly once: {last}"
    );
    let limited = common::metric(http, "oqs_reports_rejected_total{reason=\"rate_limited\"}").await;
    // 15 reports at 4 per 2 s window: three refusals when the agent waits out each window; an
    // agent that reconnected every second would be refused again inside the same window.
    assert!(
        (1.0..=4.0).contains(&limited),
        "refused {limited} times on the way"
    );
    collector.stop().await.unwrap();
}

/// A report larger than the collector accepts (`Welcome.max_message_bytes`) would be refused, and
/// resent, forever, with every later report stuck behind it: the agent drops it instead, counts
/// it with the reports dropped for space, and never sends the collector a message it must refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_the_collectors_size_limit_are_dropped_and_counted_not_resent() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut cfg = common::collector_config(tmp.path());
    // Smaller than any round's report (its probes fail with error texts).
    cfg.limits.max_message_bytes = 200;
    let collector = oqs_collector::server::start(cfg).await.unwrap();
    let config = tmp.path().join("agent.toml");
    write_config(
        &config,
        "clinic-big",
        &format!("http://{}", collector.grpc_addr),
        "",
        &spool,
        1,
    );
    let agent = start_agent(&config);
    let dropped = || {
        std::fs::read_to_string(spool.join("state"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);
    assert!(dropped() >= 3, "oversized reports counted as dropped");
    assert!(spooled(&spool) <= 1, "the spool does not fill with them");
    let too_large = common::metric(
        collector.http_addr,
        "oqs_reports_rejected_total{reason=\"too_large\"}",
    )
    .await;
    assert_eq!(too_large, 0.0, "the agent never sent one");
    collector.stop().await.unwrap();
}

/// A collector restored from an older copy of its data directory (here: an empty one) is told by
/// the agent's Hello how far it had acknowledged, and counts and flags the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_lost_acknowledged_reports_hears_it_from_the_agent_and_is_healed() {
    let tmp = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let grpc = format!("127.0.0.1:{port}");
    let config = tmp.path().join("agent.toml");
    write_config(
        &config,
        "clinic-lost",
        &format!("http://{grpc}"),
        "",
        &tmp.path().join("spool"),
        1,
    );
    let start = |dir: &str| {
        oqs_collector::server::start(CollectorConfig {
            data_dir: tmp.path().join(dir),
            grpc_listen: grpc.parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            ..CollectorConfig::default()
        })
    };
    let first = start("first").await.unwrap();
    let _agent = start_agent(&config);
    common::wait_site(first.http_addr, "clinic-lost", 20, |v| {
        v["terminals"][0]["last_seq"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    first.stop().await.unwrap();
    // "Restored" with nothing: the agent reconnects and says what it was acknowledged.
    let second = start("second").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let lost = loop {
        let m = reqwest::get(format!("http://{}/metrics", second.http_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v = m
            .lines()
            .find_map(|l| l.strip_prefix("oqs_store_lost_acked_reports_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if v >= 2.0 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        lost >= 2.0,
        "the lost acknowledged reports are counted: {lost}"
    );
    // And healed: the agent kept what was acknowledged (spool.keep_acked_hours) and sends it
    // again, so the restored store ends with every report from seq 1 on, none twice.
    let site = common::wait_site(second.http_addr, "clinic-lost", 30, |v| {
        let t = &v["terminals"][0];
        t["last_seq"].as_u64().unwrap_or(0) >= 3
            && t["reports_total"].as_u64() == t["last_seq"].as_u64()
    })
    .await;
    let t = &site["terminals"][0];
    assert!(t["last_seq"].as_u64().unwrap_or(0) >= 3, "{t}");
    assert_eq!(
        t["reports_total"], t["last_seq"],
        "every seq from 1 to the last is stored again: {t}"
    );
    second.stop().await.unwrap();
}
