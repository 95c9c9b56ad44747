//! The name-resolution check (guide 手順7-⑭, P15): each probe name, AAAA and A, asked (a) through
//! the system resolver, as applications on the terminal resolve (normally via the router's
//! local-domain table), and (b) directly of each DNS server of the area that should answer it
//! (NW-base servers; NGN servers for flets-*.jp names). (a) failing while (b) works is the
//! signature of a wrong router DNS table (guide P7 手順3, P30).
//!
//! Every query is bounded by the probe timeout and uncached (each round measures the network, not
//! a cache). Must never judge reachability by ping (the center blocks ICMP, FAQ Q2).

use crate::config::{DnsName, Probes};
use crate::guide::Resolver as Kind;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType as HRecordType};
use hickory_resolver::TokioResolver;
use oqs_proto::v1::{DnsProbe, Outcome, RecordType, ResolverRole};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct ResolverError(String);

impl ResolverError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn opts(timeout: Duration) -> ResolverOpts {
    let mut o = ResolverOpts::default();
    o.timeout = timeout;
    o.attempts = 1;
    o.cache_size = 0;
    o
}

/// A resolver asking exactly one server (UDP, then TCP on truncation).
pub fn direct(server: SocketAddr, timeout: Duration) -> Result<TokioResolver, ResolverError> {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts(timeout))
    .build()
    .map_err(|e| ResolverError(e.to_string()))
}

/// The OS's resolver, and the servers it asks (for the truncation follow-up of a failed query).
pub struct SystemResolver {
    resolver: TokioResolver,
    servers: Vec<SocketAddr>,
}

impl SystemResolver {
    fn build(
        config: ResolverConfig,
        mut o: ResolverOpts,
        timeout: Duration,
    ) -> Result<Self, ResolverError> {
        o.timeout = timeout;
        o.attempts = 1;
        o.cache_size = 0;
        let servers = config
            .name_servers()
            .iter()
            .map(|ns| {
                let port = ns.connections.first().map(|c| c.port).unwrap_or(53);
                SocketAddr::new(ns.ip, port)
            })
            .collect();
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(o)
            .build()
            .map_err(|e| ResolverError(e.to_string()))?;
        Ok(Self { resolver, servers })
    }

    /// A "system" resolver asking exactly `servers` (UDP, then TCP on truncation), as the OS's does.
    pub fn with_servers(servers: &[SocketAddr], timeout: Duration) -> Result<Self, ResolverError> {
        let ns = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        Self::build(
            ResolverConfig::from_name_servers(ns),
            opts(timeout),
            timeout,
        )
    }
}

/// The resolver the OS is configured with (resolv.conf on Linux, the registry on Windows).
pub fn system(timeout: Duration) -> Result<SystemResolver, ResolverError> {
    let (config, o) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| ResolverError(format!("cannot read the system DNS configuration: {e}")))?;
    SystemResolver::build(config, o, timeout)
}

/// How long the truncation follow-up of a failed system query may take (it runs after the round's
/// queries, so it lengthens a failing round by at most this).
const TRUNCATION_CHECK_TIMEOUT: Duration = Duration::from_millis(1000);

/// A DNS query for `name`/`qtype` as a stub resolver sends it over UDP: recursion desired, EDNS0
/// advertising 1232 bytes (what a modern stub offers; a router that drops EDNS still truncates).
/// `None` for a name that is not plain ASCII labels.
fn udp_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    // OPT: root name, type 41, UDP payload 1232, extended rcode/version/flags 0, no data.
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    Some(q)
}

/// Whether `server` answers `name`/`qtype` over UDP with the TC bit set (the answer did not fit).
/// Any failure to ask or to read an answer is "no": only a seen TC bit counts.
async fn answers_truncated(server: SocketAddr, name: &str, qtype: u16, timeout: Duration) -> bool {
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(8);
    let Some(query) = udp_query(id, name, qtype) else {
        return false;
    };
    let bind: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let ask = async {
        let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
        sock.connect(server).await.ok()?;
        sock.send(&query).await.ok()?;
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.ok()?;
            // Ours (id), a response (QR), then the TC bit.
            if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
                return Some(buf[2] & 0x02 != 0);
            }
        }
    };
    matches!(tokio::time::timeout(timeout, ask).await, Ok(Some(true)))
}

