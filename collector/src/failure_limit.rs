//! Failed authentications counted per key — a source (the HTTP side), or a source with the site
//! and terminal a credential was presented for (agent enrollment) — so a guesser is refused for
//! the rest of a minute after `max_per_minute` distinct wrong credentials.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host can take any address of its /64: SLAAC,
//! privacy addresses). Must never grow without bound: old windows are forgotten when the table is
//! large.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Sources tracked before old windows are swept; past it, new sources are not tracked until a
/// sweep frees room (a flood of sources must not grow the table without bound).
const MAX_SOURCES: usize = 100_000;
const WINDOW_MS: i64 = 60_000;
/// How long a (source, credential) that once succeeded is let through a limited source.
const KNOWN_GOOD_MS: i64 = 24 * 3_600_000;

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

/// A short fingerprint of a credential's SHA-256 (hex): enough to tell credentials apart, useless
/// to guess one.
pub fn fingerprint(sha256_hex: &str) -> u64 {
    sha256_hex
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// One source's current window: when it opened, and the distinct wrong credentials seen in it.
struct Window {
    since_ms: i64,
    wrong: Vec<u64>,
}

struct Tables<K> {
    windows: HashMap<K, Window>,
    /// (key, credential fingerprint) → when it last succeeded.
    good: HashMap<(K, u64), i64>,
}

impl<K> Default for Tables<K> {
    fn default() -> Self {
        Self {
            windows: HashMap::new(),
            good: HashMap::new(),
        }
    }
}

/// Failures per key in the current minute-long window: per source (an address; the HTTP side) or
/// per whatever failed (a source, site and terminal; agent enrollment). Only *distinct* wrong
/// credentials count, so a client repeating one stale credential (a browser tab after a token
/// rotation, an agent retrying) does not lock its key out; and a credential that has succeeded
/// for a key before passes even while that key is limited, so someone guessing from the NOC's
/// (or a clinic's) address cannot lock out the people who hold the real one.
#[derive(Clone)]
pub struct FailureLimit<K = IpAddr> {
    max_per_minute: u32,
    tables: Arc<Mutex<Tables<K>>>,
}

impl<K: std::hash::Hash + Eq + Clone> FailureLimit<K> {
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            max_per_minute,
            tables: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables<K>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request for `key` presenting credential `fp` is refused for now: the key used up
    /// its failures this minute, and this credential never succeeded for it. No key never is.
    pub fn key_limited(&self, key: Option<&K>, fp: u64, now_ms: i64) -> bool {
        let Some(k) = key else {
            return false;
        };
        let t = self.lock();
        let over = t.windows.get(k).is_some_and(|w| {
            now_ms - w.since_ms < WINDOW_MS && w.wrong.len() >= self.max_per_minute as usize
        });
        over && t
            .good
            .get(&(k.clone(), fp))
            .is_none_or(|at| now_ms - at >= KNOWN_GOOD_MS)
    }

    /// Counts a wrong credential `fp` for `key` (once per window per distinct credential).
    pub fn key_failed(&self, key: Option<&K>, fp: u64, now_ms: i64) {
        let Some(k) = key else {
            return;
        };
        let max = self.max_per_minute as usize;
        let mut t = self.lock();
        if t.windows.len() >= MAX_SOURCES && !t.windows.contains_key(k) {
            t.windows.retain(|_, w| now_ms - w.since_ms < WINDOW_MS);
            if t.windows.len() >= MAX_SOURCES {
                return;
            }
        }
        let w = t.windows.entry(k.clone()).or_insert(Window {
            since_ms: now_ms,
            wrong: Vec::new(),
        });
        if now_ms - w.since_ms >= WINDOW_MS {
            *w = Window {
                since_ms: now_ms,
                wrong: Vec::new(),
            };
        }
        if w.wrong.len() < max && !w.wrong.contains(&fp) {
            w.wrong.push(fp);
        }
    }

    /// Remembers that credential `fp` succeeded for `key`.
    pub fn key_succeeded(&self, key: Option<&K>, fp: u64, now_ms: i64) {
        let Some(k) = key else {
            return;
        };
        let mut t = self.lock();
        if t.good.len() >= MAX_SOURCES && !t.good.contains_key(&(k.clone(), fp)) {
            t.good.retain(|_, at| now_ms - *at < KNOWN_GOOD_MS);
            if t.good.len() >= MAX_SOURCES {
                return;
            }
        }
        t.good.insert((k.clone(), fp), now_ms);
    }
}

/// Per source: the HTTP side's keying (a peer's address, as its IPv4 address or IPv6 /64).
impl FailureLimit<IpAddr> {
    /// [`FailureLimit::key_limited`] for `peer`'s source.
    pub fn is_limited(&self, peer: Option<IpAddr>, fp: u64, now_ms: i64) -> bool {
        self.key_limited(peer.map(source).as_ref(), fp, now_ms)
    }

    /// [`FailureLimit::key_failed`] for `peer`'s source.
    pub fn record(&self, peer: Option<IpAddr>, fp: u64, now_ms: i64) {
        self.key_failed(peer.map(source).as_ref(), fp, now_ms)
    }

    /// [`FailureLimit::key_succeeded`] for `peer`'s source.
    pub fn succeeded(&self, peer: Option<IpAddr>, fp: u64, now_ms: i64) {
        self.key_succeeded(peer.map(source).as_ref(), fp, now_ms)
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
        l.record(a, 1, 0);
        assert!(!l.is_limited(a, 9, 1));
        l.record(same_64, 2, 1);
        assert!(l.is_limited(a, 9, 2) && l.is_limited(same_64, 9, 2));
        assert!(!l.is_limited(other, 9, 2));
        assert!(!l.is_limited(None, 9, 2));
        assert!(!l.is_limited(a, 9, 60_001), "a new minute");
    }

    #[test]
    fn one_stale_credential_repeated_counts_once() {
        let l = FailureLimit::new(2);
        let a = Some("192.0.2.7".parse().unwrap());
        for i in 0..50 {
            l.record(a, 7, i);
        }
        assert!(!l.is_limited(a, 8, 60));
    }

    #[test]
    fn a_credential_that_worked_from_a_source_passes_while_it_is_limited() {
        let l = FailureLimit::new(2);
        let noc = Some("192.0.2.7".parse().unwrap());
        l.succeeded(noc, 42, 0);
        l.record(noc, 1, 10);
        l.record(noc, 2, 11);
        assert!(l.is_limited(noc, 3, 12), "a guess is refused");
        assert!(!l.is_limited(noc, 42, 12), "the real token still works");
    }

    #[test]
    fn fingerprints_come_from_the_hash() {
        assert_eq!(fingerprint("00000000000000ffabc"), 255);
        assert_eq!(fingerprint("short"), 0);
    }
}
