//! `oqs-collector`: parses flags, loads the optional config, starts the collector (and with
//! `--demo`, a simulated fleet against it), and shuts down cleanly on SIGTERM or Ctrl-C.
//! `oqs-collector admin …` manages enrollment tokens and sites' closed days and maintenance
//! windows through a running collector's HTTP API.

/// jemalloc rather than glibc's malloc: under `tests/bench/ingest`'s 10,000 terminals, perf put
/// ~28% of the collector's CPU in glibc's allocator (`_int_malloc`, `malloc_consolidate`, ...);
/// with jemalloc the collector used 12% less CPU and its median ack latency halved, for ~5% more
/// resident memory (README, "Benchmark: ingest"). The `system-allocator` feature turns it off for
/// heap profilers that hook malloc (heaptrack, massif).
#[cfg(all(not(target_env = "msvc"), not(feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use clap::Parser;
use oqs_collector::config::CollectorConfig;
use oqs_collector::server;
use oqs_fleet_sim::{self as sim, scenario::Scenario, SimOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The OQS Fleet Monitor collector: gRPC ingest from agents, sled store, metrics, JSON API and
/// dashboard.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML config with the same keys as the flags (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the store lives [default: ./oqs-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC ingest address [default: [::1]:50051].
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// HTTP address for /healthz, /metrics, /api and the dashboard [default: [::1]:8080].
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Accept agents without TLS on a non-loopback gRPC address (their reports, customer IDs and
    /// addresses then cross the network in clear text).
    #[arg(long)]
    insecure: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Also run a simulated `mixed` fleet against this collector, so there is something to see.
    #[arg(long)]
    demo: bool,
    /// Sites in the demo fleet.
    #[arg(long, default_value_t = 200)]
    demo_sites: usize,
    /// Seconds between a demo terminal's reports.
    #[arg(long, default_value_t = 10)]
    demo_interval_secs: u64,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Enrollment tokens and maintenance, through a running collector's HTTP API.
    Admin {
        /// The collector's HTTP address (plain HTTP: run this on the collector's host).
        #[arg(long, default_value = "[::1]:8080")]
        http: SocketAddr,
        /// A file holding the admin token (http_auth.admin_token_sha256), if one is configured.
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(clap::Subcommand, Debug)]
enum AdminAction {
    /// Make (or replace) a site's enrollment token and print it (the only time it is shown).
    Enroll {
        site: String,
        /// Hours the token works (0: until revoked) [default: enrollment.token_ttl_hours, 336].
        #[arg(long)]
        expires_in_hours: Option<u64>,
        /// Terminals it may enroll (0: any number) [default: enrollment.token_max_uses, 0].
        #[arg(long)]
        max_uses: Option<u32>,
        /// Re-enroll this terminal (a replaced PC): its secret is removed and its stream closed,
        /// so the new token enrolls it again. Without it a token never re-enrolls a terminal.
        #[arg(long)]
        replace: Option<String>,
    },
    /// Revoke a site's token and every terminal secret of the site (effective immediately).
    Revoke { site: String },
    /// List sites with enrollments.
    List,
    /// A site's closed days and maintenance windows (`/api/sites/{id}/maintenance`).
    Maintenance {
        site: String,
        #[command(subcommand)]
        op: MaintenanceOp,
    },
}

#[derive(clap::Subcommand, Debug)]
enum MaintenanceOp {
    /// Print the schedule and whether it is in effect now.
    Show,
    /// Set the recurring closed hours (Japan time), replacing the earlier ones.
    Closed {
        /// DAY or DAY:HH:MM-HH:MM, e.g. `sun` or `thu:13:00-24:00`; repeat for several.
        #[arg(long = "closed")]
        spans: Vec<String>,
        /// Closed on public holidays too.
        #[arg(long)]
        holidays: bool,
    },
    /// Add an ad-hoc window (times RFC 3339, e.g. 2026-12-10T09:00:00+09:00, or Unix ms).
    AddWindow {
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long)]
        reason: String,
        /// Who sets it (a name or a ticket).
        #[arg(long)]
        by: String,
    },
    /// Remove an ad-hoc window by its id.
    RemoveWindow { id: u64 },
}