fn rcode_text(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// One query: `name` for `rtype` through `resolver`, labelled `server` / `role` in the result.
pub async fn probe(
    resolver: &TokioResolver,
    role: ResolverRole,
    server: String,
    target: &DnsName,
    rtype: RecordType,
    timeout: Duration,
) -> DnsProbe {
    let started = Instant::now();
    let hrt = match rtype {
        RecordType::A => HRecordType::A,
        _ => HRecordType::AAAA,
    };
    let fqdn = format!("{}.", target.name.trim_end_matches('.'));
    let result = tokio::time::timeout(timeout, resolver.lookup(fqdn.as_str(), hrt)).await;
    let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    let mut p = DnsProbe {
        outcome: Outcome::Ok as i32,
        error: String::new(),
        name: target.name.clone(),
        record_type: rtype as i32,
        role: role as i32,
        server,
        rcode: String::new(),
        answers: Vec::new(),
        latency_ms,
        truncated: false,
    };
    let fail = |p: &mut DnsProbe, outcome: Outcome, rcode: String, error: String| {
        p.outcome = outcome as i32;
        p.rcode = rcode;
        p.error = error;
    };
    match result {
        Err(_) | Ok(Err(NetError::Timeout)) => fail(
            &mut p,
            Outcome::TimedOut,
            String::new(),
            format!("no answer within {} ms", timeout.as_millis()),
        ),
        Ok(Ok(lookup)) => {
            p.rcode = "NOERROR".into();
            let mut addrs: Vec<IpAddr> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            addrs.sort();
            addrs.dedup();
            p.answers = addrs.iter().map(|a| a.to_string()).collect();
            if rtype == RecordType::Aaaa && addrs.is_empty() {
                fail(
                    &mut p,
                    Outcome::Failed,
                    "NOERROR".into(),
                    "no IPv6 address in the answer".into(),
                );
            } else if let Some((net, len)) = target.expected_prefix {
                let outside: Vec<_> = addrs
                    .iter()
                    .filter(|a| match a {
                        IpAddr::V6(v6) => {
                            crate::checks::ipv6::Prefix::of(*v6, len).network
                                != crate::checks::ipv6::Prefix::of(net, len).network
                        }
                        IpAddr::V4(_) => false,
                    })
                    .collect();
                if !outside.is_empty() {
                    let msg = format!(
                        "answer {} is outside the expected prefix {net}/{len}",
                        outside[0]
                    );
                    fail(&mut p, Outcome::Failed, "NOERROR".into(), msg);
                }
            }
        }
        Ok(Err(NetError::Dns(DnsError::NoRecordsFound(nr)))) => {
            let code = u16::from(nr.response_code);
            // An A query answered "no data" is fine: the guide lists only IPv6 for some names.
            if rtype == RecordType::A && code == 0 {
                p.rcode = rcode_text(code);
            } else {
                let rc = rcode_text(code);
                let msg = format!(
                    "{rc}: {} has no {} record here",
                    target.name,
                    if rtype == RecordType::A { "A" } else { "AAAA" }
                );
                fail(&mut p, Outcome::Failed, rc, msg);
            }
        }
        Ok(Err(NetError::Dns(DnsError::ResponseCode(rc)))) => {
            let rc = rcode_text(u16::from(rc));
            fail(
                &mut p,
                Outcome::Failed,
                rc.clone(),
                format!("the server answered {rc}"),
            );
        }
        Ok(Err(e)) => fail(&mut p, Outcome::Failed, String::new(), e.to_string()),
    }
    p
}

/// Every DNS probe of a round, run concurrently: per name, AAAA and A through the system resolver
/// and directly of each server of its kind. When the system configuration could not be read, each
/// system probe fails with that reason (a terminal without DNS servers is 手順6-⑬'s failure).
pub async fn resolve(
    probes: &Probes,
    system: Result<&SystemResolver, &ResolverError>,
    port: u16,
    timeout: Duration,
) -> Vec<DnsProbe> {
    let mut directs = Vec::new();
    for (kind, servers) in [
        (Kind::NwBase, &probes.nw_base_servers),
        (Kind::Ngn, &probes.ngn_servers),
    ] {
        for s in servers.iter() {
            let addr = SocketAddr::new(IpAddr::V6(*s), port);
            directs.push((kind, addr, direct(addr, timeout)));
        }
    }
    let mut futs = Vec::new();
    for name in &probes.dns_names {
        for rtype in [RecordType::Aaaa, RecordType::A] {
            match system {
                Ok(sys) => futs.push(boxed(probe(
                    &sys.resolver,
                    ResolverRole::System,
                    "system".into(),
                    name,
                    rtype,
                    timeout,
                ))),
                Err(e) => {
                    let p = DnsProbe {
                        outcome: Outcome::Failed as i32,
                        error: e.to_string(),
                        name: name.name.clone(),
                        record_type: rtype as i32,
                        role: ResolverRole::System as i32,
                        server: "system".into(),
                        ..Default::default()
                    };
                    futs.push(Box::pin(async move { p }));
                }
            }
            for (kind, addr, r) in &directs {
                if *kind != name.resolver {
                    continue;
                }
                let role = match kind {
                    Kind::NwBase => ResolverRole::NwBase,
                    Kind::Ngn => ResolverRole::Ngn,
                };
                match r {
                    Ok(r) => futs.push(boxed(probe(
                        r,
                        role,
                        addr.ip().to_string(),
                        name,
                        rtype,
                        timeout,
                    ))),
                    Err(e) => {
                        let e = e.to_string();
                        let p = DnsProbe {
                            outcome: Outcome::Failed as i32,
                            error: e,
                            name: name.name.clone(),
                            record_type: rtype as i32,
                            role: role as i32,
                            server: addr.ip().to_string(),
                            ..Default::default()
                        };
                        futs.push(Box::pin(async move { p }));
                    }
                }
            }
        }
    }
    let mut results = join_all(futs).await;
    if let Ok(sys) = system {
        mark_truncated(
            &mut results,
            &sys.servers,
            timeout.min(TRUNCATION_CHECK_TIMEOUT),
        )
        .await;
    }
    results
}

/// For each system probe that failed without a DNS verdict of its own (no answer, SERVFAIL),
/// asks the first configured server once more over UDP: a TC bit there means the answer is too
/// large for the path and TCP did not save it (the resolver retries over TCP on truncation).
async fn mark_truncated(results: &mut [DnsProbe], servers: &[SocketAddr], timeout: Duration) {
    let Some(server) = servers.first().copied() else {
        return;
    };
    let suspects: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.role == ResolverRole::System as i32
                && p.outcome != Outcome::Ok as i32
                && (p.rcode.is_empty() || p.rcode == "SERVFAIL")
        })
        .map(|(i, _)| i)
        .collect();
    let checks = suspects.iter().map(|&i| {
        let qtype = if results[i].record_type == RecordType::A as i32 {
            1
        } else {
            28
        };
        answers_truncated(server, &results[i].name, qtype, timeout)
    });
    let seen = futures::future::join_all(checks).await;
    for (i, truncated) in suspects.into_iter().zip(seen) {
        if truncated {
            let p = &mut results[i];
            p.truncated = true;
            p.error = format!(
                "{}; the answer from {server} is truncated (TC bit) and the retry over TCP failed: \
                 the router does not pass large DNS answers",
                p.error
            );
        }
    }
}

