//! The fleet simulator: many simulated terminals speaking the real `oqs.fleet.v1` protocol to a
//! collector, each sending reports built by [`scenario`], measuring ack latency.
//!
//! Used by the `oqs-fleet-sim` binary (load tests, scenario tests), by `oqs-collector --demo` and by
//! the benchmarks. Must never reach into the collector's internals: it is a client, like a real
//! agent (its own crate, so it cannot).

pub mod scenario;

use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_client::FleetIngestClient;
use oqs_proto::v1::{AgentMessage, Hello};
use scenario::{Scenario, SiteProfile};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// How to run a simulated fleet.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The collector's gRPC URL, e.g. `http://[::1]:50051`.
    pub collector: String,
    pub sites: usize,
    /// Reports per terminal; 0 sends forever (until cancelled).
    pub reports: u64,
    pub interval: Duration,
    pub scenario: Scenario,
    pub site_prefix: String,
    /// Terminals per site; 0 lets the simulator choose (some sites get two).
    pub terminals_per_site: usize,
    /// TCP connections shared by all terminals; 0 gives each terminal its own, like real agents.
    pub connections: usize,
    /// How long to wait for outstanding acks after the last report.
    pub ack_timeout: Duration,
    /// Spread terminals' first reports over one interval (true), or start all at once.
    pub spread_start: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            collector: "http://[::1]:50051".into(),
            sites: 10,
            reports: 10,
            interval: Duration::from_millis(1000),
            scenario: Scenario::Healthy,
            site_prefix: "site-".into(),
            terminals_per_site: 0,
            connections: 0,
            ack_timeout: Duration::from_secs(30),
            spread_start: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub terminals: u64,
    pub sent: u64,
    pub acked: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Streams that ended in an error status or could not connect.
    pub stream_errors: u64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    /// p50/p99 without each terminal's first report: the steady state.
    pub steady_p50: Duration,
    pub steady_p99: Duration,
    pub elapsed: Duration,
    /// The first few error texts, for people.
    pub errors: Vec<String>,
}

impl Summary {
    /// True when every report sent was acknowledged.
    pub fn all_acked(&self) -> bool {
        self.sent == self.acked && self.rejected == 0 && self.stream_errors == 0
    }

    /// Acked reports per second over the run.
    pub fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "terminals={} sent={} acked={} duplicate={} rejected={} stream_errors={} \
             ack_latency_p50={:.1}ms p99={:.1}ms max={:.1}ms steady_p50={:.1}ms steady_p99={:.1}ms \
             elapsed={:.1}s rate={:.0}/s",
            self.terminals,
            self.sent,
            self.acked,
            self.duplicates,
            self.rejected,
            self.stream_errors,
            self.latency_p50.as_secs_f64() * 1e3,
            self.latency_p99.as_secs_f64() * 1e3,
            self.latency_max.as_secs_f64() * 1e3,
            self.steady_p50.as_secs_f64() * 1e3,
            self.steady_p99.as_secs_f64() * 1e3,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    stream_errors: AtomicU64,
    /// Ack latencies in microseconds.
    latencies: Mutex<Vec<u32>>,
    /// The same, without each terminal's first report (which also pays for connecting).
    steady: Mutex<Vec<u32>>,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        self.stream_errors.fetch_add(1, Ordering::Relaxed);
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.len() < 10 {
            errs.push(e);
        }
    }
}

/// The simulated sites of a run.
pub fn fleet(opts: &SimOptions) -> Vec<SiteProfile> {
    (0..opts.sites)
        .map(|i| SiteProfile::new(i, &opts.site_prefix, opts.scenario, opts.terminals_per_site))
        .collect()
}

