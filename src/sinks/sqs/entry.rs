//! One event as a `SendMessageBatch` entry: body, size check, group and dedup ids; and the
//! small entry that points at a large event's envelope stored in S3.

use serde_json::value::RawValue;

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
    /// The body itself, to be stored elsewhere.
    pub(crate) body: String,
    /// The `MessageGroupId` it would have had.
    pub(crate) group: String,
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
    finish(index, event, body, group_by, max_payload)
}

/// The entry that stands for `event` once its whole envelope is stored at `file_url`:
/// Evolution's large-message form, the same envelope with `dataType: "s3"` and
/// `data: {"fileUrl": ...}` (the provider's `raw`, when there is one, only in the stored
/// copy). Fails with the reason when even that is over `max_payload` bytes.
pub(crate) fn pointer(
    index: usize,
    event: &LoggedEvent,
    server_url: &str,
    server_name: &str,
    group_by: GroupBy,
    max_payload: usize,
    file_url: &str,
) -> Result<Entry, String> {
    let data = serde_json::json!({ "fileUrl": file_url }).to_string();
    let data = RawValue::from_string(data).map_err(|e| e.to_string())?;
    let mut envelope = event.envelope(server_url);
    envelope.data = &data;
    envelope.raw = None;
    envelope.data_type = Some("s3");
    envelope.server = Some(server_name);
    let body = String::from_utf8_lossy(&envelope.to_vec()).into_owned();
    finish(index, event, body, group_by, max_payload).map_err(|oversize| {
        format!(
            "even the S3 pointer message is {} bytes, over the SQS limit of {max_payload} bytes \
             (sqs.max_payload_size)",
            oversize.size
        )
    })
}

/// The entry for `body`, or the oversize report.
fn finish(
    index: usize,
    event: &LoggedEvent,
    body: String,
    group_by: GroupBy,
    max_payload: usize,
) -> Result<Entry, Oversize> {
    let group = match group_by {
        GroupBy::Instance => None,
        GroupBy::Chat => event.event.chat.clone(),
    }
    .unwrap_or_else(|| event.event.instance.clone());
    if body.len() > max_payload {
        return Err(Oversize {
            size: body.len(),
            body,
            group,
        });
    }
    Ok(Entry {
        index,
        group,
        dedup_id: event.event.id.to_string(),
        body,
    })
}
