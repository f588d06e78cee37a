//! One event as a Pusher batch entry: channel, event name and data (the envelope, JSON).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::catalog::EventKind;
use crate::envelope::LoggedEvent;

/// The largest `data` Pusher takes per event (10 KiB), and the limit Evolution checks the
/// envelope against before it triggers.
pub const MAX_DATA_BYTES: usize = 10 * 1024;

/// One entry of a `batch_events` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Entry {
    /// The instance name.
    pub(crate) channel: String,
    /// The dotted event name.
    pub(crate) name: String,
    /// The envelope as a JSON string (Pusher's `data` is a string).
    pub(crate) data: String,
}

/// Why an event cannot be sent as it is (permanent: sending again cannot change it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unsendable {
    /// The envelope is over Pusher's limit even without the QR code image.
    #[error("the Pusher payload is {size} bytes, over Pusher's limit of {MAX_DATA_BYTES} bytes (Evolution drops it silently)")]
    TooLarge {
        /// The envelope's size in bytes.
        size: usize,
    },
    /// The instance name is not a channel name Pusher accepts.
    #[error("the instance name `{0}` is not a valid Pusher channel name (1 to 200 of A-Z a-z 0-9 _ - = @ , . ;)")]
    Channel(String),
    /// The event name is longer than Pusher accepts.
    #[error("the event name is over Pusher's 200 characters")]
    EventName,
}

/// Evolution's event name for Pusher: the dotted name (`messages.upsert`); a custom event's
/// name with `_` as `.`, lowercased, as Evolution writes it.
pub(crate) fn event_name(event: &str) -> String {
    match EventKind::parse(event) {
        Ok(kind) => kind.dotted().to_owned(),
        Err(_) => event.replace('_', ".").to_lowercase(),
    }
}

/// The entry of `event`: its envelope with `destination` (the app id, as Evolution sends
/// it) and without a QR code's `base64` image (Evolution strips it: it alone is usually
/// over the limit), or why it cannot be sent.
pub(crate) fn build(
    event: &LoggedEvent,
    server_url: &str,
    app_id: &str,
) -> Result<Entry, Unsendable> {
    let channel = &event.event.instance;
    if !super::valid_channel(channel) {
        return Err(Unsendable::Channel(channel.clone()));
    }
    let name = event_name(&event.event.event);
    if !super::valid_event_name(&name) {
        return Err(Unsendable::EventName);
    }
    let stripped = strip_qrcode_image(event);
    let mut envelope = event.envelope(server_url);
    if let Some(data) = stripped.as_deref() {
        envelope.data = data;
    }
    envelope.destination = Some(app_id);
    // serde_json writes UTF-8; the lossy conversion never replaces anything.
    let data = String::from_utf8_lossy(&envelope.to_vec()).into_owned();
    if data.len() > MAX_DATA_BYTES {
        return Err(Unsendable::TooLarge { size: data.len() });
    }
    Ok(Entry {
        channel: channel.clone(),
        name,
        data,
    })
}

/// A `qrcode.updated` event's data without `qrcode.base64`; `None` when there is nothing
/// to strip (every other event, or no such field), so the stored data is sent untouched.
fn strip_qrcode_image(event: &LoggedEvent) -> Option<Box<RawValue>> {
    if !matches!(
        EventKind::parse(&event.event.event),
        Ok(EventKind::QrcodeUpdated)
    ) {
        return None;
    }
    let mut data: serde_json::Value = serde_json::from_str(event.event.data.get()).ok()?;
    data.get_mut("qrcode")?.as_object_mut()?.remove("base64")?;
    serde_json::value::to_raw_value(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::StoredEvent;
    use crate::log::Record;

    /// A logged event as the log hands it over (decoded from its record).
    fn event(instance: &str, name: &str, data: &str) -> LoggedEvent {
        let stored = StoredEvent {
            id: uuid::Uuid::nil(),
            instance: instance.into(),
            event: name.into(),
            data: RawValue::from_string(data.into()).unwrap(),
            sender: None,
            source: None,
            raw: None,
            instance_id: None,
            key: None,
            request: None,
            chat: None,
        };
        let record = Record {
            sequence: 9,
            timestamp_ms: 1_780_000_000_000,
            payload: stored.to_bytes().unwrap(),
        };
        LoggedEvent::decode(&record).unwrap()
    }

    fn data_of(entry: &Entry) -> serde_json::Value {
        serde_json::from_str(&entry.data).unwrap()
    }

    #[test]
    fn the_entry_is_the_envelope_on_the_instances_channel() {
        let e = event("inst", "MESSAGES_UPSERT", r#"{"key":{"id":"A"}}"#);
        let entry = build(&e, "http://sy.test", "1234").unwrap();
        assert_eq!(entry.channel, "inst");
        assert_eq!(entry.name, "messages.upsert");
        let data = data_of(&entry);
        assert_eq!(data["destination"], "1234");
        assert_eq!(data["instance"], "inst");
        assert_eq!(data["data"]["key"]["id"], "A");
        assert_eq!(data["server_url"], "http://sy.test");
        assert_eq!(data["sequence"], 9);
        assert_eq!(event_name("linq.message_received"), "linq.message.received");
    }

    #[test]
    fn the_qrcode_image_is_stripped_and_the_rest_kept() {
        let image = "A".repeat(3 * MAX_DATA_BYTES);
        let raw =
            format!(r#"{{"qrcode":{{"base64":"{image}","code":"2@abc","pairingCode":null}}}}"#);
        let entry = build(&event("inst", "qrcode.updated", &raw), "", "1").unwrap();
        let data = data_of(&entry);
        assert_eq!(data["data"]["qrcode"]["code"], "2@abc");
        assert!(data["data"]["qrcode"].get("base64").is_none());
        // Only a QR code event loses a `base64` field.
        let media = r#"{"qrcode":{"base64":"x"},"message":{"base64":"y"}}"#;
        let entry = build(&event("inst", "messages.upsert", media), "", "1").unwrap();
        assert_eq!(data_of(&entry)["data"]["qrcode"]["base64"], "x");
    }

    #[test]
    fn what_pusher_would_refuse_is_not_sent() {
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_DATA_BYTES));
        match build(&event("inst", "messages.upsert", &big), "", "1") {
            Err(Unsendable::TooLarge { size }) => assert!(size > MAX_DATA_BYTES),
            other => panic!("{other:?}"),
        }
        let fits = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_DATA_BYTES - 600));
        assert!(build(&event("inst", "messages.upsert", &fits), "", "1").is_ok());
        assert_eq!(
            build(&event("my inst", "call", "{}"), "", "1"),
            Err(Unsendable::Channel("my inst".into()))
        );
    }
}
