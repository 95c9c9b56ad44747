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
use futures::channel::mpsc;
use futures::stream::StreamExt;
use futures::{FutureExt, SinkExt};
use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_server::FleetIngest;
use oqs_proto::v1::{Ack, AgentMessage, CollectorMessage, Rejected, Welcome};
use prost::Message;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// Open streams past a valid Hello, for `limits.max_streams`.
    pub streams: std::sync::atomic::AtomicUsize,
    /// Streams still waiting for their Hello, in all and per source.
    pub pre_hello: PreHello,
    /// Each terminal's rate window (`limits.max_reports_per_minute` per `rate_window_secs`):
    /// kept across its streams, so reconnecting does not open a new window.
    pub rates: RateWindows,
    /// Cancelled on shutdown: streams stop reading, finish their acks, and end.
    pub shutdown: CancellationToken,
    /// Refusals by the admission limits: counted, logged, and given a spread-out pushback.
    pub limit_log: Arc<crate::limit_log::LimitLog>,
}

/// Streams that have not sent a valid Hello yet: bounded in all (`limits.max_pre_hello_streams`)
/// and per source (`limits.max_pre_hello_per_source`; an IPv4 address or an IPv6 /64), so a peer
/// opening streams it never introduces cannot take the slots of real agents.
#[derive(Default)]
pub struct PreHello {
    total: std::sync::atomic::AtomicUsize,
    by_source: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A slot of [`PreHello`], given back when dropped.
pub struct PreHelloSlot {
    state: Arc<IngestState>,
    source: Option<std::net::IpAddr>,
}

impl Drop for PreHelloSlot {
    fn drop(&mut self) {
        let of = &self.state.pre_hello;
        of.total.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(src) = self.source {
            let mut m = of.by_source.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&src) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&src);
                }
            }
        }
    }
}

