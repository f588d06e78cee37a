//! Control records: every change to instances and subscriptions, as stored in the control log.
//!
//! The registry's state is nothing but the fold of these records, so a record, once written,
//! is never reinterpreted: new kinds of change get new variants.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::EventKind;
use crate::delivery::subscription::{Filter, Policy, Subscription};
use crate::sinks::webhook::WebhookTarget;
/// Which per-instance sink a [`SinkSet`] configures (stored by its name).
pub use crate::sinks::SinkKind;
use crate::sinks::SinkTarget;

/// One change to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlRecord {
    /// An instance was created.
    InstanceCreated(InstanceCreated),
    /// An instance and its per-instance sinks were deleted.
    InstanceDeleted {
        /// Instance name.
        name: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A per-instance sink (`/{sink}/set/{instance}`) was set.
    SinkSet(SinkSet),
    /// Provider settings of an instance were set (Meta app secret, verify token, ...).
    ProvidersSet {
        /// Instance name.
        instance: String,
        /// The new settings, replacing the old.
        providers: ProviderSettings,
    },
    /// A named subscription (CodeChat, Linq, Ventia webhooks) was created or replaced.
    SubscriptionPut {
        /// The subscription.
        subscription: Subscription,
        /// The API it was created through and the fields that API echoes.
        meta: NamedMeta,
    },
    /// A named subscription was deleted.
    SubscriptionDeleted {
        /// Subscription id.
        id: String,
    },
    /// A user reshaped a subscription (`PATCH /subscriptions/{id}`): whichever of its filter
    /// and policy is present replaces the current one (an empty one clears it). Applies to
    /// any subscription: a per-instance sink's is written into its last `SinkSet`, a named
    /// one's into its subscription, and a config-defined global one's is kept beside the
    /// config (`Projection::shaped`).
    SubscriptionShaped {
        /// Subscription id.
        id: String,
        /// The new filter, if it changes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
        /// The new delivery policy, if it changes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<Policy>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The delivery engine disabled a subscription (410 Gone, a failure run), or a user
    /// re-enabled it.
    SubscriptionEnabled {
        /// Subscription id.
        id: String,
        /// New state.
        enabled: bool,
        /// Why, for the API.
        reason: Option<String>,
    },
}

/// The body of [`ControlRecord::InstanceCreated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceCreated {
    /// Unique name, used in URLs, queue and topic names.
    pub name: String,
    /// Stable id; subscription ids of per-instance sinks derive from it so a re-created
    /// instance of the same name never inherits old cursors.
    pub id: Uuid,
    /// SHA-256 of the instance token, hex; the token itself is shown once at create.
    pub token_sha256: String,
    /// The token, kept so `fetchInstances` can show it to the global key holder as
    /// Evolution does.
    pub token: String,
    /// The instance owner's number, when given.
    pub number: Option<String>,
    /// Evolution's `integration` (`WHATSAPP-BAILEYS`, ...).
    pub integration: Option<String>,
    /// Evolution settings echoed back (`reject_call`, `groups_ignore`, ...).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Fields we store and echo but do not act on (`typebot_*`, `chatwoot_*`, `proxy`, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Provider settings.
    #[serde(default)]
    pub providers: ProviderSettings,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The body of [`ControlRecord::SinkSet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkSet {
    /// Instance name.
    pub instance: String,
    /// Which sink.
    pub kind: SinkKind,
    /// On or off.
    pub enabled: bool,
    /// Events; empty = all.
    pub events: Vec<EventKind>,
    /// Webhook settings (webhook sink only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTarget>,
    /// Another sink's own settings, as its target (absent in older records and for sinks
    /// that store none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SinkTarget>,
    /// Where a cursor created by this change starts (the log's end at the time of the call).
    pub start_sequence: u64,
    /// Every partition's start, with a partitioned log (see `Subscription::start_positions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_positions: Vec<u64>,
    /// The delivery policy the sink object chose (absent in older records: the defaults).
    #[serde(default, skip_serializing_if = "Policy::is_default")]
    pub policy: Policy,
    /// The filter the sink object chose (absent in older records: none).
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub filter: Filter,
    /// When.
    pub at: DateTime<Utc>,
}

impl SinkSet {
    /// The sink's own settings stored with this set, as a target (only a webhook's endpoint
    /// is stored today, in `webhook`).
    pub fn settings(&self) -> Option<SinkTarget> {
        self.webhook
            .clone()
            .map(SinkTarget::Webhook)
            .or_else(|| self.target.clone())
    }

    /// The stored form of a sink's own `settings` other than a webhook's.
    pub fn stored_target(settings: Option<SinkTarget>) -> Option<SinkTarget> {
        settings.filter(|t| !matches!(t, SinkTarget::Webhook(_)))
    }

    /// The stored form of a sink's own `settings` (see [`SinkSet::settings`]).
    pub fn stored_settings(settings: Option<SinkTarget>) -> Option<WebhookTarget> {
        match settings {
            Some(SinkTarget::Webhook(hook)) => Some(hook),
            _ => None,
        }
    }
}

/// Per-instance provider settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderSettings {
    /// Meta WhatsApp Cloud API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaSettings>,
}

/// Meta WhatsApp Cloud API settings of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaSettings {
    /// App secret that signs notifications (`X-Hub-Signature-256`).
    pub app_secret: String,
    /// Token Meta echoes in the verification handshake.
    pub verify_token: String,
}

/// Which API created a named subscription, and the fields it echoes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedMeta {
    /// `codechat`, `linq` or `ventia`.
    pub api: String,
    /// Display name, where the API has one.
    #[serde(default)]
    pub name: Option<String>,
    /// API-specific fields echoed as stored (per-event booleans, ...).
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}
