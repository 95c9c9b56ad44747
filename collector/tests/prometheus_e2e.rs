//! A real Prometheus (Debian's `prometheus` package) scrapes a collector fed by the fleet
//! simulator, evaluates deploy/prometheus/oqs-alerts.yml, and fires PrefixChanged for the site whose
//! prefix changed — and for no other site.
//!
//! Part of the default suite (CI installs Prometheus); alone: `cargo test -p oqs-collector --test
//! prometheus_e2e` (about 6 s). Prometheus listens on loopback only and keeps its data in a
//! temporary directory.

mod common;

use common::*;
use oqs_fleet_sim::{self as sim, scenario::Scenario, SimOptions};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Kills Prometheus when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_prefix_changed() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    // Both sites keep reporting (every 200 ms) until the end, so nobody is silent.
    let stop = CancellationToken::new();
    let mut sims = Vec::new();
    for (scenario, prefix) in [
        (Scenario::Healthy, "calm-"),
        (Scenario::PrefixChange, "moved-"),
    ] {
        let opts = SimOptions {
            collector: format!("http://{}", c.grpc_addr),
            sites: 1,
            reports: 0,
            interval: Duration::from_millis(200),
            scenario,
            site_prefix: prefix.into(),
            terminals_per_site: 1,
            ..SimOptions::default()
        };
        sims.push(tokio::spawn(sim::run(opts, stop.clone())));
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/oqs-alerts.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: oqs-collector\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.canonicalize().unwrap().display(),
            c.http_addr
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (apt-get install prometheus)"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut firing = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, body) = get(addr, "/api/v1/alerts").await;
        if status != 200 {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        firing = v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap_or(""),
                    a["labels"]["site"].as_str().unwrap_or("")
                )
            })
            .collect();
        if firing.contains(&"PrefixChanged/moved-00000".to_string()) {
            break;
        }
    }
    assert!(
        firing.contains(&"PrefixChanged/moved-00000".to_string()),
        "PrefixChanged did not fire: {firing:?}"
    );
    assert!(
        !firing.iter().any(|a| a.ends_with("/calm-00000")),
        "the healthy site fired: {firing:?}"
    );
    stop.cancel();
    for s in sims {
        let _ = s.await;
    }
    c.stop().await.unwrap();
}
