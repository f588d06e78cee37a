//! `/subscriptions`: what each subscription is doing (lag, in-flight, attempts, dead letters,
//! last error), its dead letters and their redrive, replay from a sequence or a time, and
//! enabling and disabling (an operator's pause, or re-enabling after the engine disabled it).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::instance_body::{filter_value, policy_value};
use super::json::JsonBody;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::pagination::PageRequest;
use super::schemas::{
    DeadLetterPage, Redriven, Replayed, SubscriptionPage, SubscriptionPatch, SubscriptionView,
};
use super::AppState;
use crate::delivery::{DeliveryError, Redrive, ReplayFrom, Scope, Subscription};
use crate::registry::records::ControlRecord;

impl From<DeliveryError> for ApiError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::UnknownSubscription(id) => {
                ApiError::not_found(format!("subscription `{id}`"))
            }
            DeliveryError::NotRunning(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            DeliveryError::ShuttingDown => ApiError::new(ErrorCode::Unavailable, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// The subscription, if the caller may see it: instance tokens see their instance's only.
fn visible(state: &AppState, principal: &Principal, id: &str) -> Result<Subscription, ApiError> {
    let set = state.registry.subscriptions().borrow().clone();
    let sub = set
        .subscriptions
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("subscription `{id}`")))?;
    match &sub.scope {
        Scope::Instance(name) => principal.require_instance(name)?,
        Scope::AllInstances => principal.require_global()?,
    }
    Ok(sub)
}

fn view(state: &AppState, sub: &Subscription) -> Value {
    let scope = match &sub.scope {
        Scope::Instance(name) => json!(name),
        Scope::AllInstances => Value::Null,
    };
    let mut v = json!({
        "id": sub.id,
        "sink": sub.target.kind().as_str(),
        "instance": scope,
        "events": sub.events,
        "enabled": sub.enabled,
    });
    if !sub.filter.is_empty() {
        v["filter"] = json!(sub.filter);
    }
    if !sub.policy.is_default() {
        v["policy"] = json!(sub.policy);
    }
    if let Some(status) = state.delivery.subscription_status(&sub.id) {
        v["status"] = serde_json::to_value(status).unwrap_or_default();
    }
    v
}

/// Every subscription the key may see, with its delivery status.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions",
    params(
        ("page" = Option<u32>, Query, description = "Page, from 1", minimum = 1),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (default 50)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "One page of subscriptions", body = SubscriptionPage),
        (status = 400, description = "A bad `page` or `limit` (2001)", body = ErrorEnvelope),
    ))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::from_query(&q)?.unwrap_or_else(PageRequest::first);
    let set = state.registry.subscriptions().borrow().clone();
    let items: Vec<Value> = set
        .subscriptions
        .iter()
        .filter(|s| match &s.scope {
            Scope::Instance(name) => principal.require_instance(name).is_ok(),
            Scope::AllInstances => principal == Principal::Global,
        })
        .map(|s| view(&state, s))
        .collect();
    let (items, pagination) = page.apply(items);
    Ok(Json(
        json!({"subscriptions": items, "pagination": pagination}),
    ))
}

/// One subscription with its delivery status.
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
    ))]
async fn one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sub = visible(&state, &principal, &id)?;
    Ok(Json(view(&state, &sub)))
}

/// A subscription's dead letters, with every attempt.
#[utoipa::path(get, path = "/subscriptions/{id}/dead-letters", tag = "dead letters",
    params(
        ("id" = String, Path, description = "Subscription id"),
        ("page" = Option<u32>, Query, description = "Page, from 1", minimum = 1),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (default 50)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "One page of dead letters", body = DeadLetterPage),
        (status = 400, description = "A bad `page` or `limit` (2001)", body = ErrorEnvelope),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
    ))]
async fn dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::from_query(&q)?.unwrap_or_else(PageRequest::first);
    visible(&state, &principal, &id)?;
    let (items, pagination) = page.apply(state.delivery.dead_letters(&id));
    Ok(Json(
        json!({"subscription": id, "dead_letters": items, "pagination": pagination}),
    ))
}

/// Which dead letters to redrive: `sequences` or `ids`, not both; neither (or an empty body)
/// redrives all.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    /// Redrive these sequences.
    sequences: Option<Vec<u64>>,
    /// Redrive these event ids.
    ids: Option<Vec<Uuid>>,
}

/// Queues dead letters for delivery again.
#[utoipa::path(post, path = "/subscriptions/{id}/dead-letters/redrive", tag = "dead letters",
    params(("id" = String, Path, description = "Subscription id")),
    request_body(content = Option<RedriveBody>, description = "Optional: empty means all"),
    responses(
        (status = 200, description = "How many were queued", body = Redriven),
        (status = 400, description = "Not JSON (2002), both `sequences` and `ids`, or an unknown field (2001)", body = ErrorEnvelope),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
        (status = 409, description = "The subscription is not running here (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn redrive(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    visible(&state, &principal, &id)?;
    // An empty body means "all", so `curl -X POST` with nothing is enough.
    let body: RedriveBody = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveBody::default()
    } else {
        super::json::parse(&body)?
    };
    let which = match (body.sequences, body.ids) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "sequences",
                "give `sequences` or `ids`, not both",
            ))
        }
        (Some(seqs), None) => Redrive::Sequences(seqs),
        (None, Some(ids)) => Redrive::Ids(ids),
        (None, None) => Redrive::All,
    };
    let queued = state.delivery.redrive(&id, which).await?;
    Ok(Json(json!({"subscription": id, "redriven": queued})))
}

