//! What the three named-webhook APIs (CodeChat, Linq, Ventia) share: their subscription ids,
//! lookup, create/update/delete through the registry, URL checks and event selection.
//!
//! Each API is only a different spelling of the same thing: a webhook subscription stored as
//! a `SubscriptionPut` control record, delivered by the engine like any other. The API files
//! parse and echo their own shapes; everything that touches the registry is here.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::catalog::EventKind;
use crate::delivery::subscription::{Scope, SinkTarget, Subscription};
use crate::registry::records::{ControlRecord, NamedMeta};
use crate::registry::{NamedSubscription, Projection};
use crate::sinks::webhook::WebhookTarget;

/// A custom event name no event can carry (ingest never stores an empty name). A
/// subscription whose API selected no event lists only this, so it receives nothing while
/// its cursor still moves on; an empty selection would mean "every event" instead.
pub(super) const SELECTS_NOTHING: &str = "";

/// Which API a named subscription belongs to: `NamedMeta.api` and the id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// `/api/v2/instance/{instance}/webhook`.
    CodeChat,
    /// `/v3/webhook-subscriptions`.
    Linq,
    /// `/webhooks`.
    Ventia,
}

impl Api {
    /// The name stored in `NamedMeta.api` and used as the id prefix.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Api::CodeChat => "codechat",
            Api::Linq => "linq",
            Api::Ventia => "ventia",
        }
    }

    /// The subscription id for an id as a client writes it: the bare UUID the API shows, or
    /// the `{api}:{uuid}` form `/subscriptions` shows. `None` when it is neither.
    pub(super) fn subscription_id(self, raw: &str) -> Option<String> {
        let prefix = format!("{}:", self.as_str());
        let bare = raw.strip_prefix(&prefix).unwrap_or(raw);
        let uuid = Uuid::parse_str(bare).ok()?;
        Some(format!("{prefix}{uuid}"))
    }
}

/// The id an API shows: the UUID without the `{api}:` prefix, as the three APIs use plain ids.
pub(super) fn public_id(subscription_id: &str) -> &str {
    subscription_id
        .split_once(':')
        .map_or(subscription_id, |(_, id)| id)
}

/// RFC 3339 with milliseconds and `Z`, the form all three APIs show.
pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A new, enabled webhook subscription of `api` to `url` selecting every event; the caller
/// narrows it. Its id and start position are set by [`create`].
pub(super) fn draft(api: Api, scope: Scope, url: String) -> NamedSubscription {
    let now = Utc::now();
    NamedSubscription {
        subscription: Subscription {
            policy: Default::default(),
            filter: Default::default(),
            id: String::new(),
            target: SinkTarget::Webhook(WebhookTarget {
                url,
                ..WebhookTarget::default()
            }),
            scope,
            events: Vec::new(),
            custom_events: Vec::new(),
            phone_numbers: Vec::new(),
            start_sequence: 0,
            start_positions: Vec::new(),
            enabled: true,
        },
        meta: NamedMeta {
            api: api.as_str().to_string(),
            name: None,
            fields: Default::default(),
            created_at: now,
            updated_at: now,
        },
    }
}

/// The webhook target of a named subscription (always a webhook; `None` would be a bug).
/// `view` (an API's own shape) with the subscription's delivery policy and filter added
/// when it chose them, so a client sees what it set, as stored.
pub(super) fn with_policy(mut view: Value, named: &NamedSubscription) -> Value {
    let policy = &named.subscription.policy;
    let filter = &named.subscription.filter;
    if let Value::Object(map) = &mut view {
        if !policy.is_default() {
            map.insert("policy".into(), json!(policy));
        }
        if !filter.is_empty() {
            map.insert("filter".into(), json!(filter));
        }
    }
    view
}

pub(super) fn target(named: &NamedSubscription) -> Option<&WebhookTarget> {
    match &named.subscription.target {
        SinkTarget::Webhook(target) => Some(target),
        _ => None,
    }
}

/// Mutable access to the webhook target, for updates.
pub(super) fn target_mut(named: &mut NamedSubscription) -> Option<&mut WebhookTarget> {
    match &mut named.subscription.target {
        SinkTarget::Webhook(target) => Some(target),
        _ => None,
    }
}

/// Sets which events a subscription receives. Duplicates are dropped; selecting nothing
/// receives nothing (see [`SELECTS_NOTHING`]), never everything.
pub(super) fn select(sub: &mut Subscription, events: Vec<EventKind>, custom: Vec<String>) {
    let mut kinds = Vec::with_capacity(events.len());
    for kind in events {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let mut names: Vec<String> = Vec::with_capacity(custom.len());
    for name in custom {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if kinds.is_empty() && names.is_empty() {
        names.push(SELECTS_NOTHING.to_string());
    }
    sub.events = kinds;
    sub.custom_events = names;
}

/// Checks a callback URL: absolute, with a host, `https` (or also `http` when `allow_http`).
/// Private targets are refused when delivering, not here: DNS can change in between.
pub(super) fn check_url(raw: &str, field: &str, allow_http: bool) -> Result<String, ApiError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| ApiError::validation(field, format!("must be an absolute URL ({e})")))?;
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => allow_http,
        _ => false,
    };
    if !scheme_ok {
        let rule = if allow_http {
            "must be an http(s) URL"
        } else {
            "must be an https URL (http needs webhook.allow_private_targets = true)"
        };
        return Err(ApiError::validation(field, rule));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::validation(field, "must name a host"));
    }
    Ok(raw.trim().to_string())
}

fn not_found(api: Api, raw: &str) -> ApiError {
    ApiError::not_found(format!("{} webhook `{raw}`", api.as_str()))
}

