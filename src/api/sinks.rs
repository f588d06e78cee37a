//! `/{sink}/set/{instance}` and `/{sink}/find/{instance}` for every kind of the sinks'
//! registration table: Evolution's per-instance sink settings.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::instance_body::sink_object;
use super::json::JsonBody;
use super::AppState;
use crate::catalog::EventKind;
use crate::registry::records::{ControlRecord, InstanceCreated, SinkKind, SinkSet};

/// A sink's settings as `find` and `set` return them (Evolution's record fields, and the
/// sink's own, which never include a secret).
pub fn sink_view(instance: &InstanceCreated, set: &SinkSet) -> Value {
    let events: Vec<String> = set.events.iter().map(|e| EventKind::upper(*e)).collect();
    let mut view = json!({
        "enabled": set.enabled,
        "events": events,
        "instanceId": instance.id,
        "updatedAt": set.at,
    });
    if let (Some(stored), Some(sink), Value::Object(fields)) =
        (set.settings(), set.kind.descriptor(), &mut view)
    {
        (sink.show_settings)(&stored, fields);
    }
    if !set.policy.is_default() {
        view["policy"] = json!(set.policy);
    }
    if !set.filter.is_empty() {
        view["filter"] = json!(set.filter);
    }
    view
}

async fn set(
    state: AppState,
    kind: SinkKind,
    principal: Principal,
    instance: String,
    body: Value,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_instance(&instance)?;
    let key = kind.as_str();
    // Evolution nests the settings under the sink's name; accept them bare too.
    let obj = match body.get(key).unwrap_or(&body) {
        Value::Object(obj) => obj.clone(),
        _ => return Err(ApiError::validation(key, "must be an object")),
    };
    let req = sink_object(kind, &obj, key)?;
    let start_sequence = state.events.next_sequence();
    let start_positions = state.events.start_positions();
    state
        .registry
        .change(|s| {
            let existing = s
                .instances
                .get(&instance)
                .ok_or_else(|| ApiError::not_found(format!("instance `{instance}`")))?;
            // Re-setting a sink keeps its cursor; the start only matters for a new one.
            let (start_sequence, start_positions) = existing
                .sinks
                .get(&kind)
                .map_or((start_sequence, start_positions.clone()), |prev| {
                    (prev.start_sequence, prev.start_positions.clone())
                });
            Ok(vec![ControlRecord::SinkSet(SinkSet {
                instance: instance.clone(),
                kind,
                enabled: req.enabled,
                events: req.events.clone(),
                webhook: SinkSet::stored_settings(req.stored.clone()),
                target: SinkSet::stored_target(req.stored.clone()),
                start_sequence,
                start_positions,
                policy: req.policy.clone(),
                filter: req.filter.clone(),
                at: Utc::now(),
            })])
        })
        .await?;
    let view = find_view(&state, kind, &instance)?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn find_view(state: &AppState, kind: SinkKind, instance: &str) -> Result<Value, ApiError> {
    state.registry.read(|s| {
        let i = s
            .instances
            .get(instance)
            .ok_or_else(|| ApiError::not_found(format!("instance `{instance}`")))?;
        Ok(match i.sinks.get(&kind) {
            Some(set) => sink_view(&i.created, set),
            None => json!({"enabled": false, "events": [], "instanceId": i.created.id}),
        })
    })
}

async fn find(
    state: AppState,
    kind: SinkKind,
    principal: Principal,
    instance: String,
) -> Result<Json<Value>, ApiError> {
    principal.require_instance(&instance)?;
    find_view(&state, kind, &instance).map(Json)
}

/// The set/find routes of every sink kind.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for kind in SinkKind::ALL.iter().copied() {
        router = router
            .route(
                &format!("/{}/set/{{instance}}", kind.as_str()),
                post(
                    move |State(state): State<AppState>,
                          principal: Principal,
                          Path(instance): Path<String>,
                          JsonBody(body): JsonBody<Value>| {
                        set(state, kind, principal, instance, body)
                    },
                ),
            )
            .route(
                &format!("/{}/find/{{instance}}", kind.as_str()),
                get(
                    move |State(state): State<AppState>,
                          principal: Principal,
                          Path(instance): Path<String>| {
                        find(state, kind, principal, instance)
                    },
                ),
            );
    }
    router
}
