//! The AMQP message for one event: the envelope as body, identity and type in properties.

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

use crate::envelope::LoggedEvent;

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// The body: Evolution's envelope without `destination` (webhook-only).
pub(crate) fn body(event: &LoggedEvent, server_url: &str) -> Vec<u8> {
    event.envelope(server_url).to_vec()
}

/// Persistent, JSON, `message_id` = the event id (the consumer's idempotency key), the
/// receive time, and the event, instance and sequence in headers for header-based routing
/// and filtering without parsing the body.
pub(crate) fn properties(event: &LoggedEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "event".into(),
        AMQPValue::LongString(LongString::from(event.event.event.as_str())),
    );
    headers.insert(
        "instance".into(),
        AMQPValue::LongString(LongString::from(event.event.instance.as_str())),
    );
    headers.insert(
        "sequence".into(),
        AMQPValue::LongLongInt(i64::try_from(event.sequence).unwrap_or(i64::MAX)),
    );
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT)
        .with_message_id(event.event.id.to_string().into())
        .with_timestamp(u64::try_from(event.received_at.timestamp()).unwrap_or(0))
        .with_type(event.event.event.as_str().into())
        .with_app_id("switchyard".into())
        .with_headers(headers)
}
