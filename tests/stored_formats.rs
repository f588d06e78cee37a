//! Stored formats, pinned: golden fixtures of every record shape Switchyard writes to its
//! logs, taken from the code as it wrote them (issue 18, item 2).
//!
//! The control log is the registry (its state is nothing but the fold of those records), and
//! the event log is the events themselves, so a record written once must decode forever and
//! mean the same thing, whatever the in-memory types become. Today the stored shapes are the
//! serde shapes of in-memory types (`ControlRecord` carries `delivery::Subscription` and
//! `WebhookTarget`, for instance), so an innocent rename or a moved type would silently
//! change what is written and what old logs decode to. These fixtures are the safety net:
//!
//! - `tests/fixtures/stored/control/`: every `registry::records::ControlRecord` variant;
//! - `tests/fixtures/stored/events/`: `envelope::StoredEvent`, including the older shape
//!   without `instance_id`, `key` and `request` that older logs hold;
//! - `tests/fixtures/stored/delivery/`: the delivery-state log's records, checked by a unit
//!   test in `src/delivery/state.rs` because that type is private to the crate.
//!
//! Each fixture must decode with today's type and encode back to the same JSON value, and
//! each sample below must still encode to its fixture (`stored_formats/golden.rs`). Missing
//! fixtures are written with `UPDATE_STORED_FIXTURES=1`; existing ones are never rewritten.
//! Values are fixed (ids, times, secrets) so the files are reproducible.

// Shared with the delivery-state unit test in `src/delivery/state.rs`.
#[path = "stored_formats/golden.rs"]
mod golden;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use switchyard::catalog::EventKind;
use switchyard::delivery::subscription::{
    Scope, SigningScheme, SinkTarget, Subscription, WebhookTarget,
};
use switchyard::envelope::StoredEvent;
use switchyard::registry::records::{
    ControlRecord, InstanceCreated, MetaSettings, NamedMeta, ProviderSettings, SinkKind, SinkSet,
};

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("a fixed time")
        .with_timezone(&Utc)
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("a fixed uuid")
}

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("samples pass objects"),
    }
}

const INSTANCE_ID: &str = "0194b3c2-7e1a-7c3d-9f00-00000000a001";

fn meta_settings() -> ProviderSettings {
    ProviderSettings {
        meta: Some(MetaSettings {
            app_secret: "meta-app-secret-0001".into(),
            verify_token: "meta-verify-token-0001".into(),
        }),
    }
}

fn sink_set(kind: SinkKind, events: Vec<EventKind>) -> SinkSet {
    SinkSet {
        instance: "sales".into(),
        kind,
        enabled: true,
        events,
        webhook: None,
        start_sequence: 1042,
        start_positions: Vec::new(),
        policy: Default::default(),
        at: at("2025-01-15T10:31:00.250Z"),
    }
}

fn named_webhook(id: &str, scope: Scope, target: WebhookTarget) -> Subscription {
    Subscription {
        policy: Default::default(),
        id: id.into(),
        target: SinkTarget::Webhook(target),
        scope,
        events: Vec::new(),
        custom_events: Vec::new(),
        phone_numbers: Vec::new(),
        start_sequence: 2048,
        start_positions: Vec::new(),
        enabled: true,
    }
}

fn named_meta(api: &str, name: Option<&str>, fields: serde_json::Value) -> NamedMeta {
    NamedMeta {
        api: api.into(),
        name: name.map(str::to_string),
        fields: object(fields).into_iter().collect(),
        created_at: at("2025-01-15T11:00:00.125Z"),
        updated_at: at("2025-01-16T08:15:30.500Z"),
    }
}

