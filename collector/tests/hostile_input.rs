//! Hostile input on every `cargo test`: thousands of deterministic mutations (bit flips, cuts,
//! splices, repeated bytes) of real inputs fed through the collector's parsers and validators —
//! the same functions the cargo-fuzz targets in `fuzz/` exercise for longer. Each must answer with
//! an error or a value, never panic. Regressions found by fuzzing are added as named cases below.

use oqs_collector::config::{CollectorConfig, Limits};
use oqs_collector::sim::scenario::{report, Scenario, SiteProfile};
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
            if oqs_collector::validate::report(&r, &limits, now).is_ok() {
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
