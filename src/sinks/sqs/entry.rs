//! One event as a `SendMessageBatch` entry: body, size check, group and dedup ids.

use crate::envelope::LoggedEvent;

/// How `MessageGroupId` (the unit of FIFO order) is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupBy {
    /// One group per instance: all of an instance's events in order.
    Instance,
    /// One group per chat (the event's stored chat, see `crate::chat`), falling back to the
    /// instance: chats are consumed in parallel, each in order.
    Chat,
}

impl GroupBy {
    /// Parses `sqs.group_by`.
    pub(crate) fn parse(value: &str) -> Option<GroupBy> {
        match value {
            "instance" | "" => Some(GroupBy::Instance),
            "chat" => Some(GroupBy::Chat),
            _ => None,
        }
    }
}

/// An event ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Position in the batch the engine handed over.
    pub(crate) index: usize,
    /// `MessageGroupId`.
    pub(crate) group: String,
    /// `MessageDeduplicationId`: the event id, stable across re-sends.
    pub(crate) dedup_id: String,
    /// The envelope, JSON.
    pub(crate) body: String,
}

/// Why an event cannot be sent as it is.
#[derive(Debug)]
pub(crate) struct Oversize {
    /// The body's size in bytes.
    pub(crate) size: usize,
}

/// Builds the entry of `event`, or reports a body over `max_payload` bytes.
pub(crate) fn build(
    index: usize,
    event: &LoggedEvent,
    server_url: &str,
    server_name: &str,
    group_by: GroupBy,
    max_payload: usize,
) -> Result<Entry, Oversize> {
    let mut envelope = event.envelope(server_url);
    envelope.data_type = Some("json");
    envelope.server = Some(server_name);
    // serde_json writes UTF-8; the lossy conversion never replaces anything.
    let body = String::from_utf8_lossy(&envelope.to_vec()).into_owned();
    if body.len() > max_payload {
        return Err(Oversize { size: body.len() });
    }
    let group = match group_by {
        GroupBy::Instance => None,
        GroupBy::Chat => event.event.chat.clone(),
    }
    .unwrap_or_else(|| event.event.instance.clone());
    Ok(Entry {
        index,
        group,
        dedup_id: event.event.id.to_string(),
        body,
    })
}
