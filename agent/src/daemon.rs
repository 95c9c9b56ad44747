//! `oqs-agent run`: rounds on the interval, every report into the spool first, streamed to the
//! collector and dropped from the spool only when acknowledged. Reconnects with exponential
//! backoff and jitter; replays what the spool holds, in order, after every reconnect; applies
//! `ConfigUpdate` (every field, validated like the file) and `RunNow`.
//!
//! Rounds never wait for the network: a collector outage only grows the spool (up to its bound).
//! A report the collector refuses (`Rejected`) is not dropped: a refusal of what the agent itself
//! builds would repeat with every report, so the agent backs off (`collector.refused_retry_*`,
//! 30 s doubling to an hour) and
//! sends it again; only after [`REFUSALS_BEFORE_QUARANTINE`] refusals is it set aside
//! (quarantined, counted, reported). A configuration update that fails the agent's own checks is
//! refused: the agent keeps its settings and says so in its next reports. A collector that says
//! the agent's counter is damaged (`oqs-seq-restart`) gets the held reports renumbered from its
//! stored seq. Must never drop a report that was not acknowledged, except when the spool is full
//! (counted).

use crate::config::AgentConfig;
use crate::round::RoundRunner;
use crate::spool::{Spool, SpoolError};
use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_client::FleetIngestClient;
use oqs_proto::v1::{AgentMessage, Hello};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("collector.url (or urls, or [[collector.ways]]) is not set in the configuration; `run` needs it")]
    NoCollector,
    #[error("collector.url {0:?} is not usable: {1}")]
    BadUrl(String, String),
    #[error("cannot read {key} {path}: {message}")]
    Tls {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Round(#[from] crate::round::RoundError),
    #[error("preparing the rounds failed: {0}")]
    Task(String),
}

fn read_pem(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, DaemonError> {
    oqs_runtime::read_pem(path).map_err(|e| DaemonError::Tls {
        key,
        path: path.display().to_string(),
        message: match e {
            oqs_runtime::PemError::Read { source, .. } => source.to_string(),
            oqs_runtime::PemError::NotPem { .. } => "not a PEM file".into(),
        },
    })
}

/// TLS towards the collector: its CA, and this terminal's certificate when configured.
fn client_tls(cfg: &AgentConfig) -> Result<Option<tonic::transport::ClientTlsConfig>, DaemonError> {
    let Some(ca) = &cfg.collector_ca else {
        return Ok(None);
    };
    // One process-wide crypto provider (several are compiled in through dependencies).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(read_pem("collector.ca", ca)?),
    );
    if let (Some(cert), Some(key)) = (&cfg.collector_client_cert, &cfg.collector_client_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read_pem("collector.client_cert", cert)?,
            read_pem("collector.client_key", key)?,
        ));
    }
    Ok(Some(tls))
}

/// How long a sent report may wait for its ack before the connection is given up: three rounds,
/// at least 10 s (a busy collector acks within milliseconds; this is for dead paths).
fn ack_timeout(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(10))
}

/// How far the wall clock may move apart from the monotonic clock during one stream before the
/// stream is started over: the collector measures a terminal's clock at the Hello only, so a
/// clock set days back while connected would otherwise go unseen (its reports look like a
/// replay of old ones).
const CLOCK_JUMP: Duration = Duration::from_secs(60);

/// The wall clock against the monotonic clock since a stream began.
struct ClockWatch {
    mono: Instant,
    wall: std::time::SystemTime,
}

impl ClockWatch {
    fn start() -> Self {
        Self {
            mono: Instant::now(),
            wall: std::time::SystemTime::now(),
        }
    }

    /// How far (ms, positive: ahead) the wall clock jumped since the start, when beyond
    /// [`CLOCK_JUMP`].
    fn jumped(&self) -> Option<i64> {
        jump_ms(
            self.mono.elapsed(),
            std::time::SystemTime::now().duration_since(self.wall),
        )
    }
}

/// Wall time elapsed (an `Err` when the wall clock went back past the start) against monotonic
/// time elapsed: the jump in ms when it exceeds [`CLOCK_JUMP`].
fn jump_ms(mono: Duration, wall: Result<Duration, std::time::SystemTimeError>) -> Option<i64> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let wall_ms = match wall {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    };
    let jump = wall_ms.saturating_sub(ms(mono));
    (jump.unsigned_abs() > CLOCK_JUMP.as_millis() as u64).then_some(jump)
}

/// Backoff between reconnects.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How often one report may be refused before it is set aside (quarantined) so the ones after it
/// go.
pub const REFUSALS_BEFORE_QUARANTINE: u32 = 3;

/// What the agent could not do, said in every report it makes (`Report.agent`).
type Notes = Arc<Mutex<oqs_proto::v1::AgentState>>;

/// One line of at most the protocol's agent text length, for a note.
fn note_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(oqs_proto::AGENT_TEXT_CHARS)
        .collect()
}

