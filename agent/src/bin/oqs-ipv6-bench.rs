//! `oqs-ipv6-bench`: how long reading the terminal's IPv6 state takes — the same `observe` call
//! every round makes (netlink on Linux; GetAdaptersAddresses, GetIpForwardTable2 and
//! GetBestInterfaceEx on Windows), back to back on one thread, after a short warm-up. Prints
//! min / median / p95 / max over `--reads` reads, and what was read (adapters with a global
//! address), so a figure always names the machine state it was taken on.
//!
//! A benchmark, not a check: must never run in the agent's rounds or change anything.

use anyhow::Context;
use std::time::{Duration, Instant};

/// How long reading the IPv6 state takes, as the agent's rounds read it.
#[derive(clap::Parser)]
struct Args {
    /// Timed reads, after three untimed ones.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    reads: u32,
    /// Windows: the address whose route picks the OQS adapter (East's first NW-base server).
    #[arg(long, default_value = "2404:1a8:f583:d00::53:1")]
    target: std::net::Ipv6Addr,
}

#[cfg(target_os = "linux")]
fn observe(_target: std::net::Ipv6Addr) -> std::io::Result<oqs_agent::checks::ipv6::Observed> {
    oqs_agent::checks::ipv6::linux::observe()
}

#[cfg(windows)]
fn observe(target: std::net::Ipv6Addr) -> std::io::Result<oqs_agent::checks::ipv6::Observed> {
    oqs_agent::checks::ipv6::windows::observe(Some(target))
}

#[cfg(not(any(target_os = "linux", windows)))]
fn observe(_target: std::net::Ipv6Addr) -> std::io::Result<oqs_agent::checks::ipv6::Observed> {
    Err(std::io::Error::other("no IPv6 reader on this platform"))
}

fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let (reads, target) = (a.reads as usize, a.target);
    let first = observe(target).context("reading the IPv6 state")?;
    for _ in 0..3 {
        observe(target)?;
    }
    let mut times: Vec<Duration> = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        std::hint::black_box(observe(target)?);
        times.push(t.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "IPv6 read ({} reads): min {:.3} ms, median {:.3} ms, p95 {:.3} ms, max {:.3} ms",
        reads,
        ms(times[0]),
        ms(at(0.5)),
        ms(at(0.95)),
        ms(times[times.len() - 1])
    );
    println!(
        "read: {} IPv6 addresses, {} default gateways, {} DNS servers",
        first.addresses.len(),
        first.default_gateways.len(),
        first.dns_servers.len()
    );
    Ok(())
}
