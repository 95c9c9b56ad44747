//! `oqs-agent`: the clinic terminal's agent. `check` runs one round now and walks the guide's
//! troubleshooting tree for the engineer on site.

use anyhow::Context;
use clap::{Parser, Subcommand};
use oqs_agent::config::AgentConfig;
use oqs_agent::diagnosis;
use oqs_agent::render::{self, Lang};
use oqs_agent::round::RoundRunner;
use oqs_proto::ident::{Area, Connection};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "OQS Fleet Monitor agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// The daemon: rounds on the interval, streamed to the collector, spooled until acknowledged.
    /// Stops cleanly on SIGTERM or Ctrl-C (and on a service stop with --service).
    Run {
        /// The agent config file (deploy/agent.example.toml shows every key).
        #[arg(long)]
        config: PathBuf,
        /// Windows: run under the service control manager (the MSI registers the service with
        /// this flag).
        #[arg(long)]
        service: bool,
        /// Log to this file (rotated at 10 MiB, five old files kept) instead of stderr. With
        /// --service the default is logs\oqs-agent.log beside the config (the MSI:
        /// %ProgramData%\OQS Agent\logs).
        #[arg(long)]
        log_file: Option<PathBuf>,
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
        /// An agent config file (its probes, area and connection are used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How the clinic reaches the OQS network: flets_ipoe (the guide's method, the default),
        /// ipv4_pppoe or ipsec (no IPv6 or line-authentication check). With --config, the
        /// file's `connection` is used.
        #[arg(long)]
        connection: Option<Connection>,
        /// One JSON document instead of the report.
        #[arg(long)]
        json: bool,
        /// Report language.
        #[arg(long, value_enum, default_value = "ja")]
        lang: Lang,
    },
    /// Write the agent's config file from installer properties (the MSI runs this with
    /// SITE_ID=… TERMINAL_ID=…). Keeps an existing file unless --replace. A bad value fails,
    /// naming the property.
    WriteConfig {
        /// Where to write (the MSI: %ProgramData%\OQS Agent\agent.toml).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        site_id: Option<String>,
        #[arg(long)]
        terminal_id: Option<String>,
        /// east / west (or give --prefecture).
        #[arg(long)]
        area: Option<String>,
        #[arg(long)]
        prefecture: Option<String>,
        #[arg(long)]
        site_name: Option<String>,
        #[arg(long)]
        collector_url: Option<String>,
        /// PEM of the CA that signed the collector's certificate (https:// collectors). An
        /// empty value (an unset installer property) is none.
        #[arg(long)]
        collector_ca: Option<String>,
        /// The site's enrollment token (kept in the file until the agent has its own secret).
        #[arg(long)]
        enrollment_token: Option<String>,
        /// The spool directory (empty: the default).
        #[arg(long)]
        spool_dir: Option<String>,
        /// Clear text to a non-loopback collector (collector.insecure = true).
        #[arg(long)]
        insecure: bool,
        /// The same as an installer property's value: empty or 0 / false / no, or 1 / true / yes.
        #[arg(long)]
        collector_insecure: Option<String>,
        /// Overwrite an existing config.
        #[arg(long)]
        replace: bool,
        /// Also append an error to this file (a silent install has no console).
        #[arg(long)]
        error_log: Option<PathBuf>,
    },
    /// A relay on a clinic PC that reaches the NOC, for OQS terminals that cannot: an HTTP
    /// CONNECT proxy that tunnels only to the given collectors, only for the allowed sources.
    /// The terminals set `collector.proxy = "http://THIS-PC:PORT"`. TLS stays end to end: the
    /// relay can neither read nor forge a report. Stops on SIGTERM or Ctrl-C.
    Relay {
        /// A TOML file with the same settings (listen, collectors, allow, proxy,
        /// proxy_auth_file, max_tunnels, idle_secs, max_tunnel_bytes); options given here go
        /// over it (deploy/relay.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to listen (ADDR:PORT; port 0 picks one, printed on start).
        #[arg(long)]
        listen: Option<String>,
        /// A collector's gRPC address, HOST:PORT as the agents' URLs name it; repeat for more.
        #[arg(long = "collector")]
        collectors: Vec<String>,
        /// A source prefix that may use the relay (repeat). Default: loopback, the private and
        /// link-local ranges and this host's IPv6 prefixes.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// A proxy the relay itself reaches the collectors through (http://HOST:PORT).
        #[arg(long)]
        proxy: Option<String>,
        /// A file holding user:password for that proxy.
        #[arg(long)]
        proxy_auth_file: Option<PathBuf>,
        /// Tunnels open at once; more are answered 503 (default 1000).
        #[arg(long)]
        max_tunnels: Option<u64>,
        /// A tunnel idle this long either way is closed, in seconds (default 300).
        #[arg(long)]
        idle_secs: Option<u64>,
        /// The most bytes one tunnel carries before it is closed, the agent then reconnects
        /// (default 1 GiB).
        #[arg(long)]
        max_tunnel_bytes: Option<u64>,
    },
    /// Windows: configure the installed `oqs-agent` service (the MSI runs this).
    ServiceConfig {
        /// Restart on failure: 10 s, 10 s, then every 60 s; reset after a day.
        #[arg(long)]
        restart_on_failure: bool,
    },
}