/// Where to move the cursor: exactly one of `from_sequence` and `since`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Move the cursor to this sequence (0 = the oldest retained event).
    from_sequence: Option<u64>,
    /// Or to the first event received at or after this time (RFC 3339).
    since: Option<String>,
}

/// Moves the subscription's cursor back (or forward) to a sequence or a time.
#[utoipa::path(post, path = "/subscriptions/{id}/replay", tag = "dead letters",
    params(("id" = String, Path, description = "Subscription id")),
    request_body = ReplayBody,
    responses(
        (status = 200, description = "Where delivery continues", body = Replayed),
        (status = 400, description = "Not exactly one of `from_sequence` and `since`, a bad time, an unknown field (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
        (status = 409, description = "The subscription is not running here (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    visible(&state, &principal, &id)?;
    let from = match (body.from_sequence, body.since) {
        (Some(seq), None) => ReplayFrom::Sequence(seq),
        (None, Some(since)) => ReplayFrom::Time(
            chrono::DateTime::parse_from_rfc3339(&since)
                .map_err(|_| {
                    ApiError::validation("since", "must be RFC 3339, e.g. 2025-01-31T12:00:00Z")
                })?
                .timestamp_millis(),
        ),
        _ => {
            return Err(ApiError::validation(
                "from_sequence",
                "give exactly one of `from_sequence` and `since`",
            ))
        }
    };
    let cursor = state.delivery.replay(&id, from).await?;
    Ok(Json(json!({"subscription": id, "cursor": cursor})))
}

/// `POST /subscriptions/{id}/enable` and `/disable`: a disabled subscription keeps its
/// cursor, so enabling it again resumes where it stopped.
async fn switch(
    state: AppState,
    principal: Principal,
    id: String,
    enabled: bool,
) -> Result<Json<Value>, ApiError> {
    visible(&state, &principal, &id)?;
    state
        .registry
        .change(|p| {
            if !enabled && !p.can_switch(&id) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("`{id}` is defined by the config: disable it there"),
                ));
            }
            Ok::<_, ApiError>(vec![ControlRecord::SubscriptionEnabled {
                id: id.clone(),
                enabled,
                reason: (!enabled).then(|| "disabled by an operator".to_string()),
            }])
        })
        .await?;
    let sub = visible(&state, &principal, &id)?;
    Ok(Json(view(&state, &sub)))
}

/// Re-enables a subscription (after the engine disabled it, or an operator did).
#[utoipa::path(post, path = "/subscriptions/{id}/enable", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn enable(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    switch(state, principal, id, true).await
}

/// Disables a subscription: it keeps its cursor and delivers nothing until enabled again.
/// A global subscription the config defines is switched off in the config instead.
#[utoipa::path(post, path = "/subscriptions/{id}/disable", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
        (status = 409, description = "Defined by the config: disable it there (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    switch(state, principal, id, false).await
}

/// `PATCH /subscriptions/{id}`: `{"filter": {...}, "policy": {...}}`, each optional, for
/// any subscription the caller may see (per-instance sinks, named webhooks, the global
/// ones config defines). A key present replaces that setting (null clears it); an absent
/// one keeps it. Answers the subscription as `GET` shows it.
#[utoipa::path(patch, path = "/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    request_body = SubscriptionPatch,
    responses(
        (status = 200, description = "The subscription as `GET` shows it", body = SubscriptionView),
        (status = 400, description = "Not an object, an unknown field, a bad filter or policy (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Not the caller's: another instance's, or account-wide for an instance token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let Value::Object(body) = &body else {
        return Err(ApiError::validation("body", "must be a JSON object"));
    };
    if let Some(key) = body
        .keys()
        .find(|k| !["filter", "policy"].contains(&k.as_str()))
    {
        return Err(ApiError::validation(
            key,
            "unknown field; known: filter, policy",
        ));
    }
    let filter = body
        .get("filter")
        .map(|v| filter_value(Some(v), "filter"))
        .transpose()?;
    let policy = body
        .get("policy")
        .map(|v| policy_value(Some(v), "policy"))
        .transpose()?;
    visible(&state, &principal, &id)?;
    if filter.is_some() || policy.is_some() {
        state
            .registry
            .change(|_| {
                Ok::<_, ApiError>(vec![ControlRecord::SubscriptionShaped {
                    id: id.clone(),
                    filter: filter.clone(),
                    policy: policy.clone(),
                    at: chrono::Utc::now(),
                }])
            })
            .await?;
    }
    let sub = visible(&state, &principal, &id)?;
    Ok(Json(view(&state, &sub)))
}

/// The subscription routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one, patch))
        .routes(routes!(dead_letters))
        .routes(routes!(redrive))
        .routes(routes!(replay))
        .routes(routes!(enable))
        .routes(routes!(disable))
}
