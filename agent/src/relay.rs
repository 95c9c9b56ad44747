//! `oqs-agent relay`: an HTTP CONNECT proxy on a clinic PC that can reach the NOC, for OQS
//! terminals that cannot (their own segment, no internet while the closed network is up). The
//! terminals set `collector.proxy = "http://relay-pc:PORT"`; the relay opens a tunnel to one of
//! its configured collectors and passes bytes both ways.
//!
//! Must never be an open proxy: it tunnels only to the configured collector addresses (any other
//! target is 403, counted and logged), takes connections only from the allowed source prefixes
//! (by default loopback, the private and link-local ranges and the host's own IPv6 prefixes), and
//! bounds everything (tunnels open, a request head's size and time, idle time, bytes per tunnel).
//! Must never read or alter what it carries: TLS runs end to end between agent and collector, so
//! the relay can neither read nor forge a report.

use crate::uplink::proxy::{parse_proxy_url, ProxyAddr, ProxyCredentials};
use crate::uplink::tunnel::{self, RELAY_HEADER};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The most a CONNECT request's head may be.
const MAX_HEAD: usize = 8 * 1024;
/// Each direction's copy buffer: a report is a few KB; 500 tunnels stay within a few MB.
const BUF: usize = 4 * 1024;

/// A collector the relay may tunnel to: a host (name or address) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `HOST:PORT` or `[v6]:PORT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let addr = parse_proxy_url(&format!("http://{s}"))
            .map_err(|_| format!("{s:?}: not HOST:PORT (a collector's gRPC address)"))?;
        Ok(Self {
            host: addr.host.to_ascii_lowercase(),
            port: addr.port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        port == self.port
            && host
                .trim_matches(['[', ']'])
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&self.host)
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A source prefix the relay accepts connections from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    pub net: IpAddr,
    pub len: u8,
}

impl Allow {
    /// `10.0.0.0/8`, `2001:db8::/32`, or an address alone.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (net, len) = match s.split_once('/') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let net: IpAddr = net
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| format!("{s:?}: not an address prefix (such as 192.168.1.0/24)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { net, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let m = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.len)
                };
                u32::from(a) & m == u32::from(n) & m
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let m = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.len)
                };
                u128::from(a) & m == u128::from(n) & m
            }
            _ => false,
        }
    }
}

/// The sources a relay accepts when none are configured: this host and its LAN — loopback, the
/// private and link-local ranges, and the host's own IPv6 prefixes (a FLET'S LAN is a global /64).
pub fn default_allow() -> Vec<Allow> {
    let mut out: Vec<Allow> = [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .map(|s| Allow::parse(s).expect("a valid prefix"))
    .collect();
    #[cfg(target_os = "linux")]
    let own = crate::checks::ipv6::linux::observe();
    #[cfg(windows)]
    let own = crate::checks::ipv6::windows::observe(None);
    #[cfg(not(any(target_os = "linux", windows)))]
    let own: std::io::Result<crate::checks::ipv6::Observed> =
        Err(std::io::Error::other("not on this platform"));
    match own {
        Ok(o) => {
            for a in o.addresses {
                if crate::checks::ipv6::is_global_unicast(a.address) && a.prefix_len >= 32 {
                    let p = crate::checks::ipv6::Prefix::of(a.address, a.prefix_len);
                    out.push(Allow {
                        net: IpAddr::V6(p.network),
                        len: p.len,
                    });
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this host's IPv6 prefixes; the relay accepts only loopback and the private ranges unless --allow says more")
        }
    }
    out.dedup();
    out
}

/// What a relay does, all of it explicit.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub listen: SocketAddr,
    pub collectors: Vec<Target>,
    pub allow: Vec<Allow>,
    /// A proxy the relay itself goes through to reach the collectors.
    pub upstream: Option<(ProxyAddr, Option<ProxyCredentials>)>,
    /// Tunnels open at once; more are answered 503.
    pub max_tunnels: u64,
    /// A tunnel with no byte either way for this long is closed (agents ping every 30 s).
    pub idle: Duration,
    /// A request head within this of connecting (a slowloris holds nothing longer).
    pub head_timeout: Duration,
    /// A tunnel carries at most this many bytes (both ways); the agent reconnects after.
    pub max_tunnel_bytes: u64,
    /// Connecting to a collector (or through the upstream proxy) within this.
    pub connect_timeout: Duration,
    /// This relay's name in its answers (`OQS-Relay`): the host name.
    pub name: String,
}

impl RelaySettings {
    /// The defaults around what must be given: where to listen and the collectors.
    pub fn new(listen: SocketAddr, collectors: Vec<Target>) -> Self {
        Self {
            listen,
            collectors,
            allow: Vec::new(),
            upstream: None,
            max_tunnels: 1000,
            idle: Duration::from_secs(300),
            head_timeout: Duration::from_secs(10),
            max_tunnel_bytes: 1 << 30,
            connect_timeout: Duration::from_secs(10),
            name: crate::sysinfo::hostname(),
        }
    }
}

/// What the relay did, counted since it started.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub tunnels_open: AtomicU64,
    pub tunnels_total: AtomicU64,
    pub refused_source: AtomicU64,
    pub refused_target: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_malformed: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub bytes_to_collector: AtomicU64,
    pub bytes_to_agents: AtomicU64,
}

impl RelayCounters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "tunnels open {} (total {}), refused: source {} target {} busy {} malformed {}, \
             upstream errors {}, bytes to collector {} to agents {}",
            g(&self.tunnels_open),
            g(&self.tunnels_total),
            g(&self.refused_source),
            g(&self.refused_target),
            g(&self.refused_busy),
            g(&self.refused_malformed),
            g(&self.upstream_errors),
            g(&self.bytes_to_collector),
            g(&self.bytes_to_agents),
        )
    }
}

