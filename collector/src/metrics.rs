//! The collector's Prometheus registry: ingest counters, connection gauge, commit timings, and the
//! fleet's state per site, terminal and check.
//!
//! Names are prefixed `oqs_`, in base units, counters end in `_total`. Labels are bounded and
//! documented: `reason` (a fixed set), `site` and `terminal` (validated ids: at most the fleet),
//! `check` (six names), `flag` (ten names), `detail` (a fixed set per flag: `router_table` /
//! `upstream`, or a known portal code / `other`), `code` (known portal codes or `other`). Never an
//! address, a customer ID or free text.
//! Must never be written to from the HTTP side: outputs only read it.

use crate::fleet_metrics::FleetMetrics;
use crate::view::FleetView;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The fixed set of `reason` label values of `oqs_reports_rejected_total`.
pub const REJECT_REASONS: &[&str] = &[
    "no_hello",
    "bad_hello",
    "protocol_version",
    "invalid_report",
    "out_of_order",
    "too_large",
    "malformed",
    "too_many_streams",
    "rate_limited",
    "seq_out_of_range",
    "too_many_pre_hello",
    "too_many_connections",
    "stream_idle",
    "terminal_id_conflict",
    "too_many_http_connections",
    "over_budget",
    "no_room",
];

pub struct Metrics {
    pub registry: Registry,
    pub reports_ingested: IntCounter,
    pub reports_duplicate: IntCounter,
    /// List items (addresses, DNS answers, servers, gateways) beyond the limits, dropped from
    /// otherwise good reports.
    pub items_trimmed: IntCounter,
    /// Reports agents were acknowledged that the store no longer holds (agents' Hellos say).
    pub store_lost_acked: IntCounter,
    pub reports_rejected: IntCounterVec,
    pub agents_connected: IntGauge,
    pub commit_batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub events: IntCounterVec,
    pub auth_failures: IntCounterVec,
    /// The per-site/terminal/check families, written at scrape time.
    pub fleet: FleetMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reports_ingested = IntCounter::with_opts(Opts::new(
            "oqs_reports_ingested_total",
            "Reports stored durably (acknowledged as new).",
        ))
        .expect("valid metric");
        let reports_duplicate = IntCounter::with_opts(Opts::new(
            "oqs_reports_duplicate_total",
            "Reports received again after they were stored (replays); acknowledged, not stored twice.",
        ))
        .expect("valid metric");
        let items_trimmed = IntCounter::with_opts(Opts::new(
            "oqs_report_items_trimmed_total",
            "List items beyond limits.max_addresses / max_list_items dropped from reports that were \
             stored with the first ones (the reports themselves are not refused).",
        ))
        .expect("valid metric");
        let store_lost_acked = IntCounter::with_opts(Opts::new(
            "oqs_store_lost_acked_reports_total",
            "Reports the collector had acknowledged that its store no longer holds, as agents' \
             Hellos tell (a damaged disk, a restore from an older backup); the site is flagged \
             store_lost_reports.",
        ))
        .expect("valid metric");
        let reports_rejected = IntCounterVec::new(
            Opts::new(
                "oqs_reports_rejected_total",
                "Agent messages refused, by reason (no_hello, bad_hello, protocol_version, \
                 invalid_report, out_of_order, too_large, malformed, too_many_streams, rate_limited, \
                 seq_out_of_range, too_many_pre_hello, too_many_connections, stream_idle, \
                 terminal_id_conflict, over_budget, no_room; too_many_http_connections: the HTTP \
                 side's cap).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let agents_connected = IntGauge::with_opts(Opts::new(
            "oqs_agents_connected",
            "Agent streams open now (after a valid Hello).",
        ))
        .expect("valid metric");
        let commit_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "oqs_ingest_commit_batch_size",
                "Requests written and flushed together by one group commit.",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
            ]),
        )
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "oqs_ingest_commit_seconds",
                "Time to write and flush one group commit to disk.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new(
                "oqs_flag_events_total",
                "Flag events recorded, by flag and action (raised, cleared, updated).",
            ),
            &["flag", "action"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(events.clone()))
            .expect("metric names are unique");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "oqs_auth_failures_total",
                "Refused credentials, by reason: agents (missing, not_enrolled, \
                 wrong_credential, revoked, rate_limited) and the HTTP side (http_credentials, \
                 http_rate_limited).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(auth_failures.clone()))
            .expect("metric names are unique");
        for r in crate::enrollment::AuthFailure::ALL {
            auth_failures.with_label_values(&[r.label()]);
        }
        for r in [
            crate::http_auth::HTTP_CREDENTIALS,
            crate::http_auth::HTTP_RATE_LIMITED,
        ] {
            auth_failures.with_label_values(&[r]);
        }
        for c in [
            Box::new(reports_ingested.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reports_duplicate.clone()),
            Box::new(items_trimmed.clone()),
            Box::new(store_lost_acked.clone()),
            Box::new(reports_rejected.clone()),
            Box::new(agents_connected.clone()),
            Box::new(commit_batch_size.clone()),
            Box::new(commit_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Every reason is exported from the start, at 0, so alerts and rate() see the series.
        for r in REJECT_REASONS {
            reports_rejected.with_label_values(&[r]);
        }
        Self {
            registry,
            reports_ingested,
            reports_duplicate,
            items_trimmed,
            store_lost_acked,
            reports_rejected,
            agents_connected,
            commit_batch_size,
            commit_seconds,
            events,
            auth_failures,
            fleet: FleetMetrics::default(),
        }
    }

    /// Counts a refusal. `reason` must be one of [`REJECT_REASONS`].
    pub fn reject(&self, reason: &'static str) {
        debug_assert!(REJECT_REASONS.contains(&reason), "unknown reason {reason}");
        self.reports_rejected.with_label_values(&[reason]).inc();
    }

    /// Counts an agent refused for its credential; `reason` is an `AuthFailure` label.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// The Prometheus text exposition of every metric: the registry's, then the fleet's.
    pub fn render(&self, view: &FleetView) -> String {
        let mut out = TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding metrics failed: {e}\n"));
        self.fleet.render(view, &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
