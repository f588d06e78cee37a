//! Ingest: turning what arrives over HTTP into stored events.
//!
//! Canonical ingest accepts our own shape; each provider module turns that provider's
//! webhook payload into the same [`IncomingEvent`]s. Nothing here touches HTTP types, so
//! adapters are plain functions that tests and fuzzers call directly.

pub mod canonical;
pub mod providers;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::envelope::StoredEvent;
use crate::log::{AppendReceipt, EventLog, LogError};

/// One event on its way into the log, before it has an id or a sequence.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// Dotted Evolution event name (`messages.upsert`), or a provider's own dotted name for
    /// events with no Evolution counterpart (custom events).
    pub event: String,
    /// The body in Evolution's shape.
    pub data: Box<RawValue>,
    /// The instance owner's JID, when the payload says it.
    pub sender: Option<String>,
    /// Provider name (`evolution`, `whapi`, `meta`, `linq`); none for canonical ingest.
    pub source: Option<&'static str>,
    /// The provider's original payload for this event, verbatim.
    pub raw: Option<Box<RawValue>>,
    /// Identifies a provider retry of the same thing (provider message id + event + status);
    /// two events with the same key inside the dedupe window are stored once.
    pub dedupe_key: Option<String>,
}

/// Gives each event its id and appends them to the log as one unit; returns once durable.
/// `owner_jid` is the instance owner's JID, used when an event does not name its sender.
pub async fn store(
    log: &dyn EventLog,
    instance: &str,
    owner_jid: Option<&str>,
    events: Vec<IncomingEvent>,
) -> Result<AppendReceipt, LogError> {
    let payloads = events
        .into_iter()
        .map(|e| {
            StoredEvent {
                // v7: time-ordered, so ids sort roughly like sequences in consumers' stores.
                id: Uuid::now_v7(),
                instance: instance.to_string(),
                event: e.event,
                data: e.data,
                sender: e.sender.or_else(|| owner_jid.map(str::to_string)),
                source: e.source.map(str::to_string),
                raw: e.raw,
            }
            .to_bytes()
        })
        .collect();
    log.append(payloads).await
}
