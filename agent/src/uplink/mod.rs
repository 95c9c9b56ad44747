//! The way home: how reports leave the terminal for the collector. Where the OQS terminal sits in
//! the field, it often cannot open a connection to the collector itself: general internet access
//! stops while the closed network is up, the terminal is in its own segment behind its own
//! router, or the only way out is a proxy. So a way is a collector URL and a route — direct,
//! through an HTTP CONNECT proxy (configured, or the machine's: WinHTTP, `HTTPS_PROXY`), or
//! through `oqs-agent relay` on another clinic PC — and an agent may have several, tried in order.
//!
//! Must never read, alter or terminate the bytes it carries: TLS (and mutual TLS) runs end to end
//! between the agent and the collector through any proxy or relay, so no box in the middle can
//! read or forge a report. Must never log a proxy's credentials.

pub mod connector;
pub mod proxy;
pub mod tunnel;
pub mod ways;

pub use connector::{Path, Route, WayConnector, WayStatus};
pub use proxy::{NoProxy, ProxyAddr, ProxyCredentials, SystemProxy};
pub use ways::{Rotation, WayChannel};
