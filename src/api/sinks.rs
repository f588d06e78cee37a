//! `/{webhook|rabbitmq|sqs|websocket|kafka}/set/{instance}` and `/{sink}/find/{instance}`:
//! Evolution's per-instance sink settings.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::instance_body::{broker_object, webhook_object};
use super::json::JsonBody;
use super::AppState;
use crate::catalog::EventKind;
use crate::registry::records::{ControlRecord, InstanceCreated, SinkKind, SinkSet};

/// A sink's settings as `find` and `set` return them (Evolution's record fields). A webhook
/// secret is never echoed.
pub fn sink_view(instance: &InstanceCreated, set: &SinkSet) -> Value {
    let events: Vec<String> = set.events.iter().map(|e| EventKind::upper(*e)).collect();
    let mut view = json!({
        "enabled": set.enabled,
        "events": events,
        "instanceId": instance.id,
        "updatedAt": set.at,
    });
    if let Some(hook) = &set.webhook {
        view["url"] = json!(hook.url);
        view["headers"] = json!(hook.headers);
        view["webhookByEvents"] = json!(hook.by_events);
        view["webhookBase64"] = json!(hook.base64);
        view["byEvents"] = json!(hook.by_events);
        view["base64"] = json!(hook.base64);
        view["signed"] = json!(hook.secret.is_some());
    }
    if !set.policy.is_default() {
        view["policy"] = json!(set.policy);
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
    let req = if kind == SinkKind::Webhook {
        webhook_object(&obj, key)?
    } else {
        broker_object(&obj, key)?
    };
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
                webhook: req.webhook.clone(),
                start_sequence,
                start_positions,
                policy: req.policy.clone(),
                at: Utc::now(),
            })])
        })
        .await?;
    if req.enabled {
        declare_topology(&state, kind, &instance, &req.events).await;
    }
    let view = find_view(&state, kind, &instance)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Declares an instance's queues right away (Evolution declares them on first publish and
/// loses that event). A broker that is down is not an error here: the settings are stored,
/// and every send declares what it needs before publishing.
pub(super) async fn declare_topology(
    state: &AppState,
    kind: SinkKind,
    instance: &str,
    events: &[EventKind],
) {
    let bound = std::time::Duration::from_secs(5);
    let result = match (kind, &state.brokers.rabbitmq, &state.brokers.sqs) {
        (SinkKind::Rabbitmq, Some(rabbitmq), _) => {
            tokio::time::timeout(bound, rabbitmq.ensure_instance_topology(instance, events))
                .await
                .map(|r| r.map_err(|e| e.to_string()))
        }
        (SinkKind::Sqs, _, Some(sqs)) => {
            tokio::time::timeout(bound, sqs.ensure_instance_queues(instance, events))
                .await
                .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        }
        _ => return,
    };
    match result {
        Ok(Ok(())) => tracing::info!(%instance, sink = kind.as_str(), "queues declared"),
        Ok(Err(e)) => {
            tracing::warn!(%instance, sink = kind.as_str(), error = %e, "declaring queues failed; retried on first send")
        }
        Err(_) => {
            tracing::warn!(%instance, sink = kind.as_str(), "declaring queues timed out; retried on first send")
        }
    }
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
    for kind in SinkKind::ALL {
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
