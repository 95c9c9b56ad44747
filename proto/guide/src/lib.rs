//! `oqs-guide`: what the connection guide concludes from one round of results ([`diagnosis`]),
//! who to call ([`support`]) and the guide's values: servers, names, URLs, prefectures
//! ([`targets`]). The agent's
//! `check` and the collector's per-site diagnosis both call this one implementation, so the engineer
//! on site and the NOC always read the same step, remedy and page.
//!
//! Pure functions over `oqs.fleet.v1` types. Must never do I/O or hold configuration.

pub mod diagnosis;
pub mod support;
pub mod targets;

pub use targets::PREFECTURES;
