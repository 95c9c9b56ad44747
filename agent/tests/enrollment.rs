//! `oqs-agent run` against a collector that requires enrollment: the site's token is exchanged for
//! a terminal secret kept in the spool directory (mode 0600); a restarted agent without the token
//! goes on with its secret; after the NOC revokes the site nothing more is stored and the agent
//! sets the refused secret aside (kept: a collector rolled back to an older store may know it
//! again).

mod common;

use common::start_agent;
use std::path::Path;
use std::time::{Duration, Instant};

fn write_config(path: &Path, grpc: std::net::SocketAddr, spool: &Path, token: Option<&str>) {
    let token = token
        .map(|t| format!("enrollment_token = \"{t}\""))
        .unwrap_or_default();
    common::write_config(
        path,
        "clinic-enr",
        &format!("http://{grpc}"),
        &token,
        spool,
        1,
    );
}

/// A collector started with `cfg`, clinic-enr enrolled, and `oqs-agent run` started with the
/// site's token: (collector, spool dir, agent config path, agent).
async fn enrolled_agent(
    dir: &Path,
    cfg: oqs_collector::config::CollectorConfig,
) -> (
    oqs_collector::server::Running,
    std::path::PathBuf,
    std::path::PathBuf,
    common::Agent,
) {
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let token = common::enroll(c.http_addr, "clinic-enr").await;
    let spool = dir.join("spool");
    let config = dir.join("agent.toml");
    write_config(&config, c.grpc_addr, &spool, Some(&token));
    let agent = start_agent(&config);
    (c, spool, config, agent)
}

/// Restarts the agent with the token removed from its config and asserts that it still reports
/// (two more seqs stored) on its saved secret alone; `why` names the case in the failure.
async fn restart_on_secret_alone(
    config: &Path,
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
    spool: &Path,
    why: &str,
) -> common::Agent {
    write_config(config, grpc, spool, None);
    let before = last_seq(http).await;
    let agent = start_agent(config);
    assert!(wait_seq(http, before + 2).await >= before + 2, "{why}");
    agent
}

