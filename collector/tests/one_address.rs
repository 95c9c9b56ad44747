//! Many agents behind one address (issue "true alarms", item 6): a vendor's VPN concentrator puts
//! thousands of terminals behind one source. With the shipped defaults, 5,000 simulated terminals
//! from 127.0.0.1 all connect, all reconnect within minutes after the collector restarts (they
//! retry as agents do: backoff with jitter, a refusal's pushback), and every report they made is
//! acknowledged: nothing lost.

mod common;

use common::*;
use oqs_collector::server;
use oqs_fleet_sim::{scenario::Scenario, SimOptions};
use std::time::{Duration, Instant};

const TERMINALS: usize = 5_000;

/// `oqs_agents_connected`, once it reaches `n` (checked every half second), or panics after
/// `within`; returns how long it took.
async fn until_connected(http: std::net::SocketAddr, n: f64, within: Duration) -> Duration {
    let started = Instant::now();
    let mut last = 0.0;
    while started.elapsed() < within {
        let (_, text) = get(http, "/metrics").await;
        last = metric(&text, "oqs_agents_connected");
        if last >= n {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What the collector refused, and why, says where they are stuck.
    let (_, text) = get(http, "/metrics").await;
    let why: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("oqs_reports_rejected_total") || l.starts_with("oqs_streams"))
        .collect();
    panic!("{last} of {n} terminals connected after {within:?}; {why:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_terminals_behind_one_address_reconnect_after_a_restart_with_the_defaults() {
    // Both ends of 5,000 connections live in this process.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The defaults, on a port that stays the same across the restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(dir.path());
    cfg.grpc_listen = format!("127.0.0.1:{port}").parse().unwrap();
    let c = server::start(cfg.clone()).await.unwrap();
    let sim = tokio::spawn(oqs_fleet_sim::run(
        SimOptions {
            collector: format!("http://{}", c.grpc_addr),
            sites: TERMINALS,
            terminals_per_site: 1,
            // Each terminal lives 8 rounds of 20 s: long enough after the restart for all of
            // them to be connected at once even on a loaded machine (a terminal whose rounds are
            // all acknowledged disconnects, as a real agent never would).
            reports: 8,
            interval: Duration::from_secs(20),
            scenario: Scenario::Healthy,
            site_prefix: "vpn-".into(),
            ack_timeout: Duration::from_secs(240),
            ..SimOptions::default()
        },
        tokio_util::sync::CancellationToken::new(),
    ));
    let first = until_connected(c.http_addr, TERMINALS as f64, Duration::from_secs(120)).await;

    // The collector restarts (an upgrade); every terminal comes back, by itself.
    c.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let c = server::start(cfg).await.unwrap();
    let again = until_connected(c.http_addr, TERMINALS as f64, Duration::from_secs(180)).await;
    let s = sim.await.unwrap().unwrap();
    eprintln!("first connected in {first:?}, again after the restart in {again:?}; {s}");
    assert!(s.all_acked(), "{s} {:?}", s.errors);
    assert!(
        s.retries >= TERMINALS as u64,
        "every terminal reconnected: {s}"
    );
    let sites = get_json(c.http_addr, "/api/sites?limit=1").await;
    assert_eq!(sites["total"], TERMINALS, "every site is shown");
    c.stop().await.unwrap();
}
