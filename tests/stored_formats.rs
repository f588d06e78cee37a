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
//! - `tests/fixtures/stored/attempts/`: the attempt log's records (`attempts::AttemptRecord`);
//! - `tests/fixtures/stored/delivery/`: the delivery-state log's records, checked by a unit
//!   test in `src/delivery/state.rs` because that type is private to the crate;
//! - `tests/fixtures/stored/alerts/`: the alerts watcher's episodes file
//!   (`alerts::persist::EpisodesFile`, `{data_dir}/alerts/episodes.json`).
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

use switchyard::alerts::persist::{
    EpisodesFile, StoredCause, StoredInstance, StoredSilence, StoredSubscription,
};
use switchyard::attempts::{AttemptRecord, AttemptResult};
use switchyard::catalog::EventKind;
use switchyard::delivery::subscription::{Filter, Policy, Scope, SinkTarget, Subscription};
use switchyard::envelope::StoredEvent;
use switchyard::registry::records::{
    ControlRecord, InstanceCreated, MetaSettings, NamedMeta, ProviderSettings, SinkKind, SinkSet,
};
use switchyard::sinks::pusher::{PusherApp, PusherTarget};
use switchyard::sinks::webhook::{SigningScheme, WebhookTarget};

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
        target: None,
        start_sequence: 1042,
        start_positions: Vec::new(),
        policy: Default::default(),
        filter: Default::default(),
        at: at("2025-01-15T10:31:00.250Z"),
    }
}

fn named_webhook(id: &str, scope: Scope, target: WebhookTarget) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
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

/// A filter from its JSON shape (the samples' are valid).
fn filter(value: serde_json::Value) -> Filter {
    Filter::from_value(&value).expect("a valid filter")
}

