//! `/v3/webhook-subscriptions`: Linq's account-wide webhook subscriptions (global key only),
//! in Linq's shapes and error codes, signed with Linq's scheme.
//!
//! `subscribed_events` are Linq's dotted names, echoed as given; each selects the Evolution
//! event Linq's ingest adapter normalizes it to (so `message.delivered` selects every
//! `messages.update`, read and failed receipts included), or, with no counterpart, the
//! custom event `linq.<name>`. The signing secret is returned once, by create; update never
//! changes it. Errors use Linq's codes: 1001 invalid request, 1002 phone number not E.164,
//! 2001 not found, 2004/2005 auth, 3006 internal.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::instance_body::{filter_value, policy_value};
use super::openapi::ErrorEnvelope;
use super::schemas::{LinqErrorEnvelope, LinqSubscription, LinqSubscriptionList};
use super::webhooks_named::{self as named, Api};
use super::AppState;
use crate::catalog::EventKind;
use crate::delivery::subscription::{Filter, Policy};
use crate::delivery::Scope;
use crate::registry::NamedSubscription;
use crate::sinks::webhook::{SigningKey, SigningScheme};

/// Linq's event names (its `WebhookEventType`) and the Evolution event each normalizes to;
/// `None` = no counterpart, delivered as the custom event `linq.<name>`. Must agree with
/// `ingest::providers::linq` (a test below checks it).
const EVENTS: [(&str, Option<EventKind>); 25] = [
    ("message.sent", Some(EventKind::SendMessage)),
    ("message.received", Some(EventKind::MessagesUpsert)),
    ("message.read", Some(EventKind::MessagesUpdate)),
    ("message.delivered", Some(EventKind::MessagesUpdate)),
    ("message.failed", Some(EventKind::MessagesUpdate)),
    ("message.edited", Some(EventKind::MessagesEdited)),
    ("reaction.added", Some(EventKind::MessagesUpsert)),
    ("reaction.removed", Some(EventKind::MessagesUpsert)),
    (
        "participant.added",
        Some(EventKind::GroupParticipantsUpdate),
    ),
    (
        "participant.removed",
        Some(EventKind::GroupParticipantsUpdate),
    ),
    ("chat.created", Some(EventKind::ChatsUpsert)),
    ("chat.group_name_updated", Some(EventKind::GroupsUpdate)),
    ("chat.group_icon_updated", Some(EventKind::GroupsUpdate)),
    ("chat.group_name_update_failed", None),
    ("chat.group_icon_update_failed", None),
    (
        "chat.typing_indicator.started",
        Some(EventKind::PresenceUpdate),
    ),
    (
        "chat.typing_indicator.stopped",
        Some(EventKind::PresenceUpdate),
    ),
    ("phone_number.status_updated", None),
    ("call.initiated", Some(EventKind::Call)),
    ("call.ringing", Some(EventKind::Call)),
    ("call.answered", Some(EventKind::Call)),
    ("call.ended", Some(EventKind::Call)),
    ("call.failed", Some(EventKind::Call)),
    ("call.declined", Some(EventKind::Call)),
    ("call.no_answer", Some(EventKind::Call)),
];

/// An error in Linq's envelope: our `ApiError` with Linq's numeric code.
struct LinqError(ApiError, u16);

impl From<ApiError> for LinqError {
    fn from(mut e: ApiError) -> Self {
        let code = match e.code {
            ErrorCode::Validation | ErrorCode::InvalidJson | ErrorCode::UnknownEvent => 1001,
            ErrorCode::NotFound => {
                e.message = "Resource not found".into();
                2001
            }
            ErrorCode::Unauthorized => {
                e.message = "Unauthorized - missing or invalid authentication token".into();
                2004
            }
            ErrorCode::Forbidden => {
                e.message = "Access denied - insufficient permissions for this resource".into();
                2005
            }
            ErrorCode::Internal => {
                e.message = "Internal server error".into();
                3006
            }
            other => other as u16,
        };
        LinqError(e, code)
    }
}

impl IntoResponse for LinqError {
    fn into_response(self) -> Response {
        let LinqError(e, code) = self;
        let body = json!({
            "error": {"status": e.status.as_u16(), "code": code, "message": e.message},
            "success": false,
        });
        (e.status, Json(body)).into_response()
    }
}

type Reply<T> = Result<T, LinqError>;