/// `DAY` or `DAY:HH:MM-HH:MM` as the API's closed span.
fn closed_span(s: &str) -> anyhow::Result<serde_json::Value> {
    match s.split_once(':') {
        None => Ok(serde_json::json!({ "day": s })),
        Some((day, span)) => {
            let (from, to) = span
                .split_once('-')
                .with_context(|| format!("--closed {s}: expected DAY or DAY:HH:MM-HH:MM"))?;
            Ok(serde_json::json!({ "day": day, "from": from, "to": to }))
        }
    }
}

/// One admin request over HTTP/1.1; prints the JSON answer, fails on a non-2xx status.
async fn admin(
    http: SocketAddr,
    token_file: Option<PathBuf>,
    action: AdminAction,
) -> anyhow::Result<()> {
    let (method, path, body) = match &action {
        AdminAction::Enroll {
            site,
            expires_in_hours,
            max_uses,
            replace,
        } => {
            let mut q = Vec::new();
            if let Some(h) = expires_in_hours {
                q.push(format!("expires_in_hours={h}"));
            }
            if let Some(n) = max_uses {
                q.push(format!("max_uses={n}"));
            }
            if let Some(t) = replace {
                q.push(format!("replace={t}"));
            }
            let q = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            ("POST", format!("/api/admin/enrollments/{site}{q}"), None)
        }
        AdminAction::Revoke { site } => ("DELETE", format!("/api/admin/enrollments/{site}"), None),
        AdminAction::List => ("GET", "/api/admin/enrollments".to_string(), None),
        AdminAction::Maintenance { site, op } => {
            let base = format!("/api/sites/{site}/maintenance");
            match op {
                MaintenanceOp::Show => ("GET", base, None),
                MaintenanceOp::Closed { spans, holidays } => {
                    let closed = spans
                        .iter()
                        .map(|s| closed_span(s))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let body = serde_json::json!({ "closed": closed, "holidays": holidays });
                    ("PUT", base, Some(body.to_string()))
                }
                MaintenanceOp::AddWindow {
                    start,
                    end,
                    reason,
                    by,
                } => {
                    let body = serde_json::json!({ "start": start, "end": end, "reason": reason, "by": by });
                    ("POST", format!("{base}/windows"), Some(body.to_string()))
                }
                MaintenanceOp::RemoveWindow { id } => {
                    ("DELETE", format!("{base}/windows/{id}"), None)
                }
            }
        }
    };
    let auth = match token_file {
        Some(f) => Some(
            std::fs::read_to_string(&f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let (status, body) = call(http, auth.as_deref(), method, &path, body.as_deref()).await?;
    println!("{body}");
    anyhow::ensure!(
        (200..300).contains(&status),
        "the collector answered {status}"
    );
    Ok(())
}

/// One HTTP/1.1 request to the collector's HTTP side: (status, body).
async fn call(
    http: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(http)
        .await
        .with_context(|| format!("cannot reach the collector's HTTP side at {http}"))?;
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {http}\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

/// The demo fleet's closed days and maintenance window, once its sites have reported: a clinic
/// closed Thursday afternoons, Sundays and holidays, and one in an NTT works window now.
async fn demo_maintenance(http: SocketAddr, cancel: CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    let now = oqs_collector::clock::now_ms();
    let closed =
        r#"{"closed":[{"day":"thu","from":"13:00","to":"24:00"},{"day":"sun"}],"holidays":true}"#;
    let window = serde_json::json!({
        "start": (now - 600_000).to_string(), "end": (now + 7_200_000).to_string(),
        "reason": "NTT工事（デモ）", "by": "demo",
    })
    .to_string();
    for (method, path, body) in [
        (
            "PUT",
            "/api/sites/demo-00004/maintenance",
            closed.to_owned(),
        ),
        ("POST", "/api/sites/demo-00008/maintenance/windows", window),
    ] {
        match call(http, None, method, path, Some(&body)).await {
            Ok((s, _)) if (200..300).contains(&s) => {}
            Ok((s, b)) => tracing::warn!(status = s, body = %b, "demo maintenance not set"),
            Err(e) => tracing::warn!(error = %e, "demo maintenance not set"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Cmd::Admin {
        http,
        token_file,
        action,
    }) = args.command
    {
        return admin(http, token_file, action).await;
    }
    // One agent is one connection: lift the soft file-descriptor limit to the hard one, so a
    // fleet of thousands is not capped by a 1024 default.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let mut config = match &args.config {
        Some(p) => CollectorConfig::from_file(p)?,
        None => CollectorConfig::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.grpc_listen {
        config.grpc_listen = a;
    }
    if let Some(a) = args.http_listen {
        config.http_listen = a;
    }
    if args.insecure {
        config.insecure = true;
    }
    let running = server::start(config.clone()).await.with_context(|| {
        format!(
            "starting the collector (data dir {})",
            config.data_dir.display()
        )
    })?;
    // Tests and scripts read this line to find the ports (useful with port 0).
    println!(
        "oqs-collector ready grpc={} http={}",
        running.grpc_addr, running.http_addr
    );
    tracing::info!(grpc = %running.grpc_addr, http = %running.http_addr, data_dir = %config.data_dir.display(), "collector ready");

    let demo_cancel = CancellationToken::new();
    let demo = if args.demo {
        let opts = SimOptions {
            collector: format!("http://{}", running.grpc_addr),
            sites: args.demo_sites,
            reports: 0,
            interval: Duration::from_secs(args.demo_interval_secs.max(1)),
            scenario: Scenario::Mixed,
            site_prefix: "demo-".into(),
            ..SimOptions::default()
        };
        tracing::info!(
            sites = opts.sites,
            "demo fleet starting; open http://{}/",
            running.http_addr
        );
        tokio::spawn(demo_maintenance(running.http_addr, demo_cancel.clone()));
        let cancel = demo_cancel.clone();
        Some(tokio::spawn(async move { sim::run(opts, cancel).await }))
    } else {
        None
    };

    // A signal, or the collector stopping on its own (its store writer failed): either way the
    // process ends, with the collector's error as its exit status.
    tokio::select! {
        _ = oqs_runtime::shutdown_signal() => {}
        _ = running.shutdown.cancelled() => {}
    }
    // Everything acknowledged is on disk already (the committer syncs before every ack), and the
    // committer's last commit is flushed by `stop`. A stop that still hangs (sled's flush on a
    // full disk, on a runtime worker: the runtime's own timers stop with it) must not keep the
    // process alive and mute: a plain thread, outside the runtime, ends it after STOP_WITHIN.
    std::thread::spawn(|| {
        std::thread::sleep(STOP_WITHIN);
        tracing::error!(
            "the collector did not stop within {} s: exiting (nothing unacknowledged is lost: \
             agents keep what was not acked)",
            STOP_WITHIN.as_secs()
        );
        eprintln!(
            "oqs-collector: did not stop within {} s",
            STOP_WITHIN.as_secs()
        );
        std::process::exit(1);
    });
    demo_cancel.cancel();
    if let Some(d) = demo {
        let _ = d.await;
    }
    let code = match running.stop().await {
        Ok(()) => {
            tracing::info!("collector stopped");
            0
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "collector stopped on an error");
            eprintln!("oqs-collector: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// How long a stop may take (streams finishing their acks, the last commit) before the process
/// exits regardless.
const STOP_WITHIN: Duration = Duration::from_secs(30);
