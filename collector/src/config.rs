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
    /// How far an agent's clock may be ahead of the collector's, in seconds, before a report's
    /// times are refused as impossible.
    pub max_clock_ahead_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_dns_probes: 256,
            max_http_probes: 32,
            max_ntp_probes: 8,
            max_addresses: 64,
            max_list_items: 64,
            max_text_chars: 512,
            max_url_chars: 2048,
            hello_timeout_ms: 10_000,
            max_clock_ahead_secs: 24 * 3600,
        }
    }
}

impl Limits {
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
}

impl Default for StoreTuning {
    fn default() -> Self {
        Self {
            cache_bytes: 128 * 1024 * 1024,
        }
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
        let l = &self.limits;
        let positive: [(&'static str, usize); 9] = [
            ("limits.max_message_bytes", l.max_message_bytes),
            ("limits.max_dns_probes", l.max_dns_probes),
            ("limits.max_http_probes", l.max_http_probes),
            ("limits.max_ntp_probes", l.max_ntp_probes),
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
        if l.max_message_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "limits.max_message_bytes",
                value: l.max_message_bytes.to_string(),
                rule: "must be at most 64 MiB",
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
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = CollectorConfig::from_toml("grpc_lisen = \"[::1]:1\"").unwrap_err();
        assert!(e.contains("grpc_lisen"), "{e}");
        let e = CollectorConfig::from_toml("grpc_listen = \"nowhere\"").unwrap_err();
        assert!(e.contains("grpc_listen"), "{e}");
        let mut c = CollectorConfig::default();
        c.limits.max_dns_probes = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.max_dns_probes"), "{e}");
    }
}
