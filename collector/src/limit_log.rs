//! Refusals by the collector's admission limits (connections per source, streams waiting for
//! their Hello, streams in all): each counted in `oqs_reports_rejected_total{reason}` and logged,
//! at most once per reason every [`LOG_EVERY`], with how many there were since the last line and
//! the limit that refused them — a NOC whose agents sit behind one VPN concentrator learns which
//! setting to raise instead of seeing sites vanish without a word.
//!
//! Also the pushback a busy refusal carries: a random wait up to `limits.retry_spread_ms`, so a
//! fleet refused together comes back spread out rather than in lockstep.
//!
//! Must never log more than one line per reason per interval, whatever the flood.

use crate::metrics::Metrics;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one line per reason this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts and logs refusals by limits.
pub struct LimitLog {
    metrics: Arc<Metrics>,
    /// reason → (when it was last logged, refusals since).
    last: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
    spread_ms: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl LimitLog {
    pub fn new(metrics: Arc<Metrics>, spread_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            last: Mutex::new(HashMap::new()),
            spread_ms,
            counter: Default::default(),
        })
    }

    /// One refusal of `reason` (a [`crate::metrics::REJECT_REASONS`] value) by the setting
    /// `limit`, from `peer` (logged as its source: an IPv4 address or an IPv6 /64).
    pub fn refused(&self, reason: &'static str, limit: &'static str, peer: Option<IpAddr>) {
        self.metrics.reject(reason);
        let now = Instant::now();
        let mut m = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(reason).or_insert((None, 0));
        e.1 += 1;
        if e.0.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            let source = peer.map(crate::failure_limit::source);
            tracing::warn!(
                reason,
                limit,
                refused = e.1,
                source = ?source,
                "agents refused by a limit (counted in oqs_reports_rejected_total); agents behind \
                 one NAT or VPN address share its per-source limits: raise them to that many \
                 agents (docs: sizing the limits)"
            );
            *e = (Some(now), 0);
        }
    }

    /// How long a refused agent waits before it comes back: 1 s plus a random share of
    /// `limits.retry_spread_ms`.
    pub fn pushback_ms(&self) -> u64 {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // A multiplicative hash of a counter and the clock: spread, not secret.
        let h = (n ^ u64::from(nanos)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        1000 + h % self.spread_ms.max(1)
    }

    /// A RESOURCE_EXHAUSTED status saying `message`, with the pushback.
    pub fn busy(&self, message: String) -> tonic::Status {
        let mut st = tonic::Status::resource_exhausted(message);
        if let Ok(v) = self.pushback_ms().to_string().parse() {
            st.metadata_mut().insert(crate::ingest::RETRY_PUSHBACK, v);
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test's tracing subscriber wrote.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn refusals_are_counted_each_logged_once_per_interval_and_pushbacks_spread() {
        let m = Arc::new(Metrics::new());
        let log = LimitLog::new(m.clone(), 10_000);
        let out = Lines::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                log.refused(
                    "too_many_pre_hello",
                    "limits.max_pre_hello_per_source",
                    Some("192.0.2.7".parse().unwrap()),
                );
            }
            log.refused("too_many_streams", "limits.max_streams", None);
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "one line per reason: {text}");
        assert!(
            text.contains("limits.max_pre_hello_per_source") && text.contains("192.0.2.7"),
            "{text}"
        );
        assert_eq!(
            m.reports_rejected
                .with_label_values(&["too_many_pre_hello"])
                .get(),
            1000
        );
        let waits: Vec<u64> = (0..1000).map(|_| log.pushback_ms()).collect();
        assert!(
            waits.iter().all(|w| (1000..11_000).contains(w)),
            "{waits:?}"
        );
        let early = waits.iter().filter(|w| **w < 6000).count();
        assert!(
            (300..700).contains(&early),
            "spread, not lockstep: {early} of 1000"
        );
        let st = log.busy("busy".into());
        assert!(st.metadata().get(crate::ingest::RETRY_PUSHBACK).is_some());
    }
}