/// Present-but-null (`Some(None)`) must differ from absent (`None`): null clears the filter.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The body of create and update (every field optional on update).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = LinqSubscriptionBody)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Where events go (required on create).
    target_url: Option<String>,
    /// Linq event names (required on create, at least one).
    subscribed_events: Option<Vec<String>>,
    /// On or off.
    is_active: Option<bool>,
    /// E.164 numbers to limit it to; null for all.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    phone_numbers: Option<Option<Vec<String>>>,
    /// Switchyard's delivery policy (`{"ordering": ...}`), an addition to Linq's shape.
    #[schema(value_type = Option<super::schemas::PolicyBody>)]
    policy: Option<Value>,
    /// Switchyard's content filter (`{"chats": {"allow": [...]}, ...}`), an addition to
    /// Linq's shape. `phone_numbers` stay Linq's own filter on the account's numbers (the
    /// instance's own number), which the content filter's clauses do not cover.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
}

fn parse_body(bytes: &[u8]) -> Reply<Body> {
    Ok(super::json::parse(bytes)?)
}

/// The caller must hold the global key; rejections in Linq's envelope.
fn global(principal: Result<Principal, ApiError>) -> Reply<()> {
    Ok(principal?.require_global()?)
}

/// Splits Linq names into Evolution events and custom events; unknown names are refused.
fn selection(names: &[String]) -> Reply<(Vec<EventKind>, Vec<String>)> {
    let (mut kinds, mut custom) = (Vec::new(), Vec::new());
    for name in names {
        match EVENTS.iter().find(|(n, _)| n == name) {
            Some((_, Some(kind))) => kinds.push(*kind),
            Some((_, None)) => custom.push(format!("linq.{name}")),
            // The server's own events, by their dotted name (not Linq's, but subscribable).
            None if name.starts_with(crate::catalog::OPERATIONAL_PREFIX)
                && EventKind::parse(name).is_ok_and(EventKind::is_operational) =>
            {
                kinds.extend(EventKind::parse(name).ok());
            }
            None => {
                let known: Vec<&str> = EVENTS.iter().map(|(n, _)| *n).collect();
                let rule = format!("unknown event `{name}`; known: {}", known.join(", "));
                return Err(ApiError::validation("subscribed_events", rule).into());
            }
        }
    }
    Ok((kinds, custom))
}

/// `+` then 2 to 15 digits, the first not 0.
fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn check_phones(numbers: &[String]) -> Reply<()> {
    if numbers.iter().all(|n| is_e164(n)) {
        Ok(())
    } else {
        let e = ApiError::new(
            ErrorCode::Validation,
            "Phone number must be in E.164 format",
        );
        Err(LinqError(e, 1002))
    }
}

/// A checked body: what to change, nothing left to refuse.
struct Patch {
    url: Option<String>,
    /// The names as given, and what they select.
    events: Option<(Vec<String>, Vec<EventKind>, Vec<String>)>,
    active: Option<bool>,
    /// `Some(None)`: null, which clears the filter like `[]` but is echoed as null.
    phones: Option<Option<Vec<String>>>,
    policy: Option<Policy>,
    filter: Option<Filter>,
}

/// Checks every field, so Linq's own codes (1002) are decided before the registry is touched.
fn check(body: Body) -> Reply<Patch> {
    let url = match body.target_url {
        Some(url) => Some(named::check_url(&url, "target_url", true)?),
        None => None,
    };
    let events = match body.subscribed_events {
        Some(names) if names.is_empty() => {
            let rule = "must hold at least one event type";
            return Err(ApiError::validation("subscribed_events", rule).into());
        }
        Some(names) => {
            let (kinds, custom) = selection(&names)?;
            Some((names, kinds, custom))
        }
        None => None,
    };
    if let Some(Some(numbers)) = &body.phone_numbers {
        check_phones(numbers)?;
    }
    let policy = match &body.policy {
        Some(value) => Some(policy_value(Some(value), "policy")?),
        None => None,
    };
    let filter = match &body.filter {
        Some(value) => Some(filter_value(Some(value), "filter")?),
        None => None,
    };
    Ok(Patch {
        url,
        events,
        active: body.is_active,
        phones: body.phone_numbers,
        policy,
        filter,
    })
}

