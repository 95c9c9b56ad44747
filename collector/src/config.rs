//! The collector's settings: command-line flags over an optional TOML file over built-in defaults.
//!
//! Every limit the collector enforces is here, named, with its default; nothing else in the crate
//! invents a number. Must never read the environment or touch the data directory.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration could not be used. Messages name the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {key} = {value}: {rule}")]
    Invalid {
        key: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("config: {0}")]
    Incidents(#[from] crate::incidents::RuleError),
}

/// Everything the collector needs to run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Where the sled store lives.
    pub data_dir: PathBuf,
    /// The gRPC ingest address (agents connect here).
    pub grpc_listen: SocketAddr,
    /// The HTTP address: `/healthz`, `/metrics`, `/api/*`, the dashboard.
    pub http_listen: SocketAddr,
    pub limits: Limits,
    pub ingest: IngestTuning,
    pub store: StoreTuning,
    pub flags: FlagSettings,
    pub history: HistorySettings,
    /// gRPC over TLS for agents; required on a non-loopback `grpc_listen` unless `insecure`.
    pub tls: Option<TlsSettings>,
    /// Allow a non-loopback `grpc_listen` without TLS, or `http_listen` without tokens
    /// (`--insecure`).
    pub insecure: bool,
    pub http_auth: HttpAuth,
    pub enrollment: EnrollmentSettings,
    /// Limits on sites' closed days and maintenance windows.
    pub maintenance: crate::maintenance::MaintenanceLimits,
    /// When many sites of one area and prefecture failing alike make one incident.
    pub incidents: crate::incidents::IncidentSettings,
}

/// Whether agents must prove they belong to their site (`enrollment.rs`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollmentSettings {
    /// Refuse agents without a valid enrollment token or terminal secret. Required on a
    /// non-loopback `grpc_listen` unless `insecure`.
    pub required: bool,
    /// Distinct wrong credentials per source, site and terminal per minute before further wrong
    /// ones for them are answered RESOURCE_EXHAUSTED (a valid credential always passes).
    pub max_failures_per_minute: u32,
    /// How long a new enrollment token works, in hours (`admin enroll --expires-in-hours` sets
    /// another for one token); 0: until revoked.
    pub token_ttl_hours: u64,
    /// How many terminals one token may enroll (`admin enroll --max-uses`); 0: any number.
    pub token_max_uses: u32,
}

impl Default for EnrollmentSettings {
    fn default() -> Self {
        Self {
            required: false,
            max_failures_per_minute: 20,
            token_ttl_hours: 14 * 24,
            token_max_uses: 0,
        }
    }
}

/// Tokens for the HTTP side, stored as SHA-256 hex (`printf %s TOKEN | sha256sum`). Empty lists:
/// open (only acceptable on loopback).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuth {
    /// Host names (as in the `Host` header, without the port) the open HTTP side answers besides
    /// IP literals and `localhost`: a page on another site cannot then reach it through DNS
    /// rebinding. Ignored once `token_sha256` is set (the browser then needs the token).
    pub allowed_hosts: Vec<String>,
    /// Failed credentials per source (an IPv4 address or an IPv6 /64) per minute before it gets
    /// 429 for the rest of the minute.
    pub max_failures_per_minute: u32,
    /// Tokens for the dashboard and `/api` (bearer, or basic auth with the token as password).
    pub token_sha256: Vec<String>,
    /// Tokens for `/metrics` only (Prometheus' bearer token); empty: `token_sha256` applies.
    pub metrics_token_sha256: Vec<String>,
    /// Tokens that also see full customer IDs (everyone else sees them masked).
    pub reveal_token_sha256: Vec<String>,
    /// Tokens for `/api/admin` (enrollment tokens); empty: admin is open only while the whole HTTP
    /// side is (no `token_sha256`, loopback).
    pub admin_token_sha256: Vec<String>,
}