impl PreHello {
    /// Takes a slot for a stream from `peer`, or refuses it (counted, logged, with a pushback)
    /// naming the limit reached.
    fn enter(
        state: &Arc<IngestState>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<PreHelloSlot, Status> {
        let (this, l) = (&state.pre_hello, &state.limits);
        let source = peer.map(crate::failure_limit::source);
        let mut m = this.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let log = &state.limit_log;
        if this.total.load(std::sync::atomic::Ordering::Relaxed) >= l.max_pre_hello_streams {
            log.refused("too_many_pre_hello", "limits.max_pre_hello_streams", peer);
            return Err(log.busy(format!(
                "limits.max_pre_hello_streams = {} streams are waiting for their Hello; retry later",
                l.max_pre_hello_streams
            )));
        }
        if let Some(src) = source {
            let n = m.entry(src).or_insert(0);
            if *n >= l.max_pre_hello_per_source {
                log.refused(
                    "too_many_pre_hello",
                    "limits.max_pre_hello_per_source",
                    peer,
                );
                return Err(log.busy(format!(
                    "limits.max_pre_hello_per_source = {} streams from this source are waiting for \
                     their Hello; retry later",
                    l.max_pre_hello_per_source
                )));
            }
            *n += 1;
        }
        this.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PreHelloSlot {
            state: state.clone(),
            source,
        })
    }
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
pub use oqs_proto::RETRY_PUSHBACK;

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
        mpsc::Receiver<Outgoing>,
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
            let log = &self.state.limit_log;
            log.refused("too_many_streams", "limits.max_streams", peer);
            return Err(log.busy(format!(
                "the collector holds limits.max_streams = {} streams; retry later",
                self.state.limits.max_streams
            )));
        }
        // Taken here (a refusal is the stream's status), held by the task until its Hello.
        let slot = PreHello::enter(&self.state, peer)?;
        let inbound = request.into_inner();
        // Room for the acks in flight and a few commands: the channel adds one slot per sender
        // (this stream's and the one `Presence` keeps).
        let (tx, rx) = mpsc::channel(self.state.tuning.per_stream_in_flight + 2);
        let state = self.state.clone();
        let opening = Box::new(Opening {
            peer,
            pre_hello: slot,
        });
        tokio::spawn(session(state, Box::new(inbound), tx, opening));
        Ok(Response::new(rx.map(
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

/// What only a stream's Hello phase needs. Boxed: what a task is given stays in it for its whole
/// life, and every connected agent's task outlives its Hello by hours.
struct Opening {
    peer: Option<std::net::IpAddr>,
    pre_hello: PreHelloSlot,
}

/// One agent stream: its Hello, then its reports until it ends.
// Not an async fn on purpose (see the comment in its body).
#[allow(clippy::manual_async_fn)]
fn session(
    state: Arc<IngestState>,
    // Boxed: it is ~230 bytes, and lives in every connected agent's task.
    mut inbound: Box<Streaming<AgentMessage>>,
    mut tx: Outbound,
    opening: Box<Opening>,
) -> impl Future<Output = ()> {
    // An async block, not an async fn: an async fn's future keeps its arguments twice (as
    // passed, and as the locals they are moved into), a block's only once (72 bytes here).
    async move {
        let Opening { peer, pre_hello } = *opening;
        // The Hello phase's state (the Hello, the identity, enrollment; ~1.7 KB) is boxed and gone
        // once it returns: the future every connected agent keeps alive holds only what the reports
        // need.
        let Some((key, secret_hash, _counted, ident, clock_behind_ms)) =
            Box::pin(open_stream(&state, &mut inbound, &mut tx, peer)).await
        else {
            return;
        };
        drop(pre_hello);
        let _present = state.presence.enter(&key, tx.clone());
        if let Err(st) = reports(
            &state,
            &key,
            secret_hash.as_deref(),
            ident,
            clock_behind_ms,
            &mut inbound,
            &mut tx,
        )
        .await
        {
            let _ = tx.send(Err(Box::new(st))).await;
        }
    }
}

/// A stream past its Hello, counted in [`IngestState::streams`] while it lives.
struct StreamCount<'a>(&'a IngestState);

impl<'a> StreamCount<'a> {
    fn enter(state: &'a IngestState) -> Self {
        state
            .streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for StreamCount<'_> {
    fn drop(&mut self) {
        self.0
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads and checks the Hello, admits the terminal, and answers Welcome; `None` when the stream
/// was refused (the status is already sent) or went away.
async fn open_stream<'s>(
    state: &'s IngestState,
    inbound: &mut Streaming<AgentMessage>,
    tx: &mut Outbound,
    peer: Option<std::net::IpAddr>,
) -> Option<(
    TerminalKey,
    Option<String>,
    StreamCount<'s>,
    Option<Box<crate::validate::AgentIdentity>>,
    Option<i64>,
)> {
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
        max_addresses: u32::try_from(state.limits.max_addresses).unwrap_or(u32::MAX),
        max_list_items: u32::try_from(state.limits.max_list_items).unwrap_or(u32::MAX),
        terminal_secret: admitted
            .as_mut()
            .and_then(|a| a.new_secret.take())
            .unwrap_or_default(),
    };
    // Counted before the Welcome leaves: a stream opened right after it sees this one.
    let counted = StreamCount::enter(state);
    // The terminal's clock far behind the collector's (its Hello's time, not its reports', which
    // may be a spool replayed after days offline): every report of the stream says so.
    let behind_limit_ms = i64::try_from(state.limits.max_clock_behind_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let clock_behind_ms = Some(crate::clock::now_ms().saturating_sub(ident.agent_time_ms))
        .filter(|b| ident.agent_time_ms > 0 && *b > behind_limit_ms);
    if let Some(b) = clock_behind_ms {
        tracing::warn!(site = %ident.site, terminal = %ident.terminal, behind_ms = b, "terminal clock far behind");
    }
    // A terminal with nothing stored has no record yet: its first report brings the identity.
    let ident = (last_stored_seq == 0).then(|| Box::new(ident));
    if tx
        .send(Ok(msg(CollectorBody::Welcome(welcome))))
        .await
        .is_err()
    {
        return None;
    }
    Some((
        key,
        admitted.map(|a| a.secret_hash),
        counted,
        ident,
        clock_behind_ms,
    ))
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
async fn refuse(tx: &mut Outbound, seq: u64, status: Status) -> Status {
    let _ = tx
        .send(Ok(msg(CollectorBody::Rejected(Rejected {
            seq,
            reason: status.message().to_owned(),
        }))))
        .await;
    status
}

/// Reads reports until the agent closes, shutdown, or a refusal; acks in order as commits land.
#[allow(clippy::manual_async_fn)]
fn reports<'a>(
    state: &'a IngestState,
    key: &'a TerminalKey,
    secret_hash: Option<&'a str>,
    mut ident: Option<Box<crate::validate::AgentIdentity>>,
    clock_behind_ms: Option<i64>,
    inbound: &'a mut Streaming<AgentMessage>,
    tx: &'a mut Outbound,
) -> impl Future<Output = Result<(), Status>> + 'a {
    // An async block for the same reason as `session`'s.
    async move {
        // The replies of the reports committing, oldest first: acks leave in the order the reports
        // came, so only the oldest is awaited (a `FuturesOrdered` cost 144 bytes per stream at
        // its creation and 80 per report).
        let mut in_flight: VecDeque<(u64, CommitReply)> = VecDeque::new();
        let mut last_seq_on_stream = 0u64;
        let rate_window = Duration::from_secs(state.limits.rate_window_secs.max(1));
        let mut reading = true;
        // Set when the stream is to end once the reports already queued are acked (rate limit).
        let mut ending: Option<Box<Status>> = None;
        let max_in_flight = state.tuning.per_stream_in_flight;
        let idle = Duration::from_secs(state.limits.stream_idle_secs.max(1));
        let mut heard = tokio::time::Instant::now();
        loop {
            if !reading && in_flight.is_empty() {
                return ending.map_or(Ok(()), |st| Err(*st));
            }
            tokio::select! {
                biased;
                (seq, done) = oldest_reply(&mut in_flight), if !in_flight.is_empty() => {
                    if in_flight.is_empty() {
                        // A replay of a spool may have grown the queue: give it back once drained.
                        in_flight.shrink_to(IN_FLIGHT_KEPT);
                    }
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
                        CommitOutcome::SeqJump { last_seq } => {
                            // Not this report's fault but a damaged counter: no Rejected (the
                            // agent keeps the report); it renumbers what it holds from the seq
                            // after the stored one, so the terminal can go on.
                            state.metrics.reject("seq_out_of_range");
                            tracing::warn!(site = %key.site, terminal = %key.terminal, seq, last_seq, "report seq jumped beyond limits.max_seq_jump");
                            let mut st = Status::out_of_range(format!(
                                "report seq {seq} is more than limits.max_seq_jump = {} above the \
                                 stored seq {last_seq}: the agent's counter is damaged. Renumber \
                                 the held reports from seq {} (this agent's reports are kept)",
                                state.limits.max_seq_jump,
                                last_seq + 1
                            ));
                            if let Ok(v) = last_seq.to_string().parse() {
                                st.metadata_mut().insert(oqs_proto::SEQ_RESTART, v);
                            }
                            return Err(st);
                        }
                        CommitOutcome::OverBudget { setting, until_ms } => {
                            // Not a bad report: the terminal stored its day's share. No Rejected;
                            // the agent keeps it and sends it again after the pushback.
                            state.metrics.reject("over_budget");
                            let wait = until_ms.saturating_sub(crate::clock::now_ms()).max(1000);
                            let mut st = Status::resource_exhausted(format!(
                                "{}/{} stored its day's budget ({setting}): report seq {seq} and \
                                 later are kept by the agent and taken after the window ends",
                                key.site, key.terminal
                            ));
                            if let Ok(v) = wait.to_string().parse() {
                                st.metadata_mut().insert(RETRY_PUSHBACK, v);
                            }
                            return Err(st);
                        }
                        CommitOutcome::NoRoom { available, reserve } => {
                            state.metrics.reject("no_room");
                            tracing::warn!(available, reserve, "the data directory is down to its reserve: reports refused for now");
                            return Err(state.limit_log.busy(format!(
                                "the collector's disk is down to its reserve ({available} of \
                                 store.reserve_* {reserve} bytes free): report seq {seq} and later \
                                 are kept by the agent and taken when there is room"
                            )));
                        }
                        CommitOutcome::Conflict => {
                            // No Rejected: the report is good, it is the ids that are shared; the
                            // agent keeps it and the NOC sees the site's flag.
                            state.metrics.reject("terminal_id_conflict");
                            tracing::warn!(site = %key.site, terminal = %key.terminal, seq, "two machines report with the same ids");
                            let mut st = Status::failed_precondition(format!(
                                "another machine reports as {}/{}: seq {seq} differs from what it \
                                 stored under that seq, or is below seqs it stored: two machines \
                                 use these site and terminal ids. Give each its own terminal_id \
                                 (this agent's reports are kept and sent again above the other's)",
                                key.site, key.terminal
                            ));
                            st.metadata_mut().insert(
                                oqs_proto::TERMINAL_ID_CONFLICT,
                                tonic::metadata::MetadataValue::from_static("1"),
                            );
                            return Err(st);
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
                _ = tokio::time::sleep_until(heard + idle), if reading && in_flight.is_empty() => {
                    state.metrics.reject("stream_idle");
                    return Err(Status::unavailable(format!(
                        "nothing received for limits.stream_idle_secs = {} s: closing this stream; \
                         reconnect to report",
                        idle.as_secs()
                    )));
                }
                // Boxed as it is read: the select's output and the locals of this loop live in every
                // connected agent's task, and a report inline is ~420 bytes (three copies of it made
                // the task ~3 KB; issue "one home for each fact", item 7).
                next = inbound.message().map(|r| r.map(|m| m.map(Box::new))), if reading && in_flight.len() < max_in_flight => {
                    heard = tokio::time::Instant::now();
                    let ctx = StreamCtx { state, key, secret_hash, clock_behind_ms, rate_window };
                    match take_message(&ctx, &mut ident, &mut last_seq_on_stream, next) {
                        Step::Skip => continue,
                        Step::Closed => reading = false,
                        Step::EndAfterQueued(st) => {
                            ending = Some(st);
                            reading = false;
                        }
                        Step::Fail(st) => return Err(st),
                        Step::Refuse(seq, st) => {
                            // The site's flag says why, without the seq (the same refusal of the
                            // next report is the same problem).
                            let msg = st.message();
                            let why = msg
                                .strip_prefix("report seq ")
                                .and_then(|r| r.split_once(": "))
                                .map_or(msg, |(_, why)| why);
                            state.committer.refused(key, why.to_owned());
                            return Err(Box::pin(refuse(tx, seq, st)).await);
                        }
                        Step::Commit(seq, commit) => {
                            // Boxed, like the refusals: a future kept inline would make every
                            // connected agent's task as large as its largest await.
                            let rx = Box::pin(state.committer.report(commit)).await
                                .map_err(|e| Status::unavailable(e.to_string()))?;
                            in_flight.push_back((seq, rx));
                        }
                    }
                }
            }
        }
    }
}

/// The committer's answer to one report.
type CommitReply =
    tokio::sync::oneshot::Receiver<Result<CommitOutcome, crate::committer::CommitError>>;

/// Slots of a stream's in-flight queue kept once it is drained (one report in flight is the
/// steady state; a spool's replay fills up to `ingest.per_stream_in_flight`).
const IN_FLIGHT_KEPT: usize = 4;

/// The oldest report's commit reply, once it comes (pending while none is in flight); it
/// leaves the queue as it is returned.
fn oldest_reply(
    q: &mut VecDeque<(u64, CommitReply)>,
) -> impl std::future::Future<
    Output = (
        u64,
        Result<
            Result<CommitOutcome, crate::committer::CommitError>,
            tokio::sync::oneshot::error::RecvError,
        >,
    ),
> + '_ {
    std::future::poll_fn(move |cx| {
        let Some((seq, rx)) = q.front_mut() else {
            return std::task::Poll::Pending;
        };
        let seq = *seq;
        let done = std::task::ready!(std::pin::Pin::new(rx).poll(cx));
        q.pop_front();
        std::task::Poll::Ready((seq, done))
    })
}

/// What a stream's reads need to know of it.
struct StreamCtx<'a> {
    state: &'a IngestState,
    key: &'a TerminalKey,
    secret_hash: Option<&'a str>,
    clock_behind_ms: Option<i64>,
    rate_window: Duration,
}

/// What one message read from a stream asks of it. Decided without awaiting, so the report never
/// lives in the stream's future across an await.
enum Step {
    /// Nothing to do (a message kind from a newer agent).
    Skip,
    /// The agent closed its side: ack what is queued, then end.
    Closed,
    /// Stop reading; the stream ends with this status once the queued reports are acked.
    EndAfterQueued(Box<Status>),
    /// End the stream now with this status.
    Fail(Status),
    /// Tell the agent this report (seq) is refused, then end the stream with the status.
    Refuse(u64, Status),
    /// Commit this report (seq).
    Commit(u64, Box<ReportCommit>),
}

/// Checks one message read from a stream past its Hello and says what the stream does with it.
fn take_message(
    ctx: &StreamCtx<'_>,
    ident: &mut Option<Box<crate::validate::AgentIdentity>>,
    last_seq_on_stream: &mut u64,
    next: Result<Option<Box<AgentMessage>>, Status>,
) -> Step {
    let StreamCtx {
        state,
        key,
        secret_hash,
        clock_behind_ms,
        rate_window,
    } = *ctx;
    let mut report = match next {
        Ok(None) => return Step::Closed,
        Err(st) => return Step::Fail(inbound_error(state, st)),
        Ok(Some(m)) => match m.body {
            Some(AgentBody::Report(r)) => r,
            Some(AgentBody::Uplink(u)) => {
                // Not a report: nothing to store or ack, and a bad one costs the stream nothing.
                match crate::uplinks::UplinkSeen::parse(&u, crate::clock::now_ms()) {
                    Ok(seen) => state.presence.uplinks.record(key, seen),
                    Err(e) => {
                        // At most two a connection: a warning each is not a flood.
                        tracing::warn!(site = %key.site, terminal = %key.terminal, error = %e, "ignoring an Uplink");
                    }
                }
                return Step::Skip;
            }
            Some(AgentBody::Hello(_)) => {
                state.metrics.reject("bad_hello");
                return Step::Fail(Status::invalid_argument(
                    "Hello may only be the first message of a stream",
                ));
            }
            None => {
                // A message kind from a newer agent: ignore it rather than break the stream.
                tracing::debug!("ignoring an agent message of an unknown kind");
                return Step::Skip;
            }
        },
    };
    let seq = report.seq;
    if let Some(h) = secret_hash {
        if !state.enrollment.still_valid(key, h) {
            let f = crate::enrollment::AuthFailure::Revoked;
            state.metrics.auth_failure(f.label());
            return Step::Fail(Status::unauthenticated(f.message()));
        }
    }
    if let Err(wait) = state
        .rates
        .admit(key, state.limits.max_reports_per_minute, rate_window)
    {
        // Not a bad report: no Rejected, so the agent keeps it and sends it again once the
        // window is over (the pushback says when). Those already queued are acked.
        state.metrics.reject("rate_limited");
        let mut st = Status::resource_exhausted(format!(
            "more than limits.max_reports_per_minute = {} reports in {} s from this terminal; \
             report seq {seq} and later were not read: send them again in {} ms",
            state.limits.max_reports_per_minute,
            rate_window.as_secs(),
            wait.as_millis()
        ));
        if let Ok(v) = wait.as_millis().to_string().parse() {
            st.metadata_mut().insert(RETRY_PUSHBACK, v);
        }
        return Step::EndAfterQueued(Box::new(st));
    }
    if seq <= *last_seq_on_stream {
        state.metrics.reject("out_of_order");
        return Step::Refuse(
            seq,
            Status::failed_precondition(format!(
                "report seq {seq} follows seq {last_seq_on_stream} on this stream: seqs must \
                 strictly increase"
            )),
        );
    }
    let trimmed = validate::trim_lists(&mut report, &state.limits);
    if trimmed > 0 {
        state.metrics.items_trimmed.inc_by(trimmed);
    }
    if let Err(r) = validate::report(&report, &state.limits) {
        state.metrics.reject(r.label());
        return Step::Refuse(seq, rejection_status(&r));
    }
    *last_seq_on_stream = seq;
    let mut commit = Box::new(ReportCommit::new(key, report, ident.take()));
    commit.clock_behind_ms = clock_behind_ms;
    stamp_if_ahead(&mut commit, &state.limits, crate::clock::now_ms());
    Step::Commit(seq, commit)
}

/// A report whose time is more than `limits.max_clock_ahead_secs` ahead of the collector's clock
/// is stored, not refused: its times become the receive time, keeping the round's duration (and
/// it is stored so, for every later reader to agree), and the commit says how far ahead it was
/// (the site's `ntp_skew` detail).
fn stamp_if_ahead(c: &mut ReportCommit, limits: &crate::config::Limits, now_ms: i64) {
    let limit_ms = i64::try_from(limits.max_clock_ahead_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let ahead = c.report.finished_at_ms.saturating_sub(now_ms);
    if ahead > limit_ms {
        let took = c
            .report
            .finished_at_ms
            .saturating_sub(c.report.started_at_ms)
            .max(0);
        c.report.finished_at_ms = now_ms;
        c.report.started_at_ms = now_ms.saturating_sub(took);
        c.finished_at_ms = now_ms;
        c.clock_ahead_ms = Some(ahead);
        c.encoded = c.report.encode_to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a function of four arguments returns, without calling it.
    fn future_size<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every connected agent keeps one `session` future alive for its stream's whole life: at
    /// 10,000 terminals each 100 bytes is 1 MB (README "Memory per terminal"). It was ~3,000
    /// bytes while the Hello's state and three copies of a report lived in it, 896 as async fns;
    /// at 744 tokio's task cell (aligned to 128 bytes) is 896 bytes, where 769 would make it
    /// 1,024. A change that makes it grow past this bound should box what it adds.
    #[test]
    fn a_stream_task_stays_small() {
        let size = future_size(session);
        assert!(size <= 768, "session future is {size} bytes");
    }
}