/// The wait before the next connection attempt: doubles from [`BACKOFF_MIN`] to one reporting
/// interval (at most [`BACKOFF_MAX`])
/// while attempts fail, and starts over once a stream got a report acknowledged (a collector that
/// stores reports is not one to wait a minute for after the next blip).
#[derive(Debug)]
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    #[cfg(test)]
    fn new() -> Self {
        Self::between(BACKOFF_MIN, BACKOFF_MAX)
    }

    /// Never waits longer than one reporting interval: the collector gives a terminal
    /// `silent_intervals` of its interval after it starts before calling it silent, so an agent
    /// whose waits stay under one interval is back within that grace however long the collector
    /// was down (a restart then pages nobody). Fleets on the default minute are unchanged.
    fn for_interval(interval: Duration) -> Self {
        Self::between(BACKOFF_MIN, interval.clamp(BACKOFF_MIN, BACKOFF_MAX))
    }

    fn between(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The wait before the next attempt (with jitter); the one after it is longer.
    fn next_wait(&mut self) -> Duration {
        let wait = jitter(self.next);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// A stream got a report acknowledged.
    fn reset(&mut self) {
        self.next = self.min;
    }
}

type Shared = Arc<Mutex<Spool>>;

/// Runs a spool operation on a blocking thread (it writes and syncs files).
async fn spool_op<T: Send + 'static>(
    spool: &Shared,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let s = spool.clone();
    tokio::task::spawn_blocking(move || f(&mut s.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .unwrap_or_else(|e| {
            Err(SpoolError::Io {
                path: "(spool task)".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })
}

/// Runs until `shutdown` is cancelled.
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<(), DaemonError> {
    if cfg.collector_ways.is_empty() {
        return Err(DaemonError::NoCollector);
    }
    let tls = client_tls(&cfg)?;
    let mut ways = Vec::new();
    for way in &cfg.collector_ways {
        let url = way.url.clone();
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| DaemonError::BadUrl(url.clone(), e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // HTTP/2 pings find a dead connection even when no report is waiting for an ack.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if let Some(tls) = &tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| DaemonError::BadUrl(url.clone(), e.to_string()))?;
        }
        let connector = crate::uplink::WayConnector::new(way.route.clone(), CONNECT_TIMEOUT);
        ways.push(Arc::new(crate::uplink::WayChannel::new(
            url, endpoint, connector,
        )));
    }
    let mut rotation = crate::uplink::Rotation::new(ways.len());
    let dir = cfg.spool_dir.clone();
    let max = cfg.spool_max_bytes;
    let keep_acked = cfg.spool_keep_acked;
    let spool: Shared = Arc::new(Mutex::new(
        tokio::task::spawn_blocking(move || {
            Spool::open(&dir, max).map(|s| s.keeping_acked_for(keep_acked))
        })
        .await
        .map_err(|e| SpoolError::Io {
            path: cfg.spool_dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })??,
    ));
    let runner = Arc::new(build_runner(cfg.clone()).await?);
    let new_report = Arc::new(Notify::new());
    let run_now = Arc::new(Notify::new());
    let (config_tx, config_rx) = watch::channel(cfg.clone());
    let notes: Notes = Arc::default();

    let rounds = tokio::spawn(rounds(
        runner,
        spool.clone(),
        new_report.clone(),
        run_now.clone(),
        config_rx,
        notes.clone(),
        shutdown.clone(),
    ));
    // Files read once (os-release, /proc/stat; the registry on Windows).
    let machine =
        tokio::task::spawn_blocking(|| (crate::sysinfo::os(), crate::sysinfo::boot_time_ms()))
            .await
            .unwrap_or_else(|_| (String::new(), 0));
    let hello = Hello {
        protocol_version: oqs_proto::PROTOCOL_VERSION,
        site_id: cfg.site.to_string(),
        terminal_id: cfg.terminal.to_string(),
        hostname: crate::sysinfo::hostname(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        area: cfg.area.to_wire() as i32,
        os: machine.0,
        boot_id: format!("{:x}", nanos()),
        customer_id: cfg.customer_id.as_ref().map(|c| c.reveal().to_string()),
        highest_held_seq: 0,
        highest_acked_seq: 0,
        agent_time_ms: 0,
        boot_time_ms: machine.1,
        prefecture: cfg.prefecture.clone(),
        site_name: cfg.site_name.clone(),
        credential: None,
    };
    let mut hello = hello;
    crate::tidy::hello(&mut hello);
    let secret_path = cfg.spool_dir.join(SECRET_FILE);
    let mut backoff = Backoff::for_interval(cfg.interval);
    // After a refused report: whatever the collector found wrong is likely in the next report
    // too, and sending it every few seconds would only fill its log.
    let mut refused_backoff = Backoff::between(cfg.refused_retry.0, cfg.refused_retry.1);
    // How often each held report was refused (a restart forgets: it is tried afresh).
    let mut refusals: std::collections::HashMap<u64, u32> = Default::default();
    // Streams that ended without a Welcome since the last that had one (told in `Uplink`).
    let mut failed_attempts: u32 = 0;
    while !shutdown.is_cancelled() {
        let way_index = rotation.current();
        let way = ways[way_index].clone();
        let channel = way.lazy();
        // On a later way, the first is tried again every `first_way_retry`; once it works the
        // stream ends (as on a stop: what was sent and not acked is sent again) and the agent
        // goes back to it.
        let stream_stop = shutdown.child_token();
        let first_back = (way_index != 0).then(|| {
            tokio::spawn(first_way_back(
                ways[0].clone(),
                cfg.first_way_retry,
                stream_stop.clone(),
            ))
        });
        // The terminal's own secret once enrolled; until then the site's enrollment token. A
        // secret the collector refused is set aside, not deleted: with a token the agent enrolls
        // again; without one it keeps presenting the refused secret (a collector whose
        // enrollments were restored from an older backup may know it again), never nothing.
        let has_token = cfg.collector_enrollment_token.is_some();
        let secret = {
            let p = secret_path.clone();
            let refused = refused_secret_path(&secret_path);
            tokio::task::spawn_blocking(move || {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p)
                        .ok()
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                };
                read(&p).or_else(|| if has_token { None } else { read(&refused) })
            })
            .await
            .ok()
            .flatten()
        };
        let mut hello = hello.clone();
        hello.credential = secret.clone().or_else(|| {
            cfg.collector_enrollment_token
                .as_ref()
                .map(|t| t.expose().to_owned())
        });
        let mut end = SessionEnd::default();
        if let Err(e) = session(
            channel,
            hello,
            &mut end,
            Credential {
                secret_path: &secret_path,
                using_secret: secret.is_some(),
            },
            &spool,
            &new_report,
            &run_now,
            &config_tx,
            Refusals {
                notes: &notes,
                counts: &mut refusals,
            },
            UplinkCtx {
                ways: &ways,
                index: way_index,
                failed_attempts,
            },
            &stream_stop,
        )
        .await
        {
            end.error = Some(e);
        }
        if let Some(t) = first_back {
            t.abort();
        }
        if shutdown.is_cancelled() {
            break;
        }
        if stream_stop.is_cancelled() {
            tracing::info!(url = %ways[0].url, "the first way to the collector works again: going back to it");
            rotation.back_to_first();
            continue;
        }
        if end.acked {
            // The stream stored reports: the collector works; the next blip starts over.
            backoff.reset();
            if !end.refused {
                refused_backoff.reset();
            }
        }
        if let Some(e) = &end.error {
            tracing::warn!(error = %e, way = way_index, url = %way.url, "collector stream ended");
        }
        if end.welcomed {
            failed_attempts = 0;
        } else {
            failed_attempts = failed_attempts.saturating_add(1);
        }
        if end.welcomed || end.answered {
            rotation.reached();
        } else {
            // This way did not reach the collector: the next one now, unless each has failed
            // once since one last did (then the backoff below).
            let why = way
                .status()
                .last_error
                .or(end.error.clone())
                .unwrap_or_default();
            let all_failed = rotation.failed();
            if ways.len() > 1 {
                tracing::warn!(way = way_index, url = %way.url, error = %why, next = rotation.current(), "this way to the collector failed; trying the next");
            } else {
                tracing::warn!(url = %way.url, error = %why, "cannot reach the collector");
            }
            if !all_failed && !end.refused {
                continue;
            }
        }
        // A refused report: wait long (it will likely be refused again). A refusal with a
        // pushback (the terminal's rate window, a busy collector) says when; else back off.
        let wait = if end.refused {
            refused_backoff.next_wait()
        } else {
            end.retry_after
                .map(|d| d + jitter(Duration::from_millis(250)))
                .unwrap_or_else(|| backoff.next_wait())
        };
        tracing::info!(wait_ms = wait.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let _ = rounds.await;
    Ok(())
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// ±20%, so a fleet that lost its collector does not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = (nanos() % 1000) as f64 / 1000.0; // 0..1
    d.mul_f64(0.8 + 0.4 * r)
}

async fn rounds(
    runner: Arc<RoundRunner>,
    spool: Shared,
    new_report: Arc<Notify>,
    run_now: Arc<Notify>,
    mut config: watch::Receiver<AgentConfig>,
    notes: Notes,
    shutdown: CancellationToken,
) {
    let mut runner = runner;
    loop {
        // A stop does not wait for a round's probes (their timeouts add up to seconds; a service
        // manager waits for less): the unfinished round was never made, so nothing is lost.
        let mut report = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = runner.run(0, 0) => r,
        };
        // What the agent could not do goes with every round (the spool adds its own counts).
        let state = notes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if state != oqs_proto::v1::AgentState::default() {
            report.agent = Some(state);
        }
        match spool_op(&spool, move |s| s.push(report)).await {
            Ok(r) => {
                tracing::debug!(seq = r.seq, "round spooled");
                new_report.notify_one();
            }
            Err(e) => tracing::error!(error = %e, "cannot spool a round's report"),
        }
        let wait = config.borrow_and_update().interval;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = run_now.notified() => {}
            _ = config.changed() => {
                // New probe settings from the collector: rebuild what the rounds use.
                let cfg = config.borrow_and_update().clone();
                match build_runner(cfg).await {
                    Ok(r) => runner = Arc::new(r),
                    Err(e) => tracing::warn!(error = %e, "keeping the previous probe settings"),
                }
            }
        }
    }
}

/// Builds the rounds' runner on a blocking thread (it reads the CA bundle).
async fn build_runner(cfg: AgentConfig) -> Result<RoundRunner, DaemonError> {
    tokio::task::spawn_blocking(move || RoundRunner::new(cfg))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(DaemonError::Round)
}

/// Where the terminal keeps the secret the collector issued at enrollment (in the spool directory,
/// which only the agent's service account can read).
pub const SECRET_FILE: &str = "terminal.secret";

/// How this stream proves the terminal's identity.
struct Credential<'a> {
    secret_path: &'a std::path::Path,
    using_secret: bool,
}

impl Credential<'_> {
    /// The collector refused the credential (UNAUTHENTICATED: wrong or revoked; being
    /// rate-limited is RESOURCE_EXHAUSTED and keeps it): a refused secret is forgotten, so the
    /// next attempt presents the enrollment token (if the config has one).
    async fn refused(&self, status: &tonic::Status) {
        if status.code() == tonic::Code::Unauthenticated && self.using_secret {
            let p = self.secret_path.to_owned();
            let aside = refused_secret_path(&p);
            tracing::error!(
                reason = %status.message(),
                "the collector refused this terminal's secret; it is kept as {} (a collector \
                 restored from an older backup may know it again); with \
                 collector.enrollment_token set the agent enrolls again",
                aside.display()
            );
            let _ = tokio::task::spawn_blocking(move || {
                if p.exists() {
                    std::fs::rename(&p, &aside)
                } else {
                    Ok(())
                }
            })
            .await;
        }
    }

    /// The collector took the credential: a secret set aside after a refusal goes back in place.
    async fn accepted(&self) {
        if self.using_secret {
            let p = self.secret_path.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                let aside = refused_secret_path(&p);
                if !p.exists() && aside.exists() {
                    tracing::info!("the collector accepts the terminal secret again");
                    let _ = std::fs::rename(&aside, &p);
                }
            })
            .await;
        }
    }

    /// Keeps a newly issued secret, durably, before the stream goes on; a refused one set aside
    /// earlier is then forgotten.
    async fn keep(&self, secret: &str) -> Result<(), String> {
        let path = self.secret_path.to_owned();
        let secret = secret.to_owned();
        tokio::task::spawn_blocking(move || {
            Self::write_secret(&path, &secret)?;
            let _ = std::fs::remove_file(refused_secret_path(&path));
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn write_secret(secret_path: &std::path::Path, secret: &str) -> Result<(), String> {
        let tmp = secret_path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            // %ProgramData% would let every local user read it: owner, SYSTEM, Administrators only.
            #[cfg(windows)]
            crate::winacl::restrict_to_owner(&tmp)?;
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, secret_path)
        };
        write().map_err(|e| {
            format!(
                "cannot keep the terminal secret in {}: {e}",
                secret_path.display()
            )
        })
    }
}

