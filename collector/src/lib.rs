//! `oqs-collector`: the NOC's central service. Data flows one way:
//! ingest (validate, persist, ack) → store → outputs (metrics, JSON API, dashboard).
//!
//! Modules, in that order: [`validate`], [`ingest`], [`committer`], [`store`], [`presence`],
//! [`metrics`], [`api`]; [`server`] wires them. [`catalog`] names every check kind and flag once.
//! The fleet simulator (`oqs-fleet-sim`, used by `--demo`) and the benchmarks (`oqs-bench`) are
//! crates of their own beside this one.

pub mod api;
pub mod catalog;
pub mod checks;
pub mod clock;
pub mod committer;
pub mod config;
pub mod conn_limit;
pub mod derived;
pub mod enrollment;
pub mod failure_limit;
pub mod flags;
pub mod fleet_metrics;
pub mod history;
pub mod http_auth;
pub mod ingest;
pub mod metrics;
pub mod presence;
pub mod samples;
pub mod server;
pub mod small_map;
pub mod store;
pub mod validate;
pub mod view;