/// One sample per variant and per optional part a writer sets today.
fn control_samples() -> Vec<(&'static str, ControlRecord)> {
    let full_instance = InstanceCreated {
        name: "sales".into(),
        id: uuid(INSTANCE_ID),
        token_sha256: "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92".into(),
        token: "123456".into(),
        number: Some("5511999990000".into()),
        integration: Some("WHATSAPP-BAILEYS".into()),
        settings: object(json!({"reject_call": true, "msg_call": "busy", "groups_ignore": false})),
        extra: object(
            json!({"proxy": {"host": "proxy.example", "port": "3128"}, "chatwoot_account_id": 7}),
        ),
        providers: meta_settings(),
        created_at: at("2025-01-15T10:30:00Z"),
    };
    // Only what create requires: number and integration are written as null, settings,
    // extra and providers as empty objects.
    let minimal_instance = InstanceCreated {
        name: "support".into(),
        id: uuid("0194b3c2-7e1a-7c3d-9f00-00000000a002"),
        token_sha256: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
        token: "password".into(),
        number: None,
        integration: None,
        settings: serde_json::Map::new(),
        extra: serde_json::Map::new(),
        providers: ProviderSettings::default(),
        // Sub-second precision is kept as written (`Utc::now()` has nanoseconds).
        created_at: at("2025-01-15T10:30:00.123456789Z"),
    };

    let webhook = SinkSet {
        webhook: Some(WebhookTarget {
            url: "https://hooks.example.com/evolution".into(),
            by_events: true,
            base64: true,
            headers: BTreeMap::from([
                ("authorization".to_string(), "Bearer abc".to_string()),
                ("x-tenant".to_string(), "42".to_string()),
            ]),
            secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            signing: SigningScheme::StandardWebhooks,
        }),
        ..sink_set(
            SinkKind::Webhook,
            vec![EventKind::MessagesUpsert, EventKind::ConnectionUpdate],
        )
    };
    // A webhook set with only a URL: no secret, no headers; the default signing scheme is
    // omitted, which is also how records written before `signing` existed look.
    let webhook_plain = SinkSet {
        webhook: Some(WebhookTarget {
            url: "http://10.0.0.5:8080/hook".into(),
            ..WebhookTarget::default()
        }),
        ..sink_set(SinkKind::Webhook, Vec::new())
    };
    let webhook_disabled = SinkSet {
        enabled: false,
        ..sink_set(SinkKind::Webhook, Vec::new())
    };
    // A Linq-signed webhook target as the webhook sink would store it; today only named
    // Linq subscriptions write this scheme, but the field is part of `WebhookTarget`.
    let webhook_linq = SinkSet {
        webhook: Some(WebhookTarget {
            url: "https://hooks.example.com/linq".into(),
            secret: Some("6c696e712d7365637265742d3030303100000000000000000000000000000000".into()),
            signing: SigningScheme::Linq,
            ..WebhookTarget::default()
        }),
        ..sink_set(SinkKind::Webhook, vec![EventKind::SendMessage])
    };
    let kafka = SinkSet {
        // With the Kafka engine every partition's end is recorded (here three partitions;
        // partition p's sequences are above p << 48).
        start_sequence: 281_474_976_710_700,
        start_positions: vec![17, 281_474_976_710_700, 562_949_953_421_400],
        ..sink_set(SinkKind::Kafka, vec![EventKind::MessagesUpdate])
    };

    let codechat = ControlRecord::SubscriptionPut {
        subscription: Subscription {
            policy: Default::default(),
            events: vec![EventKind::MessagesUpsert, EventKind::SendMessage],
            enabled: false,
            ..named_webhook(
                "codechat:0194b3c2-7e1a-7c3d-9f00-00000000c001",
                Scope::Instance("sales".into()),
                WebhookTarget {
                    url: "https://crm.example.com/codechat".into(),
                    ..WebhookTarget::default()
                },
            )
        },
        meta: named_meta(
            "codechat",
            Some("crm"),
            json!({
                "WebhookEvents": {"messagesUpsert": true, "sendMessage": true, "qrcodeUpdate": false},
                "webhookEventsId": "0194b3c2-7e1a-7c3d-9f00-00000000c0e1",
                "instanceInstanceId": INSTANCE_ID,
            }),
        ),
    };
    let linq = ControlRecord::SubscriptionPut {
        subscription: Subscription {
            policy: Default::default(),
            events: vec![EventKind::MessagesUpdate],
            custom_events: vec!["linq.phone_number.status_updated".into()],
            phone_numbers: vec!["+5511999990000".into()],
            start_positions: vec![2048, 281_474_976_712_000],
            ..named_webhook(
                "linq:0194b3c2-7e1a-7c3d-9f00-00000000d001",
                Scope::AllInstances,
                WebhookTarget {
                    url: "https://app.example.com/linq".into(),
                    secret: Some(
                        "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
                    ),
                    signing: SigningScheme::Linq,
                    ..WebhookTarget::default()
                },
            )
        },
        meta: named_meta(
            "linq",
            None,
            json!({
                "subscribed_events": ["message.read", "phone_number.status_updated"],
                "phone_numbers": ["+5511999990000"],
            }),
        ),
    };
    // Ventia with no topic selected: the selection lists only the empty custom event
    // (`SELECTS_NOTHING`), which means "nothing", never "all".
    let ventia = ControlRecord::SubscriptionPut {
        subscription: Subscription {
            policy: Default::default(),
            custom_events: vec![String::new()],
            ..named_webhook(
                "ventia:0194b3c2-7e1a-7c3d-9f00-00000000e001",
                Scope::AllInstances,
                WebhookTarget {
                    url: "https://ventia.example.com/callback".into(),
                    ..WebhookTarget::default()
                },
            )
        },
        meta: named_meta("ventia", Some("statuses"), json!({"topics": []})),
    };
    let ventia_topics = ControlRecord::SubscriptionPut {
        subscription: Subscription {
            policy: Default::default(),
            events: vec![EventKind::MessagesUpdate, EventKind::MessagesUpsert],
            ..named_webhook(
                "ventia:0194b3c2-7e1a-7c3d-9f00-00000000e002",
                Scope::AllInstances,
                WebhookTarget {
                    url: "https://ventia.example.com/all".into(),
                    ..WebhookTarget::default()
                },
            )
        },
        meta: named_meta(
            "ventia",
            Some("interactions"),
            json!({"topics": ["interactions.official_whatsapp_statuses", "messages.upsert"]}),
        ),
    };

    vec![
        (
            "instance_created",
            ControlRecord::InstanceCreated(full_instance),
        ),
        (
            "instance_created_minimal",
            ControlRecord::InstanceCreated(minimal_instance),
        ),
        (
            "instance_deleted",
            ControlRecord::InstanceDeleted {
                name: "sales".into(),
                at: at("2025-02-01T00:00:00Z"),
            },
        ),
        ("sink_set_webhook", ControlRecord::SinkSet(webhook)),
        (
            "sink_set_webhook_plain",
            ControlRecord::SinkSet(webhook_plain),
        ),
        (
            "sink_set_webhook_disabled",
            ControlRecord::SinkSet(webhook_disabled),
        ),
        (
            "sink_set_webhook_linq_signing",
            ControlRecord::SinkSet(webhook_linq),
        ),
        (
            "sink_set_rabbitmq",
            ControlRecord::SinkSet(sink_set(
                SinkKind::Rabbitmq,
                vec![EventKind::MessagesUpsert, EventKind::QrcodeUpdated],
            )),
        ),
        (
            "sink_set_sqs",
            ControlRecord::SinkSet(sink_set(SinkKind::Sqs, Vec::new())),
        ),
        (
            "sink_set_websocket",
            ControlRecord::SinkSet(sink_set(
                SinkKind::Websocket,
                vec![EventKind::ConnectionUpdate],
            )),
        ),
        ("sink_set_kafka_partitioned", ControlRecord::SinkSet(kafka)),
        (
            "providers_set",
            ControlRecord::ProvidersSet {
                instance: "sales".into(),
                providers: meta_settings(),
            },
        ),
        (
            "providers_set_cleared",
            ControlRecord::ProvidersSet {
                instance: "sales".into(),
                providers: ProviderSettings::default(),
            },
        ),
        ("subscription_put_codechat", codechat),
        ("subscription_put_linq", linq),
        ("subscription_put_ventia_nothing", ventia),
        ("subscription_put_ventia_topics", ventia_topics),
        (
            "subscription_deleted",
            ControlRecord::SubscriptionDeleted {
                id: "linq:0194b3c2-7e1a-7c3d-9f00-00000000d001".into(),
            },
        ),
        (
            "subscription_disabled",
            ControlRecord::SubscriptionEnabled {
                id: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
                enabled: false,
                reason: Some("HTTP 410 Gone".into()),
            },
        ),
        (
            "subscription_enabled",
            ControlRecord::SubscriptionEnabled {
                id: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
                enabled: true,
                reason: None,
            },
        ),
    ]
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).expect("fixed JSON")
}

