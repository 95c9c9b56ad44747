//! Shared test plumbing: an in-process collector on loopback, a raw protocol client, a tiny HTTP GET.
#![allow(dead_code)]

pub mod api;
use oqs_collector::config::CollectorConfig;
use oqs_collector::server::{self, Running};
use oqs_proto::v1::agent_message::Body as AgentBody;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::fleet_ingest_client::FleetIngestClient;
use oqs_proto::v1::*;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

pub fn config(dir: &Path) -> CollectorConfig {
    CollectorConfig {
        data_dir: dir.to_owned(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..CollectorConfig::default()
    }
}

pub async fn start(dir: &Path) -> Running {
    server::start(config(dir)).await.expect("collector starts")
}

pub async fn channel(grpc: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

pub fn hello(site: &str, terminal: &str) -> Hello {
    Hello {
        protocol_version: 1,
        site_id: site.into(),
        terminal_id: terminal.into(),
        hostname: "OQS-PC".into(),
        agent_version: "test".into(),
        area: Area::East as i32,
        os: "linux".into(),
        boot_id: "boot".into(),
        customer_id: Some("CAF0123456789".into()),
        highest_held_seq: 0,
        highest_acked_seq: 0,
        agent_time_ms: 0,
        boot_time_ms: 0,
        prefecture: Some("東京都".into()),
        site_name: None,
        credential: None,
    }
}

/// Report `seq` of a terminal, the same bytes every time it is made (a replay is a replay):
/// its round time is fixed per test process and seq (a second apart from the first call on).
pub fn report(seq: u64) -> Report {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(oqs_collector::clock::now_ms);
    let at = base + (seq.min(1_000_000) as i64) * 1000;
    Report {
        seq,
        started_at_ms: at - 100,
        finished_at_ms: at,
        ipv6: Some(Ipv6State {
            outcome: Outcome::Ok as i32,
            prefix: "2408:210:1:2::/64".into(),
            addresses: vec![Ipv6Address {
                interface: "eth0".into(),
                address: format!("2408:210:1:2::{seq:x}"),
                prefix_len: 64,
                kind: AddressKind::Global as i32,
                deprecated: false,
            }],
            has_default_route: true,
            ..Default::default()
        }),
        dns: vec![DnsProbe {
            outcome: Outcome::Ok as i32,
            name: "www.lineauth.mnw".into(),
            record_type: RecordType::Aaaa as i32,
            role: ResolverRole::System as i32,
            server: "system".into(),
            rcode: "NOERROR".into(),
            answers: vec!["2404:1a8:f583:af0::1".into()],
            latency_ms: 4,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn msg_hello(h: Hello) -> AgentMessage {
    AgentMessage {
        body: Some(AgentBody::Hello(h)),
    }
}

pub fn msg_report(r: Report) -> AgentMessage {
    AgentMessage {
        body: Some(AgentBody::Report(r)),
    }
}

/// One agent stream: a sender of agent messages and the collector's answers.
pub struct AgentStream {
    pub tx: mpsc::Sender<AgentMessage>,
    pub rx: Streaming<CollectorMessage>,
}

impl AgentStream {
    /// Opens a stream and sends `first` (normally a Hello).
    pub async fn open(channel: Channel, first: AgentMessage) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(1024);
        tx.send(first).await.unwrap();
        let resp = FleetIngestClient::new(channel)
            .max_encoding_message_size(64 * 1024 * 1024)
            .connect(ReceiverStream::new(rx))
            .await?;
        Ok(Self {
            tx,
            rx: resp.into_inner(),
        })
    }

    /// Opens with a Hello and returns the Welcome's last_stored_seq.
    pub async fn hello(channel: Channel, h: Hello) -> (Self, u64) {
        let mut s = Self::open(channel, msg_hello(h))
            .await
            .expect("stream opens");
        match s.next().await {
            Ok(Some(CollectorBody::Welcome(w))) => {
                let last = w.last_stored_seq;
                (s, last)
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&self, r: Report) {
        self.tx.send(msg_report(r)).await.expect("stream open");
    }

    /// The next message body, with a timeout so a broken collector fails the test, not hangs it.
    pub async fn next(&mut self) -> Result<Option<CollectorBody>, tonic::Status> {
        match tokio::time::timeout(Duration::from_secs(20), self.rx.message()).await {
            Ok(r) => r.map(|m| m.and_then(|m| m.body)),
            Err(_) => panic!("no message from the collector within 20 s"),
        }
    }

    /// Reads until an Ack arrives; panics on anything else.
    pub async fn ack(&mut self) -> Ack {
        match self.next().await {
            Ok(Some(CollectorBody::Ack(a))) => a,
            other => panic!("expected Ack, got {other:?}"),
        }
    }

    /// Reads until the stream ends in an error status; returns it and any Rejected seen before.
    pub async fn error(&mut self) -> (tonic::Status, Vec<Rejected>) {
        let mut rejected = Vec::new();
        loop {
            match self.next().await {
                Ok(Some(CollectorBody::Rejected(r))) => rejected.push(r),
                Ok(Some(_)) => {}
                Ok(None) => panic!("stream ended without an error status"),
                Err(st) => return (st, rejected),
            }
        }
    }
}

/// GET over plain HTTP/1.1; returns (status, body).
pub async fn get(http: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = get_with(http, path, &[]).await;
    (status, body)
}

/// GET with extra request headers; returns (status, response head, body).
pub async fn get_with(
    http: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    request_raw(http, "GET", path, headers).await
}

/// Any method with extra request headers (a `Host` among them replaces the default, the address),
/// through reqwest; returns (status, response head as `name: value` lines, body).
pub async fn request_raw(
    http: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("http://{http}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in res.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    let body = res.text().await.unwrap();
    (status, head, body)
}

pub async fn get_json(http: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(http, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `sites` simulated sites of one terminal each sending `reports` reports 10 ms apart (the
/// simulator's `scenario`, ids `{prefix}00000`…), every one acknowledged.
pub async fn sim_fleet(
    c: &Running,
    scenario: oqs_fleet_sim::scenario::Scenario,
    sites: usize,
    reports: u64,
    prefix: &str,
) {
    let opts = oqs_fleet_sim::SimOptions {
        collector: format!("http://{}", c.grpc_addr),
        sites,
        reports,
        interval: Duration::from_millis(10),
        scenario,
        site_prefix: prefix.into(),
        terminals_per_site: 1,
        ..oqs_fleet_sim::SimOptions::default()
    };
    let s = oqs_fleet_sim::run(opts, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert!(s.all_acked(), "{scenario}: {s} {:?}", s.errors);
}

/// The value of an unlabelled metric (or a labelled series written out in full).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {series} not found"))
        .trim()
        .parse()
        .unwrap()
}

/// Connects to `addr`, sends `sent`, then reads until the server closes: (closed, how long after
/// sending). Gives up after 5 s (not closed). Blocking: call from a blocking thread.
pub fn closed_after_sending(
    addr: std::net::SocketAddr,
    sent: &[u8],
) -> (bool, std::time::Duration) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(sent).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return (true, started.elapsed()),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (false, started.elapsed())
            }
            Err(_) => return (true, started.elapsed()),
        }
    }
}

/// Last month (Japan time), with a known story for site `{prefix}00000` (the simulator's site 0):
/// healthy from 00:00 on the 1st, IPv6 lost from 10:00 on the 2nd (raised on the second report
/// without it, 10:10) until healthy again (cleared on the second healthy report, 12:10), healthy
/// an hour before the month's end; closed every Sunday (set through the API). Returns the month
/// and the minutes the outage lasted (120).
pub async fn last_month_with_one_outage(
    c: &Running,
    prefix: &str,
) -> (oqs_collector::availability::Month, f64) {
    use oqs_collector::availability::Month;
    use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};
    let now = oqs_collector::clock::now_ms();
    let month = Month::of(Month::of(now).bounds().0 - 1);
    let (start, end) = month.bounds();
    let healthy = SiteProfile::new(0, prefix, Scenario::Healthy, 1);
    let down = SiteProfile::new(0, prefix, Scenario::Ipv6Missing, 1);
    const MIN: i64 = 60_000;
    let day = 1440 * MIN;
    let plan: [(&SiteProfile, i64); 9] = [
        (&healthy, 0),
        (&healthy, 10 * MIN),
        (&healthy, 20 * MIN),
        (&down, day + 600 * MIN),
        (&down, day + 610 * MIN),
        (&down, day + 620 * MIN),
        (&healthy, day + 720 * MIN),
        (&healthy, day + 730 * MIN),
        (&healthy, end - start - 60 * MIN),
    ];
    let (mut s, last) = AgentStream::hello(
        channel(c.grpc_addr).await,
        oqs_fleet_sim::hello(&healthy, 0),
    )
    .await;
    assert_eq!(last, 0);
    for (i, (profile, at)) in plan.iter().enumerate() {
        let seq = i as u64 + 1;
        s.send(report(profile, 0, seq, seq, start + at)).await;
        assert_eq!(s.ack().await.seq, seq);
    }
    let http = c.http_addr;
    let req = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .put(format!("http://{http}/api/sites/{prefix}00000/maintenance"))
        .header("content-type", "application/json")
        .body(r#"{"closed":[{"day":"sun"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(req.status().as_u16(), 200);
    (month, 120.0)
}