/// What a stream needs to handle the collector's refusals: the notes the reports carry, and how
/// often each held report was refused.
struct Refusals<'a> {
    notes: &'a Notes,
    counts: &'a mut std::collections::HashMap<u64, u32>,
}

/// How long a connection (TCP, a proxy's tunnel, TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tries the first way every `every` until it connects, then stops the current stream.
async fn first_way_back(
    first: Arc<crate::uplink::WayChannel>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if first.try_connect().await.is_ok() {
            stop.cancel();
            return;
        }
    }
}

/// What the collector is told of a stream's way (`Uplink`).
#[derive(Clone, Copy)]
struct UplinkCtx<'a> {
    ways: &'a [Arc<crate::uplink::WayChannel>],
    index: usize,
    /// Attempts that failed (over all ways) before this stream.
    failed_attempts: u32,
}

impl UplinkCtx<'_> {
    fn message(
        &self,
        backlog: u64,
        oldest_made_ms: i64,
        system_proxy: Option<oqs_proto::v1::SystemProxyFacts>,
    ) -> oqs_proto::v1::Uplink {
        use crate::uplink::Path;
        use oqs_proto::v1::UplinkPath;
        let status = self.ways[self.index].status();
        let (path, via) = match status.path {
            Path::Direct => (UplinkPath::Direct, String::new()),
            Path::Proxy(p) => (UplinkPath::Proxy, p),
            Path::Relay(name) => (UplinkPath::Relay, name),
        };
        let way_errors = self
            .ways
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.index)
            .filter_map(|(i, w)| {
                w.status().last_error.map(|e| oqs_proto::v1::WayError {
                    way_index: i as u32,
                    url: w
                        .url
                        .chars()
                        .take(oqs_proto::report_limits::URL_CHARS)
                        .collect(),
                    error: note_text(&e),
                })
            })
            .collect();
        oqs_proto::v1::Uplink {
            path: path as i32,
            via: note_text(&via),
            way_index: self.index as u32,
            ways: self.ways.len() as u32,
            backlog_reports: backlog,
            oldest_unsent_made_ms: oldest_made_ms,
            failed_attempts: self.failed_attempts,
            way_errors,
            system_proxy,
        }
    }
}

