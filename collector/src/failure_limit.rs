//! Failed authentications counted per source, so a guesser is refused for the rest of a minute
//! after `max_per_minute` failures. Used by agent enrollment (gRPC) and the HTTP side alike.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host can take any address of its /64: SLAAC,
//! privacy addresses). Must never grow without bound: old windows are forgotten when the table is
//! large.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Sources tracked before old windows are swept.
const MAX_SOURCES: usize = 100_000;
const WINDOW_MS: i64 = 60_000;

/// Where failures are counted: an IPv4 address, or an IPv6 address's /64.
pub fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// Failures per source in the current minute-long window.
#[derive(Clone)]
pub struct FailureLimit {
    max_per_minute: u32,
    windows: Arc<Mutex<HashMap<IpAddr, (i64, u32)>>>,
}

impl FailureLimit {
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            max_per_minute,
            windows: Arc::default(),
        }
    }

    /// Whether `peer` has used up its failures for this minute. An unknown peer never is.
    pub fn is_limited(&self, peer: Option<IpAddr>, now_ms: i64) -> bool {
        let Some(src) = peer.map(source) else {
            return false;
        };
        let w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        w.get(&src)
            .is_some_and(|(since, n)| now_ms - since < WINDOW_MS && *n >= self.max_per_minute)
    }

    /// Counts one failure of `peer`.
    pub fn record(&self, peer: Option<IpAddr>, now_ms: i64) {
        let Some(src) = peer.map(source) else {
            return;
        };
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() > MAX_SOURCES {
            w.retain(|_, (since, _)| now_ms - *since < WINDOW_MS);
        }
        let e = w.entry(src).or_insert((now_ms, 0));
        if now_ms - e.0 >= WINDOW_MS {
            *e = (now_ms, 0);
        }
        e.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> IpAddr {
        source(s.parse().unwrap())
    }

    #[test]
    fn failures_count_per_ipv6_slash_64_and_per_ipv4_address() {
        assert_eq!(b("2408:210:1:2::10"), b("2408:210:1:2:abcd:ef01:2345:6789"));
        assert_ne!(b("2408:210:1:2::10"), b("2408:210:1:3::10"));
        assert_eq!(
            b("2408:210:1:2::10"),
            "2408:210:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(b("192.0.2.7"), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_ne!(b("192.0.2.7"), b("192.0.2.8"));
        assert_eq!(b("::ffff:192.0.2.7"), b("192.0.2.7"));
    }

    #[test]
    fn a_source_is_limited_for_the_rest_of_the_minute_after_its_failures() {
        let l = FailureLimit::new(2);
        let a = Some("2408:210:1:2::10".parse().unwrap());
        let same_64 = Some("2408:210:1:2::99".parse().unwrap());
        let other = Some("2408:210:1:3::10".parse().unwrap());
        l.record(a, 0);
        assert!(!l.is_limited(a, 1));
        l.record(same_64, 1);
        assert!(l.is_limited(a, 2) && l.is_limited(same_64, 2));
        assert!(!l.is_limited(other, 2));
        assert!(!l.is_limited(None, 2));
        assert!(!l.is_limited(a, 60_001), "a new minute");
    }
}
