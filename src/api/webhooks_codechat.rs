//! `/api/v2/instance/{instanceId}/webhook`: CodeChat's named webhooks, several per instance,
//! each with per-event booleans (`WebhookEvents`).
//!
//! `instanceId` is the instance's UUID or its name. Every flag defaults to true and maps to
//! the Evolution event of the same meaning (`EventKind::codechat`); `newJwt` has no Evolution
//! counterpart, so it is stored and echoed but selects nothing. As in CodeChat, `enabled`
//! defaults to false on create; on update an omitted field keeps its value.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Principal;
use super::error::ApiError;
use super::instance_body::{filter_value, policy_value};
use super::json::JsonBody;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::schemas::CodeChatWebhook;
use super::webhooks_named::{self as named, Api};
use super::AppState;
use crate::catalog::EventKind;
use crate::delivery::Scope;
use crate::registry::NamedSubscription;

/// CodeChat's flags, in its documentation's order.
const FLAGS: [&str; 19] = [
    "qrcodeUpdate",
    "stateInstance",
    "messagesSet",
    "messagesUpsert",
    "messagesUpdate",
    "sendMessage",
    "contactsSet",
    "contactsUpsert",
    "contactsUpdate",
    "presenceUpdate",
    "chatsSet",
    "chatsUpdate",
    "chatsUpsert",
    "chatsDelete",
    "groupsUpsert",
    "groupUpdate",
    "groupParticipantsUpdate",
    "connectionUpdate",
    "newJwt",
];

/// Keys of the `WebhookEvents` response that a client may send back unchanged; ignored.
const READ_ONLY: [&str; 3] = ["webhookEventsId", "createdAt", "updatedAt"];

/// The body of create and update.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CodeChatWebhookBody)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Identification name (required, as in CodeChat's schema).
    name: Option<String>,
    /// Where events go (required on create).
    url: Option<String>,
    /// On or off.
    enabled: Option<bool>,
    /// Per-event booleans; omitted ones keep their value (true on create).
    #[serde(rename = "WebhookEvents", alias = "webhookEvents", alias = "events")]
    #[schema(value_type = Option<Object>)]
    events: Option<Map<String, Value>>,
    /// Switchyard's delivery policy (`{"ordering": ...}`), an addition to CodeChat's shape.
    #[schema(value_type = Option<super::schemas::PolicyBody>)]
    policy: Option<Value>,
    /// Switchyard's content filter (`{"from_me": false, ...}`), an addition to CodeChat's
    /// shape.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
}

/// The instance named by `raw` (name or UUID) that `principal` may reach: (name, id).
fn instance(
    state: &AppState,
    principal: &Principal,
    raw: &str,
) -> Result<(String, Uuid), ApiError> {
    let found = state.registry.read(|p| {
        p.instances
            .get(raw)
            .or_else(|| {
                let id = Uuid::parse_str(raw).ok()?;
                p.instances.values().find(|i| i.created.id == id)
            })
            .map(|i| (i.created.name.clone(), i.created.id))
    });
    let (name, id) = found.ok_or_else(|| ApiError::not_found(format!("instance `{raw}`")))?;
    principal.require_instance(&name)?;
    Ok((name, id))
}

/// Refuses a webhook of another instance as if it did not exist.
fn belongs(hook: &NamedSubscription, instance: &str, raw_id: &str) -> Result<(), ApiError> {
    if hook.subscription.scope == Scope::Instance(instance.to_string()) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("webhook `{raw_id}`")))
    }
}

/// Applies the given flags over `flags`, refusing unknown keys and non-booleans.
fn apply_flags(flags: &mut Map<String, Value>, given: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in given {
        if READ_ONLY.contains(&key.as_str()) {
            continue;
        }
        let field = format!("WebhookEvents.{key}");
        if !FLAGS.contains(&key.as_str()) && !operational_flag(key) {
            let rule = format!("unknown event flag; known flags: {}", FLAGS.join(", "));
            return Err(ApiError::validation(&field, rule));
        }
        let on = value
            .as_bool()
            .ok_or_else(|| ApiError::validation(&field, "must be a boolean"))?;
        flags.insert(key.clone(), Value::Bool(on));
    }
    Ok(())
}

/// Whether `key` is the CodeChat spelling of an operational event
/// (`switchyardSubscriptionFailing`, ...): a flag of ours, off unless given.
fn operational_flag(key: &str) -> bool {
    EventKind::operational().any(|k| k.codechat() == key)
}

