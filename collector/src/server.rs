//! Wiring: opens the store, starts the committer, binds the gRPC and HTTP listeners, and shuts
//! everything down in order (stop reading → finish acks → drain the committer → last flush).
//!
//! Must never own business rules; it only connects the pieces. Both the binary and the in-process
//! tests start the collector through [`start`]; the HTTP side's tests use a [`Core`] alone.

use crate::api::{self, ApiState};
use crate::committer;
use crate::config::{CollectorConfig, TlsSettings};
use crate::enrollment::Enrollment;
use crate::ingest::{IngestService, IngestState};
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::store::Store;
use crate::view::FleetView;
use anyhow::Context;
use oqs_proto::v1::fleet_ingest_server::FleetIngestServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for streams to finish their acks before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown lets connections close on their own once every stream has ended: a
/// connection to an agent that vanished (its address went away) never answers the GOAWAY, and
/// must not hold the collector up; everything it was owed was acked or will be resent.
const CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// A running collector.
pub struct Running {
    /// Where gRPC ingest listens (the bound address, useful when the port was 0).
    pub grpc_addr: SocketAddr,
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Cancel to shut down; then await [`Running::wait`].
    pub shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the collector has stopped (after `shutdown` is cancelled, or on a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("collector task panicked")?
    }

    /// Cancels and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Pending connections the gRPC listener queues: a whole fleet reconnects at once after a
/// collector restart, and the default backlog (1024) would refuse some of them.
const GRPC_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(GRPC_BACKLOG)
}

fn read_pem(what: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    oqs_runtime::read_pem(path).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

fn server_tls(
    tls: &TlsSettings,
    handshake_timeout: Duration,
) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    // One process-wide crypto provider (several are compiled in through dependencies).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut cfg = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            read_pem("tls.cert", &tls.cert)?,
            read_pem("tls.key", &tls.key)?,
        ))
        .timeout(handshake_timeout);
    if let Some(ca) = &tls.client_ca {
        cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(read_pem(
            "tls.client_ca",
            ca,
        )?));
    }
    Ok(cfg)
}

/// What bounds the HTTP side's clients (`[limits]`).
#[derive(Clone, Copy)]
struct HttpBounds {
    /// A request head within this of connecting or of the previous answer.
    header_timeout: Duration,
    /// A whole request — head, body and answer — within this.
    request_timeout: Duration,
    /// A connection with no request under way for this long is closed (HTTP/1 keep-alive and
    /// HTTP/2 alike: an HTTP/2 client answering pings but asking nothing is idle).
    idle: Duration,
    /// Open HTTP connections at most; more are closed as they are accepted, so a flood of idle
    /// clients can never take the file descriptors the agents' gRPC side needs.
    max_connections: usize,
}

/// A connection's requests under way, and when the last one ended.
#[derive(Default)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    last_end: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Activity {
    fn idle_since(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            return None;
        }
        *self.last_end.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts a request under way on a connection while it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> Self {
        a.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::time::Instant::now());
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The HTTP side's accept loop (what `axum::serve` does, with bounds on slow and idle clients): a
/// client must send a whole request head within `header_timeout` (a new connection, or an idle
/// keep-alive one) and its whole request within `request_timeout` (else 408); a connection with
/// no request under way for `idle` is closed (HTTP/2 too); at most `max_connections` are open.
/// Connections live in a set owned by this future, so ending it (shutdown's abort) ends them too.
/// On `shutdown`: no new connections, open ones are told to close and waited for.
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
    bounds: HttpBounds,
    limit_log: Arc<crate::limit_log::LimitLog>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::Service;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if connections.len() >= bounds.max_connections {
            drop(tcp);
            limit_log.refused(
                "too_many_http_connections",
                "limits.max_http_connections",
                Some(peer.ip()),
            );
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let activity = Arc::new(Activity::default());
        let on_conn = activity.clone();
        let request_timeout = bounds.request_timeout;
        // What `into_make_service_with_connect_info` does (the peer for the handlers), each
        // request counted as under way while it lasts and bounded whole.
        let svc = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let mut app = app.clone();
            let busy = InFlight::new(on_conn.clone());
            async move {
                let _busy = busy;
                match tokio::time::timeout(request_timeout, app.call(req)).await {
                    Ok(r) => r,
                    Err(_) => Ok(axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        [(axum::http::header::CONNECTION, "close")],
                        format!(
                            "the request was not complete within limits.http_request_timeout_ms \
                             = {} ms\n",
                            request_timeout.as_millis()
                        ),
                    ))),
                }
            }
        });
        // The version sniffing before hyper's own timer waits for a first byte: bounded here.
        let tcp = crate::conn_limit::FirstByte::new(tcp, bounds.header_timeout);
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(tcp),
                hyper_util::service::TowerToHyperService::new(svc),
            )
            .into_owned();
        let stop = shutdown.clone();
        let idle = bounds.idle;
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            // A connection is idle from its start until its first request.
            *activity.last_end.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::time::Instant::now());
            let closing = loop {
                tokio::select! {
                    _ = &mut conn => return,
                    _ = stop.cancelled() => break "shutdown",
                    // Looked at every second (a request may have started or ended meanwhile).
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        let idle_at = activity.idle_since().map(|t| t + idle);
                        if idle_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                            break "idle";
                        }
                    }
                }
            };
            tracing::debug!(%peer, why = closing, "closing an HTTP connection");
            if closing == "idle" {
                // Nothing under way: the connection is simply closed (a well-behaved client
                // opens a new one), so an idle flood cannot hold it a moment longer.
                return;
            }
            conn.as_mut().graceful_shutdown();
            // A client that does not take the GOAWAY in time is simply dropped.
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    Ok(())
}

