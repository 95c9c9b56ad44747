//! The `oqs.fleet.v1` protocol between `oqs-agent` and `oqs-collector`: the generated message and
//! service types, the descriptor set for gRPC reflection, and the identity rules both sides enforce.
//!
//! This crate is the only place the protocol lives. It must never hold behaviour beyond parsing
//! identities and naming enum values: no I/O, no storage, no checks.

pub mod codec;
pub mod ident;

/// Generated from `proto/oqs/fleet/v1/fleet.proto`; never hand-edited.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("oqs.fleet.v1");
}

/// The protocol generation this crate speaks (`Hello.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The most characters an agent puts in one free-text field of a report (errors, excerpts), with
/// control characters other than newline and tab replaced: a collector's `limits.max_text_chars`
/// is never below it, so an agent's own texts never get its reports refused.
pub const AGENT_TEXT_CHARS: usize = 256;

/// The longest texts of a Hello and a report that are names rather than messages, in characters:
/// a collector refuses longer ones, so an agent cuts or never produces them.
pub mod text_limits {
    pub const HOSTNAME: usize = 253;
    pub const AGENT_VERSION: usize = 64;
    pub const OS: usize = 128;
    pub const BOOT_ID: usize = 64;
    /// An adapter's name (Windows aliases can be long and localised).
    pub const INTERFACE: usize = 64;
    /// A DNS name (RFC 1035), also an NTP server's.
    pub const DNS_NAME: usize = 253;
    pub const RCODE: usize = 16;
    pub const PREFECTURE: usize = 16;
    pub const SITE_NAME: usize = 128;
    /// An enrollment token or a terminal secret, in bytes.
    pub const CREDENTIAL: usize = 256;
    /// A certificate's subject or issuer, its location or match rule.
    pub const CERT_TEXT: usize = 256;
    /// Certificates one report may carry.
    pub const CERTS: usize = 32;
}

/// The highest report seq either side accepts (2^63 − 1): far beyond any terminal's lifetime of
/// rounds, and low enough that `seq + 1` never overflows. A seq above it means a damaged spool
/// state, not a report to drop: the collector ends the stream (OUT_OF_RANGE) without refusing a
/// report, so the agent keeps what it holds.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The metadata key a collector sets on the status that ends a stream because another machine
/// reports with the same ids: the agent then takes its sent-but-unacknowledged reports as not
/// delivered (they were not: the collector holds the other machine's under those seqs).
pub const TERMINAL_ID_CONFLICT: &str = "oqs-terminal-id-conflict";

/// The trailer a collector sets when it refuses a report for being busy: how long the agent
/// waits before sending again (gRPC's standard retry-pushback key).
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// `ConfigUpdate.interval_seconds` (and the agent's `interval_secs`): the seconds between rounds.
pub const INTERVAL_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;
/// `ConfigUpdate.probe_timeout_ms` (and the agent's `probe_timeout_ms`).
pub const PROBE_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// The longest `ConfigUpdate.lineauth_url` (an `https://` URL).
pub const LINEAUTH_URL_MAX_BYTES: usize = 2048;

/// The encoded `FileDescriptorSet` of `fleet.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fleet_descriptor.bin"));

/// The short snake_case name of a wire enum value, as the JSON outputs spell it:
/// `wire_name!(LineAuthState, 1)` → `"consent"`; unknown numbers read as `unspecified`.
#[macro_export]
macro_rules! wire_name {
    ($enum:ident, $v:expr) => {{
        let unspecified = $crate::v1::$enum::Unspecified.as_str_name();
        $crate::short_name(
            $crate::v1::$enum::try_from($v)
                .unwrap_or($crate::v1::$enum::Unspecified)
                .as_str_name(),
            &unspecified[..unspecified.len() - "UNSPECIFIED".len()],
        )
    }};
}

/// `LINE_AUTH_STATE_CONSENT` without `LINE_AUTH_STATE_` → `consent` (used by [`wire_name!`]).
pub fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}