/// Sends `u` within the collector's message limit (`Welcome.max_message_bytes`, 0: none): what
/// does not fit goes first (the proxy facts, then the ways' errors); if even the rest does not
/// fit nothing is sent — a message the collector must refuse would only be counted against us.
async fn send_uplink(
    tx: &mpsc::Sender<AgentMessage>,
    u: oqs_proto::v1::Uplink,
    max_message_bytes: usize,
) -> Result<(), String> {
    let Some(u) = fit_uplink(u, max_message_bytes) else {
        return Ok(());
    };
    tx.send(AgentMessage {
        body: Some(AgentBody::Uplink(u)),
    })
    .await
    .map_err(|_| "stream closed".to_string())
}

/// `u` cut to fit `max` bytes as an `AgentMessage` (see [`send_uplink`]).
fn fit_uplink(mut u: oqs_proto::v1::Uplink, max: usize) -> Option<oqs_proto::v1::Uplink> {
    let size = |u: &oqs_proto::v1::Uplink| message_size(u);
    if max == 0 || size(&u) <= max {
        return Some(u);
    }
    u.system_proxy = None;
    if size(&u) <= max {
        return Some(u);
    }
    u.way_errors.clear();
    (size(&u) <= max).then_some(u)
}

/// How a stream ended.
#[derive(Debug, Default)]
struct SessionEnd {
    /// The collector answered its Hello with a Welcome.
    welcomed: bool,
    /// The collector answered (a Welcome or a refusal): this way reaches it.
    answered: bool,
    /// The collector acknowledged at least one report on it.
    acked: bool,
    /// The collector refused a report on it (`Rejected`).
    refused: bool,
    /// The collector asked to wait this long before trying again (`grpc-retry-pushback-ms`).
    retry_after: Option<Duration>,
    /// Why it ended, unless it was the agent's own shutdown.
    error: Option<String>,
}

