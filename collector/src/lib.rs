//! `oqs-collector`: the NOC's central service. Data flows one way:
//! ingest (validate, persist, ack) → store → outputs (metrics, JSON API, dashboard).
//!
//! Modules, in that order: [`validate`], [`ingest`], [`committer`], [`store`], [`presence`],
//! [`metrics`], [`api`]; [`server`] wires them; [`sim`] is the fleet simulator (a client of the
//! real protocol, used by `oqs-fleet-sim` and `--demo`).

pub mod api;
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
pub mod sim;
pub mod store;
pub mod validate;
pub mod view;