impl Default for HttpAuth {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_failures_per_minute: 20,
            token_sha256: Vec::new(),
            metrics_token_sha256: Vec::new(),
            reveal_token_sha256: Vec::new(),
            admin_token_sha256: Vec::new(),
        }
    }
}

/// The collector's certificate for agents, and optionally the CA of agents' client certificates.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The collector's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// When set, every agent must present a client certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./oqs-data"),
            grpc_listen: "[::1]:50051".parse().expect("literal address"),
            http_listen: "[::1]:8080".parse().expect("literal address"),
            limits: Limits::default(),
            ingest: IngestTuning::default(),
            store: StoreTuning::default(),
            flags: FlagSettings::default(),
            history: HistorySettings::default(),
            tls: None,
            insecure: false,
            http_auth: HttpAuth::default(),
            enrollment: EnrollmentSettings::default(),
            maintenance: Default::default(),
            incidents: Default::default(),
        }
    }
}

/// What one agent message may contain. A message over a limit is refused with a status that names
/// the limit; it is never truncated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest encoded message accepted, in bytes (gRPC RESOURCE_EXHAUSTED above it).
    pub max_message_bytes: usize,
    /// DNS probes in one report.
    pub max_dns_probes: usize,
    /// HTTP probes in one report.
    pub max_http_probes: usize,
    /// NTP probes in one report.
    pub max_ntp_probes: usize,
    /// Certificates in one report's certificate check.
    pub max_certs: usize,
    /// IPv6 addresses in one report.
    pub max_addresses: usize,
    /// Answers in one DNS probe; DNS servers and gateways in the IPv6 state.
    pub max_list_items: usize,
    /// Characters in any free-text field (errors, excerpts).
    pub max_text_chars: usize,
    /// Characters in a URL.
    pub max_url_chars: usize,
    /// How long a new stream may take to send its Hello, in milliseconds.
    pub hello_timeout_ms: u64,
    /// Agent streams open at once past their Hello; more are refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Streams waiting for their Hello (at most `hello_timeout_ms` each), in all.
    pub max_pre_hello_streams: usize,
    /// Streams waiting for their Hello from one source (an IPv4 address or an IPv6 /64).
    pub max_pre_hello_per_source: usize,
    /// Concurrent streams on one HTTP/2 connection (an agent uses one; `oqs-fleet-sim
    /// --connections` multiplexes many terminals and needs this raised).
    pub max_streams_per_connection: u32,
    /// A stream that sends nothing for this long after its Hello is closed (UNAVAILABLE; an agent
    /// reconnects): a few of the longest usual intervals (an hour), so a peer cannot sit on a
    /// slot. Agents with longer intervals reconnect for each round.
    pub stream_idle_secs: u64,
    /// How long a new connection may take for its TLS handshake, or to send its first bytes
    /// without TLS, in milliseconds.
    pub connect_timeout_ms: u64,
    /// The HTTP side: a client must send a whole request head within this many milliseconds of
    /// connecting or of its previous answer (an idle keep-alive connection is closed after it).
    pub http_header_timeout_ms: u64,
    /// The HTTP side: a whole request — head, body and answer — within this many milliseconds,
    /// else 408 (a client whose body never comes holds nothing longer).
    pub http_request_timeout_ms: u64,
    /// The HTTP side: a connection with no request under way for this many seconds is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike; the dashboard refreshes every 10–30 s).
    pub http_idle_secs: u64,
    /// The HTTP side: open connections at most; more are closed as they are accepted (counted,
    /// logged), so idle or slow HTTP clients can never take the file descriptors agents need.
    pub max_http_connections: usize,
    /// Open gRPC connections from one source (an IPv4 address or an IPv6 /64); more are closed
    /// when accepted. Agents behind one NAT or VPN gateway share it: size it to the largest such
    /// (a vendor's VPN concentrator can carry thousands), below the process's open-file limit.
    pub max_connections_per_source: usize,
    /// A refusal for being busy (streams waiting for their Hello, streams in all) tells the agent
    /// to wait 1 s plus a random share of this many milliseconds (`grpc-retry-pushback-ms`), so a
    /// fleet refused together comes back spread out.
    pub retry_spread_ms: u64,
    /// Reports one terminal may send per rate window (`rate_window_secs`, a minute by default,
    /// hence the name), over all its streams; more end the stream with RESOURCE_EXHAUSTED and a
    /// `grpc-retry-pushback-ms` saying when the window ends.
    pub max_reports_per_minute: u32,
    /// The rate window, in seconds.
    pub rate_window_secs: u64,
    /// How far an agent's clock may be ahead of the collector's, in seconds; a report further
    /// ahead is stored with its receive time and the site flagged `ntp_skew`, never refused.
    pub max_clock_ahead_secs: u64,
    /// A stream whose Hello's time is further behind the collector's clock flags the terminal's
    /// clock (`ntp_skew`); its reports keep their times.
    pub max_clock_behind_secs: u64,
    /// How far a report's seq may jump above the terminal's stored seq. An agent's seq grows by
    /// one a round (2^32 is over a century of one-second rounds): a larger jump is a damaged
    /// counter, and storing it would leave the terminal no room to go on under `MAX_SEQ`. Such a
    /// report is not stored; the stream ends saying the stored seq (`oqs-seq-restart`) and the
    /// agent renumbers what it holds from there.
    pub max_seq_jump: u64,
    /// Bytes of reports and history points one terminal may store in a day (the window starts
    /// with its first report after the last one ended). Beyond it its reports are refused for now
    /// (RESOURCE_EXHAUSTED with a pushback: the agent keeps them) and the site is flagged
    /// `reports_refused`: one sender streaming large reports cannot fill the collector's disk.
    pub max_stored_bytes_per_terminal_per_day: u64,
    /// The same for all of a site's terminals together.
    pub max_stored_bytes_per_site_per_day: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_dns_probes: RL::DNS_PROBES,
            max_http_probes: RL::HTTP_PROBES,
            max_ntp_probes: RL::NTP_PROBES,
            max_certs: RL::CERTS,
            max_addresses: 64,
            max_list_items: 64,
            max_text_chars: RL::TEXT_CHARS,
            max_url_chars: RL::URL_CHARS,
            hello_timeout_ms: 10_000,
            max_streams: 50_000,
            max_pre_hello_streams: 4096,
            max_pre_hello_per_source: 64,
            max_streams_per_connection: 8,
            max_connections_per_source: 10_000,
            retry_spread_ms: 10_000,
            stream_idle_secs: 3 * 3600,
            http_header_timeout_ms: 30_000,
            http_request_timeout_ms: 60_000,
            http_idle_secs: 120,
            max_http_connections: 1024,
            connect_timeout_ms: 10_000,
            max_reports_per_minute: 600,
            rate_window_secs: 60,
            max_clock_ahead_secs: 24 * 3600,
            max_clock_behind_secs: 24 * 3600,
            max_seq_jump: 1 << 32,
            max_stored_bytes_per_terminal_per_day: 64 << 20,
            max_stored_bytes_per_site_per_day: 256 << 20,
        }
    }
}

