//! The OpenAPI schemas of bodies the handlers read or build as JSON values rather than
//! typed structs (Evolution's shapes echo fields they do not know, and each sink adds its
//! own). These types only describe; schemathesis' response-schema check in
//! `tests/openapi_contract.rs` keeps them true to what the handlers send.
// Described, never built: the handlers write these shapes with `json!`.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::api::pagination::Pagination;
use crate::delivery::lookup::Delivery;
use crate::delivery::{DeadLetter, SubscriptionStatus};

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready` while ready.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// The next sequence the log will assign.
    pub next_sequence: u64,
    /// Records that did not decode and were skipped.
    pub unreadable_records: UnreadableRecords,
}

/// Records skipped because they did not decode.
#[derive(Serialize, ToSchema)]
pub struct UnreadableRecords {
    /// Control records, with their sequence and the decode error.
    pub control: Vec<UnreadableRecord>,
    /// Event records skipped by readers since the process started.
    pub event_reads: u64,
}

/// One skipped control record.
#[derive(Serialize, ToSchema)]
pub struct UnreadableRecord {
    /// Its sequence in the control log.
    pub sequence: u64,
    /// Why it did not decode.
    pub error: String,
}

/// A sink's settings in a request: `enabled`, `events`, `policy` and `filter` every sink
/// shares, and the sink's own fields (a webhook's `url`, `headers`, `byEvents`, `base64`;
/// a broker's target). `POST /{sink}/set` also accepts them nested under the sink's name.
#[derive(Serialize, ToSchema)]
pub struct SinkSettings {
    /// On or off.
    pub enabled: Option<bool>,
    /// Event names in any Evolution spelling (`MESSAGES_UPSERT`, `messages.upsert`); empty
    /// or absent means every event.
    pub events: Option<Vec<String>>,
    /// The delivery policy; absent or null is the server's defaults.
    pub policy: Option<PolicyBody>,
    /// The content filter (`from_me`, `chat_types`, `chats`, `message_types`); absent or
    /// null is no filter.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

/// A subscription's delivery policy; each setting optional (the server's default when
/// absent), unknown settings refused.
#[derive(Serialize, ToSchema)]
pub struct PolicyBody {
    /// `chat`, `instance` or `none`: what must arrive in order.
    pub ordering: Option<String>,
    /// Attempts before an event is dead-lettered.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<u32>,
    /// The delays between attempts, in milliseconds (1 to 100 of them).
    pub retry_delays_ms: Option<Vec<u64>>,
    /// Timeout of one attempt, milliseconds.
    #[schema(minimum = 1, maximum = 86400000)]
    pub timeout_ms: Option<u64>,
    /// HTTP statuses (400-599) that dead-letter at once.
    pub non_retryable_status_codes: Option<Vec<u16>>,
    /// Deliveries per second at most.
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_per_second: Option<u32>,
    /// Events in flight at once at most.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_in_flight: Option<u32>,
    /// Consecutive failures that disable the subscription (0 = never).
    #[schema(minimum = 0, maximum = 1000000)]
    pub disable_after_failures: Option<u32>,
}

/// A sink's settings as `/{sink}/find` and `/{sink}/set` answer them, with the sink's own
/// fields (never a secret).
#[derive(Serialize, ToSchema)]
pub struct SinkView {
    /// On or off.
    pub enabled: bool,
    /// Selected events (`MESSAGES_UPSERT` spelling); empty means all.
    pub events: Vec<String>,
    /// The instance's id.
    #[serde(rename = "instanceId")]
    pub instance_id: uuid::Uuid,
    /// When the settings last changed (absent when never set).
    #[serde(rename = "updatedAt")]
    pub updated_at: Option<String>,
    /// The policy, when not the defaults.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The filter, when there is one.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

/// `POST /instance/create`: Evolution's body, v2 (each sink nested: `"webhook": {...}`) or
/// v1 (flat: `webhook`, `webhook_by_events`, `rabbitmq_enabled`, `rabbitmq_events`, ...).
/// Fields not listed here are stored and echoed back.
#[derive(Serialize, ToSchema)]
pub struct CreateInstanceBody {
    /// 1 to 64 letters, digits, `-` and `_`.
    #[serde(rename = "instanceName")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub instance_name: String,
    /// The instance's token; made up when absent or empty.
    pub token: Option<String>,
    /// The owner's number.
    pub number: Option<String>,
    /// Evolution's integration name (`WHATSAPP-BAILEYS`, ...).
    pub integration: Option<String>,
    /// Accepted, not acted on.
    pub qrcode: Option<bool>,
    /// Provider settings (Meta's app secret and verify token).
    pub providers: Option<ProvidersBody>,
    /// The webhook sink (v2 form); the other sinks (`rabbitmq`, `sqs`, `kafka`, `nats`,
    /// `pusher`, `websocket`) take the same shape under their names.
    #[schema(value_type = Option<Object>)]
    pub webhook: Option<serde_json::Value>,
}

/// Provider settings.
#[derive(Serialize, ToSchema)]
pub struct ProvidersBody {
    /// Meta (WhatsApp Cloud API).
    pub meta: Option<MetaBody>,
}

/// Meta's settings.
#[derive(Serialize, ToSchema)]
pub struct MetaBody {
    /// The app secret that signs Meta's webhooks (`X-Hub-Signature-256`). Required.
    #[serde(rename = "appSecret")]
    pub app_secret: String,
    /// The token Meta's verification handshake presents.
    #[serde(rename = "verifyToken")]
    pub verify_token: Option<String>,
}

/// `POST /instance/providers/{instance}`: `{"providers": {...}}`, or the providers object
/// itself.
#[derive(Serialize, ToSchema)]
pub struct SetProvidersBody {
    /// The provider settings.
    pub providers: Option<ProvidersBody>,
    /// Or, bare, Meta's settings.
    pub meta: Option<MetaBody>,
}

/// The answer to `POST /instance/providers/{instance}`.
#[derive(Serialize, ToSchema)]
pub struct ProvidersView {
    /// The settings, secrets masked.
    pub providers: ProvidersViewInner,
}

/// Provider settings, secrets masked.
#[derive(Serialize, ToSchema)]
pub struct ProvidersViewInner {
    /// Meta's settings (`appSecret` shown as `***`), or null.
    pub meta: Option<MetaView>,
}

/// Meta's settings as shown.
#[derive(Serialize, ToSchema)]
pub struct MetaView {
    /// The verify token.
    #[serde(rename = "verifyToken")]
    pub verify_token: String,
    /// Always `***`.
    #[serde(rename = "appSecret")]
    pub app_secret: String,
}

/// `POST /instance/create`'s answer (Evolution's), with the sinks set and any extra field
/// of the request echoed.
#[derive(Serialize, ToSchema)]
pub struct CreatedInstance {
    /// The instance.
    pub instance: CreatedInstanceInner,
    /// Its token.
    pub hash: InstanceHash,
    /// Evolution's settings fields, echoed.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// The `instance` block of [`CreatedInstance`].
#[derive(Serialize, ToSchema)]
pub struct CreatedInstanceInner {
    /// Its name.
    #[serde(rename = "instanceName")]
    pub instance_name: String,
    /// Its id.
    #[serde(rename = "instanceId")]
    pub instance_id: uuid::Uuid,
    /// The integration given, or null.
    pub integration: Option<String>,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub webhook_wa_business: Option<String>,
    /// Always empty.
    pub access_token_wa_business: String,
    /// Always `created`.
    pub status: String,
}

/// The token block of [`CreatedInstance`].
#[derive(Serialize, ToSchema)]
pub struct InstanceHash {
    /// The instance's token.
    pub apikey: String,
}

/// An instance as `fetchInstances` shows it, with each sink set (`webhook`, `rabbitmq`,
/// ...: a [`SinkView`]) and the extra fields it was created with.
#[derive(Serialize, ToSchema)]
pub struct InstanceView {
    /// Its id.
    pub id: uuid::Uuid,
    /// Its name.
    pub name: String,
    /// Its name again (Evolution's field).
    #[serde(rename = "instanceName")]
    pub instance_name: String,
    /// Always `created`.
    pub status: String,
    /// The owner's number, or null.
    pub number: Option<String>,
    /// The owner's JID, or null.
    #[serde(rename = "ownerJid")]
    pub owner_jid: Option<String>,
    /// The integration, or null.
    pub integration: Option<String>,
    /// The token: shown to the global key only.
    pub token: Option<String>,
    /// When it was created.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// Evolution's settings fields.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Provider settings, secrets masked.
    pub providers: Option<ProvidersViewInner>,
}

/// `fetchInstances`: a plain array (Evolution's), or with `page` or `limit` a page.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum InstanceList {
    /// Without `page` and `limit`.
    Plain(Vec<InstanceView>),
    /// With `page` or `limit`.
    Paged(InstancePage),
}

/// One page of instances.
#[derive(Serialize, ToSchema)]
pub struct InstancePage {
    /// The page.
    pub instances: Vec<InstanceView>,
    /// Where it is.
    pub pagination: Pagination,
}

/// Evolution's answer to a delete.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// `SUCCESS`.
    pub status: String,
    /// Always false.
    pub error: bool,
    /// `{"message": "Instance deleted"}`.
    pub response: DeletedMessage,
}

/// The message of [`Deleted`].
#[derive(Serialize, ToSchema)]
pub struct DeletedMessage {
    /// What happened.
    pub message: String,
}

/// Canonical ingest: one event (`event`, `data`) or a batch (`events`).
#[derive(Serialize, ToSchema)]
pub struct IngestBody {
    /// An event name of the catalog, any Evolution spelling (one event).
    pub event: Option<String>,
    /// The event's body (one event).
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// The sender, echoed in the envelope.
    pub sender: Option<String>,
    /// The client's event id (1 to 256 bytes): a resent id is deduplicated.
    pub id: Option<String>,
    /// A batch, instead of `event` and `data` (at most `ingest.max_batch_events`).
    pub events: Option<Vec<IngestEvent>>,
}

/// One event of a batch.
#[derive(Serialize, ToSchema)]
pub struct IngestEvent {
    /// An event name of the catalog.
    pub event: String,
    /// The event's body.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The sender.
    pub sender: Option<String>,
    /// The client's event id.
    pub id: Option<String>,
}

/// Ingest's 202: what was stored, once it is durable.
#[derive(Serialize, ToSchema)]
pub struct IngestAccepted {
    /// Events stored by this request.
    pub accepted: u64,
    /// Events acknowledged as duplicates of stored ones, not stored again.
    pub deduplicated: u64,
    /// The first stored sequence (null when nothing was stored).
    pub first_sequence: Option<u64>,
    /// The last stored sequence (null when nothing was stored).
    pub last_sequence: Option<u64>,
}

/// `GET /events`: the events found, in log order, and where to continue.
#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    /// Evolution-shaped envelopes (`event`, `instance`, `data`, `date_time`, `sender`,
    /// `server_url`, `apikey`, `sequence`, ...).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Pass as `from_sequence` to continue.
    pub next_sequence: u64,
}

/// A subscription as `/subscriptions` shows it.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    /// Its id.
    pub id: String,
    /// The sink kind.
    pub sink: String,
    /// The instance, or null for an account-wide subscription.
    pub instance: Option<String>,
    /// Selected events (empty = all).
    #[schema(value_type = Vec<String>)]
    pub events: Vec<serde_json::Value>,
    /// Enabled.
    pub enabled: bool,
    /// The content filter, when there is one.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// The policy, when not the defaults.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// Delivery status, when this process delivers it.
    pub status: Option<SubscriptionStatus>,
}

/// One page of subscriptions.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionPage {
    /// The page.
    pub subscriptions: Vec<SubscriptionView>,
    /// Where it is.
    pub pagination: Pagination,
}

/// One page of a subscription's dead letters.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// The subscription.
    pub subscription: String,
    /// The page.
    pub dead_letters: Vec<DeadLetter>,
    /// Where it is.
    pub pagination: Pagination,
}

/// What a redrive queued.
#[derive(Serialize, ToSchema)]
pub struct Redriven {
    /// The subscription.
    pub subscription: String,
    /// Dead letters queued for delivery again.
    pub redriven: u64,
}

/// Where a replay moved the cursor.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// The subscription.
    pub subscription: String,
    /// The sequence delivery continues from.
    pub cursor: u64,
}

/// `PATCH /subscriptions/{id}`: each key optional; present replaces (null clears).
#[derive(Serialize, ToSchema)]
pub struct SubscriptionPatch {
    /// The content filter.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// The delivery policy.
    pub policy: Option<PolicyBody>,
}

/// One page of deliveries.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    /// The page.
    pub deliveries: Vec<Delivery>,
    /// Where it is.
    pub pagination: Pagination,
}

/// A CodeChat webhook.
#[derive(Serialize, ToSchema)]
pub struct CodeChatWebhook {
    /// Its name.
    pub name: Option<String>,
    /// Its URL.
    pub url: Option<String>,
    /// Enabled.
    pub enabled: bool,
    /// Its id.
    #[serde(rename = "webhookId")]
    pub webhook_id: String,
    /// Created (RFC 3339).
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// Last changed (RFC 3339).
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    /// The instance's id.
    #[serde(rename = "instanceInstanceId")]
    #[schema(value_type = Option<String>)]
    pub instance_instance_id: Option<String>,
    /// The event flags (`messagesUpsert: true`, ...) with `webhookEventsId`, `createdAt`,
    /// `updatedAt`.
    #[serde(rename = "WebhookEvents")]
    #[schema(value_type = Object)]
    pub webhook_events: serde_json::Value,
    /// The policy, when not the defaults.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The filter, when there is one.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

/// A Linq webhook subscription.
#[derive(Serialize, ToSchema)]
pub struct LinqSubscription {
    /// Its id.
    pub id: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Enabled.
    pub is_active: bool,
    /// Linq event names.
    pub subscribed_events: Option<Vec<String>>,
    /// Its URL.
    pub target_url: Option<String>,
    /// Last changed (RFC 3339).
    pub updated_at: String,
    /// E.164 numbers it is limited to, or null for all.
    pub phone_numbers: Option<Vec<String>>,
    /// The signing secret: in the create answer only.
    pub signing_secret: Option<String>,
    /// The policy, when not the defaults.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The filter, when there is one.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

/// Linq's list.
#[derive(Serialize, ToSchema)]
pub struct LinqSubscriptionList {
    /// Every subscription.
    pub subscriptions: Vec<LinqSubscription>,
}

/// Linq's error envelope: the same shape, Linq's codes (1001 invalid request, 1002 phone
/// number not E.164, 2001 not found, 2004 unauthorized, 2005 forbidden, 3006 internal;
/// others as the rest of the API).
#[derive(Serialize, ToSchema)]
pub struct LinqErrorEnvelope {
    /// What went wrong.
    pub error: LinqErrorDetail,
    /// Always false.
    pub success: bool,
}

/// A Linq error.
#[derive(Serialize, ToSchema)]
pub struct LinqErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// Linq's code.
    pub code: u16,
    /// What happened.
    pub message: String,
}

/// A Ventia webhook in a request.
#[derive(Serialize, ToSchema)]
pub struct VentiaWebhookBody {
    /// Enabled (required on create).
    pub active: Option<bool>,
    /// 1 to 64 characters (required on create).
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// The https URL (required on create; http where private targets are allowed).
    #[serde(rename = "callbackUrl")]
    pub callback_url: Option<String>,
    /// `interactions.official_whatsapp`, `interactions.official_whatsapp_statuses`, or
    /// dotted event names.
    pub topics: Option<Vec<String>>,
    /// Switchyard's delivery policy.
    pub policy: Option<PolicyBody>,
    /// Switchyard's content filter.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

/// A Ventia webhook.
#[derive(Serialize, ToSchema)]
pub struct VentiaWebhook {
    /// Its id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its topics.
    pub topics: Vec<String>,
    /// Enabled.
    pub active: bool,
    /// Its URL.
    #[serde(rename = "callbackUrl")]
    pub callback_url: Option<String>,
    /// Created (RFC 3339).
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// Last changed (RFC 3339).
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    /// The policy, when not the defaults.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The filter, when there is one.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

/// Ventia's plain success.
#[derive(Serialize, ToSchema)]
pub struct VentiaOk {
    /// Always true.
    pub success: bool,
}

/// Ventia's create answer.
#[derive(Serialize, ToSchema)]
pub struct VentiaCreated {
    /// Always true.
    pub success: bool,
    /// The new webhook's id.
    pub id: String,
}

/// Ventia's one-webhook answer.
#[derive(Serialize, ToSchema)]
pub struct VentiaOne {
    /// Always true.
    pub success: bool,
    /// The webhook.
    pub result: VentiaWebhook,
}

/// Ventia's list.
#[derive(Serialize, ToSchema)]
pub struct VentiaList {
    /// Always true.
    pub success: bool,
    /// The page.
    pub result: Vec<VentiaWebhook>,
    /// `{totalCount}`.
    pub paging: VentiaPaging,
}

/// Ventia's paging block.
#[derive(Serialize, ToSchema)]
pub struct VentiaPaging {
    /// Webhooks across all pages.
    #[serde(rename = "totalCount")]
    pub total_count: u64,
}
