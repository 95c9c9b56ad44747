//! Which terminals have a stream open right now, for the API's `connected`, the
//! `oqs_agents_connected` gauge, and commands to agents (`RunNow`, `ConfigUpdate`) — the collector
//! can only reach an agent over the stream the agent opened (agents are never dialled).
//!
//! A terminal may briefly have two streams (a reconnect while the old one is still closing); a
//! command goes to the newest. Must never be persisted: after a restart nobody is connected.

use crate::store::TerminalKey;
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::CollectorMessage;
use prometheus::IntGauge;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tonic::Status;

/// One answer to an agent, boxed: a stream's channel preallocates a block of slots, and with the
/// answer inline (a `Status` is ~180 bytes) that block cost ~3 KB per connected agent.
pub type Outgoing = Result<Box<CollectorMessage>, Box<Status>>;

/// The sending half of a stream's answers to its agent. `futures`' channel, not tokio's: every
/// connected agent has one, and tokio's (cache-padded, with a first block of 32 slots) costs
/// 1,056 bytes where this one costs 184, plus 48 for the clone kept here (issue "one home for
/// each fact", item 7). It holds `buffer` answers plus one per sender.
pub type Outbound = futures::channel::mpsc::Sender<Outgoing>;

/// Each terminal's open streams: (stream id, its outbound channel), oldest first.
type Streams = HashMap<TerminalKey, Vec<(u64, Outbound)>>;

/// Open streams per terminal.
#[derive(Clone)]
pub struct Presence {
    // A std mutex: held only for a map update, never across an await.
    open: Arc<Mutex<Streams>>,
    next_id: Arc<AtomicU64>,
    gauge: IntGauge,
    /// How each terminal's reports come (its agent's `Uplink`), kept after it disconnects.
    pub uplinks: crate::uplinks::Uplinks,
}

impl Presence {
    pub fn new(gauge: IntGauge) -> Self {
        Self {
            open: Arc::default(),
            next_id: Arc::default(),
            gauge,
            uplinks: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a stream of `key` open until the returned guard is dropped; `tx` reaches its agent.
    pub fn enter<'a>(&'a self, key: &'a TerminalKey, tx: Outbound) -> PresenceGuard<'a> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut open = self.lock();
        let streams = open.entry(key.clone()).or_default();
        // One stream per terminal is the rule (two only while a reconnect overlaps the old one).
        crate::small_map::room_for_first(streams, 1);
        streams.push((id, tx));
        drop(open);
        self.gauge.inc();
        PresenceGuard {
            presence: self,
            key,
            id,
        }
    }

    /// Whether `key` has a stream open.
    pub fn is_connected(&self, key: &TerminalKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Sends `body` to the newest stream of every connected terminal of `site`, without waiting
    /// (a stream whose queue is full is skipped). Returns the terminals reached, sorted.
    pub fn send_to_site(&self, site: &str, body: CollectorBody) -> Vec<String> {
        let mut reached: Vec<String> = self
            .lock()
            .iter_mut()
            .filter(|(k, _)| k.site == site)
            .filter_map(|(k, streams)| {
                let (_, tx) = streams.last_mut()?;
                tx.try_send(Ok(Box::new(CollectorMessage {
                    body: Some(body.clone()),
                })))
                .ok()
                .map(|_| k.terminal.clone())
            })
            .collect();
        reached.sort();
        reached
    }
}

impl Presence {
    /// Ends every open stream of `site` with `status` (a revocation): its agents learn it at
    /// once, not at their next report. A stream whose queue is full learns it at its next report
    /// (the credential is checked on every one). Returns how many streams were told.
    /// Ends one terminal's open streams with `status`; returns how many.
    pub fn close_terminal(&self, key: &TerminalKey, status: &Status) -> usize {
        self.lock()
            .get_mut(key)
            .map(|streams| {
                streams
                    .iter_mut()
                    .filter_map(|(_, tx)| tx.try_send(Err(Box::new(status.clone()))).ok())
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn close_site(&self, site: &str, status: &Status) -> usize {
        self.lock()
            .iter_mut()
            .filter(|(k, _)| k.site == site)
            .flat_map(|(_, streams)| streams.iter_mut())
            .filter_map(|(_, tx)| tx.try_send(Err(Box::new(status.clone()))).ok())
            .count()
    }
}

/// Closes a terminal's stream in [`Presence`] when dropped, whatever way the stream ended.
/// It borrows what the stream's task already holds: every connected agent's task keeps one.
pub struct PresenceGuard<'a> {
    presence: &'a Presence,
    key: &'a TerminalKey,
    id: u64,
}

impl Drop for PresenceGuard<'_> {
    fn drop(&mut self) {
        let mut open = self.presence.lock();
        if let Some(streams) = open.get_mut(self.key) {
            streams.retain(|(id, _)| *id != self.id);
            if streams.is_empty() {
                open.remove(self.key);
            }
        }
        drop(open);
        self.presence.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::RunNow;

    /// A terminal's entry makes room for its one stream (not a `Vec`'s first four); a reconnect's
    /// overlap still holds both, commands go to the newest, and the guards leave nothing behind.
    #[test]
    fn one_stream_takes_room_for_one_and_commands_go_to_the_newest() {
        let gauge = IntGauge::new("test_connected", "test").unwrap();
        let presence = Presence::new(gauge.clone());
        let key = TerminalKey::new("s1", "pc-1");
        let (old_tx, mut old_rx) = futures::channel::mpsc::channel(4);
        let old = presence.enter(&key, old_tx);
        assert_eq!(presence.lock()[&key].capacity(), 1);
        let (new_tx, mut new_rx) = futures::channel::mpsc::channel(4);
        let new = presence.enter(&key, new_tx);
        assert_eq!(gauge.get(), 2);
        let reached = presence.send_to_site("s1", CollectorBody::RunNow(RunNow::default()));
        assert_eq!(reached, ["pc-1"]);
        assert!(
            new_rx.try_recv().is_ok(),
            "the newest stream got the command"
        );
        assert!(old_rx.try_recv().is_err(), "the older stream got nothing");
        drop(new);
        assert!(presence.is_connected(&key));
        drop(old);
        assert!(!presence.is_connected(&key));
        assert_eq!(gauge.get(), 0);
    }
}
