//! The fleet simulator: many simulated terminals speaking the real `oqs.fleet.v1` protocol to a
//! collector, each sending reports built by [`scenario`], measuring ack latency.
//!
//! Used by the `oqs-fleet-sim` binary (load tests, scenario tests), by `oqs-collector --demo` and by
//! the benchmarks. Must never reach into the collector's internals: it is a client, like a real
//! agent (its own crate, so it cannot).

pub mod scenario;
mod tunnel;

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
    /// Make every report at least this large (bytes), with DNS answers that differ from round to
    /// round so none is elided: a sender of large reports (0: as the scenario makes them).
    pub report_bytes: usize,
    /// Connect through this HTTP CONNECT proxy (`HOST:PORT`, e.g. `oqs-agent relay`), one tunnel
    /// per connection: the relay benchmark. None: direct.
    pub proxy: Option<String>,
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
            proxy: None,
            spread_start: true,
            report_bytes: 0,
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
    /// Terminals that gave up: acks that never came within the ack timeout, a first connection
    /// that never got its Welcome, a protocol error.
    pub stream_errors: u64,
    /// Connections that broke or were refused (a collector restart, a per-source limit) and were
    /// tried again, as agents do; the first few reasons in `retry_reasons`.
    pub retries: u64,
    pub retry_reasons: Vec<String>,
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
            "terminals={} sent={} acked={} duplicate={} rejected={} stream_errors={} retries={} \
             ack_latency_p50={:.1}ms p99={:.1}ms max={:.1}ms steady_p50={:.1}ms steady_p99={:.1}ms \
             elapsed={:.1}s rate={:.0}/s",
            self.terminals,
            self.sent,
            self.acked,
            self.duplicates,
            self.rejected,
            self.stream_errors,
            self.retries,
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
    /// Connections that ended or were refused, and tried again.
    retries: AtomicU64,
    retry_reasons: Mutex<Vec<String>>,
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
    let connect = |e: &Endpoint| -> Channel {
        match &opts.proxy {
            None => e.connect_lazy(),
            Some(p) => e.connect_with_connector_lazy(tunnel::connector(p.clone())),
        }
    };
    let shared: Vec<Channel> = if opts.connections == 0 {
        Vec::new()
    } else {
        (0..opts.connections).map(|_| connect(&endpoint)).collect()
    };
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut n = 0usize;
    for site in sites {
        let site = Arc::new(site);
        for t in 0..site.terminals {
            let channel = if shared.is_empty() {
                connect(&endpoint)
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
    let retry_reasons = counters
        .retry_reasons
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
        retries: counters.retries.load(Ordering::Relaxed),
        retry_reasons,
        latency_p50: pct(&lat, 0.50),
        latency_p99: pct(&lat, 0.99),
        latency_max: pct(&lat, 1.0),
        steady_p50: pct(&steady, 0.50),
        steady_p99: pct(&steady, 0.99),
        elapsed,
        errors,
    })
}

/// Backoff between a simulated terminal's connection attempts, as the agent's: doubling from
/// 1 s to 60 s with ±20% jitter, starting over once a stream got an ack; a refusal's
/// `grpc-retry-pushback-ms` is waited out instead.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// ±20% of `d`, from a per-call hash (no shared random state between thousands of tasks).
fn jitter(d: Duration, salt: u64) -> Duration {
    let r = (scenario::mix(salt, now_ms() as u64) % 1000) as f64 / 1000.0;
    d.mul_f64(0.8 + 0.4 * r)
}

/// The pushback a refusal carries, if any (capped at ten minutes, as the agent caps it).
fn pushback(status: &tonic::Status) -> Option<Duration> {
    status
        .metadata()
        .get(oqs_proto::RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(10 * 60 * 1000)))
}

/// A report sent and not yet acknowledged (kept to send again after a reconnect, as an agent's
/// spool keeps it).
struct Unacked {
    seq: u64,
    /// When it was first sent; `None` once it had to be sent again (its latency would measure
    /// the outage, not the collector).
    sent: Option<Instant>,
    report: oqs_proto::v1::Report,
}

/// One simulated terminal's state across its connections.
struct Term {
    site: Arc<SiteProfile>,
    index: usize,
    id: String,
    opts: SimOptions,
    c: Arc<Counters>,
    /// The first seq of this run (the first Welcome's `last_stored_seq` + 1); `None` before it.
    base: Option<u64>,
    /// Rounds made so far.
    made: u64,
    /// Rounds to make (0: forever).
    to_make: u64,
    next_round: tokio::time::Instant,
    unacked: VecDeque<Unacked>,
    /// When the last round was made, for the final ack deadline.
    done_at: Option<tokio::time::Instant>,
}

/// How one connection ended.
enum End {
    /// Every round made and acknowledged, or cancelled, or given up (counted as an error).
    Done,
    /// The stream ended or could not open: try again, after this pushback if the collector said.
    Retry {
        pushback: Option<Duration>,
        acked: bool,
    },
}