/// Serves tunnels until `shutdown`; open tunnels are closed with it.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<RelaySettings>,
    counters: Arc<RelayCounters>,
    shutdown: CancellationToken,
) {
    let allow = if settings.allow.is_empty() {
        default_allow()
    } else {
        settings.allow.clone()
    };
    let allow = Arc::new(allow);
    let mut last_summary = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let s = counters.summary();
                if s != last_summary {
                    tracing::info!(counters = %s, "relay");
                    last_summary = s;
                }
                continue;
            }
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "relay: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !allow.iter().any(|a| a.contains(peer.ip())) {
            RelayCounters::add(&counters.refused_source, 1);
            tracing::debug!(%peer, "relay: a source outside the allowed prefixes; closed");
            continue;
        }
        let (settings, counters, shutdown) = (settings.clone(), counters.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = one(stream, peer, &settings, &counters) => {}
            }
        });
    }
}

/// One client connection: its CONNECT, the checks, the tunnel.
async fn one(mut client: TcpStream, peer: SocketAddr, s: &RelaySettings, c: &RelayCounters) {
    let _ = client.set_nodelay(true);
    let head = match tokio::time::timeout(s.head_timeout, read_head(&mut client)).await {
        Ok(Some(h)) => h,
        _ => {
            RelayCounters::add(&c.refused_malformed, 1);
            return;
        }
    };
    let Some((host, port)) = parse_connect(&head) else {
        RelayCounters::add(&c.refused_malformed, 1);
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let Some(target) = s.collectors.iter().find(|t| t.matches(&host, port)) else {
        RelayCounters::add(&c.refused_target, 1);
        tracing::warn!(%peer, target = %format!("{host}:{port}"), "relay: a tunnel to something that is not one of its collectors; refused (403)");
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    // Counted before the upstream connection: a flood of tunnels to a dead collector is bounded.
    let open = c.tunnels_open.fetch_add(1, Ordering::Relaxed) + 1;
    let _open = OpenTunnel(&c.tunnels_open);
    if open > s.max_tunnels {
        RelayCounters::add(&c.refused_busy, 1);
        let _ = client
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let upstream = match &s.upstream {
        None => tokio::time::timeout(
            s.connect_timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string())),
        Some((proxy, creds)) => tunnel::open(
            proxy,
            &target.authority(),
            creds.as_ref(),
            s.connect_timeout,
        )
        .await
        .map(|t| t.stream)
        .map_err(|e| e.to_string()),
    };
    let upstream = match upstream {
        Ok(u) => u,
        Err(e) => {
            RelayCounters::add(&c.upstream_errors, 1);
            tracing::warn!(target = %target.authority(), error = %e, "relay: cannot reach the collector (502)");
            let _ = client
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let name: String = s
        .name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    let ok = format!("HTTP/1.1 200 Connection established\r\n{RELAY_HEADER}: {name}\r\n\r\n");
    if client.write_all(ok.as_bytes()).await.is_err() {
        return;
    }
    RelayCounters::add(&c.tunnels_total, 1);
    splice(client, upstream, s, c).await;
}

/// Decrements the open count when a tunnel ends, however it ends.
struct OpenTunnel<'a>(&'a AtomicU64);

impl Drop for OpenTunnel<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a request head up to its blank line, byte by byte (what follows is the tunnel's), at
/// most [`MAX_HEAD`] bytes; `None` for a closed or oversized head.
async fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD || s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(head)
}

/// `CONNECT host:port HTTP/1.x` → (host, port).
fn parse_connect(head: &[u8]) -> Option<(String, u16)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method != "CONNECT" || !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let t = Target::parse(target).ok()?;
    Some((t.host, t.port))
}

/// Copies both ways until either side closes (then the other is shut down and drained), the
/// tunnel is idle for `idle`, or it has carried `max_tunnel_bytes`.
async fn splice(client: TcpStream, upstream: TcpStream, s: &RelaySettings, c: &RelayCounters) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let mut up = vec![0u8; BUF];
    let mut down = vec![0u8; BUF];
    let (mut client_open, mut upstream_open) = (true, true);
    let mut carried = 0u64;
    let mut last = tokio::time::Instant::now();
    while client_open || upstream_open {
        tokio::select! {
            r = cr.read(&mut up), if client_open => match r {
                Ok(n) if n > 0 => {
                    if uw.write_all(&up[..n]).await.is_err() { return; }
                    RelayCounters::add(&c.bytes_to_collector, n as u64);
                    carried += n as u64;
                    last = tokio::time::Instant::now();
                }
                _ => { client_open = false; let _ = uw.shutdown().await; }
            },
            r = ur.read(&mut down), if upstream_open => match r {
                Ok(n) if n > 0 => {
                    if cw.write_all(&down[..n]).await.is_err() { return; }
                    RelayCounters::add(&c.bytes_to_agents, n as u64);
                    carried += n as u64;
                    last = tokio::time::Instant::now();
                }
                _ => { upstream_open = false; let _ = cw.shutdown().await; }
            },
            _ = tokio::time::sleep_until(last + s.idle) => return,
        }
        if carried >= s.max_tunnel_bytes {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_prefixes_parse_and_say_what_was_wrong() {
        assert_eq!(
            Target::parse("NOC.example.jp:50051").unwrap(),
            Target {
                host: "noc.example.jp".into(),
                port: 50051
            }
        );
        assert!(Target::parse("[2001:db8::1]:443")
            .unwrap()
            .matches("[2001:db8::1]", 443));
        assert!(Target::parse("noc.example.jp").is_err());
        assert!(Target::parse("noc.example.jp:0").is_err());
        let a = Allow::parse("192.168.1.0/24").unwrap();
        assert!(a.contains("192.168.1.9".parse().unwrap()));
        assert!(
            a.contains("::ffff:192.168.1.9".parse().unwrap()),
            "a v4-mapped peer"
        );
        assert!(!a.contains("192.168.2.9".parse().unwrap()));
        assert!(Allow::parse("10.0.0.0/40").is_err());
        assert!(Allow::parse("relay-pc").is_err());
        assert!(Allow::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5".parse().unwrap()));
        let d = default_allow();
        assert!(d.iter().any(|a| a.contains("127.0.0.1".parse().unwrap())));
        assert!(!d.iter().any(|a| a.contains("8.8.8.8".parse().unwrap())));
    }

    #[test]
    fn only_a_well_formed_connect_is_a_request() {
        assert_eq!(
            parse_connect(b"CONNECT noc.example.jp:50051 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("noc.example.jp".into(), 50051))
        );
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"CONNECT noc.example.jp HTTP/1.1\r\n\r\n",
            b"CONNECT a:1 HTTP/2\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert_eq!(parse_connect(bad), None, "{bad:?}");
        }
    }
}
