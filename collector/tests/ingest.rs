//! End-to-end ingest against an in-process collector on loopback: acks mean stored, replays are
//! duplicates, bad input gets the right gRPC status and stores nothing.

mod common;

use common::*;
use oqs_collector::store::{Store, TerminalKey};
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::{AgentMessage, Area};
use tonic::Code;

#[tokio::test]
async fn hundred_reports_are_acked_in_order_and_visible_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, last) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-a", "pc-1")).await;
    assert_eq!(last, 0);
    let sent: Vec<_> = (1..=100).map(report).collect();
    for r in &sent {
        s.send(r.clone()).await;
    }
    for seq in 1..=100 {
        let a = s.ack().await;
        assert_eq!((a.seq, a.duplicate), (seq, false));
    }
    let site = get_json(c.http_addr, "/api/sites/clinic-a").await;
    let t = &site["terminals"][0];
    assert_eq!(t["terminal_id"], "pc-1");
    assert_eq!(t["last_seq"], 100);
    assert_eq!(t["reports_total"], 100);
    assert_eq!(t["connected"], true);
    assert!(t["last_report_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        site["customer_id"], "CAF*******789",
        "customer IDs leave masked"
    );
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 1);
    assert_eq!(sites["sites"][0]["site_id"], "clinic-a");
    assert_eq!(sites["sites"][0]["terminal_count"], 1);
    assert_eq!(sites["sites"][0]["flags"], serde_json::json!([]));
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_reports_ingested_total"), 100.0);
    assert_eq!(metric(&m, "oqs_agents_connected"), 1.0);

    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let site = get_json(c.http_addr, "/api/sites/clinic-a").await;
    assert_eq!(site["terminals"][0]["connected"], false);
    c.stop().await.unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = TerminalKey::new("clinic-a", "pc-1");
    assert_eq!(store.count_reports(&key).unwrap(), 100);
    for r in &sent {
        assert_eq!(
            store
                .report(&key, r.seq)
                .unwrap()
                .as_ref()
                .and_then(|s| s.full()),
            Some(r),
            "seq {}",
            r.seq
        );
    }
}

#[tokio::test]
async fn replays_are_acked_as_duplicates_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("clinic-b", "pc-1")).await;
    for seq in 1..=10 {
        s.send(report(seq)).await;
        s.ack().await;
    }
    drop(s);
    // Reconnect and replay everything, plus two new ones.
    let (mut s, last) = AgentStream::hello(ch, hello("clinic-b", "pc-1")).await;
    assert_eq!(last, 10, "Welcome tells the agent what is already stored");
    for seq in 1..=12 {
        s.send(report(seq)).await;
    }
    for seq in 1..=12 {
        let a = s.ack().await;
        assert_eq!((a.seq, a.duplicate), (seq, seq <= 10));
    }
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_reports_duplicate_total"), 10.0);
    assert_eq!(metric(&m, "oqs_reports_ingested_total"), 12.0);
    let site = get_json(c.http_addr, "/api/sites/clinic-b").await;
    assert_eq!(site["terminals"][0]["reports_total"], 12);
    drop(s);
    c.stop().await.unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .count_reports(&TerminalKey::new("clinic-b", "pc-1"))
            .unwrap(),
        12
    );
}

#[tokio::test]
async fn two_terminals_of_one_site_and_two_sites_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    for (site, term) in [("s1", "pc-1"), ("s1", "pc-2"), ("s2", "pc-1")] {
        let (mut s, _) = AgentStream::hello(ch.clone(), hello(site, term)).await;
        for seq in 1..=3 {
            s.send(report(seq)).await;
            assert!(!s.ack().await.duplicate, "{site}/{term} seq {seq}");
        }
    }
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 2);
    assert_eq!(sites["sites"][0]["terminal_count"], 2);
    assert_eq!(sites["sites"][1]["terminal_count"], 1);
    c.stop().await.unwrap();
}

