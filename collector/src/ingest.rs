//! The gRPC `FleetIngest` service: one task per agent stream that validates, hands reports to the
//! group committer, and answers `Ack(seq)` in order once each is durable.
//!
//! Must never ack before the committer says the report is flushed, never panic on input, and never
//! hold a stream open after it refused something. A report that will never be accepted (it fails
//! validation) is refused with a `Rejected` message, so the agent can drop it, then a status; a
//! report refused only for now (the terminal's rate limit) gets no `Rejected`, only the status and
//! a pushback saying when to try again, so the agent keeps it and sends it then.

use crate::committer::{CommitOutcome, CommitterHandle, ReportCommit};
use crate::config::{IngestTuning, Limits};
use crate::metrics::Metrics;
use crate::presence::{Outbound, Outgoing, Presence};
use crate::store::TerminalKey;
use crate::validate::{self, Rejection};
use futures::stream::{FuturesOrdered, StreamExt};
use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_server::FleetIngest;
use oqs_proto::v1::{Ack, AgentMessage, CollectorMessage, Rejected, Report, Welcome};
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

/// What every stream task shares.
pub struct IngestState {
    pub committer: CommitterHandle,
    pub metrics: Arc<Metrics>,
    pub presence: Presence,
    pub limits: Limits,
    pub tuning: IngestTuning,
    /// Who may report for which site (checked only when enrollment is required).
    pub enrollment: crate::enrollment::Enrollment,
    /// Open streams now, for `limits.max_streams`.
    pub streams: std::sync::atomic::AtomicUsize,
    /// Each terminal's rate window (`limits.max_reports_per_minute` per `rate_window_secs`):
    /// kept across its streams, so reconnecting does not open a new window.
    pub rates: RateWindows,
    /// Cancelled on shutdown: streams stop reading, finish their acks, and end.
    pub shutdown: CancellationToken,
}

/// Reports per terminal per window, over all of the terminal's streams.
#[derive(Default)]
pub struct RateWindows(std::sync::Mutex<std::collections::HashMap<TerminalKey, (Instant, u32)>>);

/// Terminals whose windows are kept before expired ones are swept.
const RATE_WINDOWS_SWEEP_AT: usize = 200_000;

impl RateWindows {
    /// Counts one report of `key`; `Err(wait)` when it is over `max` in the current window, with
    /// how long until the window ends.
    fn admit(&self, key: &TerminalKey, max: u32, window: Duration) -> Result<(), Duration> {
        let now = Instant::now();
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= RATE_WINDOWS_SWEEP_AT && !w.contains_key(key) {
            w.retain(|_, (since, _)| now.duration_since(*since) < window);
        }
        let e = w.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(e.0) >= window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        if e.1 > max {
            Err(window.saturating_sub(now.duration_since(e.0)))
        } else {
            Ok(())
        }
    }
}

/// The metadata key of a refusal that says when to try again (gRFC A6's server pushback).
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The tonic service.
#[derive(Clone)]
pub struct IngestService {
    state: Arc<IngestState>,
}