/// A filter with every clause.
fn full_filter() -> Filter {
    filter(json!({
        "from_me": false,
        "chat_types": ["direct", "group", "broadcast", "newsletter"],
        "chats": {"allow": ["+55 11 98888-7777", "120363025246125888@g.us"],
                  "deny": ["status@broadcast"]},
        "participants": {"allow": ["5511977776666@s.whatsapp.net"], "deny": ["123456789012345@lid"]},
        "message_types": ["conversation", "imageMessage"],
        "match": {"$and": [{"data.pushName": {"$startsWith": "A"}},
                           {"data.messageTimestamp": {"$gte": 1736937000}}]}
    }))
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
            filter: Default::default(),
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
            filter: Default::default(),
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
            filter: Default::default(),
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
            filter: Default::default(),
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
            "sink_set_nats",
            ControlRecord::SinkSet(sink_set(
                SinkKind::Nats,
                vec![EventKind::MessagesUpsert, EventKind::Call],
            )),
        ),
        (
            "sink_set_pusher_own_app",
            ControlRecord::SinkSet(SinkSet {
                target: Some(SinkTarget::Pusher(PusherTarget {
                    app: Some(PusherApp {
                        app_id: "1700001".into(),
                        key: "app-key".into(),
                        secret: "app-secret".into(),
                        cluster: "mt1".into(),
                        use_tls: true,
                        endpoint: Some("http://127.0.0.1:6001".into()),
                    }),
                })),
                policy: switchyard::delivery::Policy {
                    max_attempts: Some(3),
                    retry_delays_ms: Some(vec![1000, 5000]),
                    timeout_ms: Some(5000),
                    non_retryable_status_codes: Some(vec![400, 422]),
                    rate_per_second: Some(20),
                    max_in_flight: Some(16),
                    disable_after_failures: Some(0),
                    ..Default::default()
                },
                ..sink_set(SinkKind::Pusher, vec![EventKind::MessagesUpsert])
            }),
        ),
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
        // A content filter with every clause (issue 19), on a per-instance sink and on a
        // named webhook, and the PATCH that reshapes any subscription.
        (
            "sink_set_webhook_filtered",
            ControlRecord::SinkSet(SinkSet {
                webhook: Some(WebhookTarget {
                    url: "https://bot.example.com/hook".into(),
                    ..WebhookTarget::default()
                }),
                filter: full_filter(),
                ..sink_set(SinkKind::Webhook, Vec::new())
            }),
        ),
        // A webhook that also subscribed to operational events by name (they are never
        // part of an empty list): stored in their UPPER spelling like every event.
        (
            "sink_set_webhook_alerts",
            ControlRecord::SinkSet(SinkSet {
                webhook: Some(WebhookTarget {
                    url: "https://ops.example.com/alerts".into(),
                    ..WebhookTarget::default()
                }),
                ..sink_set(
                    SinkKind::Webhook,
                    vec![
                        EventKind::MessagesUpsert,
                        EventKind::SwitchyardSubscriptionFailing,
                        EventKind::SwitchyardSubscriptionRecovered,
                        EventKind::SwitchyardSubscriptionDisabled,
                        EventKind::SwitchyardSubscriptionDeadLettered,
                        EventKind::SwitchyardSubscriptionLagExceeded,
                        EventKind::SwitchyardInstanceSilent,
                    ],
                )
            }),
        ),
        (
            "subscription_put_ventia_filtered",
            ControlRecord::SubscriptionPut {
                subscription: Subscription {
                    filter: filter(json!({"chats": {"allow": ["+55 11 98888-7777"]}})),
                    ..named_webhook(
                        "ventia:0194b3c2-7e1a-7c3d-9f00-00000000e002",
                        Scope::AllInstances,
                        WebhookTarget {
                            url: "https://escalation.example.com/hook".into(),
                            ..WebhookTarget::default()
                        },
                    )
                },
                meta: named_meta("ventia", Some("escalation"), json!({"topics": []})),
            },
        ),
        (
            "subscription_shaped",
            ControlRecord::SubscriptionShaped {
                id: "global:webhook".into(),
                filter: Some(filter(json!({"chat_types": ["direct", "group"],
                    "chats": {"deny": ["status@broadcast"]}}))),
                policy: Some(Policy {
                    rate_per_second: Some(20),
                    ..Policy::default()
                }),
                at: at("2025-01-17T09:00:00.000Z"),
            },
        ),
        (
            "subscription_shaped_cleared",
            ControlRecord::SubscriptionShaped {
                id: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
                filter: Some(Filter::default()),
                policy: None,
                at: at("2025-01-17T09:05:00.000Z"),
            },
        ),
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
        // An operational event as the alerts watcher writes it: no sender, source or keys.
        (
            "operational_instance_silent",
            StoredEvent {
                instance_id: Some(uuid(INSTANCE_ID)),
                ..event(
                    "0194b3c2-7e1a-7c3d-9f00-00000000f008",
                    "switchyard.instance.silent",
                    r#"{"reason":"no_events","cause":"no_events","seconds_silent":900.4,"silence_seconds":900.0,"since":"2025-01-15T10:15:00+00:00","last_event_at":"2025-01-15T10:15:00+00:00","last_message_at":"2025-01-15T10:14:58+00:00"}"#,
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

/// The JSON part of an event record as `StoredEvent::to_bytes` writes it.
fn event_json(event: &StoredEvent) -> Vec<u8> {
    let record = event.to_bytes().expect("encode");
    switchyard::envelope::event_json(&record)
        .expect("a header that splits")
        .to_vec()
}

#[test]
fn event_records_keep_their_stored_shape() {
    // Ingest appends `StoredEvent::to_bytes`: a header (pinned below), then this JSON.
    let samples: Vec<(&str, Vec<u8>)> = event_samples()
        .into_iter()
        .map(|(name, event)| (name, event_json(&event)))
        .collect();
    golden::check("events", "StoredEvent", &samples, |bytes| {
        let event: StoredEvent = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(event_json(&event))
    });
}

/// The WhatsApp message id of the `with_chat` and `canonical` samples, `3EB0C767D26A1D8E`, hex.
const MESSAGE_ID_HEX: &str = "33454230433736374432364131443845";

/// The chat of the `with_chat` sample, hex.
const CHAT_HEX: &str = "3535313139383838383737373740732e77686174736170702e6e6574";

#[test]
fn event_record_headers_keep_their_stored_bytes() {
    // The header (format in `log/header.rs`, tags in `envelope::header_tag`), byte for
    // byte: 0x01, the fields' length, then tag, length, value for the instance, the event
    // name, the chat (absent for an event about no chat), the filter facts
    // (`EventFacts::to_bytes`: version 1, from_me false + direct, chat and messageType
    // present, then each string with its length) and the WhatsApp message id.
    let facts = format!("042d00 01 05 11 1c{CHAT_HEX} 0c636f6e766572736174696f6e");
    let message = format!("051000 {MESSAGE_ID_HEX}");
    let pinned = [
        (
            "with_chat",
            format!(
                "017c00 01050073616c6573 020f006d657373616765732e757073657274 031c00{CHAT_HEX} {facts} {message}"
            ),
        ),
        (
            "canonical",
            format!(
                "015d00 01050073616c6573 020f006d657373616765732e757073657274 {facts} {message}"
            ),
        ),
    ];
    let samples: std::collections::HashMap<_, _> = event_samples().into_iter().collect();
    for (name, hex) in pinned {
        let event = samples.get(name).expect("a sample of that name");
        let record = event.to_bytes().expect("encode");
        let json = switchyard::envelope::event_json(&record).expect("splits");
        let header = &record[..record.len() - json.len()];
        let expected: String = hex.split_whitespace().collect();
        assert_eq!(hex_of(header), expected, "{name}");
    }
}

#[test]
fn event_record_headers_written_before_facts_still_read() {
    // The headers as written before the facts field (tag 4), and before the message id
    // (tag 5): still split, and the facts and the message id are extracted from the JSON
    // on read, equal to what ingest stores now.
    let facts = format!("042d00 01 05 11 1c{CHAT_HEX} 0c636f6e766572736174696f6e");
    let older = [
        (
            "with_chat",
            format!(
                "013900 01050073616c6573 020f006d657373616765732e757073657274 031c00{CHAT_HEX}"
            ),
        ),
        (
            "canonical",
            "011a00 01050073616c6573 020f006d657373616765732e757073657274".to_string(),
        ),
        (
            "with_chat",
            format!(
                "016900 01050073616c6573 020f006d657373616765732e757073657274 031c00{CHAT_HEX} {facts}"
            ),
        ),
        (
            "canonical",
            format!("014a00 01050073616c6573 020f006d657373616765732e757073657274 {facts}"),
        ),
    ];
    let samples: std::collections::HashMap<_, _> = event_samples().into_iter().collect();
    for (name, hex) in older {
        let event = samples.get(name).expect("a sample of that name");
        let hex: String = hex.split_whitespace().collect();
        let mut payload: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        payload.extend_from_slice(&event_json(event));
        let record = switchyard::log::Record {
            sequence: 9,
            timestamp_ms: 1_736_937_000_000,
            payload: payload.clone().into(),
        };
        let logged = switchyard::envelope::LoggedEvent::decode(&record).expect("decodes");
        assert_eq!(logged.event.instance, "sales", "{name}");
        assert_eq!(
            logged.message_id.as_deref(),
            Some("3EB0C767D26A1D8E"),
            "{name}: the message id extracted on read"
        );
        let facts = switchyard::envelope::record_facts(&payload, &logged.event);
        let now = event.to_bytes().expect("encode");
        assert_eq!(
            facts,
            switchyard::envelope::record_facts(&now, event),
            "{name}: extracted on read as stored at ingest"
        );
        assert_eq!(facts.message_type(), Some("conversation"), "{name}");
        assert_eq!(facts.from_me(), Some(false), "{name}");
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// The attempt log's records (`src/attempts/record.rs`): a first try delivered with its
/// answer, a retried HTTP failure with the body's start, a broker error that dead-lettered
/// the event (no HTTP), and an event without a WhatsApp message id.
fn attempt_samples() -> Vec<(&'static str, AttemptRecord)> {
    let base = AttemptRecord {
        v: switchyard::attempts::FORMAT_VERSION,
        subscription: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
        event_id: uuid("0194b3c2-7e1a-7c3d-9f00-00000000f001"),
        sequence: 1043,
        instance: "sales".into(),
        message_id: Some("3EB0C431D5E0A3F2B1".into()),
        attempt: 1,
        at_ms: 1_736_937_000_000,
        duration_ms: 12,
        outcome: AttemptResult::Delivered,
        http_status: Some(200),
        error: None,
        response: Some("{\"ok\":true}".into()),
    };
    vec![
        ("delivered_first_try", base.clone()),
        (
            "retry_http_500",
            AttemptRecord {
                attempt: 2,
                at_ms: 1_736_937_005_250,
                duration_ms: 41,
                outcome: AttemptResult::Retry,
                http_status: Some(500),
                error: Some("HTTP 500".into()),
                response: Some("<html><body>Internal Server Error</body></html>".into()),
                ..base.clone()
            },
        ),
        (
            "permanent_broker_error",
            AttemptRecord {
                subscription: "rabbitmq:0194b3c2-7e1a-7c3d-9f00-00000000b001".into(),
                sequence: 562_949_953_421_400,
                attempt: 10,
                outcome: AttemptResult::Permanent,
                http_status: None,
                error: Some("the broker returned the message (NO_ROUTE)".into()),
                response: None,
                ..base.clone()
            },
        ),
        (
            "no_message_id",
            AttemptRecord {
                subscription: "global:nats".into(),
                event_id: uuid("0194b3c2-7e1a-7c3d-9f00-00000000f002"),
                instance: "support".into(),
                message_id: None,
                http_status: None,
                response: None,
                ..base
            },
        ),
    ]
}

#[test]
fn attempt_records_keep_their_stored_shape() {
    let samples: Vec<(&str, Vec<u8>)> = attempt_samples()
        .iter()
        .map(|(name, record)| (*name, record.encode().expect("encodes")))
        .collect();
    golden::check("attempts", "AttemptRecord", &samples, |bytes| {
        let record = AttemptRecord::decode(bytes).ok_or("does not decode")?;
        record.encode().map_err(|e| e.to_string())
    });
}

/// The alerts watcher's episodes file (`src/alerts/persist.rs`): one with every field (a
/// failing, dead-lettering, lagging, disabled subscription; instances silent for each cause
/// and one only seen), and an empty one.
fn episodes_samples() -> Vec<(&'static str, EpisodesFile)> {
    let mut full = EpisodesFile::new();
    full.subscriptions.insert(
        "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
        StoredSubscription {
            failing: Some(12),
            dead_letters: Some(3),
            dead_lettering: true,
            lag_above_since_ms: Some(1_736_936_700_000),
            lag_reported: true,
            disabled: true,
        },
    );
    full.subscriptions.insert(
        "global:nats".into(),
        StoredSubscription {
            lag_above_since_ms: Some(1_736_936_990_000),
            ..StoredSubscription::default()
        },
    );
    let silent = |cause, since_ms| Some(StoredSilence { cause, since_ms });
    full.instances.insert(
        "sales".into(),
        StoredInstance {
            last_event_ms: 1_736_936_100_000,
            last_message_ms: Some(1_736_936_000_000),
            closed_at_ms: None,
            connection_update_ms: Some(1_736_930_000_000),
            silent: silent(StoredCause::NoEvents, 1_736_936_100_000),
        },
    );
    full.instances.insert(
        "support".into(),
        StoredInstance {
            last_event_ms: 1_736_936_990_000,
            last_message_ms: Some(1_736_936_000_000),
            closed_at_ms: None,
            connection_update_ms: None,
            silent: silent(StoredCause::NoMessages, 1_736_936_000_000),
        },
    );
    full.instances.insert(
        "field-team".into(),
        StoredInstance {
            last_event_ms: 1_736_936_500_000,
            last_message_ms: None,
            closed_at_ms: Some(1_736_936_500_000),
            connection_update_ms: Some(1_736_936_500_000),
            silent: silent(StoredCause::ConnectionClosed, 1_736_936_500_000),
        },
    );
    full.instances.insert(
        "busy".into(),
        StoredInstance {
            last_event_ms: 1_736_937_000_000,
            last_message_ms: Some(1_736_937_000_000),
            ..StoredInstance::default()
        },
    );
    vec![("episodes", full), ("episodes_empty", EpisodesFile::new())]
}

#[test]
fn alert_episodes_keep_their_stored_shape() {
    let samples: Vec<(&str, Vec<u8>)> = episodes_samples()
        .iter()
        .map(|(name, file)| (*name, file.encode().expect("encodes")))
        .collect();
    golden::check("alerts", "EpisodesFile", &samples, |bytes| {
        EpisodesFile::decode(bytes)?
            .encode()
            .map_err(|e| e.to_string())
    });
}
