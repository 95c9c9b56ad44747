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

/// The resolver the OS is configured with (resolv.conf on Linux, the registry on Windows).
pub fn system(timeout: Duration) -> Result<TokioResolver, ResolverError> {
    let (config, mut o) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| ResolverError(format!("cannot read the system DNS configuration: {e}")))?;
    o.timeout = timeout;
    o.attempts = 1;
    o.cache_size = 0;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(o)
        .build()
        .map_err(|e| ResolverError(e.to_string()))
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
pub async fn run(
    probes: &Probes,
    system: Result<&TokioResolver, &ResolverError>,
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
                    sys,
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
    join_all(futs).await
}

type ProbeFuture<'a> = futures::future::BoxFuture<'a, DnsProbe>;

fn boxed<'a>(f: impl std::future::Future<Output = DnsProbe> + Send + 'a) -> ProbeFuture<'a> {
    Box::pin(f)
}

async fn join_all(futs: Vec<ProbeFuture<'_>>) -> Vec<DnsProbe> {
    futures::future::join_all(futs).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use oqs_proto::ident::Area;

    #[tokio::test]
    async fn without_a_system_configuration_every_system_probe_fails_and_says_why() {
        let mut probes = AgentConfig::for_check(Area::East, None).probes;
        // No direct servers: only the system probes remain.
        probes.nw_base_servers.clear();
        probes.ngn_servers.clear();
        let err = ResolverError::new("cannot read the system DNS configuration: no nameservers");
        let results = run(&probes, Err(&err), 53, Duration::from_millis(100)).await;
        assert_eq!(results.len(), probes.dns_names.len() * 2);
        for p in &results {
            assert_eq!(p.role, ResolverRole::System as i32);
            assert_eq!(p.outcome, Outcome::Failed as i32);
            assert!(p.error.contains("no nameservers"), "{p:?}");
        }
    }
}
