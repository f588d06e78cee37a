//! The attempt log's record: one delivery attempt of one event to one subscription, as JSON
//! with a format version (`v`), pinned by `tests/fixtures/stored/attempts/`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The record format this code writes.
pub const FORMAT_VERSION: u32 = 1;

/// How an attempt ended, as the attempt log and the API say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// The destination accepted the event.
    Delivered,
    /// It failed and another attempt follows (the lane may park; a 410 disables the
    /// subscription and the event waits for it).
    Retry,
    /// It failed and the event went to the dead letters (a non-retryable failure, or the
    /// last attempt the policy allows).
    Permanent,
}

/// One delivery attempt. Stored as JSON; every field keeps its meaning forever and a new
/// one is optional (see ARCHITECTURE.md, stored formats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The record format, [`FORMAT_VERSION`]; a reader skips versions it does not know.
    pub v: u32,
    /// The subscription id.
    pub subscription: String,
    /// The event's id (the `webhook-id`).
    pub event_id: Uuid,
    /// The event's log sequence.
    pub sequence: u64,
    /// The instance the event belongs to.
    pub instance: String,
    /// The WhatsApp message id (`data.key.id`, or `data.keyId`) when the event has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// 1 for the first attempt; a redrive continues the count.
    pub attempt: u32,
    /// When the attempt started, UTC milliseconds.
    pub at_ms: i64,
    /// How long the send took, milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptResult,
    /// The HTTP status, when the destination answered over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The failure as the sink explained it (`HTTP 500`, a broker's error); none on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first KiB of the response body, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl AttemptRecord {
    /// The stored bytes.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// A stored record; `None` for bytes that are not one, or of a newer format.
    pub fn decode(bytes: &[u8]) -> Option<AttemptRecord> {
        let record: AttemptRecord = serde_json::from_slice(bytes).ok()?;
        (record.v == FORMAT_VERSION).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_formats_are_skipped() {
        let record = AttemptRecord {
            v: 2,
            subscription: "s".into(),
            event_id: Uuid::nil(),
            sequence: 1,
            instance: "a".into(),
            message_id: None,
            attempt: 1,
            at_ms: 0,
            duration_ms: 0,
            outcome: AttemptResult::Delivered,
            http_status: None,
            error: None,
            response: None,
        };
        assert_eq!(AttemptRecord::decode(&record.encode().unwrap()), None);
        let current = AttemptRecord { v: 1, ..record };
        assert_eq!(
            AttemptRecord::decode(&current.encode().unwrap()),
            Some(current)
        );
    }
}
