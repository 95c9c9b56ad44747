//! The agent's config parser on arbitrary text: an error or a valid config, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = oqs_agent::config::AgentConfig::from_toml(text);
    }
});
