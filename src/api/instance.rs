//! `/instance/*`: create, list and delete instances, and change their provider settings.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use std::collections::HashMap;
use utoipa_axum::routes;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::instance_body::{parse_create, parse_providers};
use super::json::JsonBody;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::pagination::PageRequest;
use super::schemas::{
    CreateInstanceBody, CreatedInstance, Deleted, InstanceList, ProvidersView, SetProvidersBody,
};
use super::sinks::sink_view;
use super::AppState;
use crate::registry::records::{ControlRecord, InstanceCreated, SinkSet};
use crate::registry::{token_digest, Instance};
use crate::sinks::SinkKind;

/// Tokens shorter than this are accepted (as Evolution does) but logged as a warning.
const SHORT_TOKEN: usize = 8;

/// Creates an instance, with any sinks the body sets (global key only).
#[utoipa::path(post, path = "/instance/create", tag = "instances",
    request_body = CreateInstanceBody,
    responses(
        (status = 201, description = "Created; `hash.apikey` is the instance's token", body = CreatedInstance),
        (status = 400, description = "A field breaks a rule, an unknown event name (2003), or a token already in use (2001)", body = ErrorEnvelope),
        (status = 403, description = "An instance token (2005)", body = ErrorEnvelope),
        (status = 409, description = "An instance of that name exists (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_global()?;
    let req = parse_create(&body)?;
    // Evolution takes any token (its own example is "123456") and makes one up for an
    // absent or empty one; a short token is accepted as it does, with a warning.
    let token = req
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| Uuid::new_v4().simple().to_string().to_uppercase());
    if token.chars().count() < SHORT_TOKEN {
        tracing::warn!(
            instance = %req.name,
            length = token.chars().count(),
            "instance created with a short token: anyone who guesses it can use the instance"
        );
    }
    let now = Utc::now();
    let start_sequence = state.events.next_sequence();
    let start_positions = state.events.start_positions();
    let created = InstanceCreated {
        name: req.name.clone(),
        id: Uuid::new_v4(),
        token_sha256: token_digest(&token),
        token: token.clone(),
        number: req.number.clone(),
        integration: req.integration.clone(),
        settings: req.settings.clone(),
        extra: req.extra.clone(),
        providers: req.providers.clone(),
        created_at: now,
    };
    let records = state
        .registry
        .change(|s| {
            if s.instances.contains_key(&req.name) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("instance `{}` already exists", req.name),
                ));
            }
            if s.instance_for_token(&created.token_sha256).is_some() || token == state.api_key {
                return Err(ApiError::validation(
                    "token",
                    "is already in use; choose another",
                ));
            }
            let mut records = vec![ControlRecord::InstanceCreated(created.clone())];
            records.extend(req.sinks.iter().map(|(kind, sink)| {
                ControlRecord::SinkSet(SinkSet {
                    instance: req.name.clone(),
                    kind: *kind,
                    enabled: sink.enabled,
                    events: sink.events.clone(),
                    webhook: SinkSet::stored_settings(sink.stored.clone()),
                    target: SinkSet::stored_target(sink.stored.clone()),
                    start_sequence,
                    start_positions: start_positions.clone(),
                    policy: sink.policy.clone(),
                    filter: sink.filter.clone(),
                    at: now,
                })
            }));
            Ok(records)
        })
        .await?;
    tracing::info!(instance = %req.name, sinks = records.len() - 1, "instance created");
    let view = state
        .registry
        .read(|s| s.instances.get(&req.name).map(|i| instance_view(i, true)))
        .ok_or_else(|| ApiError::internal("instance vanished right after create"))?;
    let mut response = json!({
        "instance": {
            "instanceName": req.name,
            "instanceId": created.id,
            "integration": req.integration,
            "webhook_wa_business": null,
            "access_token_wa_business": "",
            "status": "created",
        },
        "hash": {"apikey": token},
        "settings": Value::Object(req.settings.clone()),
    });
    let sinks = SinkKind::ALL.iter().map(|kind| kind.as_str());
    for key in sinks.chain(["providers"]) {
        if let Some(v) = view.get(key) {
            response[key] = v.clone();
        }
    }
    for (k, v) in &req.extra {
        response[k] = v.clone();
    }
    Ok((StatusCode::CREATED, Json(response)))
}

