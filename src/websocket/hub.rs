//! The shared tail: one task reads every new batch of the event log once, renders each
//! event's websocket envelope once, and publishes the batch to every listener.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::WsMetrics;
use crate::config::WebsocketConfig;
use crate::envelope::LoggedEvent;
use crate::filter::EventFacts;
use crate::log::{EventLog, LogError};
use crate::registry::Registry;

/// Batches kept for listeners that fall behind the tail; past it a listener reads the log.
const LIVE_CAPACITY: usize = 1024;
/// Records per log read: small enough that a batch is cheap to keep in the broadcast ring.
const READ_RECORDS: usize = 512;
/// Payload bytes per log read.
const READ_BYTES: usize = 1024 * 1024;

/// One event, ready to send.
#[derive(Debug)]
pub struct Frame {
    /// The log position.
    pub sequence: u64,
    /// The instance the event belongs to.
    pub instance: Box<str>,
    /// That instance's id when the event was stored (absent in older records).
    pub instance_id: Option<uuid::Uuid>,
    /// When the log accepted the event.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The dotted event name (the socket.io event name).
    pub event: Box<str>,
    /// The websocket envelope as JSON text (no `destination`); cloning shares the bytes.
    pub envelope: Utf8Bytes,
    /// The event's filter facts (from the record's header; extracted for older records),
    /// what listeners' content filters read.
    pub facts: EventFacts,
}

/// Consecutive log records, as frames.
#[derive(Debug)]
pub struct Batch {
    /// The sequence the read started at: every record in `first..next` is covered.
    pub first: u64,
    /// One past the last record read (equal to `first` at the end of the log).
    pub next: u64,
    /// The events (records that fail to decode are logged and left out).
    pub frames: Vec<Frame>,
}

/// The listeners' shared parts: the log, the live broadcast, the registry (for access and
/// instance settings), the settings, shutdown and metrics.
pub struct Hub {
    log: Arc<dyn EventLog>,
    server_url: String,
    live: broadcast::Sender<Arc<Batch>>,
    /// Instances and their websocket settings.
    pub registry: Arc<Registry>,
    /// The `[websocket]` settings.
    pub config: WebsocketConfig,
    /// Cancelled when the server shuts down: every connection closes with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so that shutdown can wait for their close frames.
    pub tasks: TaskTracker,
    /// Prometheus metrics.
    pub metrics: WsMetrics,
    /// The operational events (`switchyard.*`) connected listeners named, with how many
    /// listeners name each: the alerts watcher writes one only when someone can receive it.
    operational: Arc<std::sync::Mutex<HashMap<&'static str, usize>>>,
}

/// A listener's claim on the operational events it named; released when dropped.
#[derive(Debug)]
pub struct Interest {
    names: Vec<&'static str>,
    counts: Arc<std::sync::Mutex<HashMap<&'static str, usize>>>,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for name in &self.names {
            if let Some(n) = counts.get_mut(name) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(name);
                }
            }
        }
    }
}

impl Hub {
    /// Creates the hub and spawns the tail task on `tasks`.
    pub fn start(
        log: Arc<dyn EventLog>,
        registry: Arc<Registry>,
        config: WebsocketConfig,
        server_url: String,
        metrics: WsMetrics,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Arc<Hub> {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let hub = Arc::new(Hub {
            log,
            server_url,
            live,
            registry,
            config,
            shutdown,
            tasks: tasks.clone(),
            metrics,
            operational: Arc::default(),
        });
        tasks.spawn(hub.clone().tail());
        hub
    }

    /// A receiver of live batches; subscribe before reading the log so nothing falls
    /// between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.live.subscribe()
    }

    /// Counts a listener's interest in the operational events among `events` (dotted
    /// names); `None` when it names none.
    pub fn interest(
        &self,
        events: Option<&std::collections::BTreeSet<&'static str>>,
    ) -> Option<Arc<Interest>> {
        let names: Vec<&'static str> = events?
            .iter()
            .copied()
            .filter(|name| name.starts_with(crate::catalog::OPERATIONAL_PREFIX))
            .collect();
        if names.is_empty() {
            return None;
        }
        let mut counts = self.operational.lock().unwrap_or_else(|p| p.into_inner());
        for name in &names {
            *counts.entry(name).or_default() += 1;
        }
        Some(Arc::new(Interest {
            names,
            counts: self.operational.clone(),
        }))
    }

    /// Whether a connected listener named the operational event `dotted`.
    pub fn listens_for(&self, dotted: &str) -> bool {
        let counts = self.operational.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(dotted).is_some_and(|n| *n > 0)
    }

    /// The sequence the next appended event gets.
    pub fn next_sequence(&self) -> u64 {
        self.log.next_sequence()
    }

    /// Reads one batch from the log starting at `from`.
    pub async fn read(&self, from: u64) -> Result<Batch, LogError> {
        let records = self.log.read(from, READ_RECORDS, READ_BYTES).await?;
        let next = records.last().map_or(from, |r| r.sequence + 1);
        // The instances' tokens, when the server exposes them (`auth.expose_in_envelope`).
        let set = self.registry.current_subscriptions();
        let frames = records
            .iter()
            .filter_map(|record| match LoggedEvent::decode(record) {
                Ok(event) => {
                    let facts = crate::envelope::record_facts(&record.payload, &event.event);
                    Some(self.frame(&event, &set.instance_tokens, facts))
                }
                Err(e) => {
                    tracing::error!(error = %e, "skipping an undecodable event record");
                    None
                }
            })
            .collect();
        Ok(Batch {
            first: from,
            next,
            frames,
        })
    }

    fn frame(
        &self,
        event: &LoggedEvent,
        tokens: &HashMap<String, Arc<str>>,
        facts: EventFacts,
    ) -> Frame {
        let mut envelope = event.envelope(&self.server_url);
        envelope.apikey = tokens.get(&event.event.instance).map(|t| &**t);
        let json = envelope.to_vec();
        // serde_json always writes UTF-8; an empty envelope would only mean a bug upstream.
        let envelope = String::from_utf8(json).unwrap_or_default().into();
        Frame {
            sequence: event.sequence,
            instance: event.event.instance.as_str().into(),
            instance_id: event.event.instance_id,
            received_at: event.received_at,
            event: event.event.event.as_str().into(),
            envelope,
            facts,
        }
    }

    /// Follows the log's end and publishes each new batch once. Woken by the log's
    /// `subscribe()` watch: it never polls.
    async fn tail(self: Arc<Self>) {
        let mut changes = self.log.subscribe();
        let mut next = self.log.next_sequence();
        loop {
            // Mark the current value seen before reading, so an append that lands after the
            // last read still wakes the wait below.
            changes.borrow_and_update();
            loop {
                match self.read(next).await {
                    Ok(batch) if batch.next > next => {
                        next = batch.next;
                        // No receivers is fine: nobody listens right now.
                        let _ = self.live.send(Arc::new(batch));
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "websocket tail could not read the log");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }
}
