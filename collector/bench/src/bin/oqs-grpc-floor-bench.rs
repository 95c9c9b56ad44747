//! `oqs-grpc-floor-bench`: the memory floor of the gRPC stack under `tests/bench/ingest`'s load.
//!
//! A `FleetIngest` server with the collector's transport settings (tonic, hyper, h2, the lean
//! codec, jemalloc) that answers `Hello` with `Welcome` and every `Report` with its `Ack` and does
//! nothing else: no validation, no store, no flags. Driven by `oqs-fleet-sim` like the real
//! collector (`COLLECTOR_BIN=oqs-grpc-floor-bench ONLY=steady tests/bench/ingest`), its peak RSS is what
//! one connection per terminal costs before the collector does any work — the part of the ingest
//! benchmark's memory figure no collector change can remove. It must never be used as a collector:
//! it acknowledges reports it does not keep.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_server::{FleetIngest, FleetIngestServer};
use oqs_proto::v1::{Ack, AgentMessage, CollectorMessage, Welcome};
use std::pin::Pin;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Answers like the collector, keeps nothing.
struct Floor;

type Answers = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl FleetIngest for Floor {
    type ConnectStream = Answers;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Answers>, Status> {
        // The answers are a map over the inbound stream: no task, no channel, nothing per stream
        // but what tonic and h2 hold themselves.
        let answers = request.into_inner().filter_map(|message| {
            let body = match message.ok()?.body? {
                AgentBody::Hello(_) => CollectorBody::Welcome(Welcome {
                    last_stored_seq: 0,
                    max_message_bytes: 1 << 20,
                    max_addresses: 0,
                    max_list_items: 0,
                    terminal_secret: String::new(),
                }),
                AgentBody::Report(report) => CollectorBody::Ack(Ack {
                    seq: report.seq,
                    duplicate: false,
                }),
                // Not answered, as the collector does not answer it.
                AgentBody::Uplink(_) => return None,
            };
            Some(Ok(CollectorMessage { body: Some(body) }))
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Takes the collector's `--grpc-listen ADDR` and ignores its other flags, so the bench script
    // can start either binary the same way.
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--grpc-listen")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    // Same shape of line as the collector's, so the bench scripts can read the address.
    println!("ready grpc={} http=none", listener.local_addr()?);
    oqs_collector::server::grpc_transport(tonic::transport::Server::builder())
        .add_service(FleetIngestServer::new(Floor))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving gRPC")
}