impl Term {
    fn more(&self) -> bool {
        self.base.is_some() && (self.to_make == 0 || self.made < self.to_make)
    }

    /// Makes the round that is due: it waits for delivery like an agent's spooled report.
    fn make_round(&mut self) -> &Unacked {
        let seq = self.base.expect("rounds start after the first Welcome") + self.made;
        let mut r = scenario::report(&self.site, self.index, self.made, seq, now_ms());
        pad(&mut r, self.opts.report_bytes);
        self.made += 1;
        self.next_round += self.opts.interval;
        if !self.more() {
            self.done_at = Some(tokio::time::Instant::now() + self.opts.ack_timeout);
        }
        self.unacked.push_back(Unacked {
            seq,
            sent: None,
            report: r,
        });
        self.unacked.back().expect("pushed")
    }

    /// The deadline past which a terminal that made its rounds gives up on their acks; before
    /// its first Welcome, the one for connecting at all (a run that is not forever).
    fn give_up_at(&self, started: tokio::time::Instant) -> Option<tokio::time::Instant> {
        match (self.base, self.to_make) {
            (None, 0) => None,
            (None, _) => Some(started + self.opts.ack_timeout),
            (Some(_), _) => self.done_at,
        }
    }

    fn error(&self, e: String) {
        self.c
            .error(format!("{}/{}: {e}", self.site.site_id, self.id));
    }

    fn retry(&self, why: String) {
        self.c.retries.fetch_add(1, Ordering::Relaxed);
        let mut r = self
            .c
            .retry_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if r.len() < 5 {
            r.push(format!("{}/{}: {why}", self.site.site_id, self.id));
        }
    }

    /// One stream: Hello, Welcome, what is unacknowledged again, then rounds as they fall due.
    async fn connection(
        &mut self,
        channel: &Channel,
        cancel: &CancellationToken,
        started: tokio::time::Instant,
    ) -> End {
        let (tx, rx) = mpsc::channel::<AgentMessage>(32);
        let _ = tx
            .send(AgentMessage {
                body: Some(AgentBody::Hello(hello(&self.site, self.index))),
            })
            .await;
        let retry = |st: &tonic::Status| End::Retry {
            pushback: pushback(st),
            acked: false,
        };
        let mut client = FleetIngestClient::new(channel.clone());
        let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(st) => {
                self.retry(format!("connect: {st}"));
                return retry(&st);
            }
        };
        let last_stored = match inbound.message().await {
            Ok(Some(m)) => match m.body {
                Some(CollectorBody::Welcome(w)) => w.last_stored_seq,
                other => {
                    self.error(format!("expected Welcome, got {other:?}"));
                    return End::Done;
                }
            },
            Ok(None) => {
                self.retry("stream closed before Welcome".into());
                return End::Retry {
                    pushback: None,
                    acked: false,
                };
            }
            Err(st) => {
                self.retry(st.to_string());
                return retry(&st);
            }
        };
        if self.base.is_none() {
            self.base = Some(last_stored + 1);
            self.next_round = tokio::time::Instant::now();
        }
        // Stored before the connection broke, its ack lost: delivered.
        while self.unacked.front().is_some_and(|u| u.seq <= last_stored) {
            self.unacked.pop_front();
            self.c.acked.fetch_add(1, Ordering::Relaxed);
        }
        for u in self.unacked.iter_mut() {
            u.sent = None;
            if tx
                .send(AgentMessage {
                    body: Some(AgentBody::Report(u.report.clone())),
                })
                .await
                .is_err()
            {
                return End::Retry {
                    pushback: None,
                    acked: false,
                };
            }
        }
        let mut acked = false;
        loop {
            if !self.more() && self.unacked.is_empty() {
                return End::Done;
            }
            let give_up = self.give_up_at(started);
            let more = self.more();
            tokio::select! {
                _ = cancel.cancelled() => return End::Done,
                _ = tokio::time::sleep_until(self.next_round), if more => {
                    let u = self.make_round();
                    let msg = AgentMessage { body: Some(AgentBody::Report(u.report.clone())) };
                    if let Some(u) = self.unacked.back_mut() {
                        u.sent = Some(Instant::now());
                    }
                    self.c.sent.fetch_add(1, Ordering::Relaxed);
                    if tx.send(msg).await.is_err() {
                        return End::Retry { pushback: None, acked };
                    }
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or_else(tokio::time::Instant::now)), if give_up.is_some() => {
                    self.error(format!("{} reports not acked within {:?}", self.unacked.len(), self.opts.ack_timeout));
                    return End::Done;
                }
                m = inbound.message() => match m {
                    Ok(Some(m)) => match m.body {
                        Some(CollectorBody::Ack(a)) => {
                            acked = true;
                            while let Some(u) = self.unacked.front() {
                                if u.seq > a.seq { break; }
                                let u = self.unacked.pop_front().expect("front");
                                if u.seq != a.seq { continue; }
                                self.c.acked.fetch_add(1, Ordering::Relaxed);
                                if a.duplicate { self.c.duplicates.fetch_add(1, Ordering::Relaxed); }
                                if let Some(at) = u.sent {
                                    let us = u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX);
                                    self.c.latencies.lock().unwrap_or_else(|p| p.into_inner()).push(us);
                                    if Some(u.seq) > self.base {
                                        self.c.steady.lock().unwrap_or_else(|p| p.into_inner()).push(us);
                                    }
                                }
                            }
                        }
                        Some(CollectorBody::Rejected(r)) => {
                            self.c.rejected.fetch_add(1, Ordering::Relaxed);
                            self.unacked.retain(|u| u.seq != r.seq);
                            self.error(format!("seq {} rejected: {}", r.seq, r.reason));
                        }
                        // Run now: the next round goes out at once (as an agent would), so the
                        // dashboard's button works on the demo fleet. Config updates are for real
                        // agents; the simulator keeps its script.
                        Some(CollectorBody::RunNow(_)) if more => {
                            self.next_round = tokio::time::Instant::now();
                        }
                        _ => {}
                    },
                    Ok(None) => {
                        self.retry("the collector closed the stream".into());
                        return End::Retry { pushback: None, acked };
                    }
                    Err(st) => {
                        self.retry(st.to_string());
                        return End::Retry { pushback: pushback(&st), acked };
                    }
                }
            }
        }
    }
}

