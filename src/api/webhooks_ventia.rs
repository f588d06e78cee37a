//! `/webhooks`: Ventia's account-wide topic webhooks (global key only), in Ventia's shapes
//! (`{"success":true,"result":...}`, `?page=&limit=` pagination).
//!
//! A topic is a named group of events. Ventia's two: `interactions.official_whatsapp`, the
//! messages themselves (received, sent, edited, deleted) and
//! `interactions.official_whatsapp_statuses`, their delivery and read receipts
//! (`messages.update`). Every dotted Evolution event name is also a topic of its own, and so
//! is every operational event (`switchyard.subscription.failing`, ...). No topics means no
//! events.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::ApiError;
use super::instance_body::{filter_value, policy_value};
use super::json::JsonBody;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::pagination::PageRequest;
use super::schemas::{VentiaCreated, VentiaList, VentiaOk, VentiaOne, VentiaWebhookBody};
use super::webhooks_named::{self as named, Api};
use super::AppState;
use crate::catalog::EventKind;
use crate::delivery::subscription::{Filter, Policy};
use crate::delivery::Scope;
use crate::registry::NamedSubscription;

/// Ventia's topics and the events each groups.
const TOPICS: [(&str, &[EventKind]); 2] = [
    (
        "interactions.official_whatsapp",
        &[
            EventKind::MessagesUpsert,
            EventKind::SendMessage,
            EventKind::SendMessageUpdate,
            EventKind::MessagesEdited,
            EventKind::MessagesDelete,
        ],
    ),
    (
        "interactions.official_whatsapp_statuses",
        &[EventKind::MessagesUpdate],
    ),
];

/// Longest `name`, in characters.
const MAX_NAME_CHARS: usize = 64;

/// The events a topic selects; `None` for an unknown topic.
fn topic_events(topic: &str) -> Option<Vec<EventKind>> {
    if let Some((_, events)) = TOPICS.iter().find(|(name, _)| *name == topic) {
        return Some(events.to_vec());
    }
    // Operational events (`switchyard.*`) are topics of their own too, by name only.
    EventKind::every()
        .find(|k| k.dotted() == topic)
        .map(|k| vec![k])
}

/// A checked body: what to change.
#[derive(Default)]
struct Patch {
    active: Option<bool>,
    name: Option<String>,
    url: Option<String>,
    /// The topics as given, and the events they select.
    topics: Option<(Vec<String>, Vec<EventKind>)>,
    /// Switchyard's delivery policy, an addition to Ventia's shape.
    policy: Option<Policy>,
    /// Switchyard's content filter, an addition to Ventia's shape.
    filter: Option<Filter>,
}

/// Reads and checks a body; on create `active`, `name` and `callbackUrl` are required. Each
/// error names the field and the rule.
fn check(state: &AppState, body: &Value, create: bool) -> Result<Patch, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::validation("body", "must be a JSON object"))?;
    let known = [
        "active",
        "name",
        "callbackUrl",
        "topics",
        "policy",
        "filter",
    ];
    if let Some(key) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::validation(
            key,
            format!("unknown field; known: {}", known.join(", ")),
        ));
    }
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    if create {
        for field in ["active", "name", "callbackUrl"] {
            if present(field).is_none() {
                return Err(ApiError::validation(field, "is required"));
            }
        }
    }
    let mut patch = Patch::default();
    if let Some(v) = present("policy") {
        patch.policy = Some(policy_value(Some(v), "policy")?);
    }
    if let Some(v) = present("filter") {
        patch.filter = Some(filter_value(Some(v), "filter")?);
    }
    if let Some(v) = present("active") {
        let active = v
            .as_bool()
            .ok_or_else(|| ApiError::validation("active", "must be a boolean"))?;
        patch.active = Some(active);
    }
    if let Some(v) = present("name") {
        let name = v
            .as_str()
            .ok_or_else(|| ApiError::validation("name", "must be a string"))?;
        let chars = name.chars().count();
        if !(1..=MAX_NAME_CHARS).contains(&chars) {
            let rule = format!("must be 1 to {MAX_NAME_CHARS} characters (got {chars})");
            return Err(ApiError::validation("name", rule));
        }
        patch.name = Some(name.to_string());
    }
    if let Some(v) = present("callbackUrl") {
        let url = v
            .as_str()
            .ok_or_else(|| ApiError::validation("callbackUrl", "must be a string"))?;
        // Ventia demands https; plain http only where private targets are allowed (tests,
        // a receiver on the same network).
        let allow_http = state.config.webhook.allow_private_targets;
        patch.url = Some(named::check_url(url, "callbackUrl", allow_http)?);
    }
    if let Some(v) = present("topics") {
        let list = v
            .as_array()
            .ok_or_else(|| ApiError::validation("topics", "must be an array of strings"))?;
        let (mut names, mut events) = (Vec::new(), Vec::new());
        for (i, topic) in list.iter().enumerate() {
            let field = format!("topics[{i}]");
            let topic = topic
                .as_str()
                .ok_or_else(|| ApiError::validation(&field, "must be a string"))?;
            let selected = topic_events(topic).ok_or_else(|| {
                let groups: Vec<&str> = TOPICS.iter().map(|(n, _)| *n).collect();
                let rule = format!(
                    "unknown topic `{topic}`; topics are {} or a dotted event name (messages.upsert, ...)",
                    groups.join(", ")
                );
                ApiError::validation(&field, rule)
            })?;
            names.push(topic.to_string());
            events.extend(selected);
        }
        patch.topics = Some((names, events));
    }
    Ok(patch)
}