/// The pushback a refusal carries, if any.
fn pushback(status: &tonic::Status) -> Option<Duration> {
    status
        .metadata()
        .get(oqs_proto::RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(10 * 60 * 1000)))
}

/// What a refusal before Welcome means for the next attempt (forget a refused secret, wait out a
/// pushback); returns its message.
async fn refused(
    credential: &Credential<'_>,
    end: &mut SessionEnd,
    status: &tonic::Status,
) -> String {
    credential.refused(status).await;
    end.retry_after = pushback(status);
    // UNAVAILABLE is what a connection that never reached the collector gives (a refused TCP
    // connection, a proxy's refusal, a TLS failure); any other status is the collector's answer.
    end.answered = status.code() != tonic::Code::Unavailable;
    status.message().to_string()
}

/// Where a refused terminal secret is set aside (beside the secret, in the spool directory).
fn refused_secret_path(secret: &std::path::Path) -> std::path::PathBuf {
    secret.with_extension("secret.refused")
}

/// The size of a message body (a report, an `Uplink`) as the collector measures it: the whole
/// `AgentMessage` carrying it.
fn message_size(body: &impl prost::Message) -> usize {
    let len = body.encoded_len();
    // The body's field tag in `AgentMessage` (one byte: `report`, `uplink`) and its length prefix.
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// One stream: Hello, replay, then live reports, until the stream ends. `Err` says why (`Ok` on
/// shutdown); `end` collects what the reconnect needs to know.
#[allow(clippy::too_many_arguments)]
async fn session(
    channel: tonic::transport::Channel,
    mut hello: Hello,
    end: &mut SessionEnd,
    credential: Credential<'_>,
    spool: &Shared,
    new_report: &Notify,
    run_now: &Notify,
    config: &watch::Sender<AgentConfig>,
    refusals: Refusals<'_>,
    uplink: UplinkCtx<'_>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    (hello.highest_held_seq, hello.highest_acked_seq) =
        spool_op(spool, |s| Ok((s.highest_held(), s.acked_through())))
            .await
            .map_err(|e| e.to_string())?;
    // The terminal's clock now, so the collector can tell a clock far behind from a replay.
    hello.agent_time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel::<AgentMessage>(64);
    tx.send(AgentMessage {
        body: Some(AgentBody::Hello(hello)),
    })
    .await
    .map_err(|e| e.to_string())?;
    // The stream's opening and its Welcome are bounded like an ack: a collector (or a proxy, a
    // middlebox) that takes the connection and never answers would otherwise hold the agent
    // here for good, reports piling up unseen; a stop is not kept waiting either.
    let welcome_within = ack_timeout(config.borrow().interval);
    let opening = async {
        let mut inbound = FleetIngestClient::new(channel)
            .connect(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = inbound.message().await;
        Ok::<_, tonic::Status>((inbound, first))
    };
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = tokio::time::timeout(welcome_within, opening) => r,
    };
    let (mut inbound, first) = match opened {
        Ok(Ok(o)) => o,
        Ok(Err(s)) => return Err(format!("connect: {}", refused(&credential, end, &s).await)),
        Err(_) => {
            return Err(format!(
                "no Welcome from the collector within {} s of the Hello; connecting again",
                welcome_within.as_secs()
            ))
        }
    };
    let (stored, max_message_bytes, max_addresses, max_list_items) = match first {
        Ok(Some(m)) => match m.body {
            Some(CollectorBody::Welcome(w)) => {
                end.welcomed = true;
                if !w.terminal_secret.is_empty() {
                    credential.keep(&w.terminal_secret).await?;
                    tracing::info!("enrolled: the collector issued this terminal's secret");
                } else {
                    credential.accepted().await;
                }
                (
                    w.last_stored_seq,
                    w.max_message_bytes as usize,
                    w.max_addresses as usize,
                    w.max_list_items as usize,
                )
            }
            other => return Err(format!("expected Welcome, got {other:?}")),
        },
        Ok(None) => return Err("stream closed before Welcome".into()),
        Err(s) => return Err(refused(&credential, end, &s).await),
    };
    let welcomed = spool_op(spool, move |s| s.accept_welcome(stored))
        .await
        .map_err(|e| e.to_string())?;
    if let crate::spool::Welcomed::Resent(n) = welcomed {
        tracing::error!(
            last_stored_seq = stored,
            resent = n,
            "the collector holds fewer reports than it acknowledged to this agent (a store \
             restored from a backup, or a damaged disk): sending the acknowledged reports still \
             kept again"
        );
    }
    if let crate::spool::Welcomed::Renumbered(n) = welcomed {
        tracing::warn!(
            last_stored_seq = stored,
            renumbered = n,
            "the collector already stores seqs beyond this agent's own (reinstalled, restored \
             from an image, or another machine with the same site and terminal ids): the held \
             reports were never delivered and are sent again above it"
        );
    }
    tracing::info!(last_stored_seq = stored, "connected to the collector");
    // The machine's proxy as a fact for the site page, told with the way (read off the async
    // threads: WinHTTP and the registry may block).
    let system_proxy =
        tokio::task::spawn_blocking(|| crate::uplink::SystemProxy::read().wire_facts())
            .await
            .ok();
    let mut sent_upto = stored;
    let mut acked_upto = stored;
    // When the oldest report still waiting for its ack was sent (or the last ack came).
    let mut waiting_since = Instant::now();
    let ack_timeout = ack_timeout(config.borrow().interval);
    let clock = ClockWatch::start();
    // The backlog this stream announced in its `Uplink` (the last seq of it): once acknowledged,
    // the collector is told the terminal caught up.
    let mut announced: Option<u64> = None;
    loop {
        if let Some(jump) = clock.jumped() {
            // A fresh Hello carries the clock as it is now, for the collector to judge.
            return Err(format!(
                "the system clock jumped {} by {:.0} s during this stream: reconnecting so the \
                 collector measures it again",
                if jump < 0 { "back" } else { "ahead" },
                jump.unsigned_abs() as f64 / 1000.0
            ));
        }
        // Send everything the spool holds beyond what this stream has sent, in order.
        let pending = spool_op(spool, move |s| s.after(sent_upto))
            .await
            .map_err(|e| e.to_string())?;
        // Recorded before they leave: a collector that later claims a seq this spool never sent
        // stores someone else's reports, and ours are renumbered rather than forgotten.
        if let Some(last) = pending.last().map(|r| r.seq) {
            spool_op(spool, move |s| s.mark_sent(last))
                .await
                .map_err(|e| e.to_string())?;
        }
        if announced.is_none() {
            // The first batch after the Welcome is the backlog: the collector learns the way
            // and how far behind this terminal is before the replay starts.
            let oldest = pending.first().map_or(0, |r| r.finished_at_ms);
            announced = Some(pending.last().map_or(stored, |r| r.seq));
            send_uplink(
                &tx,
                uplink.message(pending.len() as u64, oldest, system_proxy.clone()),
                max_message_bytes,
            )
            .await?;
        }
        for mut r in pending {
            // What every collector accepts, again: a report spooled by an older agent, or before
            // a limit changed, must not be refused for a text or a list.
            crate::tidy::report(&mut r);
            // Lists longer than the collector keeps are cut as it would cut them (the first
            // items), so the report fits its limits and the message its size.
            let cut = crate::tidy::fit_lists(&mut r, max_addresses, max_list_items);
            if cut > 0 {
                tracing::debug!(
                    seq = r.seq,
                    cut,
                    "list items beyond the collector's limits left out"
                );
            }
            // A report the collector would refuse for its size would block every later one:
            // it is dropped and counted instead (0: an old collector that does not say).
            let size = message_size(&r);
            if max_message_bytes > 0 && size > max_message_bytes {
                let seq = r.seq;
                tracing::warn!(
                    seq,
                    size,
                    max_message_bytes,
                    "report larger than the collector accepts; dropping it"
                );
                spool_op(spool, move |s| s.discard(seq))
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            if sent_upto == acked_upto {
                waiting_since = Instant::now();
            }
            sent_upto = r.seq;
            tx.send(AgentMessage {
                body: Some(AgentBody::Report(r)),
            })
            .await
            .map_err(|_| "stream closed".to_string())?;
        }
        // A stream whose acks stopped (a path that silently died, e.g. the terminal's IPv6 address
        // went away and came back while TCP sat in retransmission back-off) is abandoned for a
        // fresh connection instead of waiting for the kernel to give up minutes later.
        let outstanding = sent_upto > acked_upto;
        let ack_deadline = tokio::time::Instant::from_std(waiting_since + ack_timeout);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = new_report.notified() => {}
            _ = tokio::time::sleep_until(ack_deadline), if outstanding => {
                return Err(format!(
                    "no ack for {} s: abandoning this connection",
                    ack_timeout.as_secs()
                ));
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => match m.body {
                    Some(CollectorBody::Ack(a)) => {
                        end.acked = true;
                        let seq = a.seq;
                        let before = acked_upto;
                        acked_upto = acked_upto.max(seq);
                        waiting_since = Instant::now();
                        if announced.is_some_and(|a| a > stored && before < a && acked_upto >= a) {
                            send_uplink(
                                &tx,
                                uplink.message(0, 0, system_proxy.clone()),
                                max_message_bytes,
                            )
                            .await?;
                        }
                        spool_op(spool, move |s| {
                            s.acknowledge(seq)?;
                            s.mark_acked(seq)
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    }
                    Some(CollectorBody::Rejected(r)) => {
                        // Not dropped: what the collector finds wrong in what this agent builds
                        // would be wrong in the next report too. Kept, tried again after a long
                        // back-off, set aside only after being refused again and again.
                        end.refused = true;
                        let seq = r.seq;
                        refusals.notes.lock().unwrap_or_else(|p| p.into_inner()).last_refusal =
                            note_text(&r.reason);
                        let n = refusals.counts.entry(seq).or_insert(0);
                        *n += 1;
                        if *n >= REFUSALS_BEFORE_QUARANTINE {
                            tracing::error!(seq, reason = %r.reason, refusals = *n, "the collector refused this report again and again; setting it aside (quarantined in the spool) so the next ones go");
                            refusals.counts.remove(&seq);
                            spool_op(spool, move |s| s.quarantine(seq)).await.map_err(|e| e.to_string())?;
                        } else {
                            tracing::warn!(seq, reason = %r.reason, refusals = *n, "the collector refused a report; keeping it and trying again later");
                        }
                    }
                    Some(CollectorBody::ConfigUpdate(c)) => {
                        let current = config.borrow().clone();
                        match current.apply_update(&c) {
                            Ok((next, changed)) => {
                                tracing::info!(?changed, "configuration updated by the collector");
                                refusals.notes.lock().unwrap_or_else(|p| p.into_inner()).config_refused.clear();
                                let _ = config.send(next);
                            }
                            Err(e) => {
                                // The old settings stay; the next reports say why (the NOC sees it).
                                tracing::warn!(error = %e, "refusing a configuration update; keeping the current settings");
                                refusals.notes.lock().unwrap_or_else(|p| p.into_inner()).config_refused =
                                    note_text(&e.to_string());
                            }
                        }
                    }
                    Some(CollectorBody::RunNow(r)) => {
                        tracing::info!(request_id = %r.request_id, "run now requested");
                        run_now.notify_one();
                    }
                    _ => {}
                },
                Ok(None) => return Err("the collector closed the stream".into()),
                Err(s) => {
                    end.retry_after = pushback(&s);
                    let restart = s
                        .metadata()
                        .get(oqs_proto::SEQ_RESTART)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(stored) = restart {
                        // The collector stores up to `stored` and says this counter jumped far
                        // beyond it (a damaged state file): go on from there, nothing dropped.
                        let moved = spool_op(spool, move |sp| sp.restart_from(stored))
                            .await
                            .map_err(|e| e.to_string())?;
                        tracing::error!(stored, moved, "the collector says this agent's seq counter is damaged; the held reports go on from its stored seq");
                    }
                    if s.metadata().get(oqs_proto::TERMINAL_ID_CONFLICT).is_some() {
                        // What was sent but not acked was not stored as ours: send it again
                        // (renumbered above the other machine's) rather than forget it.
                        tracing::error!(
                            "another machine reports with this terminal's site and terminal ids: \
                             give each machine its own terminal_id"
                        );
                        spool_op(spool, move |sp| sp.unsend_after(acked_upto))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    return Err(format!("{:?}: {}", s.code(), s.message()));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Uplink` never exceeds the collector's limit: the proxy facts go first, then the ways'
    /// errors; one that cannot fit is not sent.
    #[test]
    fn an_uplink_is_cut_to_the_collectors_message_limit() {
        use oqs_proto::v1::{DomainRoute, SystemProxyFacts, Uplink, WayError};
        let u = Uplink {
            path: 1,
            ways: 2,
            way_errors: vec![WayError {
                way_index: 1,
                url: "https://noc.example:50051".into(),
                error: "connect timed out".into(),
            }],
            system_proxy: Some(SystemProxyFacts {
                source: "WinHTTP".into(),
                proxy: "proxy.base.oqs-pdl.org:8080".into(),
                problem: String::new(),
                domains: vec![
                    DomainRoute {
                        domain: "onshikaku.org".into(),
                        bypassed: true,
                    };
                    8
                ],
            }),
            ..Default::default()
        };
        assert_eq!(fit_uplink(u.clone(), 0), Some(u.clone()), "0: no limit");
        assert_eq!(fit_uplink(u.clone(), 64 * 1024), Some(u.clone()));
        let cut = fit_uplink(u.clone(), 100).expect("fits without the facts");
        assert!(
            cut.system_proxy.is_none() && cut.way_errors.len() == 1,
            "{cut:?}"
        );
        let bare = fit_uplink(u.clone(), 12).expect("fits bare");
        assert!(bare.system_proxy.is_none() && bare.way_errors.is_empty());
        assert_eq!(fit_uplink(u, 3), None);
    }

    #[test]
    fn a_report_is_measured_as_the_collector_measures_it() {
        use oqs_proto::v1::{DnsProbe, Report};
        for n in [0usize, 1, 40, 400] {
            let r = Report {
                seq: 7,
                dns: (0..n)
                    .map(|_| DnsProbe {
                        name: "www.lineauth.mnw".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let whole = AgentMessage {
                body: Some(AgentBody::Report(r.clone())),
            };
            assert_eq!(message_size(&r), prost::Message::encoded_len(&whole));
        }
    }

    #[test]
    fn a_wall_clock_jump_beyond_a_minute_is_seen_both_ways() {
        let s = Duration::from_secs;
        assert_eq!(jump_ms(s(100), Ok(s(100))), None);
        assert_eq!(
            jump_ms(s(100), Ok(s(150))),
            None,
            "NTP slews and small steps"
        );
        assert_eq!(jump_ms(s(100), Ok(s(100 + 3600))), Some(3_600_000));
        let back = std::time::UNIX_EPOCH
            .duration_since(std::time::UNIX_EPOCH + s(3 * 86_400))
            .unwrap_err();
        assert_eq!(jump_ms(s(10), Err(back)), Some(-(3 * 86_400 + 10) * 1000));
        let w = ClockWatch::start();
        assert_eq!(w.jumped(), None);
    }

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter_and_starts_over_after_an_ack() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..9).map(|_| b.next_wait()).collect();
        let nominal = [1u64, 2, 4, 8, 16, 32, 60, 60, 60];
        for (w, n) in waits.iter().zip(nominal) {
            let n = Duration::from_secs(n);
            assert!(
                *w >= n.mul_f64(0.8) && *w <= n.mul_f64(1.2),
                "{w:?} vs {n:?}"
            );
        }
        b.reset();
        let w = b.next_wait();
        assert!(w <= Duration::from_millis(1200), "{w:?}");
    }

    #[test]
    fn backoff_never_waits_longer_than_one_interval() {
        for (interval, cap) in [(1u64, 1u64), (5, 5), (20, 20), (60, 60), (3600, 60)] {
            let mut b = Backoff::for_interval(Duration::from_secs(interval));
            let last = (0..12).map(|_| b.next_wait()).last().unwrap();
            let cap = Duration::from_secs(cap);
            assert!(
                last >= cap.mul_f64(0.8) && last <= cap.mul_f64(1.2),
                "interval {interval} s: {last:?}"
            );
        }
    }
}
