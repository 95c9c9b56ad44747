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

/// What every collector accepts in one report, and what an agent never makes more of: a
/// collector's `[limits]` may be higher, never lower (it refuses to start), and an agent refuses a
/// configuration that would make more (its file at start, an update from the collector) and cuts
/// anything read from the machine to these before it is spooled and again before it is sent.
pub mod report_limits {
    /// DNS probes in one report (names × record types × (the system resolver + each server)).
    pub const DNS_PROBES: usize = 256;
    /// HTTP probes in one report.
    pub const HTTP_PROBES: usize = 32;
    /// SNTP probes in one report (one per configured server).
    pub const NTP_PROBES: usize = 8;
    /// Certificates in one report's certificate check.
    pub const CERTS: usize = super::text_limits::CERTS;
    /// Characters of a free text (errors, excerpts); agents send at most
    /// [`super::AGENT_TEXT_CHARS`].
    pub const TEXT_CHARS: usize = 512;
    /// Characters of a URL in a report.
    pub const URL_CHARS: usize = 2048;
}

/// The highest report seq either side accepts (2^63 − 1): far beyond any terminal's lifetime of
/// rounds, and low enough that `seq + 1` never overflows. A seq above it means a damaged spool
/// state, not a report to drop: the collector ends the stream (OUT_OF_RANGE) without refusing a
/// report, so the agent keeps what it holds.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The metadata key a collector sets on the status that ends a stream because a report's seq
/// jumped further above the terminal's stored seq than any real agent's could (a damaged counter):
/// its value is the stored seq; the agent renumbers what it holds from the one after it.
pub const SEQ_RESTART: &str = "oqs-seq-restart";

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

/// Checks a probe URL (the portal's, OQS web's, the CRL point's) as every report carrying it must
/// hold it: `https://` (or `http://` where `allow_http`, the CRL point), a host, at most
/// [`LINEAUTH_URL_MAX_BYTES`] bytes, and no whitespace or control character anywhere (a CR pasted
/// with it would be carried in every report, and every report refused). The agent checks its
/// configuration and every update with it, the collector every update the NOC pushes; the error
/// says what is wrong for people, without the field's name (the caller adds it).
pub fn check_probe_url(url: &str, allow_http: bool) -> Result<(), String> {
    if url.len() > LINEAUTH_URL_MAX_BYTES {
        return Err(format!(
            "is {} bytes; the limit is {LINEAUTH_URL_MAX_BYTES}",
            url.len()
        ));
    }
    if let Some(c) = url.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "contains {c:?}: a URL has no spaces or control characters (a pasted line end?)"
        ));
    }
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => r,
        (None, Some(r)) if allow_http => r,
        _ => {
            return Err(if allow_http {
                "must start with https:// or http://".into()
            } else {
                "must start with https://".into()
            })
        }
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host".into());
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::check_probe_url;

    #[test]
    fn a_probe_url_is_https_with_a_host_and_nothing_pasted_with_it() {
        assert!(check_probe_url("https://www.lineauth.mnw", false).is_ok());
        assert!(check_probe_url("https://[2404:1a8::1]:8443/x?y", false).is_ok());
        assert!(check_probe_url("http://crl.example/x.crl", true).is_ok());
        for (bad, why) in [
            ("https://www.lineauth.mnw\r", "control"),
            ("https://www.lineauth.mnw\n", "control"),
            ("https://www.lineauth .mnw", "spaces"),
            ("http://www.lineauth.mnw", "https://"),
            ("ftp://x", "https://"),
            ("https://", "no host"),
            ("https:///path", "no host"),
        ] {
            let e = check_probe_url(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = format!("https://x/{}", "a".repeat(2048));
        assert!(check_probe_url(&long, false).unwrap_err().contains("bytes"));
    }
}