/// Applies a checked body (create and update alike).
fn apply(hook: &mut NamedSubscription, patch: Patch) {
    if let Some(active) = patch.active {
        hook.subscription.enabled = active;
    }
    if patch.name.is_some() {
        hook.meta.name = patch.name;
    }
    if let (Some(url), Some(target)) = (patch.url, named::target_mut(hook)) {
        target.url = url;
    }
    if let Some((names, events)) = patch.topics {
        named::select(&mut hook.subscription, events, Vec::new());
        hook.meta.fields.insert("topics".into(), json!(names));
    }
    if let Some(policy) = patch.policy {
        hook.subscription.policy = policy;
    }
    if let Some(filter) = patch.filter {
        hook.subscription.filter = filter;
    }
}

fn view(hook: &NamedSubscription) -> Value {
    named::with_policy(
        json!({
        "_id": named::public_id(&hook.subscription.id),
        "name": hook.meta.name,
        "topics": hook.meta.fields.get("topics").cloned().unwrap_or_else(|| json!([])),
        "active": hook.subscription.enabled,
        "callbackUrl": named::target(hook).map(|t| t.url.as_str()),
        "createdAt": named::time(hook.meta.created_at),
        "updatedAt": named::time(hook.meta.updated_at),
        }),
        hook,
    )
}

/// Creates an account-wide topic webhook (global key only).
#[utoipa::path(post, path = "/webhooks", tag = "webhooks: Ventia",
    request_body(content = VentiaWebhookBody, description = "`active`, `name` and `callbackUrl` required"),
    responses(
        (status = 200, description = "Created", body = VentiaCreated),
        (status = 400, description = "Not an object, a missing, unknown or bad field, an unknown topic (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    principal.require_global()?;
    let patch = check(&state, &body, true)?;
    let mut hook = named::draft(Api::Ventia, Scope::AllInstances, String::new());
    // No `topics` field: nothing selected yet (Ventia's topics are opt-in).
    named::select(&mut hook.subscription, Vec::new(), Vec::new());
    apply(&mut hook, patch);
    let hook = named::create(&state, Api::Ventia, hook, |_| Ok(())).await?;
    Ok(Json(
        json!({"success": true, "id": named::public_id(&hook.subscription.id)}),
    ))
}

/// Changes a webhook; omitted fields keep their value.
#[utoipa::path(put, path = "/webhooks/{id}", tag = "webhooks: Ventia",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = VentiaWebhookBody,
    responses(
        (status = 200, description = "Changed", body = VentiaOk),
        (status = 400, description = "Not an object, an unknown or bad field, an unknown topic (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such webhook (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    principal.require_global()?;
    let patch = check(&state, &body, false)?;
    named::update(&state, Api::Ventia, &id, |hook| {
        apply(hook, patch);
        Ok(())
    })
    .await?;
    Ok(Json(json!({"success": true})))
}

/// One webhook.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks: Ventia",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook", body = VentiaOne),
        (status = 403, description = "An instance token: the global key only (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such webhook (2006)", body = ErrorEnvelope),
    ))]
async fn one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_global()?;
    let hook = named::get(&state, Api::Ventia, &id)?;
    Ok(Json(json!({"success": true, "result": view(&hook)})))
}

/// Every webhook, oldest first, a page at a time.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks: Ventia",
    params(
        ("page" = Option<u32>, Query, description = "Page, from 1", minimum = 1),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (default 50)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "One page", body = VentiaList),
        (status = 400, description = "A bad `page` or `limit` (2001)", body = ErrorEnvelope),
        (status = 403, description = "An instance token: the global key only (2005)", body = ErrorEnvelope),
    ))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    principal.require_global()?;
    let page = PageRequest::from_query(&q)?.unwrap_or_else(PageRequest::first);
    let hooks = named::list(&state, Api::Ventia, |_| true);
    let (hooks, paging) = page.apply(hooks);
    let result: Vec<Value> = hooks.iter().map(view).collect();
    // Ventia's own paging block is `{totalCount}`.
    Ok(Json(json!({
        "success": true,
        "result": result,
        "paging": {"totalCount": paging.total_items},
    })))
}

/// Deletes a webhook.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks: Ventia",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "Deleted", body = VentiaOk),
        (status = 403, description = "An instance token: the global key only (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such webhook (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_global()?;
    named::delete(&state, Api::Ventia, &id, |_| Ok(())).await?;
    Ok(Json(json!({"success": true})))
}

/// The Ventia webhook routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(one, update, remove))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_group_events_and_dotted_names_are_topics() {
        let statuses = topic_events("interactions.official_whatsapp_statuses").unwrap();
        assert_eq!(statuses, vec![EventKind::MessagesUpdate]);
        let messages = topic_events("interactions.official_whatsapp").unwrap();
        assert!(messages.contains(&EventKind::MessagesUpsert));
        assert!(!messages.contains(&EventKind::MessagesUpdate));
        assert_eq!(topic_events("call"), Some(vec![EventKind::Call]));
        assert_eq!(topic_events("interactions.email"), None);
        assert_eq!(
            topic_events("MESSAGES_UPSERT"),
            None,
            "topics are dotted names only"
        );
    }
}
