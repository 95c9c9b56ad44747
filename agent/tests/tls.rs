//! Agent to collector over TLS with a test CA made here (rcgen), end to end with the real binaries'
//! code: `oqs-agent run` with an https:// collector URL and a client certificate reaches a collector
//! that requires client certificates; without one, or in clear text, nothing is stored.

mod common;

use common::start_agent;
use oqs_collector::config::{CollectorConfig, TlsSettings};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A CA, a collector certificate for 127.0.0.1, and a terminal's client certificate.
fn pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "OQS NOC test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["clinic-tls.pc-1".to_string()]).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "clinic-tls");
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

fn agent_config(dir: &Path, site: &str, collector: &str, tls_lines: &str) -> PathBuf {
    let p = dir.join(format!("{site}.toml"));
    common::write_config(
        &p,
        site,
        collector,
        tls_lines,
        &dir.join(format!("spool-{site}")),
        1,
    );
    p
}

async fn last_seq(http: std::net::SocketAddr, site: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("http://{http}/api/sites/{site}")).await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["terminals"][0]["last_seq"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_report_over_mutual_tls_and_are_refused_without_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let collector = oqs_collector::server::start(CollectorConfig {
        data_dir: tmp.path().join("collector"),
        grpc_listen: format!("127.0.0.1:{port}").parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsSettings {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: Some(pki.ca.clone()),
        }),
        ..CollectorConfig::default()
    })
    .await
    .unwrap();
    let http = collector.http_addr;
    let url = format!("https://127.0.0.1:{port}");
    let with_cert = format!(
        "ca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let without_cert = format!("ca = \"{}\"", pki.ca.display());
    let _good = start_agent(&agent_config(tmp.path(), "clinic-tls", &url, &with_cert));
    let _no_cert = start_agent(&agent_config(
        tmp.path(),
        "clinic-nocert",
        &url,
        &without_cert,
    ));
    let _plain = start_agent(&agent_config(
        tmp.path(),
        "clinic-plain",
        &format!("http://127.0.0.1:{port}"),
        "",
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while last_seq(http, "clinic-tls").await < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        last_seq(http, "clinic-tls").await >= 2,
        "reports arrive over mutual TLS"
    );
    // The others have had the same time (several rounds and reconnects): nothing of theirs stored.
    let body = reqwest::get(format!("http://{http}/api/sites"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("clinic-nocert"), "{body}");
    assert!(!body.contains("clinic-plain"), "{body}");
    collector.stop().await.unwrap();
}

#[test]
fn https_without_a_ca_or_half_a_client_identity_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (tls, key) in [
        ("", "collector.ca"),
        (
            "ca = \"/x.pem\"\nclient_cert = \"/c.pem\"",
            "collector.client_cert",
        ),
    ] {
        let cfg = agent_config(tmp.path(), "bad", "https://127.0.0.1:1", tls);
        let out = Command::new(env!("CARGO_BIN_EXE_oqs-agent"))
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
}