use oqs_proto::report_limits as RL;

impl Limits {
    /// The first limit of a report's content set below the protocol's (oqs_proto::report_limits):
    /// agents build their reports within the protocol's, so a lower one would refuse them all.
    /// (key, value, the rule).
    pub fn below_protocol(&self) -> Option<(&'static str, usize, &'static str)> {
        [
            (
                "limits.max_dns_probes",
                self.max_dns_probes,
                RL::DNS_PROBES,
                "must be at least 256 (oqs_proto::report_limits::DNS_PROBES)",
            ),
            (
                "limits.max_http_probes",
                self.max_http_probes,
                RL::HTTP_PROBES,
                "must be at least 32 (oqs_proto::report_limits::HTTP_PROBES)",
            ),
            (
                "limits.max_ntp_probes",
                self.max_ntp_probes,
                RL::NTP_PROBES,
                "must be at least 8 (oqs_proto::report_limits::NTP_PROBES)",
            ),
            (
                "limits.max_certs",
                self.max_certs,
                RL::CERTS,
                "must be at least 32 (oqs_proto::report_limits::CERTS)",
            ),
            (
                "limits.max_text_chars",
                self.max_text_chars,
                RL::TEXT_CHARS,
                "must be at least 512 (oqs_proto::report_limits::TEXT_CHARS)",
            ),
            (
                "limits.max_url_chars",
                self.max_url_chars,
                RL::URL_CHARS,
                "must be at least 2048 (oqs_proto::report_limits::URL_CHARS)",
            ),
        ]
        .into_iter()
        .find(|(_, v, min, _)| v < min)
        .map(|(key, v, _, rule)| (key, v, rule))
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }
}

