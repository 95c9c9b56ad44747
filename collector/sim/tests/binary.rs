//! The `oqs-fleet-sim` binary: its exit status tells success from failure against a real
//! collector, and `--help` lists every scenario of the scenario table with what it simulates.

use oqs_fleet_sim::scenario::Scenario;
use std::process::Command;

#[test]
fn help_lists_every_scenario_with_what_it_simulates() {
    let out = Command::new(env!("CARGO_BIN_EXE_oqs-fleet-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for s in Scenario::ALL {
        let line = help
            .lines()
            .find(|l| {
                l.trim_start()
                    .trim_start_matches("- ")
                    .starts_with(&format!("{}:", s.name()))
            })
            .unwrap_or_else(|| panic!("--help does not list {s}:\n{help}"));
        let first_words: String = s
            .about()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains(&first_words),
            "{s}: {line:?} vs {:?}",
            s.about()
        );
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_oqs-fleet-sim"))
        .args(["--scenario", "nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("dns-table"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_binary_exits_zero_only_when_every_report_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let c = oqs_collector::server::start(oqs_collector::config::CollectorConfig {
        data_dir: dir.path().to_owned(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("collector starts");
    let sim = env!("CARGO_BIN_EXE_oqs-fleet-sim");
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(sim)
                .args(["--collector", &url, "--sites", "3", "--reports", "2"])
                .args([
                    "--interval-ms",
                    "10",
                    "--scenario",
                    "mixed",
                    "--ack-timeout-secs",
                    "5",
                ])
                .output()
                .unwrap()
        })
    };
    let ok = run(format!("http://{}", c.grpc_addr)).await.unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("acked=") && out.contains("p99="), "{out}");
    c.stop().await.unwrap();
    // Nobody listening: connect fails, nothing acked, exit 1.
    let bad = run("http://127.0.0.1:9".into()).await.unwrap();
    assert_eq!(bad.status.code(), Some(1));
}