fn event(id: &str, event: &str, data: &str) -> StoredEvent {
    StoredEvent {
        id: uuid(id),
        instance: "sales".into(),
        instance_id: None,
        event: event.into(),
        data: raw(data),
        sender: None,
        source: None,
        raw: None,
        key: None,
        request: None,
        chat: None,
    }
}

fn event_samples() -> Vec<(&'static str, StoredEvent)> {
    let upsert = r#"{"key":{"remoteJid":"5511988887777@s.whatsapp.net","fromMe":false,"id":"3EB0C767D26A1D8E"},"pushName":"Ana","message":{"conversation":"oi"},"messageType":"conversation","messageTimestamp":1736937000}"#;
    vec![
        // As ingest writes a message today: with its instance's id and the chat it is about.
        (
            "with_chat",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                chat: Some("5511988887777@s.whatsapp.net".into()),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f007",
                    "messages.upsert",
                    upsert,
                )
            },
        ),
        // As ingest wrote a canonical event before `chat` existed: with its instance's id.
        (
            "canonical",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f001",
                    "messages.upsert",
                    upsert,
                )
            },
        ),
        (
            "with_sender",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                sender: Some("5511999990000@s.whatsapp.net".into()),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f002",
                    "connection.update",
                    r#"{"instance":"sales","state":"open","statusReason":200}"#,
                )
            },
        ),
        // A provider's event: its source, its original payload redacted, and its retry key.
        (
            "provider_with_raw",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                sender: Some("5511999990000@s.whatsapp.net".into()),
                source: Some("meta".into()),
                raw: Some(raw(
                    r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgM","status":"read","timestamp":"1736937000","recipient_id":"5511988887777"}]}}]}],"access_token":"[redacted]"}"#,
                )),
                key: Some("meta|5511988887777|wamid.HBgM|messages.update|read".into()),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f003",
                    "messages.update",
                    r#"{"keyId":"wamid.HBgM","remoteJid":"5511988887777@s.whatsapp.net","fromMe":true,"status":"READ"}"#,
                )
            },
        ),
        // A provider-only (custom) event name, as Linq's unmapped events are stored.
        (
            "provider_custom_event",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                source: Some("linq".into()),
                key: Some("linq|+5511999990000|evt_01|linq.phone_number.status_updated|".into()),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f004",
                    "linq.phone_number.status_updated",
                    r#"{"phone_number":"+5511999990000","status":"active"}"#,
                )
            },
        ),
        // Everything set: a canonical event with its own id, sent with an Idempotency-Key.
        (
            "with_keys",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                sender: Some("5511999990000@s.whatsapp.net".into()),
                key: Some("id:client-event-0001".into()),
                request: Some("req-7f3a9c".into()),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f005",
                    "send.message",
                    r#"{"key":{"remoteJid":"5511988887777@s.whatsapp.net","fromMe":true,"id":"BAE5F5A632EAE722"},"status":"PENDING"}"#,
                )
            },
        ),
        // The shape of records written before `instance_id`, `key` and `request` existed
        // (older logs hold them; `LoggedEvent::belongs_to` decides by receive time).
        (
            "old_without_instance_id_key_request",
            StoredEvent {
                sender: Some("5511999990000@s.whatsapp.net".into()),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f006",
                    "messages.upsert",
                    upsert,
                )
            },
        ),
    ]
}