/// How the group committer batches writes. Larger batches mean fewer flushes (more throughput) at
/// the price of a little latency.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestTuning {
    /// The most reports written and flushed together.
    pub commit_batch_max: usize,
    /// The most commit requests waiting for the committer before senders wait (back-pressure).
    pub commit_queue: usize,
    /// Reports of one stream waiting for their ack before the stream stops reading.
    pub per_stream_in_flight: usize,
}

impl Default for IngestTuning {
    fn default() -> Self {
        Self {
            commit_batch_max: 2048,
            commit_queue: 16_384,
            per_stream_in_flight: 64,
        }
    }
}

/// The store's memory use.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreTuning {
    /// The most bytes sled keeps cached in memory (its own default, 1 GiB, is far more than a
    /// collector needs: recent terminal records and reports fit in a small cache).
    pub cache_bytes: u64,
    /// zstd level of what the store writes (1–22), 0 for none (the default). Compression cuts
    /// the disk used per site 2.5–3.3× but sled 0.34 makes a zstd context for every fragment it
    /// writes or reads: at 10,000 terminals that was an eighth of the collector's CPU, 20 MB of
    /// memory and ack p99 62 ms against 19 ms without (README, "Memory per terminal"). Applies to
    /// a new store; an existing one keeps what it was created with (the collector says so).
    pub compression_level: i32,
    /// Start even though the store lost acknowledged writes (its log holds fewer commits than its
    /// witness file says were durable): once, after deciding not to restore a backup. The
    /// collector refuses to start otherwise, naming the files and the recovery.
    pub accept_lost_writes: bool,
    /// Room the collector keeps on its data directory's filesystem: below the smaller of these
    /// two it stores no more reports (refused for now, with a pushback: the agents keep them),
    /// so it can always start again and serve reads; Hellos, flags and retention still write.
    pub reserve_bytes: u64,
    pub reserve_percent: u8,
}

impl StoreTuning {
    /// The reserve on a filesystem of `size` bytes.
    pub fn reserve_of(&self, size: u64) -> u64 {
        self.reserve_bytes
            .min(size / 100 * u64::from(self.reserve_percent.min(100)))
    }
}

impl Default for StoreTuning {
    fn default() -> Self {
        Self {
            // 4 MiB: at 10,000 terminals 6 MB less resident than 8 MiB (and ~70 MB less than
            // 128 MiB) with the same ack latency, overload capacity and dashboard reads since the
            // store is uncompressed; 2 MiB saves nothing more and loses 8% of the overload
            // capacity (README, "Memory per terminal").
            cache_bytes: 4 * 1024 * 1024,
            compression_level: 0,
            accept_lost_writes: false,
            reserve_bytes: 256 << 20,
            reserve_percent: 10,
        }
    }
}

