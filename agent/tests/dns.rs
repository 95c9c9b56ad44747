//! The DNS check against real DNS servers: dnsmasq started by the test on [::1], serving the
//! guide's probe names and example answers (DOMAIN.md §5) as the NW-base server would, and a
//! second dnsmasq standing in for a router whose DNS table lacks the OQS domains.
//! Needs `dnsmasq` (Debian's dnsmasq-base; `.ci/run` installs it).

use oqs_agent::checks::dns;
use oqs_agent::config::{AgentConfig, DnsName};
use oqs_agent::guide::Resolver;
use oqs_proto::ident::Area;
use oqs_proto::v1::{Outcome, RecordType, ResolverRole};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// dnsmasq on [::1] answering `records` (name, address) and NXDOMAIN for the rest of `local`.
fn dnsmasq(records: &[(&str, &str)], local: &[&str]) -> Dnsmasq {
    let port = free_port();
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=::1",
        "--pid-file=",
        &format!("--port={port}"),
    ]);
    for (name, addr) in records {
        cmd.arg(format!("--host-record={name},{addr}"));
    }
    for d in local {
        cmd.arg(format!("--local=/{d}/"));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq must be installed (apt-get install dnsmasq-base), as .ci/run does");
    // Ready once it holds the port (a bind of our own then fails).
    for _ in 0..100 {
        if UdpSocket::bind(("::1", port)).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Dnsmasq {
        child,
        addr: SocketAddr::new("::1".parse().unwrap(), port),
    }
}

/// The NW-base server: the guide's names and example answers (手順7-⑭ P15).
fn nw_base() -> Dnsmasq {
    dnsmasq(
        &[
            ("www.lineauth.mnw", "2404:1a8:f583:af0::1"),
            ("assv.asc.flets-east.jp", "2404:1a8:ff43:1612::f"),
            (
                "hweb.oqs-st.onshikaku.org",
                "2404:1a8:f583:1b00:ad7d:7594:6198:6ce0",
            ),
            ("hweb.oqs-st.onshikaku.org", "10.108.48.210"),
            (
                "crldownload.obn.managedpki.ne.jp",
                "2404:1a8:f583:4a06:a0c6:842b:cc00:fa1f",
            ),
            (
                "crldownload.obn.managedpki.ne.jp",
                "2404:1a8:f583:4a07:6905:9f85:2d17:d650",
            ),
            ("pweb.base.oqs-pdl.org", "2408:210:9c0::1"),
            ("ntp.base.oqs-pdl.org", "2408:210:9c0::1"),
        ],
        &[
            "onshikaku.org",
            "lineauth.mnw",
            "base.oqs-pdl.org",
            "managedpki.ne.jp",
            "flets-east.jp",
        ],
    )
}

fn name(n: &str) -> DnsName {
    DnsName {
        name: n.into(),
        resolver: Resolver::NwBase,
        expected_prefix: None,
    }
}

const T: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn guide_names_resolve_directly_with_the_guides_answers() {
    let s = nw_base();
    let r = dns::direct(s.addr, T).unwrap();
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &name("www.lineauth.mnw"),
        RecordType::Aaaa,
        T,
    )
    .await;
    assert_eq!(p.outcome, Outcome::Ok as i32, "{}", p.error);
    assert_eq!(p.rcode, "NOERROR");
    assert_eq!(p.answers, vec!["2404:1a8:f583:af0::1"]);
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &name("crldownload.obn.managedpki.ne.jp"),
        RecordType::Aaaa,
        T,
    )
    .await;
    assert_eq!(p.answers.len(), 2);
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &name("hweb.oqs-st.onshikaku.org"),
        RecordType::A,
        T,
    )
    .await;
    assert_eq!(p.answers, vec!["10.108.48.210"]);
}

#[tokio::test]
async fn a_name_with_only_ipv6_is_fine_for_a_and_unknown_names_are_nxdomain() {
    let s = nw_base();
    let r = dns::direct(s.addr, T).unwrap();
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &name("www.lineauth.mnw"),
        RecordType::A,
        T,
    )
    .await;
    assert_eq!(p.outcome, Outcome::Ok as i32, "{}", p.error);
    assert!(p.answers.is_empty());
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &name("nope.onshikaku.org"),
        RecordType::Aaaa,
        T,
    )
    .await;
    assert_eq!(p.outcome, Outcome::Failed as i32);
    assert_eq!(p.rcode, "NXDOMAIN", "{}", p.error);
}

#[tokio::test]
async fn an_answer_outside_the_expected_prefix_fails() {
    let s = nw_base();
    let r = dns::direct(s.addr, T).unwrap();
    let mut n = name("pweb.base.oqs-pdl.org");
    n.expected_prefix = Some(("2404:1a8::".parse().unwrap(), 32));
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &n,
        RecordType::Aaaa,
        T,
    )
    .await;
    assert_eq!(p.outcome, Outcome::Failed as i32);
    assert!(
        p.error.contains("outside the expected prefix"),
        "{}",
        p.error
    );
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_probe_timeout() {
    let silent = UdpSocket::bind("[::1]:0").unwrap();
    let r = dns::direct(silent.local_addr().unwrap(), Duration::from_millis(400)).unwrap();
    let started = std::time::Instant::now();
    let p = dns::probe(
        &r,
        ResolverRole::NwBase,
        "::1".into(),
        &name("www.lineauth.mnw"),
        RecordType::Aaaa,
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(p.outcome, Outcome::TimedOut as i32, "{p:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_router_table_without_the_oqs_domains_fails_only_the_system_resolver() {
    let base = nw_base();
    // The "router": knows the NGN name only; OQS names come back NXDOMAIN.
    let router = dnsmasq(
        &[("assv.asc.flets-east.jp", "2404:1a8:ff43:1612::f")],
        &[
            "onshikaku.org",
            "lineauth.mnw",
            "base.oqs-pdl.org",
            "managedpki.ne.jp",
        ],
    );
    let mut probes = AgentConfig::for_check(Area::East, None, Default::default()).probes;
    probes.nw_base_servers = vec!["::1".parse().unwrap()];
    probes.ngn_servers = vec!["::1".parse().unwrap()];
    let system = dns::SystemResolver::with_servers(&[router.addr], T).unwrap();
    let results = dns::resolve(&probes, Ok(&system), base.addr.port(), T).await;
    // 6 names (East) × 2 record types × (system + one direct server).
    assert_eq!(results.len(), 24);
    for p in &results {
        let ok = p.outcome == Outcome::Ok as i32;
        let system = p.role == ResolverRole::System as i32;
        let ngn_name = p.name.ends_with("flets-east.jp");
        if p.record_type == RecordType::Aaaa as i32 {
            assert_eq!(ok, !system || ngn_name, "{p:?}");
        }
        if system && !ngn_name && p.record_type == RecordType::Aaaa as i32 {
            assert_eq!(p.rcode, "NXDOMAIN");
        }
    }
}
