//! `oqs-collector`: the NOC's central service. Data flows one way:
//! ingest (validate, persist, ack) → store → outputs (metrics, JSON API, dashboard).
//!
//! The map, in the order data flows:
//! - What things are: [`catalog`] (every check kind and flag, once), [`config`] (settings and
//!   their limits), [`clock`].
//! - In: [`conn_limit`] (connections per source, the first-byte timeout), [`limit_log`] (refusals
//!   by those limits, counted and logged), [`ingest`] (the gRPC
//!   streams: Hello, reports, acks, refusals), [`enrollment`] (tokens and terminal secrets),
//!   [`validate`] (a Hello and a report's envelope) with [`checks`] (each kind's validation,
//!   trimming and sample), [`presence`] (who is connected, commands to them).
//! - Stored: [`committer`] (the single writer, group commit, fdatasync before ack) with
//!   [`derived`] (what each stored report changes), [`store`] (sled: keys, durability, lost-write
//!   detection), [`samples`] and [`history`] (points per check), [`flags`] (the flag engine and
//!   the guide's diagnosis per site) with [`small_map`].
//! - Out: [`maintenance`] (closed days and windows: quiet alerts, no agent_silent),
//!   [`availability`] (monthly availability per site: the outages, maintenance and gaps),
//!   [`incidents`] (area-wide incidents instead of a page per site), [`view`] (the fleet's state
//!   the API reads), [`inventory`] (agent versions, who lags), [`metrics`] and [`fleet_metrics`]
//!   (`/metrics`), [`api`] (the JSON API and the dashboard), [`http_auth`] and [`failure_limit`]
//!   (who may read and act), [`server`] (wires it all, shuts down in order).
//!
//! The fleet simulator (`oqs-fleet-sim`, used by `--demo`) and the benchmarks (`oqs-bench`) are
//! crates of their own beside this one. What a new check kind or flag touches: `docs/ADDING.md`.

pub mod api;
pub mod availability;
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
pub mod incidents;
pub mod ingest;
pub mod inventory;
pub mod limit_log;
pub mod maintenance;
pub mod metrics;
pub mod presence;
pub mod samples;
pub mod server;
pub mod small_map;
pub mod store;
pub mod uplinks;
pub mod validate;
pub mod view;
