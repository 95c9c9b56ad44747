//! A collector the test scripts: it welcomes, stores and acks like the real one, but refuses the
//! reports it is told to refuse (`Rejected`, then an error status, as the real one does) and
//! pushes the configuration updates it is given — what a real collector would never send (it
//! checks the NOC's updates first), so the agent's own checks can be seen working.

use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_server::{FleetIngest, FleetIngestServer};
use oqs_proto::v1::*;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

#[derive(Default)]
pub struct Script {
    /// What it stored (and acked), by seq.
    pub stored: BTreeMap<u64, Report>,
    /// Every report seq received, in order (retries included).
    pub received: Vec<u64>,
    /// seq → how many more times to refuse it.
    pub refuse: HashMap<u64, u32>,
    /// Refuse every report with a seq at or above this, whatever it says (a systemic refusal).
    pub refuse_from: Option<u64>,
    /// Sent after the Welcome of every stream.
    pub config_update: Option<ConfigUpdate>,
    /// How many streams to take and never answer (no Welcome, the stream held open): a
    /// collector or middlebox that hangs.
    pub silent_streams: u32,
    /// Hellos received.
    pub hellos: u32,
}

pub const REASON: &str = "report seq N: ntp has 9 entries; the limit is 8";

pub struct FakeCollector {
    pub addr: SocketAddr,
    pub script: Arc<Mutex<Script>>,
    stop: CancellationToken,
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Service(Arc<Mutex<Script>>);

#[tonic::async_trait]
impl FleetIngest for Service {
    type ConnectStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn connect(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let script = self.0.clone();
        tokio::spawn(async move {
            let msg = |b| Ok(CollectorMessage { body: Some(b) });
            match inbound.next().await {
                Some(Ok(AgentMessage {
                    body: Some(AgentBody::Hello(_)),
                })) => {}
                _ => return,
            }
            let silent = {
                let mut s = script.lock().unwrap();
                s.hellos += 1;
                let silent = s.silent_streams > 0;
                s.silent_streams = s.silent_streams.saturating_sub(1);
                silent
            };
            if silent {
                // Holds `tx`: the stream stays open, unanswered, until the agent gives it up.
                while let Some(Ok(_)) = inbound.next().await {}
                drop(tx);
                return;
            }
            let (last, update) = {
                let s = script.lock().unwrap();
                (
                    s.stored.keys().next_back().copied().unwrap_or(0),
                    s.config_update.clone(),
                )
            };
            let welcome = Welcome {
                last_stored_seq: last,
                max_message_bytes: 256 * 1024,
                max_addresses: 64,
                max_list_items: 64,
                ..Default::default()
            };
            if tx.send(msg(CollectorBody::Welcome(welcome))).await.is_err() {
                return;
            }
            if let Some(u) = update {
                let _ = tx.send(msg(CollectorBody::ConfigUpdate(u))).await;
            }
            while let Some(Ok(m)) = inbound.next().await {
                let Some(AgentBody::Report(r)) = m.body else {
                    continue;
                };
                let seq = r.seq;
                let refuse = {
                    let mut s = script.lock().unwrap();
                    s.received.push(seq);
                    let once = match s.refuse.get_mut(&seq) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    };
                    let refuse = once || s.refuse_from.is_some_and(|f| seq >= f);
                    if !refuse {
                        s.stored.insert(seq, r);
                    }
                    refuse
                };
                if refuse {
                    let _ = tx
                        .send(msg(CollectorBody::Rejected(Rejected {
                            seq,
                            reason: REASON.into(),
                        })))
                        .await;
                    let _ = tx.send(Err(Status::invalid_argument(REASON))).await;
                    return;
                }
                if tx
                    .send(msg(CollectorBody::Ack(Ack {
                        seq,
                        duplicate: false,
                    })))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl FakeCollector {
    pub async fn start(script: Script) -> FakeCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script));
        let stop = CancellationToken::new();
        let svc = FleetIngestServer::new(Service(script.clone()));
        let s = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    s.cancelled_owned(),
                ),
        );
        FakeCollector { addr, script, stop }
    }

    /// Waits (at most `secs`) until `done` holds of the script; returns whether it did.
    pub async fn until(&self, secs: u64, done: impl Fn(&Script) -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if done(&self.script.lock().unwrap()) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