async fn rejected_total(c: &oqs_collector::server::Running, reason: &str) -> f64 {
    let (_, m) = get(c.http_addr, "/metrics").await;
    metric(
        &m,
        &format!("oqs_reports_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn a_first_message_that_is_not_hello_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_report(report(1)))
        .await
        .unwrap();
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("must be Hello"), "{}", st.message());
    assert_eq!(rejected_total(&c, "no_hello").await, 1.0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_protocol_version_is_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut h = hello("s", "t");
    h.protocol_version = 2;
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_hello(h))
        .await
        .unwrap();
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert!(
        st.message().contains("protocol_version 2"),
        "{}",
        st.message()
    );
    assert_eq!(rejected_total(&c, "protocol_version").await, 1.0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn bad_identities_are_invalid_argument_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let mut cases = Vec::new();
    let mut h = hello("bad site", "t");
    cases.push((h.clone(), "site_id"));
    h = hello("s", &"t".repeat(65));
    cases.push((h.clone(), "terminal_id"));
    h = hello("s", "t");
    h.area = Area::West as i32;
    h.customer_id = Some("COP01234567".into());
    cases.push((h.clone(), "customer_id"));
    h = hello("s", "t");
    h.area = 9;
    cases.push((h, "area"));
    for (h, field) in cases {
        let mut s = AgentStream::open(ch.clone(), msg_hello(h)).await.unwrap();
        let (st, _) = s.error().await;
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().contains(field), "{field}: {}", st.message());
        assert!(
            !st.message().contains("01234567"),
            "no full customer ID in errors"
        );
    }
    assert_eq!(rejected_total(&c, "bad_hello").await, 4.0);
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 0, "nothing stored for refused streams");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_message_bytes = 4096;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("s", "t")).await;
    let mut r = report(1);
    r.dns = vec![r.dns[0].clone(); 200];
    s.send(r).await;
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(
        st.message().contains("max_message_bytes = 4096"),
        "{}",
        st.message()
    );
    assert_eq!(rejected_total(&c, "too_large").await, 1.0);
    let site = get_json(c.http_addr, "/api/sites/s").await;
    assert_eq!(site["terminals"][0]["reports_total"], 0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_invalid_report_is_rejected_by_seq_and_nothing_of_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("s", "t")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    let mut bad = report(2);
    bad.dns[0].answers = vec!["not an address".into()];
    s.send(bad).await;
    let (st, rejected) = s.error().await;
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("dns[0].answers[0]"),
        "{}",
        st.message()
    );
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].seq, 2, "the agent learns which report to drop");
    assert_eq!(rejected_total(&c, "invalid_report").await, 1.0);
    let site = get_json(c.http_addr, "/api/sites/s").await;
    assert_eq!(site["terminals"][0]["last_seq"], 1);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn out_of_order_seqs_are_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    // Within a stream.
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("s", "t")).await;
    s.send(report(5)).await;
    assert_eq!(s.ack().await.seq, 5);
    s.send(report(4)).await;
    let (st, rejected) = s.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert!(
        st.message().contains("strictly increase"),
        "{}",
        st.message()
    );
    assert_eq!(rejected[0].seq, 4);
    // Across streams: seq 3 was never stored and 5 already is.
    let (mut s, last) = AgentStream::hello(ch, hello("s", "t")).await;
    assert_eq!(last, 5);
    s.send(report(3)).await;
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert!(
        st.message().contains("seqs must increase"),
        "{}",
        st.message()
    );
    assert_eq!(rejected_total(&c, "out_of_order").await, 2.0);
    c.stop().await.unwrap();
}

/// A message whose bytes are not a valid `AgentMessage`: field 1 (Hello) carries garbage.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "1")]
    hello: Vec<u8>,
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut grpc = tonic::client::Grpc::new(channel(c.grpc_addr).await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Garbage, oqs_proto::v1::CollectorMessage>::default();
    let req = tonic::Request::new(tokio_stream::iter(vec![Garbage {
        hello: vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x02],
    }]));
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/oqs.fleet.v1.FleetIngest/Connect");
    let st = match grpc.streaming(req, path, codec).await {
        Err(st) => st,
        Ok(resp) => {
            let mut rx = resp.into_inner();
            loop {
                match rx.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("stream ended without an error"),
                    Err(st) => break st,
                }
            }
        }
    };
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("malformed"), "{}", st.message());
    assert_eq!(rejected_total(&c, "malformed").await, 1.0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_message_kinds_from_newer_agents_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("s", "t")).await;
    s.tx.send(AgentMessage { body: None }).await.unwrap();
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "oqs.fleet.v1.FleetIngest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut rx = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = rx.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"oqs.fleet.v1.FleetIngest"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn api_answers_404_for_unknown_sites_and_400_for_bad_ids() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (st, body) = get(c.http_addr, "/api/sites/nobody").await;
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("never reported"));
    let (st, body) = get(c.http_addr, "/api/sites/bad%20id").await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("site_id"));
    let (st, body) = get(c.http_addr, "/healthz").await;
    assert_eq!((st, body.trim()), (200, "ok"));
    let (st, body) = get(c.http_addr, "/").await;
    assert_eq!(st, 200);
    assert!(body.contains("/api/sites"));
    c.stop().await.unwrap();
}

#[tokio::test]
async fn welcome_is_the_first_answer_to_hello() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_hello(hello("s", "t")))
        .await
        .unwrap();
    assert!(matches!(
        s.next().await,
        Ok(Some(CollectorBody::Welcome(_)))
    ));
    c.stop().await.unwrap();
}