/// When flags rise and clear. Hysteresis: a condition must hold on `raise_after` consecutive
/// reports of a terminal to raise, and be gone on `clear_after` to clear.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlagSettings {
    pub raise_after: u32,
    pub clear_after: u32,
    /// `ntp_skew` above this clock offset, in milliseconds.
    pub ntp_skew_ms: u64,
    /// `cert_expiring` is raised when a certificate the OQS connection depends on expires within
    /// this many days (the MPKI client's first warning is at 90).
    pub cert_warn_days: u32,
    /// `prefix_changed` stays raised this long after the last change, in seconds.
    pub prefix_changed_hold_secs: u64,
    /// `terminal_id_conflict` stays raised this long after the last conflicting report, in
    /// seconds.
    pub conflict_hold_secs: u64,
    /// A consent page within this many seconds of a prefix change is linked to it.
    pub reauth_link_secs: u64,
    /// `flapping`: at least `flapping_transitions` global-address changes within the window; it
    /// clears when the window has none.
    pub flapping_window_secs: u64,
    pub flapping_transitions: u32,
    /// `agent_silent` after this many intervals without a report.
    pub silent_intervals: u32,
    /// The interval assumed until a terminal's own is known (two reports), in seconds.
    pub default_interval_secs: u64,
    /// How often silence and expiries are evaluated, in milliseconds.
    pub evaluate_every_ms: u64,
    /// Portal codes that get their own `code` label in metrics; others are counted as `other`
    /// (the API and events always carry the real code).
    pub known_codes: Vec<String>,
    /// Prefix-history entries kept per site.
    pub prefix_history_max: usize,
    /// `reports_late`: a report that arrives more than this many seconds after it was made (or
    /// after this collector started, when it was made before) — its terminal's way to the
    /// collector was cut or is slow. 0: never.
    pub late_after_secs: u64,
    /// `reports_late` stays raised this long after the last late report, in seconds (so a burst
    /// of replayed reports is seen, not only logged).
    pub late_hold_secs: u64,
}

impl Default for FlagSettings {
    fn default() -> Self {
        Self {
            raise_after: 2,
            clear_after: 2,
            ntp_skew_ms: 1000,
            cert_warn_days: 90,
            prefix_changed_hold_secs: 3600,
            conflict_hold_secs: 3600,
            reauth_link_secs: 86_400,
            flapping_window_secs: 1800,
            flapping_transitions: 3,
            silent_intervals: 3,
            default_interval_secs: 60,
            evaluate_every_ms: 5000,
            known_codes: vec!["P11019".into(), "P32031".into()],
            prefix_history_max: 100,
            late_after_secs: 600,
            late_hold_secs: 1800,
        }
    }
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl FlagSettings {
    pub fn default_interval_ms(&self) -> i64 {
        secs_ms(self.default_interval_secs)
    }
    pub fn flapping_window_ms(&self) -> i64 {
        secs_ms(self.flapping_window_secs)
    }
    pub fn prefix_changed_hold_ms(&self) -> i64 {
        secs_ms(self.prefix_changed_hold_secs)
    }
    pub fn conflict_hold_ms(&self) -> i64 {
        secs_ms(self.conflict_hold_secs)
    }
    pub fn reauth_link_ms(&self) -> i64 {
        secs_ms(self.reauth_link_secs)
    }
    pub fn late_after_ms(&self) -> i64 {
        secs_ms(self.late_after_secs)
    }
    pub fn late_hold_ms(&self) -> i64 {
        secs_ms(self.late_hold_secs)
    }
}

/// What the store keeps and for how long. Steady state is cheap: a report identical to the last
/// (latencies aside) is kept as a small marker; a check's history gets a point when it changes and
/// a keyframe (with the latency rollup since the last point) every `keyframe_secs`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// A history point per check at least this often, in seconds.
    pub keyframe_secs: u64,
    /// Raw reports (and markers) older than this are deleted, in hours; their history points stay.
    pub raw_retention_hours: u64,
    /// History points older than this are deleted, in days.
    pub history_retention_days: u64,
    /// Events older than this are deleted, in days.
    pub event_retention_days: u64,
    /// How often retention runs, in seconds.
    pub sweep_every_secs: u64,
    /// The most keys one retention pass deletes (the rest wait for the next pass).
    pub sweep_max_deletes: usize,
    /// The most points or events one API answer carries.
    pub max_points_per_query: usize,
    /// The most bytes of one JSON answer of the API: the history and the event log keep their
    /// newest points within it (and say `truncated`); a site's checks show details up to a share
    /// of it; any other answer over it is refused (500 naming this setting), never sent.
    pub max_answer_bytes: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self {
            keyframe_secs: 3600,
            raw_retention_hours: 7 * 24,
            history_retention_days: 35,
            event_retention_days: 90,
            sweep_every_secs: 600,
            sweep_max_deletes: 100_000,
            max_points_per_query: 20_000,
            max_answer_bytes: 8 * 1024 * 1024,
        }
    }
}

