//! The last step of ingest: ids assigned, one durable append per request.

use uuid::Uuid;

use super::IncomingEvent;
use crate::envelope::StoredEvent;
use crate::log::{AppendReceipt, EventLog, LogError};

/// Who a request's events belong to, stamped on each of them.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The instance's name.
    pub instance: &'a str,
    /// The instance's id (names are reused after a delete; ids are not).
    pub instance_id: Option<Uuid>,
    /// The instance owner's JID, used when an event does not name its sender.
    pub owner_jid: Option<&'a str>,
    /// The request's `Idempotency-Key`, stored on every event of it.
    pub request_key: Option<&'a str>,
}

/// Why a request's events were not stored; nothing of it was appended.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An event could not be encoded (nothing is ever stored in its place).
    #[error("an event cannot be encoded: {0}")]
    Encode(#[from] crate::envelope::EventFormatError),
    /// The log refused the append.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Gives each event its id and appends them to the log as one unit; returns once durable.
pub async fn store(
    log: &dyn EventLog,
    owner: Owner<'_>,
    events: Vec<IncomingEvent>,
) -> Result<AppendReceipt, StoreError> {
    let payloads = events
        .into_iter()
        .map(|e| {
            let chat = crate::chat::chat_of(&e.event, &e.data);
            StoredEvent {
                // v7: time-ordered, so ids sort roughly like sequences in consumers' stores.
                id: Uuid::now_v7(),
                instance: owner.instance.to_string(),
                instance_id: owner.instance_id,
                event: e.event,
                data: e.data,
                sender: e.sender.or_else(|| owner.owner_jid.map(str::to_string)),
                source: e.source.map(str::to_string),
                raw: e.raw,
                key: e.dedupe_key,
                request: owner.request_key.map(str::to_string),
                chat,
            }
            .to_bytes()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(log.append(payloads).await?)
}
