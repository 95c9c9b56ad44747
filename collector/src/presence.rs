//! Which terminals have a stream open right now, for the API's `connected` and the
//! `oqs_agents_connected` gauge.
//!
//! A terminal may briefly have two streams (a reconnect while the old one is still closing), so
//! this counts streams per terminal. Must never be persisted: after a restart nobody is connected.

use crate::store::TerminalKey;
use prometheus::IntGauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open streams per terminal.
#[derive(Clone)]
pub struct Presence {
    // A std mutex: held only for a map update, never across an await.
    open: Arc<Mutex<HashMap<TerminalKey, u32>>>,
    gauge: IntGauge,
}

impl Presence {
    pub fn new(gauge: IntGauge) -> Self {
        Self {
            open: Arc::default(),
            gauge,
        }
    }

    /// Marks a stream of `key` open until the returned guard is dropped.
    pub fn enter(&self, key: TerminalKey) -> PresenceGuard {
        *self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_insert(0) += 1;
        self.gauge.inc();
        PresenceGuard {
            presence: self.clone(),
            key,
        }
    }

    /// Whether `key` has a stream open.
    pub fn is_connected(&self, key: &TerminalKey) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }
}

/// Closes a terminal's stream in [`Presence`] when dropped, whatever way the stream ended.
pub struct PresenceGuard {
    presence: Presence,
    key: TerminalKey,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut open = self.presence.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
        self.presence.gauge.dec();
    }
}
