//! Hostile input on every `cargo test`: deterministic mutations of the guide's portal pages and of
//! the example config through the page classifier and the config parser (the cargo-fuzz targets
//! in `fuzz/` run the same functions for longer). Never a panic; codes stay `P` + 5 digits.

use oqs_agent::checks::lineauth::classify::Classifier;
use oqs_agent::config::AgentConfig;

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
        let i = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if i < v.len() => v[i] ^= 1 << rng.below(8),
            1 => v.truncate(i),
            2 => v.insert(i, rng.next() as u8),
            _ => {
                // Splice in fragments that matter to the parsers.
                let frags: [&[u8]; 6] = [
                    b"P1",
                    b"\xe3\x82\xa8\xe3\x83\xa9\xe3\x83\xbc",
                    b"<script>",
                    b"[[",
                    b"=\"",
                    b"\xef\xbf\xbd",
                ];
                let f = frags[rng.below(frags.len())];
                v.splice(i..i, f.iter().copied());
            }
        }
    }
    v
}

#[test]
fn mutated_portal_pages_classify_without_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/lineauth");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(seeds.len() >= 8);
    let c = Classifier::default();
    let mut rng = Rng(0x1a_e7_0a_1b);
    for i in 0..10_000 {
        let page = mutate(&mut rng, &seeds[i % seeds.len()]);
        let got = c.classify(&String::from_utf8_lossy(&page));
        if let Some(code) = got.code {
            let s = code.as_str();
            assert!(
                s.len() == 6 && s.starts_with('P') && s[1..].bytes().all(|b| b.is_ascii_digit()),
                "{s}"
            );
        }
    }
}

#[test]
fn mutated_agent_configs_are_errors_never_a_panic() {
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/agent.example.toml"
    ))
    .unwrap();
    let mut rng = Rng(0x0a9e_47c0);
    let mut ok = 0;
    for _ in 0..5_000 {
        let bytes = mutate(&mut rng, &seed);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            ok += usize::from(AgentConfig::from_toml(text).is_ok());
        }
    }
    assert!(ok > 0, "some mutations stay valid configs");
}
