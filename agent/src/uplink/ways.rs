//! The agent's ways to the collector as gRPC channels, and which one to try next: in order,
//! failing over to the next when one cannot reach the collector, and back to the first once it
//! works again.
//!
//! Must never drop a report for a way's failure: a way that fails only moves the agent to the
//! next; the spool keeps everything until a collector acknowledges it.

use super::connector::{WayConnector, WayStatus};
use tonic::transport::{Channel, Endpoint};

/// One way as a channel factory: its endpoint (TLS, keepalive) and its connector (the route).
pub struct WayChannel {
    pub url: String,
    endpoint: Endpoint,
    connector: WayConnector,
}

impl WayChannel {
    pub fn new(url: String, endpoint: Endpoint, connector: WayConnector) -> Self {
        Self {
            url,
            endpoint,
            connector,
        }
    }

    /// A channel that connects at its first request.
    pub fn lazy(&self) -> Channel {
        self.endpoint
            .connect_with_connector_lazy(self.connector.clone())
    }

    /// Connects now (TCP or tunnel, TLS, HTTP/2): whether this way reaches the collector.
    pub async fn try_connect(&self) -> Result<Channel, tonic::transport::Error> {
        self.endpoint
            .connect_with_connector(self.connector.clone())
            .await
    }

    /// What its last attempts found.
    pub fn status(&self) -> WayStatus {
        self.connector
            .status()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Which way to try: the current one, the next after a failure, each tried once before the agent
/// backs off.
#[derive(Debug, Clone)]
pub struct Rotation {
    n: usize,
    current: usize,
    /// Ways that failed in a row since one last reached the collector.
    failed_in_a_row: usize,
}

impl Rotation {
    pub fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            current: 0,
            failed_in_a_row: 0,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// The current way reached the collector.
    pub fn reached(&mut self) {
        self.failed_in_a_row = 0;
    }

    /// The current way did not reach the collector: move to the next. `true` when every way has
    /// now failed in a row (time to back off before the next round of them).
    pub fn failed(&mut self) -> bool {
        self.failed_in_a_row += 1;
        self.current = (self.current + 1) % self.n;
        if self.failed_in_a_row >= self.n {
            self.failed_in_a_row = 0;
            true
        } else {
            false
        }
    }

    /// The first way works again: go back to it.
    pub fn back_to_first(&mut self) {
        self.current = 0;
        self.failed_in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ways_are_tried_in_order_each_once_before_a_backoff() {
        let mut r = Rotation::new(3);
        assert_eq!(r.current(), 0);
        assert!(!r.failed());
        assert_eq!(r.current(), 1);
        r.reached();
        // Way 1 works, later breaks: 2, then 0, then 1 again: three failures in a row.
        assert!(!r.failed());
        assert_eq!(r.current(), 2);
        assert!(!r.failed());
        assert_eq!(r.current(), 0);
        assert!(r.failed(), "every way failed once: back off");
        assert_eq!(r.current(), 1);
        r.back_to_first();
        assert_eq!(r.current(), 0);
        let mut one = Rotation::new(1);
        assert!(one.failed(), "a single way backs off after each failure");
        assert_eq!(one.current(), 0);
    }
}