#[test]
fn control_records_keep_their_stored_shape() {
    // The registry appends `serde_json::to_vec(&record)`.
    let samples: Vec<(&str, Vec<u8>)> = control_samples()
        .into_iter()
        .map(|(name, record)| (name, serde_json::to_vec(&record).expect("encode")))
        .collect();
    golden::check("control", "ControlRecord", &samples, |bytes| {
        let record: ControlRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        serde_json::to_vec(&record).map_err(|e| e.to_string())
    });
}

#[test]
fn event_records_keep_their_stored_shape() {
    // Ingest appends `StoredEvent::to_bytes`.
    let samples: Vec<(&str, Vec<u8>)> = event_samples()
        .into_iter()
        .map(|(name, event)| (name, event.to_bytes().expect("encode").to_vec()))
        .collect();
    golden::check("events", "StoredEvent", &samples, |bytes| {
        let event: StoredEvent = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        event
            .to_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn old_event_records_decode_without_the_newer_fields() {
    // The fixture must stay in the old shape: were it regenerated with the newer fields, the
    // suite would no longer prove that older logs decode.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stored/events/old_without_instance_id_key_request.json"
    );
    let text = std::fs::read_to_string(path).expect("the old-shape fixture exists");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for field in ["instance_id", "key", "request", "source", "raw", "chat"] {
        assert!(value.get(field).is_none(), "{path} must not hold `{field}`");
    }
    let event: StoredEvent = serde_json::from_str(&text).expect("the old shape decodes");
    assert_eq!(
        (event.instance_id, event.key, event.request),
        (None, None, None)
    );
    // A reader derives the chat such a record was stored without, as ingest does now.
    let record = switchyard::log::Record {
        sequence: 7,
        timestamp_ms: 1_736_937_000_000,
        payload: text.into_bytes().into(),
    };
    let logged = switchyard::envelope::LoggedEvent::decode(&record).expect("decodes");
    assert_eq!(
        logged.event.chat.as_deref(),
        Some("5511988887777@s.whatsapp.net")
    );
}
