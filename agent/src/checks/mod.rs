//! The guide's checks, one module per kind, each with one entry point of the same shape:
//! `run(&Context) -> its part of the report` (the round joins them). Each module's own probes
//! and readers sit behind that `run`.
//!
//! Must never retry inside a round or change anything on the terminal.

pub mod certs;
pub mod dns;
pub mod http;
pub mod ipv6;
pub mod lineauth;
pub mod ntp;
pub mod trust;

use std::time::Duration;

/// What every check of a round gets: the configured targets, the per-probe timeout, and the
/// clients built once from the configuration.
pub struct Context<'a> {
    pub probes: &'a crate::config::Probes,
    pub timeout: Duration,
    pub classifier: &'a lineauth::classify::Classifier,
    pub lineauth: &'a lineauth::fetch::LineAuthClient,
    pub web: &'a reqwest::Client,
}