impl IngestService {
    pub fn new(state: Arc<IngestState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl FleetIngest for IngestService {
    type ConnectStream = futures::stream::Map<
        ReceiverStream<Outgoing>,
        fn(Outgoing) -> Result<CollectorMessage, Status>,
    >;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let open = self
            .state
            .streams
            .load(std::sync::atomic::Ordering::Relaxed);
        if open >= self.state.limits.max_streams {
            self.state.metrics.reject("too_many_streams");
            return Err(Status::resource_exhausted(format!(
                "the collector holds limits.max_streams = {} streams; retry later",
                self.state.limits.max_streams
            )));
        }
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.state.tuning.per_stream_in_flight + 4);
        let state = self.state.clone();
        tokio::spawn(async move {
            state
                .streams
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            session(state.clone(), inbound, tx, peer).await;
            state
                .streams
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        Ok(Response::new(ReceiverStream::new(rx).map(
            unbox as fn(Outgoing) -> Result<CollectorMessage, Status>,
        )))
    }
}

fn msg(body: CollectorBody) -> Box<CollectorMessage> {
    Box::new(CollectorMessage { body: Some(body) })
}

/// What tonic sends, from what the stream's channel holds.
fn unbox(o: Outgoing) -> Result<CollectorMessage, Status> {
    o.map(|m| *m).map_err(|s| *s)
}

/// Maps a decode failure of the inbound stream to the status and metric reason it deserves.
fn inbound_error(state: &IngestState, st: Status) -> Status {
    if st.code() == Code::OutOfRange && st.message().contains("too large") {
        // tonic says OUT_OF_RANGE; gRPC's convention for an oversized message is RESOURCE_EXHAUSTED.
        state.metrics.reject("too_large");
        Status::resource_exhausted(format!(
            "message larger than limits.max_message_bytes = {} bytes ({})",
            state.limits.max_message_bytes,
            st.message()
        ))
    } else if matches!(
        st.code(),
        Code::Internal | Code::InvalidArgument | Code::DataLoss
    ) {
        state.metrics.reject("malformed");
        Status::invalid_argument(format!("malformed message: {}", st.message()))
    } else {
        st
    }
}

fn rejection_status(r: &Rejection) -> Status {
    match r {
        Rejection::ProtocolVersion { .. } => Status::failed_precondition(r.to_string()),
        Rejection::Hello(_) | Rejection::Report { .. } => Status::invalid_argument(r.to_string()),
    }
}

/// One agent stream: its Hello, then its reports until it ends.
async fn session(
    state: Arc<IngestState>,
    mut inbound: Streaming<AgentMessage>,
    tx: Outbound,
    peer: Option<std::net::IpAddr>,
) {
    // The Hello phase's state (the Hello, the identity, enrollment) is gone once it returns: the
    // future every connected agent keeps alive holds only what the reports need.
    let Some((key, secret_hash)) = open_stream(&state, &mut inbound, &tx, peer).await else {
        return;
    };
    let _present = state.presence.enter(key.clone(), tx.clone());
    if let Err(st) = reports(&state, &key, secret_hash.as_deref(), &mut inbound, &tx).await {
        let _ = tx.send(Err(Box::new(st))).await;
    }
}

/// Reads and checks the Hello, admits the terminal, and answers Welcome; `None` when the stream
/// was refused (the status is already sent) or went away.
async fn open_stream(
    state: &IngestState,
    inbound: &mut Streaming<AgentMessage>,
    tx: &Outbound,
    peer: Option<std::net::IpAddr>,
) -> Option<(TerminalKey, Option<String>)> {
    let first = tokio::select! {
        _ = state.shutdown.cancelled() => return None,
        r = tokio::time::timeout(state.limits.hello_timeout(), inbound.message()) => r,
    };
    let hello = match first {
        Err(_) => {
            state.metrics.reject("no_hello");
            let _ = tx
                .send(Err(Box::new(Status::deadline_exceeded(format!(
                    "no Hello within limits.hello_timeout_ms = {} ms",
                    state.limits.hello_timeout_ms
                )))))
                .await;
            return None;
        }
        Ok(Err(st)) => {
            let _ = tx.send(Err(Box::new(inbound_error(state, st)))).await;
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Ok(Some(AgentMessage {
            body: Some(AgentBody::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            state.metrics.reject("no_hello");
            let _ = tx
                .send(Err(Box::new(Status::invalid_argument(
                    "the first message of a stream must be Hello",
                ))))
                .await;
            return None;
        }
    };
    let ident = match validate::hello(&hello) {
        Ok(i) => i,
        Err(r) => {
            state.metrics.reject(r.label());
            tracing::info!(reason = %r, "hello refused");
            let _ = tx.send(Err(Box::new(rejection_status(&r)))).await;
            return None;
        }
    };
    let key = TerminalKey::new(ident.site.as_str(), ident.terminal.as_str());
    let mut admitted = None;
    if state.enrollment.required() {
        match state
            .enrollment
            .admit(&key, hello.credential.as_deref(), peer)
            .await
        {
            Ok(a) => admitted = Some(a),
            Err(f) => {
                state.metrics.auth_failure(f.label());
                tracing::info!(site = %ident.site, reason = f.label(), "agent not admitted");
                let _ = tx.send(Err(Box::new(auth_status(f)))).await;
                return None;
            }
        }
    }
    let last_stored_seq = match state.committer.hello(&ident).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx
                .send(Err(Box::new(Status::unavailable(e.to_string()))))
                .await;
            return None;
        }
    };
    tracing::debug!(site = %ident.site, terminal = %ident.terminal, last_stored_seq, "agent connected");
    let welcome = Welcome {
        last_stored_seq,
        max_message_bytes: u32::try_from(state.limits.max_message_bytes).unwrap_or(u32::MAX),
        terminal_secret: admitted
            .as_mut()
            .and_then(|a| a.new_secret.take())
            .unwrap_or_default(),
    };
    if tx
        .send(Ok(msg(CollectorBody::Welcome(welcome))))
        .await
        .is_err()
    {
        return None;
    }
    Some((key, admitted.map(|a| a.secret_hash)))
}

/// The status of a refused credential. Being rate-limited says nothing about the credential, so it
/// is RESOURCE_EXHAUSTED (try later) and not UNAUTHENTICATED, on which an agent forgets its secret.
fn auth_status(f: crate::enrollment::AuthFailure) -> Status {
    match f {
        crate::enrollment::AuthFailure::RateLimited => Status::resource_exhausted(f.message()),
        _ => Status::unauthenticated(f.message()),
    }
}

/// Refuses one report: tells the agent which seq (so it can drop it) and ends the stream.
async fn refuse(tx: &Outbound, seq: u64, status: Status) -> Status {
    let _ = tx
        .send(Ok(msg(CollectorBody::Rejected(Rejected {
            seq,
            reason: status.message().to_owned(),
        }))))
        .await;
    status
}

/// Reads reports until the agent closes, shutdown, or a refusal; acks in order as commits land.
async fn reports(
    state: &IngestState,
    key: &TerminalKey,
    secret_hash: Option<&str>,
    inbound: &mut Streaming<AgentMessage>,
    tx: &Outbound,
) -> Result<(), Status> {
    let mut in_flight = FuturesOrdered::new();
    let mut last_seq_on_stream = 0u64;
    let rate_window = Duration::from_secs(state.limits.rate_window_secs.max(1));
    let mut reading = true;
    // Set when the stream is to end once the reports already queued are acked (rate limit).
    let mut ending: Option<Box<Status>> = None;
    let max_in_flight = state.tuning.per_stream_in_flight;
    loop {
        if !reading && in_flight.is_empty() {
            return ending.map_or(Ok(()), |st| Err(*st));
        }
        tokio::select! {
            biased;
            Some((seq, done)) = in_flight.next(), if !in_flight.is_empty() => {
                let outcome = match done {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) => return Err(Status::unavailable(format!("report seq {seq} not stored: {e}"))),
                    Err(_) => return Err(Status::unavailable(format!("report seq {seq} not stored: the collector is stopping"))),
                };
                let ack = match outcome {
                    CommitOutcome::Stored => {
                        state.metrics.reports_ingested.inc();
                        Ack { seq, duplicate: false }
                    }
                    CommitOutcome::Duplicate => {
                        state.metrics.reports_duplicate.inc();
                        Ack { seq, duplicate: true }
                    }
                    CommitOutcome::OutOfOrder { last_seq } => {
                        state.metrics.reject("out_of_order");
                        return Err(Box::pin(refuse(tx, seq, Status::failed_precondition(format!(
                            "report seq {seq} was never stored and seq {last_seq} already is: \
                             seqs must increase per terminal"
                        )))).await);
                    }
                };
                if tx.send(Ok(msg(CollectorBody::Ack(ack)))).await.is_err() {
                    return Ok(());
                }
            }
            _ = state.shutdown.cancelled(), if reading => {
                // Stop taking new reports; acks for those already queued still go out.
                reading = false;
            }
            next = inbound.message(), if reading && in_flight.len() < max_in_flight => {
                let report = match next {
                    Ok(None) => { reading = false; continue; }
                    Err(st) => return Err(inbound_error(state, st)),
                    Ok(Some(AgentMessage { body: Some(AgentBody::Report(r)) })) => r,
                    Ok(Some(AgentMessage { body: Some(AgentBody::Hello(_)) })) => {
                        state.metrics.reject("bad_hello");
                        return Err(Status::invalid_argument("Hello may only be the first message of a stream"));
                    }
                    Ok(Some(AgentMessage { body: None })) => {
                        // A message kind from a newer agent: ignore it rather than break the stream.
                        tracing::debug!("ignoring an agent message of an unknown kind");
                        continue;
                    }
                };
                let seq = report.seq;
                if let Some(h) = secret_hash {
                    if !state.enrollment.still_valid(key, h) {
                        let f = crate::enrollment::AuthFailure::Revoked;
                        state.metrics.auth_failure(f.label());
                        return Err(Status::unauthenticated(f.message()));
                    }
                }
                if let Err(wait) = state.rates.admit(key, state.limits.max_reports_per_minute, rate_window) {
                    // Not a bad report: no Rejected, so the agent keeps it and sends it again once
                    // the window is over (the pushback says when). Those already queued are acked.
                    state.metrics.reject("rate_limited");
                    let mut st = Status::resource_exhausted(format!(
                        "more than limits.max_reports_per_minute = {} reports in {} s from this \
                         terminal; report seq {seq} and later were not read: send them again in {} ms",
                        state.limits.max_reports_per_minute,
                        rate_window.as_secs(),
                        wait.as_millis()
                    ));
                    if let Ok(v) = wait.as_millis().to_string().parse() {
                        st.metadata_mut().insert(RETRY_PUSHBACK, v);
                    }
                    ending = Some(Box::new(st));
                    reading = false;
                    continue;
                }
                if seq <= last_seq_on_stream {
                    state.metrics.reject("out_of_order");
                    return Err(Box::pin(refuse(tx, seq, Status::failed_precondition(format!(
                        "report seq {seq} follows seq {last_seq_on_stream} on this stream: seqs must \
                         strictly increase"
                    )))).await);
                }
                if let Err(r) = validate::report(&report, &state.limits, crate::clock::now_ms()) {
                    state.metrics.reject(r.label());
                    return Err(Box::pin(refuse(tx, seq, rejection_status(&r))).await);
                }
                last_seq_on_stream = seq;
                let commit = commit_of(key, &report);
                // Boxed, like the refusals: a future kept inline would make every connected
                // agent's task as large as its largest await (~600 bytes for this one).
                let rx = Box::pin(state.committer.report(commit)).await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                in_flight.push_back(async move { (seq, rx.await) });
            }
        }
    }
}

fn commit_of(key: &TerminalKey, r: &Report) -> ReportCommit {
    ReportCommit {
        key: key.clone(),
        seq: r.seq,
        finished_at_ms: r.finished_at_ms,
        spool_dropped_total: r.spool_dropped_total,
        encoded: r.encode_to_vec(),
        report: r.clone(),
    }
}