/// Applies a checked body to a subscription (create and update alike).
fn apply(hook: &mut NamedSubscription, patch: Patch) {
    if let (Some(url), Some(target)) = (patch.url, named::target_mut(hook)) {
        target.url = url;
    }
    if let Some((names, kinds, custom)) = patch.events {
        named::select(&mut hook.subscription, kinds, custom);
        hook.meta
            .fields
            .insert("subscribed_events".into(), json!(names));
    }
    if let Some(active) = patch.active {
        hook.subscription.enabled = active;
    }
    if let Some(numbers) = patch.phones {
        hook.subscription.phone_numbers = numbers.clone().unwrap_or_default();
        hook.meta
            .fields
            .insert("phone_numbers".into(), json!(numbers));
    }
    if let Some(policy) = patch.policy {
        hook.subscription.policy = policy;
    }
    if let Some(filter) = patch.filter {
        hook.subscription.filter = filter;
    }
}

fn view(hook: &NamedSubscription) -> Value {
    let field = |k: &str| hook.meta.fields.get(k).cloned().unwrap_or(Value::Null);
    named::with_policy(
        json!({
        "id": named::public_id(&hook.subscription.id),
        "created_at": named::time(hook.meta.created_at),
        "is_active": hook.subscription.enabled,
        "subscribed_events": field("subscribed_events"),
        "target_url": named::target(hook).map(|t| t.url.as_str()),
        "updated_at": named::time(hook.meta.updated_at),
        "phone_numbers": field("phone_numbers"),
        }),
        hook,
    )
}

/// Creates an account-wide Linq webhook subscription (global key only); the answer holds
/// its signing secret, once.
#[utoipa::path(post, path = "/v3/webhook-subscriptions", tag = "webhooks: Linq",
    request_body(content = Body, description = "`target_url` and `subscribed_events` required"),
    responses(
        (status = 201, description = "Created, with `signing_secret`", body = LinqSubscription),
        (status = 400, description = "Not JSON, a missing or bad field (1001), a phone number not E.164 (1002); a bad path (2001)", body = LinqErrorEnvelope),
        (status = 401, description = "No key or a wrong one (2004)", body = LinqErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = LinqErrorEnvelope),
        (status = 404, description = "No such subscription (2001)", body = LinqErrorEnvelope),
        (status = 413, description = "The body exceeds `ingest.max_body_bytes` (2008)", body = ErrorEnvelope),
        (status = 500, description = "Internal error (3006)", body = LinqErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = LinqErrorEnvelope),
    ))]
async fn create(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    body: bytes::Bytes,
) -> Reply<(StatusCode, Json<Value>)> {
    global(principal)?;
    let body = parse_body(&body)?;
    if body.target_url.is_none() {
        return Err(ApiError::validation("target_url", "is required").into());
    }
    if body.subscribed_events.is_none() {
        let rule = "is required: at least one event type";
        return Err(ApiError::validation("subscribed_events", rule).into());
    }
    let patch = check(body)?;
    let mut hook = named::draft(Api::Linq, Scope::AllInstances, String::new());
    hook.meta.fields.insert("phone_numbers".into(), Value::Null);
    apply(&mut hook, patch);
    let secret = SigningKey::generate_linq_secret();
    if let Some(target) = named::target_mut(&mut hook) {
        target.secret = Some(secret.clone());
        target.signing = SigningScheme::Linq;
    }
    let hook = named::create(&state, Api::Linq, hook, |_| Ok(())).await?;
    let mut out = view(&hook);
    // The only time the secret leaves the server.
    out["signing_secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

/// Changes a subscription; omitted fields keep their value.
#[utoipa::path(put, path = "/v3/webhook-subscriptions/{id}", tag = "webhooks: Linq",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = Body,
    responses(
        (status = 200, description = "The subscription", body = LinqSubscription),
        (status = 400, description = "Not JSON, a missing or bad field (1001), a phone number not E.164 (1002); a bad path (2001)", body = LinqErrorEnvelope),
        (status = 401, description = "No key or a wrong one (2004)", body = LinqErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = LinqErrorEnvelope),
        (status = 404, description = "No such subscription (2001)", body = LinqErrorEnvelope),
        (status = 413, description = "The body exceeds `ingest.max_body_bytes` (2008)", body = ErrorEnvelope),
        (status = 500, description = "Internal error (3006)", body = LinqErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = LinqErrorEnvelope),
    ))]
