//! `oqs-dashboard-bench`: how long the collector takes to answer what the dashboard's pages load,
//! and how much they weigh — the overview with 5,000 sites, and a site page with 30 days of
//! history. Fills a fresh store through the real committer (times in the past), starts the real
//! collector on loopback, and times its HTTP answers. Not a test: it prints figures to write down.

use anyhow::Context;
use clap::Parser;
use oqs_collector::committer::{self, CommitterSettings, ReportCommit};
use oqs_collector::config::CollectorConfig;
use oqs_collector::metrics::Metrics;
use oqs_collector::store::{Store, TerminalKey};
use oqs_collector::view::FleetView;
use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(about = "Server time and weight of the dashboard's pages")]
struct Args {
    /// Sites in the fleet (one terminal each, the `mixed` blend).
    #[arg(long, default_value_t = 5000)]
    sites: usize,
    /// Days of history of the one site the site page shows (one report a minute).
    #[arg(long, default_value_t = 30)]
    history_days: u64,
    /// Timed repetitions of each request (the median is printed).
    #[arg(long, default_value_t = 7)]
    repeat: usize,
    /// sled's page cache (`store.cache_bytes`; default: the collector's default).
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// Flag events per site written over last month (raise/clear pairs of outage flags, half an
    /// hour each): what the monthly availability CSV reads.
    #[arg(long, default_value_t = 60)]
    events_per_site: u64,
}

/// Last month's flag events for every site: `per_site` of them, raise/clear pairs spread over
/// the month (written straight into the store: a read benchmark's data, not ingest's work).
fn month_of_events(
    store: &Store,
    sites: &[SiteProfile],
    per_site: u64,
    now: i64,
) -> anyhow::Result<u64> {
    use oqs_collector::catalog::Flag;
    use oqs_collector::flags::{Action, Event};
    let this_month = oqs_collector::availability::Month::of(now);
    let (from, to) = oqs_collector::availability::Month::of(this_month.bounds().0 - 1).bounds();
    let flags = [
        Flag::Ipv6Missing,
        Flag::DnsFailing,
        Flag::LineauthUnreachable,
        Flag::OqsWebUnreachable,
    ];
    let pairs = per_site / 2;
    let mut id = 1_000_000_000u64;
    let mut written = 0;
    for chunk in sites.chunks(100) {
        let mut batch = oqs_collector::store::CommitBatch::default();
        for site in chunk {
            for p in 0..pairs {
                let at = from
                    + (to - from) / pairs.max(1) as i64 * p as i64
                    + (site.index as i64 % 600) * 1000;
                let flag = flags[(p as usize + site.index) % flags.len()];
                for (action, t) in [(Action::Raised, at), (Action::Cleared, at + 1_800_000)] {
                    batch.put_event(&Event {
                        id,
                        at_ms: t,
                        recorded_ms: t,
                        site: site.site_id.clone(),
                        terminal: Some("pc-1".into()),
                        flag,
                        action,
                        detail: None,
                        related_event_id: None,
                    });
                    id += 1;
                    written += 1;
                }
            }
        }
        store.commit(batch)?;
    }
    Ok(written)
}

/// One HTTP/1.1 request (a JSON body when given); fails unless the answer is 2xx; returns the
/// answer's body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 2"),
        "{method} {path}: {}",
        text.lines().next().unwrap_or("")
    );
    let head = text.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0);
    Ok(String::from_utf8_lossy(&buf[head..]).into_owned())
}

/// The size of a GET's answer body.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<usize> {
    Ok(request(addr, "GET", path, "").await?.len())
}

/// Median time and the size of `paths` fetched together (as the page does).
async fn time(
    addr: SocketAddr,
    paths: &[String],
    repeat: usize,
) -> anyhow::Result<(Duration, usize)> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let sizes = futures::future::try_join_all(paths.iter().map(|p| get(addr, p))).await?;
        times.push(t.elapsed());
        bytes = sizes.iter().sum();
    }
    times.sort();
    Ok((times[times.len() / 2], bytes))
}