type ProbeFuture<'a> = futures::future::BoxFuture<'a, DnsProbe>;

fn boxed<'a>(f: impl std::future::Future<Output = DnsProbe> + Send + 'a) -> ProbeFuture<'a> {
    Box::pin(f)
}

async fn join_all(futs: Vec<ProbeFuture<'_>>) -> Vec<DnsProbe> {
    futures::future::join_all(futs).await
}

/// The `dns` check of a round. The system's DNS configuration is read afresh every round: in the
/// guide's normal setup the DNS server is the router's global address (手順5), which moves with
/// the prefix.
pub async fn run(ctx: &super::Context<'_>) -> Vec<DnsProbe> {
    let system = system_resolver(ctx.timeout).await;
    resolve(ctx.probes, system.as_ref(), 53, ctx.timeout).await
}

/// The resolver the OS is configured with now, read on a blocking thread within `timeout`.
async fn system_resolver(timeout: Duration) -> Result<SystemResolver, ResolverError> {
    match tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || system(timeout)),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ResolverError::new(format!(
            "reading the system DNS configuration failed: {e}"
        ))),
        Err(_) => Err(ResolverError::new(format!(
            "reading the system DNS configuration took longer than {} ms",
            timeout.as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use oqs_proto::ident::Area;

    /// A DNS server on loopback UDP that answers every query with `flags` (TC, or SERVFAIL) and
    /// nothing else; nothing listens on TCP there, as on a router that does not serve DNS over TCP.
    async fn udp_only_server(tc: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                if n < 12 {
                    continue;
                }
                let mut answer = buf[..n].to_vec();
                answer[2] = 0x81 | if tc { 0x02 } else { 0 }; // QR, RD (+TC)
                answer[3] = if tc { 0x80 } else { 0x82 }; // RA; SERVFAIL without TC
                answer[10] = 0; // no additional records (drop the OPT we were sent)
                answer[11] = 0;
                // Keep the header and the question only.
                let mut end = 12;
                while end < answer.len() && answer[end] != 0 {
                    end += 1 + answer[end] as usize;
                }
                answer.truncate((end + 5).min(answer.len()));
                let _ = sock.send_to(&answer, from).await;
            }
        });
        (addr, task)
    }

    fn only(name: &str) -> Probes {
        let mut probes = AgentConfig::for_check(Area::East, None, Default::default()).probes;
        probes.nw_base_servers.clear();
        probes.ngn_servers.clear();
        probes.dns_names.retain(|n| n.name == name);
        assert_eq!(probes.dns_names.len(), 1);
        probes
    }

    #[tokio::test]
    async fn a_truncated_answer_the_tcp_retry_cannot_save_is_told_apart() {
        let (addr, server) = udp_only_server(true).await;
        let t = Duration::from_millis(500);
        let sys = SystemResolver::with_servers(&[addr], t).unwrap();
        let probes = only("pweb.base.oqs-pdl.org");
        let results = resolve(&probes, Ok(&sys), 53, t).await;
        let aaaa = results
            .iter()
            .find(|p| p.record_type == RecordType::Aaaa as i32)
            .unwrap();
        assert_ne!(aaaa.outcome, Outcome::Ok as i32, "{aaaa:?}");
        assert!(aaaa.truncated, "{aaaa:?}");
        assert!(aaaa.error.contains("truncated (TC bit)"), "{}", aaaa.error);
        server.abort();
    }

    #[tokio::test]
    async fn a_plain_servfail_is_not_called_truncated() {
        let (addr, server) = udp_only_server(false).await;
        let t = Duration::from_millis(500);
        let sys = SystemResolver::with_servers(&[addr], t).unwrap();
        let results = resolve(&only("pweb.base.oqs-pdl.org"), Ok(&sys), 53, t).await;
        assert!(results.iter().all(|p| p.outcome != Outcome::Ok as i32));
        assert!(results.iter().all(|p| !p.truncated), "{results:?}");
        server.abort();
    }

    #[test]
    fn the_follow_up_query_is_a_well_formed_stub_query() {
        let q = udp_query(0x1234, "pweb.base.oqs-pdl.org.", 28).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(q[12], 4);
        assert_eq!(&q[13..17], b"pweb");
        assert!(udp_query(1, "a..b", 28).is_none());
        assert!(udp_query(1, "日本.jp", 28).is_none());
        assert!(udp_query(1, &"x".repeat(64), 28).is_none());
    }

    #[tokio::test]
    async fn without_a_system_configuration_every_system_probe_fails_and_says_why() {
        let mut probes = AgentConfig::for_check(Area::East, None, Default::default()).probes;
        // No direct servers: only the system probes remain.
        probes.nw_base_servers.clear();
        probes.ngn_servers.clear();
        let err = ResolverError::new("cannot read the system DNS configuration: no nameservers");
        let results = resolve(&probes, Err(&err), 53, Duration::from_millis(100)).await;
        assert_eq!(results.len(), probes.dns_names.len() * 2);
        for p in &results {
            assert_eq!(p.role, ResolverRole::System as i32);
            assert_eq!(p.outcome, Outcome::Failed as i32);
            assert!(p.error.contains("no nameservers"), "{p:?}");
        }
    }
}
