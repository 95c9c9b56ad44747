//! `oqs-fleet-sim`: a simulated fleet of OQS terminals against a collector, for load tests and
//! scenario tests. Exits 0 only if every report it sent was acknowledged.

use clap::Parser;
use oqs_fleet_sim::{self as sim, scenario::Scenario, SimOptions};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Simulated OQS terminals speaking the real protocol to a collector"
)]
struct Args {
    /// The collector's gRPC URL.
    #[arg(long, default_value = "http://[::1]:50051")]
    collector: String,
    /// Number of simulated sites.
    #[arg(long, default_value_t = 10)]
    sites: usize,
    /// Reports per terminal (0: forever, until Ctrl-C).
    #[arg(long, default_value_t = 10)]
    reports: u64,
    /// Milliseconds between a terminal's reports.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// What the simulated terminals report.
    #[arg(long, value_enum, default_value = "healthy")]
    scenario: Scenario,
    /// Site ids are this prefix plus a 5-digit number.
    #[arg(long, default_value = "site-")]
    site_prefix: String,
    /// Terminals per site (0: one, and two at some sites).
    #[arg(long, default_value_t = 0)]
    terminals_per_site: usize,
    /// TCP connections shared by all terminals (0: one per terminal, like real agents).
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Seconds to wait for outstanding acks after the last report.
    #[arg(long, default_value_t = 30)]
    ack_timeout_secs: u64,
    /// Make every report at least this many bytes, different every round (a sender of large
    /// reports; 0: as the scenario makes them).
    #[arg(long, default_value_t = 0)]
    report_bytes: usize,
    /// Connect through this HTTP CONNECT proxy (HOST:PORT, e.g. `oqs-agent relay`), one tunnel
    /// per connection.
    #[arg(long)]
    proxy: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let opts = SimOptions {
        collector: a.collector,
        sites: a.sites,
        reports: a.reports,
        interval: Duration::from_millis(a.interval_ms.max(1)),
        scenario: a.scenario,
        site_prefix: a.site_prefix,
        terminals_per_site: a.terminals_per_site,
        connections: a.connections,
        ack_timeout: Duration::from_secs(a.ack_timeout_secs),
        spread_start: true,
        report_bytes: a.report_bytes,
        proxy: a.proxy,
    };
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        c.cancel();
    });
    let summary = sim::run(opts, cancel).await?;
    println!("{summary}");
    for e in &summary.errors {
        eprintln!("error: {e}");
    }
    // Reconnects are what agents do after a restart or a refusal; the first few say why.
    for r in &summary.retry_reasons {
        eprintln!("retried: {r}");
    }
    if summary.all_acked() {
        Ok(())
    } else {
        std::process::exit(1);
    }
}