fn main() {
    // Exit status: 0 all checks pass, 1 a check fails, 2 the command could not run (bad input).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oqs-agent: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let result = runtime.block_on(run(cli));
    // A name lookup still running on a blocking thread (the system resolver retries for up to
    // ten seconds) must not hold up a stop: a service manager waits for less.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("oqs-agent: {e:#}");
        std::process::exit(2);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            config,
            service,
            log_file,
        } => {
            // The platform verifier logs every failed verification as an error; the portal
            // probe reports the verdict itself (cert_untrusted), once per round.
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rustls_platform_verifier=off".into());
            let log_file = log_file.or_else(|| {
                service.then(|| {
                    config
                        .parent()
                        .unwrap_or(std::path::Path::new("."))
                        .join("logs")
                        .join("oqs-agent.log")
                })
            });
            match &log_file {
                Some(path) => {
                    let file = oqs_agent::logfile::RotatingFile::open(
                        path,
                        oqs_agent::logfile::DEFAULT_MAX_BYTES,
                        oqs_agent::logfile::DEFAULT_KEEP,
                    )
                    .with_context(|| format!("cannot open the log file {}", path.display()))?;
                    tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(false)
                        .with_writer(std::sync::Mutex::new(file))
                        .init();
                }
                None => tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .with_writer(std::io::stderr)
                    .init(),
            }
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
                oqs_runtime::shutdown_signal().await;
                s.cancel();
            });
            oqs_agent::daemon::run(cfg, shutdown).await?;
            Ok(())
        }
        Command::Relay {
            config,
            listen,
            collectors,
            allow,
            proxy,
            proxy_auth_file,
            max_tunnels,
            idle_secs,
            max_tunnel_bytes,
        } => {
            use oqs_agent::relay_config::RelayOptions;
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let file = match &config {
                Some(path) => RelayOptions::from_file(path)?,
                None => RelayOptions::default(),
            };
            let settings = file
                .overlaid(RelayOptions {
                    listen,
                    collectors,
                    allow,
                    proxy,
                    proxy_auth_file,
                    max_tunnels,
                    idle_secs,
                    max_tunnel_bytes,
                })
                .settings()?;
            let listen = settings.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("--listen {listen}: cannot listen"))?;
            let bound = listener.local_addr()?;
            // Scripts read this line to find the port (with port 0).
            println!("oqs-agent relay listening on {bound}");
            tracing::info!(%bound, collectors = ?settings.collectors, "relay listening");
            let shutdown = tokio_util::sync::CancellationToken::new();
            let s = shutdown.clone();
            tokio::spawn(async move {
                oqs_runtime::shutdown_signal().await;
                s.cancel();
            });
            let counters = std::sync::Arc::new(oqs_agent::relay::RelayCounters::default());
            oqs_agent::relay::serve(
                listener,
                std::sync::Arc::new(settings),
                counters.clone(),
                shutdown,
            )
            .await;
            tracing::info!(counters = %counters.summary(), "relay stopped");
            Ok(())
        }
        Command::ServiceConfig { restart_on_failure } => {
            #[cfg(windows)]
            if restart_on_failure {
                oqs_agent::winservice::configure_restart_on_failure()?;
                println!("oqs-agent: the service restarts on failure");
            }
            #[cfg(not(windows))]
            {
                let _ = restart_on_failure;
                anyhow::bail!("service-config is for the Windows service control manager");
            }
            #[cfg(windows)]
            Ok(())
        }
        Command::WriteConfig {
            out,
            site_id,
            terminal_id,
            area,
            prefecture,
            site_name,
            collector_url,
            collector_ca,
            enrollment_token,
            spool_dir,
            insecure,
            collector_insecure,
            replace,
            error_log,
        } => {
            let insecure =
                match oqs_agent::install::flag("COLLECTOR_INSECURE", collector_insecure.as_deref())
                {
                    Ok(v) => insecure || v,
                    Err(e) => anyhow::bail!("write-config: {e}"),
                };
            let props = oqs_agent::install::Properties {
                site_id,
                terminal_id,
                area,
                prefecture,
                site_name,
                collector_url,
                collector_ca: collector_ca.filter(|p| !p.is_empty()).map(PathBuf::from),
                enrollment_token,
                spool_dir: spool_dir
                    .filter(|p| !p.is_empty())
                    .map(|p| oqs_agent::install::without_trailing_dot(PathBuf::from(p))),
                insecure,
            };
            match oqs_agent::install::write(&out, &props, replace) {
                Ok(oqs_agent::install::Written::New) => {
                    println!("oqs-agent: wrote {}", out.display());
                    Ok(())
                }
                Ok(oqs_agent::install::Written::KeptExisting) => {
                    println!("oqs-agent: kept the existing {}", out.display());
                    Ok(())
                }
                Err(e) => {
                    if let Some(log) = error_log {
                        use std::io::Write;
                        if let Ok(mut f) = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&log)
                        {
                            let _ = writeln!(f, "oqs-agent write-config: {e}");
                        }
                    }
                    anyhow::bail!("write-config: {e}")
                }
            }
        }
        Command::Check {
            area,
            prefecture,
            oqs_ca,
            config,
            connection,
            json,
            lang,
        } => {
            let method = connection.unwrap_or_default();
            let mut cfg = match (&config, area, &prefecture) {
                (Some(path), _, _) => {
                    let cfg = AgentConfig::from_file(path)?;
                    if connection.is_some_and(|c| c != cfg.connection) {
                        anyhow::bail!(
                            "--connection {method} differs from the config's connection = \"{}\": \
                             set it in {}",
                            cfg.connection,
                            path.display()
                        );
                    }
                    cfg
                }
                (None, Some(a), _) => AgentConfig::for_check(a, None, method),
                (None, None, Some(p)) => AgentConfig::for_check(
                    oqs_agent::guide::prefecture_area(p).with_context(|| {
                        format!("--prefecture {p:?} is not a prefecture's full name (e.g. 東京都)")
                    })?,
                    None,
                    method,
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
            // The machine's proxy and which of the guide's names go around it (a kitting script
            // sets both): a fact for the engineer, judged by no rule yet.
            let hosts: Vec<String> = cfg
                .probes
                .dns_names
                .iter()
                .map(|n| n.name.clone())
                .collect();
            let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let proxy_facts = tokio::task::spawn_blocking(oqs_agent::uplink::SystemProxy::read)
                .await
                .unwrap_or_default()
                .facts(&host_refs);
            let customer_id = cfg.customer_id.as_ref().map(|c| c.reveal().to_owned());
            let runner = RoundRunner::new(cfg)?;
            let report = runner.run(1, 0).await;
            let d = diagnosis::diagnose(&report, &url);
            if json {
                let mut doc = render::json(&report, area.as_str(), &d, customer_id.as_deref());
                doc["system_proxy"] = proxy_facts;
                out(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
            } else {
                let label = match (area, lang) {
                    (Area::East, Lang::Ja) => "東日本",
                    (Area::West, Lang::Ja) => "西日本",
                    (Area::East, Lang::En) => "NTT East",
                    (Area::West, Lang::En) => "NTT West",
                };
                out(&render::text(
                    &report,
                    label,
                    &d,
                    lang,
                    customer_id.as_deref(),
                ));
                out(&render::system_proxy(&proxy_facts, lang));
            }
            // 0 only when the tree passes and every probe passed (CRL and NTP are outside it).
            let passed = d.finding.is_none() && render::failing(&report).is_empty();
            std::process::exit(if passed { 0 } else { 1 });
        }
    }
}

/// Writes the check's result; a reader that went away (`| head`) is not an error of the check:
/// the exit status still says how the round went.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}