/// Starts the collector with `config` and returns once both listeners are bound.
/// The agents' transport: no Nagle delay on acks, and HTTP/2 pings that find a vanished agent's
/// connection within a minute. Shared with `oqs-grpc-floor-bench`, which must measure the same
/// transport the collector runs.
pub fn grpc_transport(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
}

/// The collector without its listeners: the store, its writer, and the state both sides read.
/// [`start`] serves it; tests drive its HTTP side through [`Core::router`] without a socket.
pub struct Core {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub presence: Presence,
    pub view: FleetView,
    pub enrollment: Enrollment,
    /// Closed days and maintenance windows.
    pub maintenance: crate::maintenance::MaintenanceBook,
    /// Area-wide incidents, as the committer publishes them.
    pub incidents: crate::incidents::IncidentBook,
    /// Where reports are committed (the ingest streams' way in; tests submit through it too).
    pub committer: committer::CommitterHandle,
    committer_task: JoinHandle<()>,
}

impl Core {
    /// Opens the store (refusing one that lost acknowledged writes unless told), loads the
    /// derived state and the enrollments, and starts the committer.
    pub async fn open(config: &CollectorConfig) -> anyhow::Result<Core> {
        config.validate()?;
        let dir = config.data_dir.clone();
        let cache = config.store.cache_bytes;
        let compression = config.store.compression();
        let accept_lost_writes = config.store.accept_lost_writes;
        let store = tokio::task::spawn_blocking(move || {
            Store::open_checked(&dir, cache, compression, accept_lost_writes)
        })
        .await
        .context("opening the store panicked")??;
        let maintenance = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || crate::api::maintenance::load(&store))
                .await
                .context("loading maintenance schedules panicked")??
        };
        let metrics = Arc::new(Metrics::new());
        let presence = Presence::new(metrics.agents_connected.clone());
        let view = FleetView::default();
        let incidents = crate::incidents::IncidentBook::default();
        let (committer, committer_task) = committer::spawn(
            store.clone(),
            committer::CommitterSettings {
                batch_max: config.ingest.commit_batch_max,
                queue: config.ingest.commit_queue,
                flags: config.flags.clone(),
                history: config.history.clone(),
                maintenance: maintenance.clone(),
                incidents: config.incidents.clone(),
                incident_book: incidents.clone(),
                limits: config.limits.clone(),
                store: config.store.clone(),
            },
            metrics.clone(),
            view.clone(),
        )
        .await
        .context("loading the fleet's derived state")?;
        let enrollment = {
            let store = store.clone();
            let settings = config.enrollment.clone();
            tokio::task::spawn_blocking(move || Enrollment::load(store, settings))
                .await
                .context("loading enrollments panicked")??
        };
        Ok(Core {
            store,
            metrics,
            presence,
            view,
            enrollment,
            maintenance,
            incidents,
            committer,
            committer_task,
        })
    }

    /// What the HTTP handlers read.
    pub fn api_state(&self, config: &CollectorConfig) -> ApiState {
        ApiState {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            presence: self.presence.clone(),
            view: self.view.clone(),
            history: config.history.clone(),
            auth: config.http_auth.clone(),
            enrollment: self.enrollment.clone(),
            committer: self.committer.watch(),
            maintenance: self.maintenance.clone(),
            maintenance_limits: config.maintenance,
            incidents: self.incidents.clone(),
        }
    }

    /// The whole HTTP surface over this core (`tower::ServiceExt::oneshot` in tests).
    pub fn router(&self, config: &CollectorConfig) -> axum::Router {
        api::router(self.api_state(config))
    }

    /// Stops the committer once everything submitted is stored, and flushes.
    pub async fn close(self) -> anyhow::Result<()> {
        self.committer.close().await;
        drop(self.committer);
        self.committer_task
            .await
            .context("the committer panicked")?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .context("the last flush panicked")??;
        Ok(())
    }
}

