//! `oqs-agent`: the agent on a clinic's OQS terminal. It runs the connection guide's checks and
//! streams the results to the collector.
//!
//! Work in progress (see the agent issue): so far the line-authentication page classifier. Must
//! never press 希望する or change anything on the terminal: it only observes.

pub mod checks;
pub mod config;
pub mod daemon;
pub mod diagnosis;
pub mod guide;
pub mod render;
pub mod round;
pub mod spool;
