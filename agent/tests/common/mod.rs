//! Shared plumbing of the daemon tests: the real `oqs-agent run` as a child process that is killed
//! when the test ends (however it ends), and a config whose probes all point at loopback ports
//! where nothing listens, so no traffic leaves the machine.
#![allow(dead_code)]

pub mod fake_collector;

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `oqs-agent run`, killed on drop.
pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_agent(config: &Path) -> Agent {
    Agent(
        Command::new(env!("CARGO_BIN_EXE_oqs-agent"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Writes a daemon config for `site` (terminal `pc-1`, East) reporting every `interval_secs` to
/// `url`; `collector_lines` go into `[collector]` after the URL (TLS files, enrollment token).
pub fn write_config(
    path: &Path,
    site: &str,
    url: &str,
    collector_lines: &str,
    spool: &Path,
    interval_secs: u64,
) {
    std::fs::write(
        path,
        format!(
            "site_id = \"{site}\"\nterminal_id = \"pc-1\"\narea = \"east\"\ninterval_secs = {interval_secs}\nprobe_timeout_ms = 200\n\
             [collector]\nurl = \"{url}\"\n{collector_lines}\n[spool]\ndir = \"{}\"\n\
             [dns]\nnames = []\n[lineauth]\nurl = \"https://127.0.0.1:1/\"\n\
             [http]\nproduction_url = \"https://127.0.0.1:1/\"\nverification_url = \"https://127.0.0.1:1/\"\ncrl_url = \"http://127.0.0.1:1/\"\n\
             [ntp]\nservers = [\"127.0.0.1:1\"]\n",
            spool.display()
        ),
    )
    .unwrap();
}

/// A collector config on loopback (ports chosen by the OS) with its store under `dir/collector`.
pub fn collector_config(dir: &Path) -> oqs_collector::config::CollectorConfig {
    oqs_collector::config::CollectorConfig {
        data_dir: dir.join("collector"),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// One series of a collector's `/metrics`, written out in full (`name{labels}`); 0 when absent.
pub async fn metric(http: std::net::SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET /api/sites/{site}` of a collector, as JSON (Null while the site is unknown).
pub async fn site_json(http: std::net::SocketAddr, site: &str) -> serde_json::Value {
    let Ok(r) = reqwest::get(format!("http://{http}/api/sites/{site}")).await else {
        return serde_json::Value::Null;
    };
    serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default()
}

/// Polls `site` every 200 ms until `done` holds for it or `secs` pass; returns the last answer.
pub async fn wait_site(
    http: std::net::SocketAddr,
    site: &str,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let v = site_json(http, site).await;
        if done(&v) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A site's enrollment token, made through the collector's (open) admin API.
pub async fn enroll(http: std::net::SocketAddr, site: &str) -> String {
    let body = reqwest::Client::new()
        .post(format!("http://{http}/api/admin/enrollments/{site}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}