/// One simulated terminal: Hello, then reports on the interval, counting acks. Like an agent it
/// comes back after a refusal or a broken stream (backoff with jitter, or the refusal's pushback),
/// keeps making its rounds meanwhile and sends what was not acknowledged again, so a collector
/// restart or a per-source limit loses nothing.
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
    // A silent terminal sends one report, then goes quiet (its agent stopped).
    let to_make = if site.scenario == Scenario::Silent {
        1
    } else {
        opts.reports
    };
    let salt = scenario::mix(site.index as u64, index as u64);
    let mut t = Term {
        id: format!("pc-{}", index + 1),
        site,
        index,
        opts,
        c,
        base: None,
        made: 0,
        to_make,
        next_round: tokio::time::Instant::now(),
        unacked: VecDeque::new(),
        done_at: None,
    };
    let started = tokio::time::Instant::now();
    let mut backoff = BACKOFF_MIN;
    loop {
        let (pushback, acked) = match t.connection(&channel, &cancel, started).await {
            End::Done => return,
            End::Retry { pushback, acked } => (pushback, acked),
        };
        if acked {
            backoff = BACKOFF_MIN;
        }
        let wait = match pushback {
            Some(p) => p + jitter(Duration::from_millis(250), salt),
            None => {
                let w = jitter(backoff, salt);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                w
            }
        };
        // Rounds fall due while it waits, as an agent's go into its spool.
        let until = tokio::time::Instant::now() + wait;
        loop {
            let give_up = t.give_up_at(started);
            let more = t.more();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(until) => break,
                _ = tokio::time::sleep_until(t.next_round), if more => {
                    t.make_round();
                    t.c.sent.fetch_add(1, Ordering::Relaxed);
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or_else(tokio::time::Instant::now)), if give_up.is_some() => {
                    if t.base.is_none() {
                        t.error(format!("never welcomed within {:?}", t.opts.ack_timeout));
                    } else {
                        t.error(format!("{} reports not acked within {:?}", t.unacked.len(), t.opts.ack_timeout));
                    }
                    return;
                }
            }
        }
    }
}

/// Grows `r` to at least `bytes` with DNS probes of many answers, different in every report (the
/// seq is in them), within the protocol's limits.
pub fn pad(r: &mut oqs_proto::v1::Report, bytes: usize) {
    use oqs_proto::v1::{DnsProbe, Outcome, RecordType, ResolverRole};
    let mut i = 0u32;
    while prost::Message::encoded_len(r) < bytes
        && r.dns.len() < oqs_proto::report_limits::DNS_PROBES
    {
        r.dns.push(DnsProbe {
            outcome: Outcome::Ok as i32,
            name: format!("n{i}.pweb.base.oqs-pdl.org"),
            record_type: RecordType::Aaaa as i32,
            role: ResolverRole::NwBase as i32,
            server: "2404:1a8:f583:d00::53:1".into(),
            rcode: "NOERROR".into(),
            answers: (0..50u64)
                .map(|a| {
                    format!(
                        "2408:210:{:x}:{:x}:{i:x}:{a:x}:abcd:ef01",
                        r.seq >> 16,
                        r.seq & 0xffff
                    )
                })
                .collect(),
            latency_ms: 5,
            ..Default::default()
        });
        i += 1;
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
