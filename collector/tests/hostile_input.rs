//! Hostile input on every `cargo test`: thousands of deterministic mutations (bit flips, cuts,
//! splices, repeated bytes) of real inputs fed through the collector's parsers and validators —
//! the same functions the cargo-fuzz targets in `fuzz/` exercise for longer. Each must answer with
//! an error or a value, never panic. Regressions found by fuzzing are added as named cases below.

mod common;

use oqs_collector::config::{CollectorConfig, Limits};
use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};
use oqs_proto::v1::{Hello, Report};
use prost::Message;

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if v.len() > 2 => {
                let a = rng.below(v.len());
                let b = rng.below(v.len());
                let (a, b) = (a.min(b), a.max(b));
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let b = rng.next() as u8;
                v.splice(i..i, std::iter::repeat_n(b, rng.below(64)));
            }
        }
    }
    v
}

#[test]
fn mutated_reports_and_hellos_are_refused_or_accepted_never_a_panic() {
    let limits = Limits::default();
    let now = oqs_collector::clock::now_ms();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for sc in Scenario::ALL {
        let site = SiteProfile::new(3, "h", sc, 1);
        seeds.push(report(&site, 0, 2, 3, now).encode_to_vec());
    }
    let mut rng = Rng(0x0051_5ca1_ab1e);
    let mut accepted = 0;
    for i in 0..20_000 {
        let seed = &seeds[i % seeds.len()];
        let bytes = mutate(&mut rng, seed);
        if let Ok(h) = Hello::decode(bytes.as_slice()) {
            let _ = oqs_collector::validate::hello(&h);
        }
        if let Ok(r) = Report::decode(bytes.as_slice()) {
            if oqs_collector::validate::report(&r, &limits).is_ok() {
                accepted += 1;
                let _ = oqs_collector::samples::samples(&r);
                let _ = oqs_guide::diagnosis::diagnose(&r, "https://www.lineauth.mnw/");
                let mut engine = oqs_collector::flags::Engine::new(Default::default(), 1);
                let mut st = oqs_collector::flags::SiteState::default();
                engine.on_report(&mut st, "pc-1", &r, now);
            }
        }
    }
    assert!(
        accepted > 100,
        "the mutations still reach the deep code: {accepted}"
    );
}

#[test]
fn mutated_collector_configs_are_errors_never_a_panic() {
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/collector.example.toml"
    ))
    .unwrap();
    let mut rng = Rng(0xc0_11ec_7012);
    for _ in 0..5_000 {
        let bytes = mutate(&mut rng, &seed);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(c) = CollectorConfig::from_toml(text) {
                let _ = c.validate();
            }
        }
    }
}

/// Query strings are untrusted too: mutated paths and parameters of every read endpoint answer
/// 200, 400 or 404 with a body — never a panic (a dropped connection) or a 500. Non-printable and
/// non-ASCII bytes are percent-encoded, so they reach the handlers' parsers as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_api_queries_are_answered_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::start(dir.path()).await;
    let (mut agent, _) = common::AgentStream::hello(
        common::channel(c.grpc_addr).await,
        common::hello("clinic-h", "pc-1"),
    )
    .await;
    agent.send(common::report(1)).await;
    agent.ack().await;
    let seeds = [
        "/api/sites?flag=dns_failing&area=east&prefecture=%E6%9D%B1%E4%BA%AC%E9%83%BD&q=clinic&state=flagged&offset=0&limit=50",
        "/api/sites/clinic-h",
        "/api/sites/clinic-h/history?check=dns&from=2026-11-25T06:47:51%2B09:00&to=1795589271123&terminal=pc-1",
        "/api/events?site=clinic-h&since=2026-11-25T06:47:51.123Z&limit=10",
    ];
    // Regressions: a multi-byte character inside a time's offset split a byte slice.
    for path in [
        "/api/sites/clinic-h/history?check=dns&from=2026-11-25T06:47:51%2B0%C3%A900",
        "/api/sites/clinic-h/history?check=dns&to=2026-11-25T06:47:51-0%E6%99%8200",
        "/api/events?since=2026-11-25T06:47:51%2B0%C3%A900",
    ] {
        let (status, body) = common::get(c.http_addr, path).await;
        assert_eq!(status, 400, "GET {path}: {body}");
        assert!(body.contains("RFC 3339"), "{body}");
    }
    let mut rng = Rng(0x0a9e_5eed);
    for i in 0..400 {
        let seed = seeds[i % seeds.len()].as_bytes();
        let bytes = mutate(&mut rng, seed);
        let mut path = String::from("/");
        for b in bytes.iter().skip(1) {
            if b.is_ascii_graphic() && *b != b'#' {
                path.push(*b as char);
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
        let (status, body) = common::get(c.http_addr, &path).await;
        assert!(
            matches!(status, 200 | 400 | 404 | 405),
            "GET {path}: {status} {body}"
        );
    }
    drop(agent);
    c.stop().await.unwrap();
}
