//! `oqs-agent`: the agent on a clinic's OQS terminal. It runs the connection guide's checks and
//! streams the results to the collector.
//!
//! Must never press 希望する or change anything on the terminal: it only observes. The
//! troubleshooting tree lives in `oqs-guide` (re-exported as [`diagnosis`]) because the collector
//! walks the same tree for each site.

pub mod checks;
pub mod config;
pub mod daemon;
pub use oqs_guide::diagnosis;
/// The guide's values (servers, names, URLs, prefectures), shared with the collector.
pub use oqs_guide::targets as guide;
pub mod install;
pub mod logfile;
pub mod relay;
pub mod relay_config;
pub mod render;
pub mod round;
pub mod spool;
pub mod sysinfo;
pub mod tidy;
pub mod uplink;
#[cfg(windows)]
pub mod winacl;
#[cfg(windows)]
pub mod winservice;