async fn last_seq(http: std::net::SocketAddr) -> u64 {
    common::site_json(http, "clinic-enr").await["terminals"][0]["last_seq"]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_seq(http: std::net::SocketAddr, min: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = last_seq(http).await;
        if s >= min || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_becomes_a_terminal_secret_and_revocation_stops_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = common::collector_config(tmp.path());
    cfg.enrollment.required = true;
    let (c, spool, config, agent) = enrolled_agent(tmp.path(), cfg).await;
    let http = c.http_addr;
    let client = reqwest::Client::new();
    assert!(wait_seq(http, 2).await >= 2, "the enrolled agent reports");
    let secret = spool.join("terminal.secret");
    let text = std::fs::read_to_string(&secret).unwrap();
    assert!(text.starts_with("oqs-term-"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(agent);

    // The token leaves the config: the secret is enough.
    let agent = restart_on_secret_alone(
        &config,
        c.grpc_addr,
        http,
        &spool,
        "reports with the secret alone",
    )
    .await;

    // Revoked: nothing more is stored, and the refused secret is forgotten.
    client
        .delete(format!("http://{http}/api/admin/enrollments/clinic-enr"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = last_seq(http).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        last_seq(http).await,
        frozen,
        "nothing stored after revocation"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while secret.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!secret.exists(), "the agent forgot the refused secret");
    drop(agent);
    c.stop().await.unwrap();
}

/// Opens a stream for clinic-enr/pc-1 with a wrong credential; the collector refuses it.
async fn wrong_attempt(grpc: std::net::SocketAddr, guess: &str) -> tonic::Code {
    use oqs_proto::v1::{agent_message::Body, fleet_ingest_client::FleetIngestClient};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hello = oqs_proto::v1::Hello {
        protocol_version: oqs_proto::PROTOCOL_VERSION,
        site_id: "clinic-enr".into(),
        terminal_id: "pc-1".into(),
        area: oqs_proto::v1::Area::East as i32,
        credential: Some(guess.into()),
        ..Default::default()
    };
    let first = oqs_proto::v1::AgentMessage {
        body: Some(Body::Hello(hello)),
    };
    let mut client = FleetIngestClient::new(channel);
    match client.connect(tokio_stream::iter(vec![first])).await {
        Err(st) => st.code(),
        Ok(resp) => match resp.into_inner().message().await {
            Err(st) => st.code(),
            Ok(_) => tonic::Code::Ok,
        },
    }
}

/// Someone at the clinic's address guesses credentials for the agent's terminal. The real agent
/// is never locked out — a valid credential always passes, also after a collector restart (which
/// forgets who worked from where) — and the guesser, once limited, is told RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_at_the_clinic_neither_locks_out_the_agent_nor_costs_it_its_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = common::collector_config(tmp.path());
    cfg.enrollment.required = true;
    cfg.enrollment.max_failures_per_minute = 3;
    let (c, spool, config, agent) = enrolled_agent(tmp.path(), cfg.clone()).await;
    let http = c.http_addr;
    assert!(wait_seq(http, 1).await >= 1, "the enrolled agent reports");
    let secret = spool.join("terminal.secret");
    assert!(secret.exists());

    // Someone at the agent's address guesses as its terminal until limited...
    for i in 0..3 {
        assert_eq!(
            wrong_attempt(c.grpc_addr, &format!("guess-{i}")).await,
            tonic::Code::Unauthenticated
        );
    }
    assert_eq!(
        wrong_attempt(c.grpc_addr, "guess-x").await,
        tonic::Code::ResourceExhausted
    );
    // ...and the agent, reconnecting with its secret, still reports.
    drop(agent);
    let agent = restart_on_secret_alone(
        &config,
        c.grpc_addr,
        http,
        &spool,
        "a valid secret passes while its terminal's guesser is limited",
    )
    .await;
    drop(agent);
    c.stop().await.unwrap();

    // A restarted collector has not seen the secret from here, and the guesser is limited again
    // before the agent comes back: the agent still gets in, and keeps its secret.
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let http = c.http_addr;
    for i in 0..4 {
        wrong_attempt(c.grpc_addr, &format!("guess-{i}")).await;
    }
    let limited = common::metric(http, "oqs_auth_failures_total{reason=\"rate_limited\"}").await;
    assert!(limited >= 1.0, "the guesser is limited: {limited}");
    let agent = restart_on_secret_alone(
        &config,
        c.grpc_addr,
        http,
        &spool,
        "a valid secret passes after a restart while its terminal's guesser is limited",
    )
    .await;
    assert!(secret.exists(), "the agent keeps its secret");
    drop(agent);
    c.stop().await.unwrap();
}

/// A collector whose enrollments were rolled back (restarted on an older store that does not know
/// the terminal) refuses its secret. The agent, without a token, does not forget it: it sets it
/// aside and keeps presenting it, so once the collector's store is back the agent reports again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_refused_by_a_rolled_back_collector_is_kept_and_works_again() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let collector = |dir: &str| {
        let mut cfg = common::collector_config(&tmp.path().join(dir));
        cfg.grpc_listen = format!("127.0.0.1:{port}").parse().unwrap();
        cfg.enrollment.required = true;
        cfg
    };
    let (c, spool, config, agent) = enrolled_agent(tmp.path(), collector("current")).await;
    assert!(
        wait_seq(c.http_addr, 2).await >= 2,
        "the enrolled agent reports"
    );
    drop(agent);
    let agent = restart_on_secret_alone(
        &config,
        c.grpc_addr,
        c.http_addr,
        &spool,
        "reports with the secret alone",
    )
    .await;
    let secret = spool.join("terminal.secret");
    let aside = spool.join("terminal.secret.refused");
    c.stop().await.unwrap();

    // Rolled back: a store that never enrolled the site.
    let old = oqs_collector::server::start(collector("older"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !aside.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        aside.exists(),
        "the refused secret is set aside, not deleted"
    );
    assert!(!secret.exists());
    old.stop().await.unwrap();

    // The current store is back: the same secret is accepted and the agent reports again.
    let c = oqs_collector::server::start(collector("current"))
        .await
        .unwrap();
    let before = last_seq(c.http_addr).await;
    assert!(
        wait_seq(c.http_addr, before + 2).await >= before + 2,
        "the kept secret works again"
    );
    assert!(
        secret.exists() && !aside.exists(),
        "and is back in its place"
    );
    drop(agent);
    c.stop().await.unwrap();
}
