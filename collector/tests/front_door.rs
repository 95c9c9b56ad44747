//! The README's two commands keep working: `cargo run --release -p oqs-collector -- --demo` needs
//! the collector to be the package's default binary, and `.ci/run` must run the README's test
//! command.

fn read(rel: &str) -> String {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_collector_is_what_cargo_run_starts() {
    let manifest = read("collector/Cargo.toml");
    assert!(
        manifest.contains("default-run = \"oqs-collector\""),
        "collector/Cargo.toml needs default-run, or `cargo run -p oqs-collector` cannot choose"
    );
}

#[test]
fn readme_and_ci_run_the_same_test_command() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    assert!(readme.contains("cargo run --release -p oqs-collector -- --demo"));
    assert!(readme.contains("    cargo test --workspace\n"));
    assert!(
        ci.lines()
            .any(|l| l.contains("{ cargo test --workspace; }")),
        "{ci}"
    );
}

#[test]
fn a_non_loopback_grpc_address_without_tls_is_refused_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oqs-collector"))
        .args(["--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("grpc_listen") && err.contains("clear text") && err.contains("--insecure"),
        "{err}"
    );
}