/// The Evolution events the flags that are on select (`newJwt` selects none), and the
/// operational events whose flags are on.
fn selected(flags: &Map<String, Value>) -> Vec<EventKind> {
    FLAGS
        .iter()
        .map(|f| f.to_string())
        .chain(EventKind::operational().map(EventKind::codechat))
        .filter(|f| flags.get(f) == Some(&Value::Bool(true)))
        .filter_map(|f| EventKind::parse(&f).ok())
        .collect()
}

fn required_name(name: Option<String>) -> Result<String, ApiError> {
    match name.map(|n| n.trim().to_string()) {
        Some(n) if !n.is_empty() => Ok(n),
        _ => Err(ApiError::validation(
            "name",
            "is required (a non-empty string)",
        )),
    }
}

fn view(hook: &NamedSubscription) -> Value {
    let field = |k: &str| hook.meta.fields.get(k).cloned().unwrap_or(Value::Null);
    let mut events = match field("WebhookEvents") {
        Value::Object(flags) => flags,
        _ => Map::new(),
    };
    events.insert("webhookEventsId".into(), field("webhookEventsId"));
    events.insert("createdAt".into(), json!(named::time(hook.meta.created_at)));
    events.insert("updatedAt".into(), json!(named::time(hook.meta.updated_at)));
    named::with_policy(
        json!({
        "name": hook.meta.name,
        "url": named::target(hook).map(|t| t.url.as_str()),
        "enabled": hook.subscription.enabled,
        "webhookId": named::public_id(&hook.subscription.id),
        "createdAt": named::time(hook.meta.created_at),
        "updatedAt": named::time(hook.meta.updated_at),
        "instanceInstanceId": field("instanceInstanceId"),
        "WebhookEvents": events,
        }),
        hook,
    )
}

/// Creates a named webhook of an instance (`enabled` defaults to false, every flag to true).
#[utoipa::path(post, path = "/api/v2/instance/{instance}/webhook", tag = "webhooks: CodeChat",
    params(("instance" = String, Path, description = "The instance's UUID or name", example = "my-instance")),
    request_body(content = Body, description = "`name` and `url` required"),
    responses(
        (status = 201, description = "Created", body = CodeChatWebhook),
        (status = 400, description = "A missing or bad field, an unknown flag (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw_instance): Path<String>,
    JsonBody(body): JsonBody<Body>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (instance, instance_id) = instance(&state, &principal, &raw_instance)?;
    let name = required_name(body.name)?;
    let url = body
        .url
        .ok_or_else(|| ApiError::validation("url", "is required"))?;
    let url = named::check_url(&url, "url", true)?;
    let policy = policy_value(body.policy.as_ref(), "policy")?;
    let filter = filter_value(body.filter.as_ref(), "filter")?;
    let mut flags: Map<String, Value> =
        FLAGS.iter().map(|f| (f.to_string(), json!(true))).collect();
    apply_flags(&mut flags, &body.events.unwrap_or_default())?;
    let mut hook = named::draft(Api::CodeChat, Scope::Instance(instance.clone()), url);
    hook.subscription.enabled = body.enabled.unwrap_or(false);
    hook.subscription.policy = policy;
    hook.subscription.filter = filter;
    named::select(&mut hook.subscription, selected(&flags), Vec::new());
    hook.meta.name = Some(name);
    let fields = &mut hook.meta.fields;
    fields.insert("WebhookEvents".into(), Value::Object(flags));
    fields.insert("webhookEventsId".into(), json!(Uuid::new_v4()));
    fields.insert("instanceInstanceId".into(), json!(instance_id));
    let hook = named::create(&state, Api::CodeChat, hook, |p| {
        // The instance may have been deleted (or re-created) since it was looked up.
        match p.instances.get(&instance) {
            Some(i) if i.created.id == instance_id => Ok(()),
            _ => Err(ApiError::not_found(format!("instance `{raw_instance}`"))),
        }
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view(&hook))))
}

