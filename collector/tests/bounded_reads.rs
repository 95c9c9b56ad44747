//! Reads are bounded (issue "true alarms", item 16): a terminal sending large reports (~200 KB of
//! DNS answers each, every one a change) makes history answers of small chart points, not of its
//! details (those come one point at a time, `…/history/point`); the site page cuts check details
//! larger than their share of `history.max_answer_bytes`; the event log keeps its newest within
//! the bytes and says truncated; and any other answer over the limit is refused, never sent.

mod common;

use common::api::Api;
use common::*;
use oqs_collector::committer::ReportCommit;
use oqs_collector::store::TerminalKey;
use oqs_proto::v1::{DnsProbe, Outcome, RecordType, ResolverRole};

/// Report `seq` with 100 DNS probes of 50 answers each (~200 KB), different every time.
fn large(seq: u64) -> oqs_proto::v1::Report {
    let mut r = report(seq);
    r.dns = (0..100u32)
        .map(|i| DnsProbe {
            outcome: Outcome::Ok as i32,
            name: format!("n{i}.pweb.base.oqs-pdl.org"),
            record_type: RecordType::Aaaa as i32,
            role: if i % 2 == 0 {
                ResolverRole::System
            } else {
                ResolverRole::NwBase
            } as i32,
            server: if i % 2 == 0 {
                "system".into()
            } else {
                "2404:1a8:f583:d00::53:1".into()
            },
            rcode: "NOERROR".into(),
            answers: (0..50u64)
                .map(|a| format!("2408:210:9c0:{seq:x}:{i:x}:{a:x}:abcd:ef01"))
                .collect(),
            latency_ms: 5 + i,
            ..Default::default()
        })
        .collect();
    r
}

async fn commit(api: &Api, key: &TerminalKey, r: oqs_proto::v1::Report, first: bool) {
    let ident = first.then(|| {
        Box::new(oqs_collector::validate::hello(&hello(&key.site, &key.terminal)).unwrap())
    });
    api.core
        .committer
        .report(ReportCommit::new(key, r, ident))
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_reports_make_small_history_answers_and_every_answer_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.history.max_answer_bytes = 256 * 1024;
    let api = Api::open_with(cfg).await;
    let key = TerminalKey::new("big-1", "pc-1");
    for seq in 1..=30 {
        let r = large(seq);
        assert!(prost::Message::encoded_len(&r) > 150_000);
        commit(&api, &key, r, seq == 1).await;
    }

    // 30 points of ~200 KB details: the chart's answer carries their state, not the details.
    let (status, body) = api.get("/api/sites/big-1/history?check=dns&from=0").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.len() < 120_000,
        "history answer of {} bytes",
        body.len()
    );
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 30, "every point, none cut");
    assert_eq!(h["truncated"], false);
    let series = points[29]["state"]["series"].as_array().unwrap();
    assert!(!series.is_empty() && series.len() <= 32, "{}", series.len());
    // One point whole, on demand.
    let p = &points[29];
    let (status, whole) = api
        .get(&format!(
            "/api/sites/big-1/history/point?check=dns&terminal=pc-1&at_ms={}&seq={}",
            p["at_ms"], p["seq"]
        ))
        .await;
    assert_eq!(status, 200);
    assert!(whole.len() > 150_000, "the details: {} bytes", whole.len());

    // The site page: the dns detail is larger than its share of the answer's bytes.
    let (status, page) = api.get("/api/sites/big-1").await;
    assert_eq!(status, 200);
    assert!(
        page.len() <= 256 * 1024,
        "site page of {} bytes",
        page.len()
    );
    let page: serde_json::Value = serde_json::from_str(&page).unwrap();
    let dns = page["terminals"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "dns")
        .unwrap()
        .clone();
    assert!(
        dns["detail"]["omitted_bytes"].as_u64().unwrap() > 150_000,
        "{dns}"
    );

    // Many terminals: the inventory of them all is over the limit and is refused, naming it; a
    // page of it is not.
    for i in 0..1000 {
        commit(
            &api,
            &TerminalKey::new(&format!("inv-{i:04}"), "pc-1"),
            report(1),
            true,
        )
        .await;
    }
    let (status, body) = api.get("/api/inventory?limit=5000").await;
    assert_eq!(status, 500, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("history.max_answer_bytes"), "{body}");
    let (status, _) = api.get("/api/inventory?limit=100").await;
    assert_eq!(status, 200);

    // The event log's newest within the bytes, said truncated.
    let (status, body) = api.get("/api/events?limit=20000").await;
    assert_eq!(status, 200);
    assert!(body.len() <= 256 * 1024);
    api.close().await;
}

/// A window longer than the answer's bytes keeps its newest points and says from when it is
/// complete, like one longer than `max_points_per_query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_longer_than_the_answer_bytes_keeps_its_newest_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.history.max_answer_bytes = 64 * 1024;
    let api = Api::open_with(cfg).await;
    let key = TerminalKey::new("big-2", "pc-1");
    for seq in 1..=80 {
        commit(&api, &key, large(seq), seq == 1).await;
    }
    let (status, body) = api.get("/api/sites/big-2/history?check=dns&from=0").await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    assert!(body.len() <= 64 * 1024, "{} bytes", body.len());
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["truncated"], true);
    let points = h["points"].as_array().unwrap();
    assert!(points.len() < 80 && !points.is_empty(), "{}", points.len());
    assert_eq!(points.last().unwrap()["seq"], 80, "the newest kept");
    assert_eq!(h["complete_from"], points[0]["at"]);
    api.close().await;
}
