//! The fleet simulator against a real collector: every scenario completes with every report acked,
//! and `--demo` shows a fleet (the `oqs-fleet-sim` binary itself: collector/sim/tests/binary.rs).

mod common;

use common::*;
use oqs_fleet_sim::{self as sim, scenario::Scenario, SimOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_with_every_report_acked() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    for (i, scenario) in Scenario::ALL.into_iter().enumerate() {
        let opts = SimOptions {
            collector: format!("http://{}", c.grpc_addr),
            sites: 4,
            reports: 4,
            interval: Duration::from_millis(10),
            scenario,
            site_prefix: format!("sc{i}-"),
            ..SimOptions::default()
        };
        let expected_terminals: usize = sim::fleet(&opts).iter().map(|s| s.terminals).sum();
        let summary = sim::run(opts, CancellationToken::new()).await.unwrap();
        assert!(
            summary.all_acked(),
            "{scenario}: {summary} {:?}",
            summary.errors
        );
        let per_terminal = if scenario == Scenario::Silent { 1 } else { 4 };
        assert_eq!(
            summary.sent,
            (expected_terminals * per_terminal) as u64,
            "{scenario}"
        );
    }
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 4 * Scenario::ALL.len());
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_continues_above_the_stored_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let opts = SimOptions {
        collector: format!("http://{}", c.grpc_addr),
        sites: 2,
        reports: 3,
        interval: Duration::from_millis(5),
        terminals_per_site: 1,
        ..SimOptions::default()
    };
    for _ in 0..2 {
        let s = sim::run(opts.clone(), CancellationToken::new())
            .await
            .unwrap();
        assert!(s.all_acked(), "{s}");
        assert_eq!(s.duplicates, 0, "Welcome's last_stored_seq is honoured");
    }
    let site = get_json(c.http_addr, "/api/sites/site-00000").await;
    assert_eq!(site["terminals"][0]["last_seq"], 6);
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_shows_a_live_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oqs-collector"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--demo", "--demo-sites", "12", "--demo-interval-secs", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _guard = Kill(child);
    let http: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .unwrap()
        .parse()
        .unwrap();
    let (mut total, mut ingested) = (0, 0.0);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        total = get_json(http, "/api/sites").await["total"]
            .as_u64()
            .unwrap();
        ingested = metric(&get(http, "/metrics").await.1, "oqs_reports_ingested_total");
        if total == 12 && ingested >= 24.0 {
            break;
        }
    }
    assert_eq!(total, 12);
    assert!(
        ingested >= 24.0,
        "the demo fleet keeps reporting: {ingested}"
    );
    // The demo's NOC features: a clinic closed Thursday afternoons, Sundays and holidays, one in
    // an NTT works window now, and a site on an older agent.
    let mut window = serde_json::Value::Null;
    for _ in 0..50 {
        window = get_json(http, "/api/sites/demo-00008").await["maintenance"].clone();
        if !window.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(window["kind"], "window", "{window}");
    let closed = get_json(http, "/api/sites/demo-00004/maintenance").await;
    assert_eq!(closed["closed"][0]["day"], "thu", "{closed}");
    assert_eq!(closed["holidays"], true);
    let inv = get_json(http, "/api/inventory?outdated=true").await;
    assert_eq!(inv["terminals"][0]["site_id"], "demo-00003", "{inv}");
}