async fn update(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Reply<Json<Value>> {
    global(principal)?;
    let patch = check(parse_body(&body)?)?;
    // The secret and signing scheme are not in a patch: update cannot change them.
    let hook = named::update(&state, Api::Linq, &id, |hook| {
        apply(hook, patch);
        Ok(())
    })
    .await?;
    Ok(Json(view(&hook)))
}

/// One subscription.
#[utoipa::path(get, path = "/v3/webhook-subscriptions/{id}", tag = "webhooks: Linq",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = LinqSubscription),
        (status = 400, description = "Not JSON, a missing or bad field (1001), a phone number not E.164 (1002); a bad path (2001)", body = LinqErrorEnvelope),
        (status = 401, description = "No key or a wrong one (2004)", body = LinqErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = LinqErrorEnvelope),
        (status = 404, description = "No such subscription (2001)", body = LinqErrorEnvelope),
        (status = 413, description = "The body exceeds `ingest.max_body_bytes` (2008)", body = ErrorEnvelope),
        (status = 500, description = "Internal error (3006)", body = LinqErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = LinqErrorEnvelope),
    ))]
async fn one(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Reply<Json<Value>> {
    global(principal)?;
    Ok(Json(view(&named::get(&state, Api::Linq, &id)?)))
}

/// Every subscription, oldest first.
#[utoipa::path(get, path = "/v3/webhook-subscriptions", tag = "webhooks: Linq",
    responses(
        (status = 200, description = "The subscriptions", body = LinqSubscriptionList),
        (status = 400, description = "Not JSON, a missing or bad field (1001), a phone number not E.164 (1002); a bad path (2001)", body = LinqErrorEnvelope),
        (status = 401, description = "No key or a wrong one (2004)", body = LinqErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = LinqErrorEnvelope),
        (status = 404, description = "No such subscription (2001)", body = LinqErrorEnvelope),
        (status = 413, description = "The body exceeds `ingest.max_body_bytes` (2008)", body = ErrorEnvelope),
        (status = 500, description = "Internal error (3006)", body = LinqErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = LinqErrorEnvelope),
    ))]
async fn list(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
) -> Reply<Json<Value>> {
    global(principal)?;
    let hooks = named::list(&state, Api::Linq, |_| true);
    let items: Vec<Value> = hooks.iter().map(view).collect();
    Ok(Json(json!({ "subscriptions": items })))
}

/// Deletes a subscription.
#[utoipa::path(delete, path = "/v3/webhook-subscriptions/{id}", tag = "webhooks: Linq",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not JSON, a missing or bad field (1001), a phone number not E.164 (1002); a bad path (2001)", body = LinqErrorEnvelope),
        (status = 401, description = "No key or a wrong one (2004)", body = LinqErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = LinqErrorEnvelope),
        (status = 404, description = "No such subscription (2001)", body = LinqErrorEnvelope),
        (status = 413, description = "The body exceeds `ingest.max_body_bytes` (2008)", body = ErrorEnvelope),
        (status = 500, description = "Internal error (3006)", body = LinqErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = LinqErrorEnvelope),
    ))]
async fn remove(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Reply<StatusCode> {
    global(principal)?;
    named::delete(&state, Api::Linq, &id, |_| Ok(())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The Linq webhook-subscription routes.
pub fn router() -> super::openapi::ApiRouter {
    super::openapi::ApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one, update, remove))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::providers::linq;

    #[test]
    fn the_table_agrees_with_the_ingest_adapter() {
        for (name, kind) in EVENTS {
            let body = json!({
                "api_version": "v3", "event_type": name, "event_id": "ev-1",
                "created_at": "2025-01-01T00:00:00Z",
                "data": {
                    "id": "m1", "message_id": "m1", "call_id": "k1",
                    "chat": {"id": "c1"}, "handle": "+15550001111",
                    "sender_handle": {"handle": "+15550001111", "is_me": false},
                    "parts": [{"type": "text", "value": "hi"}],
                    "reaction": {"type": "love"}, "phone_number": "+15550001111",
                },
            });
            let events = linq::normalize(body.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = kind.map_or(format!("linq.{name}"), |k| k.dotted().to_string());
            assert_eq!(events[0].event, expected, "{name}");
        }
    }

    #[test]
    fn e164_numbers() {
        for ok in ["+5511999990000", "+14155550123", "+12"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "5511999990000",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1 415",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
        let err = check_phones(&["+14155550123".into(), "4155550123".into()]).unwrap_err();
        assert_eq!(err.1, 1002);
    }

    #[test]
    fn unmapped_names_become_custom_events() {
        let names = vec!["message.read".into(), "phone_number.status_updated".into()];
        let (kinds, custom) = selection(&names).map_err(|e| e.0).unwrap();
        assert_eq!(kinds, vec![EventKind::MessagesUpdate]);
        assert_eq!(custom, vec!["linq.phone_number.status_updated".to_string()]);
        assert!(selection(&["message.nope".into()]).is_err());
    }
}
