//! `oqs-agent`: the clinic terminal's agent. `check` runs one round now and walks the guide's
//! troubleshooting tree for the engineer on site.

use anyhow::Context;
use clap::{Parser, Subcommand};
use oqs_agent::config::AgentConfig;
use oqs_agent::diagnosis;
use oqs_agent::render::{self, Lang};
use oqs_agent::round::RoundRunner;
use oqs_proto::ident::Area;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "OQS Fleet Monitor agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: rounds on the interval, streamed to the collector, spooled until acknowledged.
    /// Stops cleanly on SIGTERM or Ctrl-C (and on a service stop with --service).
    Run {
        /// The agent config file (deploy/agent.example.toml shows every key).
        #[arg(long)]
        config: PathBuf,
        /// Windows: run under the service control manager (deploy/windows/install-service.ps1
        /// registers the service with this flag).
        #[arg(long)]
        service: bool,
    },
    /// Run every check of the connection guide once and name the first failing step.
    /// Exit status 0 only when everything passes.
    Check {
        /// NTT area (east / west); or give --prefecture, or --config.
        #[arg(long)]
        area: Option<Area>,
        /// Prefecture's full name (e.g. 東京都), mapped to its area.
        #[arg(long)]
        prefecture: Option<String>,
        /// The OQS connection certificate bundle (PEM).
        #[arg(long)]
        oqs_ca: Option<PathBuf>,
        /// An agent config file (its probes and area are used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON document instead of the report.
        #[arg(long)]
        json: bool,
        /// Report language.
        #[arg(long, value_enum, default_value = "ja")]
        lang: Lang,
    },
}

#[tokio::main]
async fn main() {
    // Exit status: 0 all checks pass, 1 a check fails, 2 the command could not run (bad input).
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("oqs-agent: {e:#}");
        std::process::exit(2);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, service } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let cfg = AgentConfig::from_file(&config)?;
            if service {
                #[cfg(windows)]
                return oqs_agent::winservice::run_as_service(cfg);
                #[cfg(not(windows))]
                anyhow::bail!("--service is for the Windows service control manager; on Linux use systemd (deploy/systemd/oqs-agent.service)");
            }
            let shutdown = tokio_util::sync::CancellationToken::new();
            let s = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                s.cancel();
            });
            oqs_agent::daemon::run(cfg, shutdown).await?;
            Ok(())
        }
        Command::Check {
            area,
            prefecture,
            oqs_ca,
            config,
            json,
            lang,
        } => {
            let mut cfg = match (&config, area, &prefecture) {
                (Some(path), _, _) => AgentConfig::from_file(path)?,
                (None, Some(a), _) => AgentConfig::for_check(a, None),
                (None, None, Some(p)) => AgentConfig::for_check(
                    oqs_agent::guide::prefecture_area(p).with_context(|| {
                        format!("--prefecture {p:?} is not a prefecture's full name (e.g. 東京都)")
                    })?,
                    None,
                ),
                (None, None, None) => {
                    anyhow::bail!("give --area east|west, --prefecture, or --config FILE")
                }
            };
            if oqs_ca.is_some() {
                cfg.oqs_ca = oqs_ca;
            }
            let area = cfg.area;
            let url = cfg.probes.lineauth_url.clone();
            let runner = RoundRunner::new(cfg)?;
            let report = runner.run(1, 0).await;
            let d = diagnosis::diagnose(&report, &url);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&render::json(&report, area.as_str(), &d))?
                );
            } else {
                let label = match (area, lang) {
                    (Area::East, Lang::Ja) => "東日本",
                    (Area::West, Lang::Ja) => "西日本",
                    (Area::East, Lang::En) => "NTT East",
                    (Area::West, Lang::En) => "NTT West",
                };
                print!("{}", render::text(&report, label, &d, lang));
            }
            // 0 only when the tree passes and every probe passed (CRL and NTP are outside it).
            let passed = d.step.is_none() && render::failing(&report).is_empty();
            std::process::exit(if passed { 0 } else { 1 });
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
