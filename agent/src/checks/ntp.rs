//! The time check: one SNTP exchange (RFC 4330) with `ntp.base.oqs-pdl.org` (guide 手順7-⑭),
//! giving the clock offset and the server's stratum. Certificates and line authentication fail in
//! confusing ways when the terminal's clock is wrong, so the NOC watches the offset.
//!
//! Must never set the clock, and never wait past its timeout.

use oqs_proto::v1::{NtpProbe, Outcome};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A time as NTP's 64-bit fixed point (seconds since 1900 << 32 | fraction).
fn to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// NTP fixed point to microseconds since 1900 (signed arithmetic is done on these).
fn ntp_us(v: u64) -> i128 {
    let secs = i128::from(v >> 32);
    let frac = i128::from(v & 0xffff_ffff);
    secs * 1_000_000 + ((frac * 1_000_000) >> 32)
}

fn failed(server: &str, outcome: Outcome, error: String, latency: Duration) -> NtpProbe {
    NtpProbe {
        outcome: outcome as i32,
        error,
        server: server.to_string(),
        offset_us: 0,
        stratum: 0,
        latency_ms: u32::try_from(latency.as_millis()).unwrap_or(u32::MAX),
    }
}

/// Asks `server` (a name or address, with an optional `:port`, default 123) for the time.
pub async fn probe(server: &str, timeout: Duration) -> NtpProbe {
    let started = Instant::now();
    match tokio::time::timeout(timeout, exchange(server)).await {
        Ok(Ok((offset_us, stratum))) => NtpProbe {
            outcome: Outcome::Ok as i32,
            error: String::new(),
            server: server.to_string(),
            offset_us,
            stratum,
            latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        },
        Ok(Err(e)) => failed(server, Outcome::Failed, e, started.elapsed()),
        Err(_) => failed(
            server,
            Outcome::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
            started.elapsed(),
        ),
    }
}

async fn exchange(server: &str) -> Result<(i64, u32), String> {
    // "addr", "[v6]:port", "v4:port", "name" or "name:port"; NTP's port 123 when none is given.
    let target = if server.parse::<std::net::SocketAddr>().is_ok() {
        server.to_string()
    } else if let Ok(ip) = server.parse::<std::net::IpAddr>() {
        std::net::SocketAddr::new(ip, 123).to_string()
    } else if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:123")
    };
    let addr = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server} resolved to no address"))?;
    let bind = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp socket: {e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("udp connect {addr}: {e}"))?;
    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, version 4, mode 3 (client)
    let t1 = to_ntp(SystemTime::now());
    req[40..48].copy_from_slice(&t1.to_be_bytes());
    sock.send(&req)
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut buf = [0u8; 512];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| format!("receive from {addr}: {e}"))?;
        let t4 = to_ntp(SystemTime::now());
        if n < 48 {
            continue;
        }
        let word = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        // Only the answer to our request counts (originate timestamp echoes our transmit).
        if word(24) != t1 {
            continue;
        }
        let mode = buf[0] & 0x07;
        let stratum = u32::from(buf[1]);
        if mode != 4 {
            return Err(format!(
                "{server} answered in mode {mode}, not as a server (4)"
            ));
        }
        if stratum == 0 || stratum > 15 {
            let code = String::from_utf8_lossy(&buf[12..16]).to_string();
            return Err(format!(
                "{server} is unsynchronised or refused (stratum {stratum}, code {code:?})"
            ));
        }
        let (t1, t2, t3, t4) = (ntp_us(t1), ntp_us(word(32)), ntp_us(word(40)), ntp_us(t4));
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        return Ok((i64::try_from(offset).unwrap_or(i64::MAX), stratum));
    }
}

/// The `ntp` check of a round: every configured server, concurrently.
pub async fn run(ctx: &super::Context<'_>) -> Vec<NtpProbe> {
    futures::future::join_all(ctx.probes.ntp_servers.iter().map(|s| probe(s, ctx.timeout))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SNTP server on loopback whose clock is `skew` ahead, answering with `stratum`.
    async fn server(skew: Duration, stratum: u8, answer: bool) -> String {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut buf = [0u8; 48];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                if n < 48 || !answer {
                    continue;
                }
                let mut resp = [0u8; 48];
                resp[0] = 0x24; // version 4, mode 4
                resp[1] = stratum;
                resp[12..16].copy_from_slice(b"RATE");
                resp[24..32].copy_from_slice(&buf[40..48]);
                let now = to_ntp(SystemTime::now() + skew);
                resp[32..40].copy_from_slice(&now.to_be_bytes());
                resp[40..48].copy_from_slice(&now.to_be_bytes());
                let _ = sock.send_to(&resp, peer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn offset_and_stratum_come_from_a_real_exchange() {
        let addr = server(Duration::from_millis(2500), 2, true).await;
        let p = probe(&addr, Duration::from_secs(2)).await;
        assert_eq!(p.outcome, Outcome::Ok as i32, "{}", p.error);
        assert_eq!(p.stratum, 2);
        assert!(
            (p.offset_us - 2_500_000).abs() < 50_000,
            "offset {}",
            p.offset_us
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_within_the_timeout() {
        let addr = server(Duration::ZERO, 2, false).await;
        let started = Instant::now();
        let p = probe(&addr, Duration::from_millis(300)).await;
        assert_eq!(p.outcome, Outcome::TimedOut as i32);
        assert!(p.error.contains("300 ms"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn kiss_of_death_is_a_failure_naming_the_code() {
        let addr = server(Duration::ZERO, 0, true).await;
        let p = probe(&addr, Duration::from_secs(2)).await;
        assert_eq!(p.outcome, Outcome::Failed as i32);
        assert!(p.error.contains("RATE"), "{}", p.error);
    }

    #[test]
    fn ntp_time_round_trips() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_589_271_123_456);
        let us = ntp_us(to_ntp(t)) - i128::from(NTP_UNIX_OFFSET) * 1_000_000;
        assert!((us - 1_795_589_271_123_456).abs() <= 1);
    }
}
