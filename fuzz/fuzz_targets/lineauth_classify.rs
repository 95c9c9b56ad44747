//! The line-auth page classifier on arbitrary bytes (pages come from the network).
#![no_main]
use libfuzzer_sys::fuzz_target;
use oqs_agent::checks::lineauth::classify::Classifier;

fuzz_target!(|data: &[u8]| {
    let page = String::from_utf8_lossy(data);
    let c = Classifier::default().classify(&page);
    // Whatever the page, a code is P + 5 digits and the excerpt stays short.
    if let Some(code) = &c.code {
        let s = code.as_str();
        assert!(s.len() == 6 && s.starts_with('P') && s[1..].bytes().all(|b| b.is_ascii_digit()));
    }
});