/// Opens the [`Core`] and serves it: gRPC ingest and the HTTP side on their listeners.
pub async fn start(config: CollectorConfig) -> anyhow::Result<Running> {
    let core = Core::open(&config).await?;
    let api_state = core.api_state(&config);
    // The HTTP side holds its own clones of the store and the view (in `api_state`).
    let Core {
        metrics,
        presence,
        enrollment,
        committer,
        committer_task,
        ..
    } = core;
    let shutdown = CancellationToken::new();

    let grpc_listener = listen(config.grpc_listen)
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let committer_closer = committer.clone();
    let limit_log = crate::limit_log::LimitLog::new(metrics.clone(), config.limits.retry_spread_ms);
    let ingest_state = Arc::new(IngestState {
        limit_log: limit_log.clone(),
        enrollment: enrollment.clone(),
        streams: std::sync::atomic::AtomicUsize::new(0),
        pre_hello: Default::default(),
        rates: Default::default(),
        committer,
        metrics: metrics.clone(),
        presence: presence.clone(),
        limits: config.limits.clone(),
        tuning: config.ingest.clone(),
        shutdown: shutdown.clone(),
    });
    let streams_open = ingest_state.clone();
    let ingest = FleetIngestServer::new(IngestService::new(ingest_state))
        .max_decoding_message_size(config.limits.max_message_bytes);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<FleetIngestServer<IngestService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(oqs_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(server_tls(
                tls,
                Duration::from_millis(config.limits.connect_timeout_ms),
            )?)
            .context("configuring gRPC TLS")?;
    }
    let grpc_shutdown = shutdown.clone();
    let refused = limit_log.clone();
    let incoming = crate::conn_limit::incoming(
        grpc_listener,
        crate::conn_limit::PerSource::new(config.limits.max_connections_per_source),
        Duration::from_millis(config.limits.connect_timeout_ms),
        move |peer| {
            refused.refused(
                "too_many_connections",
                "limits.max_connections_per_source",
                Some(peer),
            )
        },
    );
    let grpc = tokio::spawn(
        grpc_transport(builder)
            .max_concurrent_streams(config.limits.max_streams_per_connection)
            .add_service(ingest)
            .add_service(health_service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned()),
    );
    let app = api::router(api_state);
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(serve_http(
        http_listener,
        app,
        http_shutdown,
        HttpBounds {
            header_timeout: Duration::from_millis(config.limits.http_header_timeout_ms),
            request_timeout: Duration::from_millis(config.limits.http_request_timeout_ms),
            idle: Duration::from_secs(config.limits.http_idle_secs),
            max_connections: config.limits.max_http_connections,
        },
        limit_log.clone(),
    ));

    let token = shutdown.clone();
    let mut committer_task = committer_task;
    let task = tokio::spawn(async move {
        // The committer ends early only when its writer failed: nothing more can be stored, so the
        // collector stops (non-zero) for its supervisor to restart it rather than answer every
        // report with an error while looking alive.
        let committer_failed = tokio::select! {
            biased;
            _ = token.cancelled() => false,
            // After a shutdown began the committer ends by design (its handles are dropped).
            _ = &mut committer_task => !token.is_cancelled(),
        };
        if committer_failed {
            tracing::error!(
                "the store's writer stopped; shutting down so a supervisor restarts the collector"
            );
            health
                .set_not_serving::<FleetIngestServer<IngestService>>()
                .await;
            token.cancel();
        }
        tracing::info!("shutting down: finishing acks, then the last flush");
        // Streams stop reading on cancel and finish their acks.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while streams_open
            .streams
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(streams_open);
        // Connections get a moment to close; the process does not wait on dead peers.
        let grace_end = tokio::time::Instant::now() + CONNECTION_GRACE;
        while !(grpc.is_finished() && http.is_finished()) && tokio::time::Instant::now() < grace_end
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A connection still open (a peer that vanished, a client that keeps its channel) would
        // keep its server task, and the store it holds, alive after `stop` returned: the data
        // directory stayed locked for the next open. End both servers here.
        grpc.abort();
        http.abort();
        let _ = grpc.await;
        let _ = http.await;
        if committer_failed {
            anyhow::bail!(
                "the store's writer stopped (see the log above); nothing more could be stored"
            );
        }
        // The committer commits what is queued, flushes, and stops.
        committer_closer.close().await;
        drop(committer_closer);
        match tokio::time::timeout(SHUTDOWN_GRACE, committer_task).await {
            Ok(_) => {}
            Err(_) => tracing::warn!(
                "committer still busy at shutdown; un-acked reports will be resent by agents"
            ),
        }
        Ok(())
    });
    Ok(Running {
        grpc_addr,
        http_addr,
        shutdown,
        task,
    })
}
