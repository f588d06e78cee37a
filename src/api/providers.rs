//! `/ingest/{instance}/{provider}`: each gateway's native webhook, normalized to Evolution's
//! events by `ingest::providers`, deduplicated, stored like canonical ingest.
//!
//! Evolution, Whapi and Linq take the usual API auth, or the instance token as `?token=`
//! (providers that can only be given a URL). Meta cannot send our key: its requests are
//! authenticated by `X-Hub-Signature-256` with the instance's app secret instead.

use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::ingest::owner_jid;
use super::json::body_bytes;
use super::AppState;
use crate::ingest::providers::{evolution, linq, meta, whapi, AdapterError, ErrorKind};
use crate::ingest::{store, IncomingEvent};

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        match e.kind() {
            ErrorKind::Invalid => ApiError::new(ErrorCode::Validation, e.to_string()),
            ErrorKind::Unauthorized => ApiError::new(ErrorCode::Unauthorized, e.to_string()),
        }
    }
}

/// Drops provider retries, stores the rest durably, answers 202. A key counts as seen
/// only if its append succeeds, so a failed request's retry is stored, not dropped.
async fn accept_deduplicated(
    state: &AppState,
    instance: &str,
    events: Vec<IncomingEvent>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let owner = owner_jid(state, instance)?;
    let now = Instant::now();
    let total = events.len();
    let mut admitted_keys = Vec::new();
    let fresh: Vec<IncomingEvent> = events
        .into_iter()
        .filter(|e| match &e.dedupe_key {
            Some(key) if state.deduper.first_seen(instance, key, now) => {
                admitted_keys.push(key.clone());
                true
            }
            Some(_) => false,
            None => true,
        })
        .collect();
    let duplicates = total - fresh.len();
    state.metrics.ingest_deduplicated.inc_by(duplicates as u64);
    if fresh.is_empty() {
        return Ok((
            StatusCode::ACCEPTED,
            Json(
                json!({"accepted": 0, "deduplicated": duplicates, "first_sequence": null, "last_sequence": null}),
            ),
        ));
    }
    let count = fresh.len();
    let bytes: usize = fresh.iter().map(|e| e.data.get().len()).sum();
    match store(state.events.as_ref(), instance, owner.as_deref(), fresh).await {
        Ok(receipt) => {
            state.metrics.ingest_events.inc_by(count as u64);
            state.metrics.ingest_bytes.inc_by(bytes as u64);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({
                    "accepted": count,
                    "deduplicated": duplicates,
                    "first_sequence": receipt.first_sequence,
                    "last_sequence": receipt.last_sequence,
                })),
            ))
        }
        Err(e) => {
            for key in &admitted_keys {
                state.deduper.forget(instance, key);
            }
            Err(e.into())
        }
    }
}

async fn authorized_body(
    state: &AppState,
    principal: &Principal,
    instance: &str,
    request: Request,
) -> Result<bytes::Bytes, ApiError> {
    principal.require_instance(instance)?;
    owner_jid(state, instance)?;
    body_bytes(request, state).await
}

async fn evolution_ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = authorized_body(&state, &principal, &instance, request).await?;
    accept_deduplicated(&state, &instance, evolution::normalize(&body, None)?).await
}

async fn evolution_by_event(
    State(state): State<AppState>,
    principal: Principal,
    Path((instance, event)): Path<(String, String)>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = authorized_body(&state, &principal, &instance, request).await?;
    accept_deduplicated(
        &state,
        &instance,
        evolution::normalize(&body, Some(&event))?,
    )
    .await
}

async fn whapi_ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = authorized_body(&state, &principal, &instance, request).await?;
    accept_deduplicated(&state, &instance, whapi::normalize(&body)?).await
}

async fn linq_ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = authorized_body(&state, &principal, &instance, request).await?;
    accept_deduplicated(&state, &instance, linq::normalize(&body)?).await
}

fn meta_settings(
    state: &AppState,
    instance: &str,
) -> Result<crate::registry::records::MetaSettings, ApiError> {
    state.registry.read(|s| {
        let i = s
            .instances
            .get(instance)
            .ok_or_else(|| ApiError::not_found(format!("instance `{instance}`")))?;
        i.providers.meta.clone().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                format!("instance `{instance}` has no Meta settings; set providers.meta.appSecret and verifyToken"),
            )
        })
    })
}

/// Meta's verification handshake: echo `hub.challenge` when `hub.verify_token` matches.
async fn meta_verify(
    State(state): State<AppState>,
    Path(instance): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let settings = meta_settings(&state, &instance)?;
    let challenge = meta::verify_handshake(
        q.get("hub.mode").map(String::as_str),
        q.get("hub.verify_token").map(String::as_str),
        q.get("hub.challenge").map(String::as_str),
        &settings.verify_token,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::Unauthorized => ApiError::new(ErrorCode::Forbidden, e.to_string()),
        ErrorKind::Invalid => e.into(),
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], challenge))
}

async fn meta_ingest(
    State(state): State<AppState>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let settings = meta_settings(&state, &instance)?;
    let body = body_bytes(request, &state).await?;
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !meta::verify_signature(settings.app_secret.as_bytes(), &body, signature) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "X-Hub-Signature-256 is missing or does not match the instance's Meta app secret",
        ));
    }
    accept_deduplicated(&state, &instance, meta::normalize(&body)?).await
}

/// The provider ingest routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ingest/{instance}/evolution", post(evolution_ingest))
        .route(
            "/ingest/{instance}/evolution/{event}",
            post(evolution_by_event),
        )
        .route("/ingest/{instance}/whapi", post(whapi_ingest))
        .route("/ingest/{instance}/linq", post(linq_ingest))
        .route(
            "/ingest/{instance}/meta",
            post(meta_ingest).get(meta_verify),
        )
}
