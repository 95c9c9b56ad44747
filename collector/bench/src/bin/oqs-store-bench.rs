//! `oqs-store-bench`: disk bytes per site per day. Feeds simulated days of reports (one a minute
//! per terminal, times in the past so nothing waits) through the real committer — history, elision,
//! flag engine, group commit and flush — into a fresh store, then measures the data directory.
//! Not a test: it prints figures to write down (see the README).

use anyhow::Context;
use clap::Parser;
use oqs_collector::committer::{self, CommitterSettings, ReportCommit};
use oqs_collector::config::CollectorConfig;
use oqs_collector::metrics::Metrics;
use oqs_collector::store::{Store, TerminalKey};
use oqs_collector::view::FleetView;
use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};
use prost::Message;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Disk bytes per site per day of the collector's store")]
struct Args {
    /// Simulated sites (one terminal each).
    #[arg(long, default_value_t = 200)]
    sites: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 1)]
    days: u64,
    /// Seconds between a terminal's reports.
    #[arg(long, default_value_t = 60)]
    interval_secs: u64,
    /// The fleet's behaviour (healthy, mixed, …).
    #[arg(long, default_value = "mixed")]
    scenario: Scenario,
    /// Rounds sent before waiting for their acks (more rounds: fewer, larger group commits).
    #[arg(long, default_value_t = 1)]
    rounds_per_commit: u64,
    /// zstd level of the store (0: none, the collector's default), as `store.compression_level`.
    #[arg(long, default_value_t = 0)]
    compression_level: i32,
    /// Where to build the store (a fresh temporary directory by default).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            n += if md.is_dir() {
                dir_bytes(&e.path())
            } else {
                // Allocated blocks, not the apparent length (sled preallocates sparse segments).
                std::os::unix::fs::MetadataExt::blocks(&md) * 512
            };
        }
    }
    n
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().into());
    let defaults = CollectorConfig::default();
    let store = Store::open_with(
        &dir,
        defaults.store.cache_bytes,
        (args.compression_level > 0).then_some(args.compression_level),
    )?;
    let empty = {
        store.flush()?;
        dir_bytes(&dir)
    };
    let (handle, task) = committer::spawn(
        store.clone(),
        CommitterSettings {
            batch_max: defaults.ingest.commit_batch_max,
            queue: defaults.ingest.commit_queue,
            flags: defaults.flags.clone(),
            history: defaults.history.clone(),
            maintenance: Default::default(),
            incidents: Default::default(),
            incident_book: Default::default(),
            limits: defaults.limits.clone(),
            store: defaults.store.clone(),
        },
        Arc::new(Metrics::new()),
        FleetView::default(),
    )
    .await
    .context("starting the committer")?;
    let sites: Vec<SiteProfile> = (0..args.sites)
        .map(|i| SiteProfile::new(i, "bench-", args.scenario, 1))
        .collect();
    let rounds = args.days * 86_400 / args.interval_secs.max(1);
    let start_ms = oqs_collector::clock::now_ms() - (args.days as i64) * 86_400_000;
    let started = Instant::now();
    let mut raw_bytes: u64 = 0;
    let mut sent: u64 = 0;
    let mut pending = Vec::with_capacity(sites.len());
    for round in 0..rounds {
        let t = start_ms + (round * args.interval_secs * 1000) as i64;
        for site in &sites {
            if site.scenario == Scenario::Silent && round > 0 {
                continue;
            }
            let r = report(site, 0, round, round + 1, t);
            let encoded = r.encode_to_vec();
            raw_bytes += encoded.len() as u64;
            let commit = ReportCommit::new(&TerminalKey::new(&site.site_id, "pc-1"), r, None);
            pending.push(handle.report(commit).await?);
            sent += 1;
        }
        if (round + 1) % args.rounds_per_commit.max(1) == 0 || round + 1 == rounds {
            for rx in pending.drain(..) {
                rx.await.context("committer stopped")??;
            }
        }
    }
    let elapsed = started.elapsed();
    drop(handle);
    task.await?;
    store.flush()?;
    let mut full = 0u64;
    for site in &sites {
        let key = TerminalKey::new(&site.site_id, "pc-1");
        store.report_times(&key, |seq, _| {
            if let Ok(Some(r)) = store.report(&key, seq) {
                full += u64::from(r.full().is_some());
            }
            true
        })?;
    }
    let live = store.live_bytes()?;
    drop(store);
    let used = dir_bytes(&dir).saturating_sub(empty);
    let site_days = (args.sites as u64 * args.days).max(1);
    println!(
        "{} sites x {} day(s) at {} s ({}): {} reports in {:.1} s ({:.0}/s); {} kept whole ({:.1}%)",
        args.sites,
        args.days,
        args.interval_secs,
        args.scenario,
        sent,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        full,
        100.0 * full as f64 / sent.max(1) as f64
    );
    println!(
        "store on disk: {:.1} MiB = {:.0} KiB per site per day (the reports themselves, protobuf: {:.0} KiB per site per day)",
        used as f64 / 1_048_576.0,
        used as f64 / 1024.0 / site_days as f64,
        raw_bytes as f64 / 1024.0 / site_days as f64
    );
    let live_total: u64 = live.values().sum();
    println!(
        "live keys and values: {:.0} KiB per site per day ({})",
        live_total as f64 / 1024.0 / site_days as f64,
        live.iter()
            .map(|(k, v)| format!("{k} {:.0} KiB", *v as f64 / 1024.0 / site_days as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