/// An instance as `fetchInstances` shows it. The token is shown only to the global key
/// holder, as Evolution does; provider secrets never.
pub fn instance_view(instance: &Instance, show_token: bool) -> Map<String, Value> {
    let c = &instance.created;
    let mut out = Map::new();
    out.insert("id".into(), json!(c.id));
    out.insert("name".into(), json!(c.name));
    out.insert("instanceName".into(), json!(c.name));
    out.insert("status".into(), json!("created"));
    out.insert("number".into(), json!(c.number));
    out.insert(
        "ownerJid".into(),
        json!(c.number.as_ref().map(|n| format!("{n}@s.whatsapp.net"))),
    );
    out.insert("integration".into(), json!(c.integration));
    if show_token {
        out.insert("token".into(), json!(c.token));
    }
    out.insert("createdAt".into(), json!(c.created_at));
    out.insert("settings".into(), Value::Object(c.settings.clone()));
    for (kind, set) in &instance.sinks {
        out.insert(kind.as_str().into(), sink_view(c, set));
    }
    if let Some(meta) = &instance.providers.meta {
        out.insert(
            "providers".into(),
            json!({"meta": {"verifyToken": meta.verify_token, "appSecret": "***"}}),
        );
    }
    for (k, v) in &c.extra {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out
}

/// Evolution's `fetchInstances` answers a plain array; with `page` or `limit` the answer is
/// `{"instances":[...],"pagination":{...}}` instead.
#[utoipa::path(get, path = "/instance/fetchInstances", tag = "instances",
    params(
        ("instanceName" = Option<String>, Query, description = "Only this instance"),
        ("page" = Option<u32>, Query, description = "Page, from 1 (paginates the answer)", minimum = 1),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (paginates the answer)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "The instances the key may see; an instance token sees its own", body = InstanceList),
        (status = 400, description = "A bad `page` or `limit` (2001)", body = ErrorEnvelope),
    ))]
async fn fetch(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::from_query(&q)?;
    let show_token = principal == Principal::Global;
    let name = q.get("instanceName");
    let list: Vec<Value> = state.registry.read(|s| {
        s.instances
            .values()
            .filter(|i| principal.require_instance(&i.created.name).is_ok())
            .filter(|i| name.is_none_or(|n| *n == i.created.name))
            .map(|i| Value::Object(instance_view(i, show_token)))
            .collect()
    });
    Ok(Json(match page {
        None => Value::Array(list),
        Some(page) => {
            let (items, pagination) = page.apply(list);
            json!({"instances": items, "pagination": pagination})
        }
    }))
}

/// Deletes an instance and its sinks.
#[utoipa::path(delete, path = "/instance/delete/{instance}", tag = "instances",
    params(("instance" = String, Path, description = "Instance name", example = "my-instance")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_instance(&name)?;
    state
        .registry
        .change(|s| {
            if !s.instances.contains_key(&name) {
                return Err(ApiError::not_found(format!("instance `{name}`")));
            }
            Ok(vec![ControlRecord::InstanceDeleted {
                name: name.clone(),
                at: Utc::now(),
            }])
        })
        .await?;
    tracing::info!(instance = %name, "instance deleted");
    Ok(Json(json!({
        "status": "SUCCESS",
        "error": false,
        "response": {"message": "Instance deleted"}
    })))
}

/// Sets an instance's provider settings (Meta's app secret and verify token).
#[utoipa::path(post, path = "/instance/providers/{instance}", tag = "instances",
    params(("instance" = String, Path, description = "Instance name", example = "my-instance")),
    request_body = SetProvidersBody,
    responses(
        (status = 200, description = "The settings, secrets masked", body = ProvidersView),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn set_providers(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    principal.require_instance(&name)?;
    let providers = parse_providers(body.get("providers").or(Some(&body)))?;
    state
        .registry
        .change(|s| {
            if !s.instances.contains_key(&name) {
                return Err(ApiError::not_found(format!("instance `{name}`")));
            }
            Ok(vec![ControlRecord::ProvidersSet {
                instance: name.clone(),
                providers: providers.clone(),
            }])
        })
        .await?;
    let meta = providers
        .meta
        .map(|m| json!({"verifyToken": m.verify_token, "appSecret": "***"}));
    Ok(Json(json!({"providers": {"meta": meta}})))
}

/// The instance routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(fetch))
        .routes(routes!(remove))
        .routes(routes!(set_providers))
}
