//! The last step of ingest: ids assigned, one durable append per request.

use uuid::Uuid;

use super::IncomingEvent;
use crate::envelope::StoredEvent;
use crate::log::{AppendReceipt, EventLog, LogError};

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