fn find<'a>(p: &'a Projection, api: Api, raw: &str) -> Option<&'a NamedSubscription> {
    let id = api.subscription_id(raw)?;
    p.named.get(&id).filter(|n| n.meta.api == api.as_str())
}

/// One subscription of `api`, or 404.
pub(super) fn get(state: &AppState, api: Api, raw: &str) -> Result<NamedSubscription, ApiError> {
    state
        .registry
        .read(|p| find(p, api, raw).cloned())
        .ok_or_else(|| not_found(api, raw))
}

/// Every subscription of `api` that `keep` accepts, oldest first.
pub(super) fn list(
    state: &AppState,
    api: Api,
    keep: impl Fn(&NamedSubscription) -> bool,
) -> Vec<NamedSubscription> {
    let mut out: Vec<NamedSubscription> = state.registry.read(|p| {
        p.named
            .values()
            .filter(|n| n.meta.api == api.as_str() && keep(n))
            .cloned()
            .collect()
    });
    out.sort_by(|a, b| {
        (a.meta.created_at, &a.subscription.id).cmp(&(b.meta.created_at, &b.subscription.id))
    });
    out
}

/// Stores a new subscription made by [`draft`]: a fresh `{api}:{uuid}` id and a cursor that
/// starts at the log's end. `check` runs against the state the record is written over
/// (CodeChat's instance must still exist).
pub(super) async fn create(
    state: &AppState,
    api: Api,
    mut named: NamedSubscription,
    check: impl FnOnce(&Projection) -> Result<(), ApiError>,
) -> Result<NamedSubscription, ApiError> {
    named.subscription.id = format!("{}:{}", api.as_str(), Uuid::new_v4());
    named.subscription.start_sequence = state.events.next_sequence();
    let now = Utc::now();
    named.subscription.start_positions = state.events.start_positions();
    named.meta.created_at = now;
    named.meta.updated_at = now;
    let record = ControlRecord::SubscriptionPut {
        subscription: named.subscription.clone(),
        meta: named.meta.clone(),
    };
    state
        .registry
        .change(|p| check(p).map(|()| vec![record]))
        .await?;
    Ok(named)
}

/// Changes a subscription of `api` with `edit`, which may refuse. The id, cursor start and
/// creation time stay; `updated_at` moves.
pub(super) async fn update(
    state: &AppState,
    api: Api,
    raw: &str,
    edit: impl FnOnce(&mut NamedSubscription) -> Result<(), ApiError>,
) -> Result<NamedSubscription, ApiError> {
    let records = state
        .registry
        .change(|p| {
            let mut named = find(p, api, raw)
                .cloned()
                .ok_or_else(|| not_found(api, raw))?;
            edit(&mut named)?;
            named.meta.updated_at = Utc::now();
            Ok(vec![ControlRecord::SubscriptionPut {
                subscription: named.subscription,
                meta: named.meta,
            }])
        })
        .await?;
    match records.into_iter().next() {
        Some(ControlRecord::SubscriptionPut { subscription, meta }) => {
            Ok(NamedSubscription { subscription, meta })
        }
        _ => Err(ApiError::internal("update wrote no subscription record")),
    }
}

/// Deletes a subscription of `api` that `check` accepts; returns what it was. The delivery
/// engine drops its cursor once the subscription leaves the published set; ids are never
/// reused, so nothing could resume it anyway.
pub(super) async fn delete(
    state: &AppState,
    api: Api,
    raw: &str,
    check: impl FnOnce(&NamedSubscription) -> Result<(), ApiError>,
) -> Result<NamedSubscription, ApiError> {
    let mut deleted = None;
    state
        .registry
        .change(|p| {
            let named = find(p, api, raw).ok_or_else(|| not_found(api, raw))?;
            check(named)?;
            deleted = Some(named.clone());
            Ok(vec![ControlRecord::SubscriptionDeleted {
                id: named.subscription.id.clone(),
            }])
        })
        .await?;
    deleted.ok_or_else(|| not_found(api, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_bare_and_prefixed_forms() {
        let uuid = "b2c3d4e5-f6a7-8901-bcde-f23456789012";
        let id = format!("linq:{uuid}");
        assert_eq!(Api::Linq.subscription_id(uuid), Some(id.clone()));
        assert_eq!(Api::Linq.subscription_id(&id), Some(id.clone()));
        assert_eq!(Api::Ventia.subscription_id(&id), None);
        assert_eq!(Api::Linq.subscription_id("nope"), None);
        assert_eq!(public_id(&id), uuid);
    }

    #[test]
    fn an_empty_selection_selects_nothing() {
        let mut named = draft(Api::Ventia, Scope::AllInstances, "https://x".into());
        select(&mut named.subscription, vec![], vec![]);
        assert!(!named.subscription.wants("i", None, "messages.upsert"));
        select(
            &mut named.subscription,
            vec![EventKind::MessagesUpdate, EventKind::MessagesUpdate],
            vec![],
        );
        assert_eq!(named.subscription.events, vec![EventKind::MessagesUpdate]);
        assert!(named.subscription.custom_events.is_empty());
    }

    #[test]
    fn urls_need_https_unless_http_is_allowed() {
        assert!(check_url("https://example.com/h", "u", false).is_ok());
        let err = check_url("http://example.com/h", "callbackUrl", false).unwrap_err();
        assert!(err.message.contains("callbackUrl") && err.message.contains("https"));
        assert!(check_url("http://127.0.0.1:9/h", "u", true).is_ok());
        assert!(check_url("ftp://example.com", "u", true).is_err());
        assert!(check_url("not a url", "u", true).is_err());
    }
}