/// Runs the fleet until every terminal sent its reports and got its acks, or `cancel` fires.
pub async fn run(opts: SimOptions, cancel: CancellationToken) -> anyhow::Result<Summary> {
    let endpoint = Endpoint::from_shared(opts.collector.clone())
        .map_err(|e| anyhow::anyhow!("collector URL {:?}: {e}", opts.collector))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let sites = fleet(&opts);
    let total_terminals: usize = sites.iter().map(|s| s.terminals).sum();
    let shared: Vec<Channel> = if opts.connections == 0 {
        Vec::new()
    } else {
        (0..opts.connections)
            .map(|_| endpoint.connect_lazy())
            .collect()
    };
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut n = 0usize;
    for site in sites {
        let site = Arc::new(site);
        for t in 0..site.terminals {
            let channel = if shared.is_empty() {
                endpoint.connect_lazy()
            } else {
                shared[n % shared.len()].clone()
            };
            let offset = if opts.spread_start && total_terminals > 1 {
                opts.interval.mul_f64(n as f64 / total_terminals as f64)
            } else {
                Duration::ZERO
            };
            n += 1;
            tasks.spawn(terminal(
                channel,
                site.clone(),
                t,
                opts.clone(),
                offset,
                counters.clone(),
                cancel.clone(),
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let take = |m: &Mutex<Vec<u32>>| {
        let mut v = std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()));
        v.sort_unstable();
        v
    };
    let lat = take(&counters.latencies);
    let steady = take(&counters.steady);
    let pct = |lat: &[u32], p: f64| -> Duration {
        if lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        Duration::from_micros(u64::from(lat[i]))
    };
    let errors = counters
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Summary {
        terminals: total_terminals as u64,
        sent: counters.sent.load(Ordering::Relaxed),
        acked: counters.acked.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        stream_errors: counters.stream_errors.load(Ordering::Relaxed),
        latency_p50: pct(&lat, 0.50),
        latency_p99: pct(&lat, 0.99),
        latency_max: pct(&lat, 1.0),
        steady_p50: pct(&steady, 0.50),
        steady_p99: pct(&steady, 0.99),
        elapsed,
        errors,
    })
}

/// One simulated terminal: Hello, then reports on the interval, counting acks.
async fn terminal(
    channel: Channel,
    site: Arc<SiteProfile>,
    index: usize,
    opts: SimOptions,
    offset: Duration,
    c: Arc<Counters>,
    cancel: CancellationToken,
) {
    // Terminals come up spread over the interval, as a real fleet does; connecting all at once
    // would measure a connect storm, not ingest.
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(offset) => {}
    }
    let terminal_id = format!("pc-{}", index + 1);
    let (tx, rx) = mpsc::channel::<AgentMessage>(32);
    let hello = hello(&site, index);
    if tx
        .send(AgentMessage {
            body: Some(AgentBody::Hello(hello)),
        })
        .await
        .is_err()
    {
        return;
    }
    let mut client = FleetIngestClient::new(channel);
    let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(st) => {
            c.error(format!("{}/{terminal_id}: connect: {st}", site.site_id));
            return;
        }
    };
    let last_stored = match inbound.message().await {
        Ok(Some(m)) => match m.body {
            Some(CollectorBody::Welcome(w)) => w.last_stored_seq,
            other => {
                c.error(format!(
                    "{}/{terminal_id}: expected Welcome, got {other:?}",
                    site.site_id
                ));
                return;
            }
        },
        Ok(None) => {
            c.error(format!(
                "{}/{terminal_id}: stream closed before Welcome",
                site.site_id
            ));
            return;
        }
        Err(st) => {
            c.error(format!("{}/{terminal_id}: {st}", site.site_id));
            return;
        }
    };
    // A silent terminal sends one report, then goes quiet (its agent stopped).
    let to_send = if site.scenario == Scenario::Silent {
        1
    } else {
        opts.reports
    };
    let forever = to_send == 0;
    let mut round = 0u64;
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut next_send = tokio::time::Instant::now();
    let mut done_at: Option<tokio::time::Instant> = None;
    loop {
        let more = forever || round < to_send;
        if !more && pending.is_empty() {
            break;
        }
        if !more && done_at.is_none() {
            done_at = Some(tokio::time::Instant::now() + opts.ack_timeout);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(next_send), if more => {
                let seq = last_stored + round + 1;
                let r = scenario::report(&site, index, round, seq, now_ms());
                round += 1;
                next_send += opts.interval;
                pending.push_back((seq, Instant::now()));
                if tx.send(AgentMessage { body: Some(AgentBody::Report(r)) }).await.is_err() {
                    break;
                }
                c.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = tokio::time::sleep_until(done_at.unwrap_or_else(tokio::time::Instant::now)), if done_at.is_some() => {
                c.error(format!("{}/{terminal_id}: {} reports not acked within {:?}", site.site_id, pending.len(), opts.ack_timeout));
                break;
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => match m.body {
                    Some(CollectorBody::Ack(a)) => {
                        while let Some((seq, at)) = pending.front().copied() {
                            if seq > a.seq { break; }
                            pending.pop_front();
                            if seq == a.seq {
                                c.acked.fetch_add(1, Ordering::Relaxed);
                                if a.duplicate { c.duplicates.fetch_add(1, Ordering::Relaxed); }
                                let us = u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX);
                                c.latencies.lock().unwrap_or_else(|p| p.into_inner()).push(us);
                                if seq > last_stored + 1 {
                                    c.steady.lock().unwrap_or_else(|p| p.into_inner()).push(us);
                                }
                            }
                        }
                    }
                    Some(CollectorBody::Rejected(r)) => {
                        c.rejected.fetch_add(1, Ordering::Relaxed);
                        c.error(format!("{}/{terminal_id}: seq {} rejected: {}", site.site_id, r.seq, r.reason));
                    }
                    // Run now: the next round goes out at once (as an agent would), so the
                    // dashboard's button works on the demo fleet. Config updates are for real
                    // agents; the simulator keeps its script.
                    Some(CollectorBody::RunNow(_)) if more => {
                        next_send = tokio::time::Instant::now();
                    }
                    _ => {}
                },
                Ok(None) => {
                    if !pending.is_empty() {
                        c.error(format!("{}/{terminal_id}: stream closed with {} reports unacked", site.site_id, pending.len()));
                    }
                    break;
                }
                Err(st) => {
                    c.error(format!("{}/{terminal_id}: {st}", site.site_id));
                    break;
                }
            }
        }
    }
}