/// Changes a webhook; omitted fields keep their value (`name` required).
#[utoipa::path(put, path = "/api/v2/instance/{instance}/webhook/{id}", tag = "webhooks: CodeChat",
    params(("instance" = String, Path, description = "The instance's UUID or name", example = "my-instance"), ("id" = String, Path, description = "The webhook's id")),
    request_body = Body,
    responses(
        (status = 200, description = "The webhook", body = CodeChatWebhook),
        (status = 400, description = "A missing or bad field, an unknown flag (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance, or no such webhook of it (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw_instance, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Body>,
) -> Result<Json<Value>, ApiError> {
    let (instance, _) = instance(&state, &principal, &raw_instance)?;
    let name = required_name(body.name)?;
    let url = match &body.url {
        Some(url) => Some(named::check_url(url, "url", true)?),
        None => None,
    };
    let policy = match &body.policy {
        Some(value) => Some(policy_value(Some(value), "policy")?),
        None => None,
    };
    let filter = match &body.filter {
        Some(value) => Some(filter_value(Some(value), "filter")?),
        None => None,
    };
    let hook = named::update(&state, Api::CodeChat, &id, |hook| {
        belongs(hook, &instance, &id)?;
        if let Some(policy) = policy.clone() {
            hook.subscription.policy = policy;
        }
        if let Some(filter) = filter.clone() {
            hook.subscription.filter = filter;
        }
        let mut flags = match hook.meta.fields.get("WebhookEvents") {
            Some(Value::Object(flags)) => flags.clone(),
            _ => Map::new(),
        };
        apply_flags(&mut flags, &body.events.unwrap_or_default())?;
        named::select(&mut hook.subscription, selected(&flags), Vec::new());
        hook.meta
            .fields
            .insert("WebhookEvents".into(), Value::Object(flags));
        hook.meta.name = Some(name);
        if let Some(enabled) = body.enabled {
            hook.subscription.enabled = enabled;
        }
        if let (Some(url), Some(target)) = (url, named::target_mut(hook)) {
            target.url = url;
        }
        Ok(())
    })
    .await?;
    Ok(Json(view(&hook)))
}

/// One webhook of an instance.
#[utoipa::path(get, path = "/api/v2/instance/{instance}/webhook/{id}", tag = "webhooks: CodeChat",
    params(("instance" = String, Path, description = "The instance's UUID or name", example = "my-instance"), ("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook", body = CodeChatWebhook),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance, or no such webhook of it (2006)", body = ErrorEnvelope),
    ))]
async fn one(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw_instance, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (instance, _) = instance(&state, &principal, &raw_instance)?;
    let hook = named::get(&state, Api::CodeChat, &id)?;
    belongs(&hook, &instance, &id)?;
    Ok(Json(view(&hook)))
}

/// Every webhook of an instance, oldest first.
#[utoipa::path(get, path = "/api/v2/instance/{instance}/webhook", tag = "webhooks: CodeChat",
    params(("instance" = String, Path, description = "The instance's UUID or name", example = "my-instance")),
    responses(
        (status = 200, description = "The webhooks", body = Vec<CodeChatWebhook>),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
    ))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw_instance): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (instance, _) = instance(&state, &principal, &raw_instance)?;
    let scope = Scope::Instance(instance);
    let hooks = named::list(&state, Api::CodeChat, |h| h.subscription.scope == scope);
    Ok(Json(Value::Array(hooks.iter().map(view).collect())))
}

/// Deletes a webhook; answers what it was.
#[utoipa::path(delete, path = "/api/v2/instance/{instance}/webhook/{id}", tag = "webhooks: CodeChat",
    params(("instance" = String, Path, description = "The instance's UUID or name", example = "my-instance"), ("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The deleted webhook", body = CodeChatWebhook),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance, or no such webhook of it (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path((raw_instance, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (instance, _) = instance(&state, &principal, &raw_instance)?;
    let hook = named::delete(&state, Api::CodeChat, &id, |h| belongs(h, &instance, &id)).await?;
    Ok(Json(view(&hook)))
}

/// The CodeChat webhook routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one, update, remove))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_but_new_jwt_names_an_evolution_event() {
        for flag in FLAGS {
            assert_eq!(EventKind::parse(flag).is_ok(), flag != "newJwt", "{flag}");
        }
    }

    #[test]
    fn flags_select_events_and_refuse_unknown_keys() {
        let mut flags: Map<String, Value> = FLAGS
            .iter()
            .map(|f| (f.to_string(), json!(false)))
            .collect();
        let given = json!({"messagesUpsert": true, "newJwt": true, "webhookEventsId": "x"});
        apply_flags(&mut flags, given.as_object().unwrap()).unwrap();
        assert_eq!(selected(&flags), vec![EventKind::MessagesUpsert]);
        let bad = json!({"messagesUpsertt": true});
        let err = apply_flags(&mut flags, bad.as_object().unwrap()).unwrap_err();
        assert!(err.message.contains("WebhookEvents.messagesUpsertt"));
        let bad = json!({"qrcodeUpdate": "yes"});
        assert!(apply_flags(&mut flags, bad.as_object().unwrap()).is_err());
    }
}
