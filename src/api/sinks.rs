//! `/{sink}/set/{instance}` and `/{sink}/find/{instance}` for every kind of the sinks'
//! registration table: Evolution's per-instance sink settings.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::{PartialSchema, ToSchema};

use super::auth::Principal;
use super::error::ApiError;
use super::instance_body::sink_object;
use super::json::JsonBody;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::schemas::{SinkSettings, SinkView};
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

/// Sets an instance's settings of one sink kind; the document lists this operation once per
/// kind (`/webhook/set/{instance}`, `/rabbitmq/set/{instance}`, ...).
#[utoipa::path(post, path = "/webhook/set/{instance}", tag = "sinks",
    params(("instance" = String, Path, description = "Instance name", example = "my-instance")),
    request_body(content = SinkSettings, description = "The sink's settings, bare or nested under the sink's name (`{\"webhook\": {...}}`); the sink's own fields besides these"),
    responses(
        (status = 201, description = "The settings as stored (a new sink starts at the log's end; a re-set one keeps its cursor)", body = SinkView),
        (status = 400, description = "A field breaks a rule (2001), an unknown event (2003)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
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

/// An instance's settings of one sink kind (listed once per kind, like `set`).
#[utoipa::path(get, path = "/webhook/find/{instance}", tag = "sinks",
    params(("instance" = String, Path, description = "Instance name", example = "my-instance")),
    responses(
        (status = 200, description = "The settings; `enabled: false` and no events when never set", body = SinkView),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
    ))]
async fn find(
    state: AppState,
    kind: SinkKind,
    principal: Principal,
    instance: String,
) -> Result<Json<Value>, ApiError> {
    principal.require_instance(&instance)?;
    find_view(&state, kind, &instance).map(Json)
}

/// The documentation of `template` (an operation annotated for the webhook kind), for `kind`
/// at `path`.
fn sink_paths<T: utoipa::Path>(kind: SinkKind, path: &str, method: HttpMethod) -> Paths {
    let mut operation = T::operation();
    operation.operation_id = Some(format!(
        "{}_{}",
        kind.as_str(),
        operation.operation_id.unwrap_or_default()
    ));
    operation.summary = operation
        .summary
        .map(|s| s.replace("one sink kind", &format!("the `{}` sink", kind.as_str())));
    let mut paths = Paths::new();
    paths.add_path_operation(path, vec![method], operation);
    paths
}

/// The schemas the set/find operations refer to.
fn sink_schemas() -> Vec<(
    String,
    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
)> {
    let mut schemas = vec![
        (SinkSettings::name().into(), SinkSettings::schema()),
        (SinkView::name().into(), SinkView::schema()),
    ];
    SinkSettings::schemas(&mut schemas);
    SinkView::schemas(&mut schemas);
    schemas
}

/// The set/find routes of every sink kind, each documented from the webhook kind's
/// annotations.
pub fn router() -> ApiRouter {
    let mut router = ApiRouter::new();
    for kind in SinkKind::ALL.iter().copied() {
        let set_path = format!("/{}/set/{{instance}}", kind.as_str());
        let find_path = format!("/{}/find/{{instance}}", kind.as_str());
        router = router
            .routes((
                sink_schemas(),
                sink_paths::<__path_set>(kind, &set_path, HttpMethod::Post),
                post(
                    move |State(state): State<AppState>,
                          principal: Principal,
                          Path(instance): Path<String>,
                          JsonBody(body): JsonBody<Value>| {
                        set(state, kind, principal, instance, body)
                    },
                ),
            ))
            .routes((
                Vec::new(),
                sink_paths::<__path_find>(kind, &find_path, HttpMethod::Get),
                get(
                    move |State(state): State<AppState>,
                          principal: Principal,
                          Path(instance): Path<String>| {
                        find(state, kind, principal, instance)
                    },
                ),
            ));
    }
    router
}