/// Unix milliseconds now (the simulated terminals' clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The agent version a simulated site runs: this crate's, except every tenth site (index 3, 13,
/// …), which lags on an older one, as a fleet mid-rollout does.
pub fn agent_version(site_index: usize) -> &'static str {
    if site_index % 10 == 3 {
        OLD_AGENT_VERSION
    } else {
        env!("CARGO_PKG_VERSION")
    }
}

/// What the lagging sites of [`agent_version`] run.
pub const OLD_AGENT_VERSION: &str = "0.0.9";

/// The OS a simulated site's terminal says it runs: Windows 11 mostly, every seventh on Linux.
pub fn os(site_index: usize) -> &'static str {
    if site_index.is_multiple_of(7) {
        "linux x86_64 Ubuntu 24.04.1 LTS, kernel 6.8.0-49-generic"
    } else {
        "windows x86_64 Windows 11 Pro 23H2 (build 22631.4460)"
    }
}

/// The Hello of terminal `index` (0-based; its id is `pc-{index + 1}`) of a simulated site.
pub fn hello(site: &SiteProfile, index: usize) -> Hello {
    Hello {
        protocol_version: oqs_proto::PROTOCOL_VERSION,
        site_id: site.site_id.clone(),
        terminal_id: format!("pc-{}", index + 1),
        hostname: format!("OQS-{}-{}", site.index, index + 1),
        agent_version: agent_version(site.index).into(),
        area: site.area.to_wire() as i32,
        os: os(site.index).into(),
        boot_id: format!("{:016x}", scenario::mix(site.index as u64, now_ms() as u64)),
        customer_id: Some(site.customer_id.clone()),
        highest_held_seq: 0,
        highest_acked_seq: 0,
        agent_time_ms: now_ms(),
        // Booted within the last month, the same for a site on every run's day.
        boot_time_ms: now_ms()
            - (scenario::mix(site.index as u64, 0xb007) % (30 * 86_400_000)) as i64,
        prefecture: Some(site.prefecture.to_owned()),
        site_name: Some(site.name.clone()),
        credential: None,
    }
}