impl HistorySettings {
    pub fn keyframe_ms(&self) -> i64 {
        secs_ms(self.keyframe_secs)
    }
    pub fn raw_retention_ms(&self) -> i64 {
        secs_ms(self.raw_retention_hours.saturating_mul(3600))
    }
    pub fn history_retention_ms(&self) -> i64 {
        secs_ms(self.history_retention_days.saturating_mul(86_400))
    }
    pub fn event_retention_ms(&self) -> i64 {
        secs_ms(self.event_retention_days.saturating_mul(86_400))
    }
}

impl StoreTuning {
    /// The zstd level, or None for an uncompressed store.
    pub fn compression(&self) -> Option<i32> {
        (self.compression_level > 0).then_some(self.compression_level)
    }
}

impl CollectorConfig {
    /// Reads a TOML file; keys it does not set keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text (unknown keys are errors naming the key).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks the values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.grpc_listen.ip().is_loopback() && self.tls.is_none() && !self.insecure {
            return Err(ConfigError::Invalid {
                key: "grpc_listen",
                value: self.grpc_listen.to_string(),
                rule:
                    "is not a loopback address, so agents' reports (customer IDs, addresses) would \
                       cross the network in clear text: configure [tls] cert and key, or pass \
                       --insecure (insecure = true) to accept that",
            });
        }
        let l = &self.limits;
        let positive: [(&'static str, usize); 14] = [
            (
                "limits.max_reports_per_minute",
                l.max_reports_per_minute as usize,
            ),
            (
                "enrollment.max_failures_per_minute",
                self.enrollment.max_failures_per_minute as usize,
            ),
            (
                "http_auth.max_failures_per_minute",
                self.http_auth.max_failures_per_minute as usize,
            ),
            ("limits.rate_window_secs", l.rate_window_secs as usize),
            ("limits.max_message_bytes", l.max_message_bytes),
            ("limits.max_dns_probes", l.max_dns_probes),
            ("limits.max_http_probes", l.max_http_probes),
            ("limits.max_ntp_probes", l.max_ntp_probes),
            ("limits.max_certs", l.max_certs),
            ("limits.max_addresses", l.max_addresses),
            ("limits.max_list_items", l.max_list_items),
            ("limits.max_text_chars", l.max_text_chars),
            ("ingest.commit_batch_max", self.ingest.commit_batch_max),
            (
                "ingest.per_stream_in_flight",
                self.ingest.per_stream_in_flight,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    rule: "must be at least 1",
                });
            }
        }
        if l.max_text_chars < oqs_proto::AGENT_TEXT_CHARS {
            return Err(ConfigError::Invalid {
                key: "limits.max_text_chars",
                value: l.max_text_chars.to_string(),
                rule: "must be at least oqs_proto::AGENT_TEXT_CHARS (256), the length agents cut their texts to",
            });
        }
        if l.max_message_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "limits.max_message_bytes",
                value: l.max_message_bytes.to_string(),
                rule: "must be at most 64 MiB",
            });
        }
        if let Some((key, v, rule)) = self.limits.below_protocol() {
            // Agents build reports within the protocol's limits: a lower one refuses them all.
            return Err(ConfigError::Invalid {
                key,
                value: v.to_string(),
                rule,
            });
        }
        if self.ingest.commit_queue < self.ingest.commit_batch_max {
            return Err(ConfigError::Invalid {
                key: "ingest.commit_queue",
                value: self.ingest.commit_queue.to_string(),
                rule: "must be at least ingest.commit_batch_max",
            });
        }
        if self.store.cache_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "store.cache_bytes",
                value: self.store.cache_bytes.to_string(),
                rule: "must be at least 1 MiB (1048576)",
            });
        }
        if !self.grpc_listen.ip().is_loopback() && !self.enrollment.required && !self.insecure {
            return Err(ConfigError::Invalid {
                key: "enrollment.required",
                value: "false".into(),
                rule: "must be true on a non-loopback grpc_listen, or any agent could report for \
                       any site; or pass --insecure (insecure = true) to accept that",
            });
        }
        for (key, v) in [
            (
                "limits.max_pre_hello_streams",
                self.limits.max_pre_hello_streams as u64,
            ),
            (
                "limits.max_pre_hello_per_source",
                self.limits.max_pre_hello_per_source as u64,
            ),
            (
                "limits.max_streams_per_connection",
                u64::from(self.limits.max_streams_per_connection),
            ),
            (
                "limits.max_connections_per_source",
                self.limits.max_connections_per_source as u64,
            ),
            ("limits.stream_idle_secs", self.limits.stream_idle_secs),
            ("limits.retry_spread_ms", self.limits.retry_spread_ms),
            ("limits.max_seq_jump", self.limits.max_seq_jump),
            (
                "limits.max_stored_bytes_per_terminal_per_day",
                self.limits.max_stored_bytes_per_terminal_per_day,
            ),
            (
                "limits.max_stored_bytes_per_site_per_day",
                self.limits.max_stored_bytes_per_site_per_day,
            ),
            ("limits.connect_timeout_ms", self.limits.connect_timeout_ms),
            (
                "limits.http_header_timeout_ms",
                self.limits.http_header_timeout_ms,
            ),
            (
                "limits.http_request_timeout_ms",
                self.limits.http_request_timeout_ms,
            ),
            ("limits.http_idle_secs", self.limits.http_idle_secs),
            (
                "limits.max_http_connections",
                self.limits.max_http_connections as u64,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    rule: "must be at least 1",
                });
            }
        }
        if self.limits.max_streams == 0 || self.limits.max_reports_per_minute == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_streams",
                value: "0".into(),
                rule: "limits.max_streams and limits.max_reports_per_minute must be at least 1",
            });
        }
        if !self.http_listen.ip().is_loopback()
            && self.http_auth.token_sha256.is_empty()
            && !self.insecure
        {
            return Err(ConfigError::Invalid {
                key: "http_listen",
                value: self.http_listen.to_string(),
                rule: "is not a loopback address, so the dashboard and API (customer IDs, \
                       addresses) would be open to the network: set [http_auth] token_sha256, or \
                       pass --insecure (insecure = true) to accept that",
            });
        }
        let a = &self.http_auth;
        if let Some(bad) = a
            .token_sha256
            .iter()
            .chain(&a.metrics_token_sha256)
            .chain(&a.reveal_token_sha256)
            .chain(&a.admin_token_sha256)
            .find(|h| {
                h.len() != 64
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
        {
            return Err(ConfigError::Invalid {
                key: "http_auth",
                value: bad.clone(),
                rule: "tokens are stored as SHA-256 in lowercase hex (printf %s TOKEN | sha256sum)",
            });
        }
        let f = &self.flags;
        let h = &self.history;
        let m = &self.maintenance;
        let at_least_one: [(&'static str, u64); 16] = [
            ("flags.raise_after", f.raise_after.into()),
            ("flags.clear_after", f.clear_after.into()),
            ("flags.flapping_window_secs", f.flapping_window_secs),
            ("flags.flapping_transitions", f.flapping_transitions.into()),
            ("flags.silent_intervals", f.silent_intervals.into()),
            ("flags.default_interval_secs", f.default_interval_secs),
            ("flags.evaluate_every_ms", f.evaluate_every_ms),
            ("history.keyframe_secs", h.keyframe_secs),
            ("history.raw_retention_hours", h.raw_retention_hours),
            ("history.history_retention_days", h.history_retention_days),
            ("history.sweep_every_secs", h.sweep_every_secs),
            ("history.sweep_max_deletes", h.sweep_max_deletes as u64),
            ("maintenance.max_window_days", m.max_window_days.into()),
            ("maintenance.max_ahead_days", m.max_ahead_days.into()),
            ("maintenance.max_windows", m.max_windows as u64),
            ("maintenance.max_closed", m.max_closed as u64),
        ];
        for (key, v) in at_least_one {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    rule: "must be at least 1",
                });
            }
        }
        if h.max_answer_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid {
                key: "history.max_answer_bytes",
                value: h.max_answer_bytes.to_string(),
                rule: "must be at least 65536 (a site page with its terminals' checks)",
            });
        }
        if h.max_points_per_query == 0 {
            return Err(ConfigError::Invalid {
                key: "history.max_points_per_query",
                value: "0".into(),
                rule: "must be at least 1",
            });
        }
        if let Some(c) = f.known_codes.iter().find(|c| {
            c.len() != 6 || !c.starts_with('P') || !c[1..].bytes().all(|b| b.is_ascii_digit())
        }) {
            return Err(ConfigError::Invalid {
                key: "flags.known_codes",
                value: c.clone(),
                rule: "each code is P followed by 5 digits",
            });
        }
        if !(0..=22).contains(&self.store.compression_level) {
            return Err(ConfigError::Invalid {
                key: "store.compression_level",
                value: self.store.compression_level.to_string(),
                rule: "must be 0 (none) to 22",
            });
        }
        self.incidents.validate()?;
        if l.hello_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.hello_timeout_ms",
                value: "0".into(),
                rule: "must be at least 1",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_the_documented_values() {
        let c = CollectorConfig::default();
        assert_eq!(c.grpc_listen.to_string(), "[::1]:50051");
        assert_eq!(c.http_listen.to_string(), "[::1]:8080");
        assert_eq!(c.data_dir, PathBuf::from("./oqs-data"));
        c.validate().unwrap();
    }

    #[test]
    fn toml_sets_keys_and_keeps_other_defaults() {
        let c = CollectorConfig::from_toml(
            "data_dir = \"/var/lib/oqs\"\n[limits]\nmax_message_bytes = 1000\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/oqs"));
        assert_eq!(c.limits.max_message_bytes, 1000);
        assert_eq!(c.limits.max_dns_probes, 256);
    }

    #[test]
    fn a_non_loopback_grpc_address_needs_tls_or_insecure() {
        let mut c = CollectorConfig {
            grpc_listen: "[::]:50051".parse().unwrap(),
            ..CollectorConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("grpc_listen") && e.contains("--insecure") && e.contains("[tls]"),
            "{e}"
        );
        c.insecure = true;
        c.validate().unwrap();
        let mut c = CollectorConfig::from_toml(
            "grpc_listen = \"0.0.0.0:50051\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [enrollment]\nrequired = true\n",
        )
        .unwrap();
        c.validate().unwrap();
        c.enrollment.required = false;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("enrollment.required"), "{e}");
        let e = CollectorConfig::from_toml("[tls]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(e.contains("key"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = CollectorConfig::from_toml("grpc_lisen = \"[::1]:1\"").unwrap_err();
        assert!(e.contains("grpc_lisen"), "{e}");
        let e = CollectorConfig::from_toml("grpc_listen = \"nowhere\"").unwrap_err();
        assert!(e.contains("grpc_listen"), "{e}");
        let mut c = CollectorConfig::default();
        c.limits.max_dns_probes = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.max_dns_probes"), "{e}");
        let mut c = CollectorConfig::default();
        c.maintenance.max_window_days = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("maintenance.max_window_days"), "{e}");
        let e = CollectorConfig::from_toml("[maintenance]\nmax_windos = 3").unwrap_err();
        assert!(e.contains("max_windos"), "{e}");
    }
}
