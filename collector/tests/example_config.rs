//! The shipped example config parses and equals the built-in defaults, so the documentation
//! cannot drift from the code.

use oqs_collector::config::CollectorConfig;

#[test]
fn shipped_example_config_is_the_defaults() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/collector.example.toml"
    );
    let c = CollectorConfig::from_file(std::path::Path::new(path)).unwrap();
    assert_eq!(c, CollectorConfig::default());
}