async fn feed(
    handle: &committer::CommitterHandle,
    sites: &[SiteProfile],
    rounds: std::ops::Range<u64>,
    start_ms: i64,
    step_ms: i64,
) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    let first = rounds.start;
    for round in rounds {
        let t = start_ms + round as i64 * step_ms;
        for site in sites {
            let r = report(site, 0, round, round + 1, t);
            // The first report carries the stream's Hello, as ingest sends it: the site's name,
            // area and prefecture, the agent's version.
            let ident = if round == first {
                let h = oqs_fleet_sim::hello(site, 0);
                Some(Box::new(oqs_collector::validate::hello(&h).map_err(
                    |e| anyhow::anyhow!("the simulator's Hello: {e}"),
                )?))
            } else {
                None
            };
            pending.push(
                handle
                    .report(ReportCommit::new(
                        &TerminalKey::new(&site.site_id, "pc-1"),
                        r,
                        ident,
                    ))
                    .await?,
            );
        }
        if pending.len() >= 4096 {
            for rx in pending.drain(..) {
                rx.await.context("committer stopped")??;
            }
        }
    }
    for rx in pending {
        rx.await.context("committer stopped")??;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let mut config = CollectorConfig {
        data_dir: tmp.path().to_owned(),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: "127.0.0.1:0".parse()?,
        ..CollectorConfig::default()
    };
    config.history.max_points_per_query = 100_000;
    if let Some(c) = args.cache_bytes {
        config.store.cache_bytes = c;
    }
    let now = oqs_collector::clock::now_ms();
    {
        let store = Store::open_with(
            &config.data_dir,
            config.store.cache_bytes,
            config.store.compression(),
        )?;
        let (handle, task) = committer::spawn(
            store.clone(),
            CommitterSettings {
                batch_max: config.ingest.commit_batch_max,
                queue: config.ingest.commit_queue,
                flags: config.flags.clone(),
                history: config.history.clone(),
                maintenance: Default::default(),
                incidents: config.incidents.clone(),
                incident_book: Default::default(),
                limits: config.limits.clone(),
                store: config.store.clone(),
            },
            Arc::new(Metrics::new()),
            FleetView::default(),
        )
        .await?;
        let started = Instant::now();
        let fleet: Vec<SiteProfile> = (0..args.sites)
            .map(|i| SiteProfile::new(i, "fleet-", Scenario::Mixed, 1))
            .collect();
        // Four rounds: the mixed fleet's outage in 新潟県 is raised (an area-wide incident).
        feed(&handle, &fleet, 0..4, now - 4 * 60_000, 60_000).await?;
        // The site page's site: a prefix change on day one, then a month of one report a minute.
        let one = vec![SiteProfile::new(9, "history-", Scenario::PrefixChange, 1)];
        let rounds = args.history_days * 1440;
        feed(
            &handle,
            &one,
            0..rounds,
            now - rounds as i64 * 60_000,
            60_000,
        )
        .await?;
        drop(handle);
        task.await?;
        let events = month_of_events(&store, &fleet, args.events_per_site, now)?;
        println!("and {events} flag events over last month");
        store.flush()?;
        println!(
            "filled: {} sites x 4 reports, and 1 site x {} reports, in {:.1} s",
            args.sites,
            rounds,
            started.elapsed().as_secs_f64()
        );
    }
    let running = oqs_collector::server::start(config).await?;
    let http = running.http_addr;
    // Every tenth site in a maintenance window now (the overview marks them).
    let in_window = serde_json::json!({
        "start": (now - 3_600_000).to_string(), "end": (now + 3_600_000).to_string(),
        "reason": "bench", "by": "bench",
    })
    .to_string();
    for i in (0..args.sites).step_by(10) {
        request(
            http,
            "POST",
            &format!("/api/sites/fleet-{i:05}/maintenance/windows"),
            &in_window,
        )
        .await?;
    }
    // The overview shows the incident the outage opens (the committer's first evaluation).
    let mut open_incidents = 0;
    for _ in 0..150 {
        let body = request(http, "GET", "/api/incidents?state=open", "").await?;
        open_incidents = serde_json::from_str::<serde_json::Value>(&body)?["open"]
            .as_u64()
            .unwrap_or(0);
        if open_incidents > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        open_incidents > 0,
        "the mixed fleet's outage opened no incident"
    );
    let shell: Vec<String> = ["/", "/assets/app.js", "/assets/app.css"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (t_shell, b_shell) = time(http, &shell, args.repeat).await?;
    let (t_over, b_over) = time(
        http,
        &[
            "/api/sites?offset=0&limit=100".to_string(),
            "/api/incidents?state=open".to_string(),
        ],
        args.repeat,
    )
    .await?;
    let (t_flag, _) = time(
        http,
        &["/api/sites?flag=dns_failing&limit=100".to_string()],
        args.repeat,
    )
    .await?;
    let (t_q, _) = time(
        http,
        &["/api/sites?q=fleet-0420&limit=100".to_string()],
        args.repeat,
    )
    .await?;
    let (t_inv, b_inv) = time(http, &["/api/inventory?limit=100".to_string()], args.repeat).await?;
    // The fleet's monthly availability as CSV, this month and the whole of last month's account
    // (the history site's month of reports and prefix change in it).
    let this_month = oqs_collector::availability::Month::of(now);
    let last_month = oqs_collector::availability::Month::of(this_month.bounds().0 - 1);
    let (t_csv, b_csv) = time(
        http,
        &[format!("/api/availability.csv?month={this_month}")],
        args.repeat,
    )
    .await?;
    let (t_csv_last, _) = time(
        http,
        &[format!("/api/availability.csv?month={last_month}")],
        args.repeat,
    )
    .await?;
    let from = now - args.history_days as i64 * 86_400_000;
    let site = "history-00009";
    let mut site_paths = vec![
        format!("/api/sites/{site}"),
        format!("/api/events?site={site}&since={from}&limit=200"),
    ];
    // What the site page loads: every check's history.
    for c in oqs_collector::samples::Check::ALL {
        site_paths.push(format!(
            "/api/sites/{site}/history?check={}&from={from}&to={now}",
            c.as_str()
        ));
    }
    let (t_site, b_site) = time(http, &site_paths, args.repeat).await?;
    running.stop().await?;
    let kib = |b: usize| b as f64 / 1024.0;
    println!(
        "page shell (HTML + app.js + app.css): {:.1} ms, {:.1} KiB",
        t_shell.as_secs_f64() * 1e3,
        kib(b_shell)
    );
    println!(
        "overview, {} sites ({} in maintenance, {} open incident), first page of 100 (/api/sites and /api/incidents): {:.1} ms, {:.1} KiB; page weight with the shell {:.1} KiB",
        args.sites,
        args.sites.div_ceil(10),
        open_incidents,
        t_over.as_secs_f64() * 1e3,
        kib(b_over),
        kib(b_over + b_shell)
    );
    println!(
        "overview filtered by flag: {:.1} ms; searched: {:.1} ms",
        t_flag.as_secs_f64() * 1e3,
        t_q.as_secs_f64() * 1e3
    );
    println!(
        "availability CSV, {} sites (/api/availability.csv): this month {:.1} ms ({:.1} KiB), last month {:.1} ms",
        args.sites + 1,
        t_csv.as_secs_f64() * 1e3,
        kib(b_csv),
        t_csv_last.as_secs_f64() * 1e3
    );
    println!(
        "inventory, {} terminals, first 100 (/api/inventory): {:.1} ms, {:.1} KiB",
        args.sites + 1,
        t_inv.as_secs_f64() * 1e3,
        kib(b_inv)
    );
    println!(
        "site page, {} days of history (site, events, 6 histories in parallel): {:.1} ms, {:.1} KiB",
        args.history_days,
        t_site.as_secs_f64() * 1e3,
        kib(b_site)
    );
    Ok(())
}
