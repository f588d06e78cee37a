//! `POST /ingest/{instance}`: canonical events in, 202 only once they are durable.

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::json::body_bytes;
use super::AppState;
use crate::ingest::canonical::{self, CanonicalError};
use crate::ingest::{store, IncomingEvent};

impl From<CanonicalError> for ApiError {
    fn from(e: CanonicalError) -> Self {
        let code = match &e {
            CanonicalError::Json(_) => ErrorCode::InvalidJson,
            CanonicalError::Field { .. } => ErrorCode::Validation,
            CanonicalError::UnknownEvent { .. } => ErrorCode::UnknownEvent,
            CanonicalError::TooMany { .. } => ErrorCode::PayloadTooLarge,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The owner JID of a known instance, or 404.
pub fn owner_jid(state: &AppState, instance: &str) -> Result<Option<String>, ApiError> {
    state.registry.read(|s| {
        s.instances
            .get(instance)
            .map(|i| {
                i.created
                    .number
                    .as_ref()
                    .map(|n| format!("{n}@s.whatsapp.net"))
            })
            .ok_or_else(|| ApiError::not_found(format!("instance `{instance}`")))
    })
}

/// Stores parsed events for `instance` and answers 202; shared by canonical and provider
/// ingest. Provider retries (same dedupe key within the window) are acknowledged but not
/// stored again. A key counts as seen only if its append succeeds, so a failed request's
/// retry is stored, not dropped.
pub async fn accept(
    state: &AppState,
    instance: &str,
    owner: Option<String>,
    events: Vec<IncomingEvent>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
        let body = json!({"accepted": 0, "deduplicated": duplicates, "first_sequence": null, "last_sequence": null});
        return Ok((StatusCode::ACCEPTED, Json(body)));
    }
    let count = fresh.len();
    let bytes: usize = fresh.iter().map(|e| e.data.get().len()).sum();
    let receipt = match store(
        state.events.for_key(instance).as_ref(),
        instance,
        owner.as_deref(),
        fresh,
    )
    .await
    {
        Ok(receipt) => receipt,
        Err(e) => {
            for key in &admitted_keys {
                state.deduper.forget(instance, key);
            }
            return Err(e.into());
        }
    };
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

async fn ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_instance(&instance)?;
    let owner = owner_jid(&state, &instance)?;
    let body = body_bytes(request, &state).await?;
    let events = canonical::parse(&body, state.config.ingest.max_batch_events)?;
    accept(&state, &instance, owner, events).await
}

/// The canonical ingest route.
pub fn router() -> Router<AppState> {
    Router::new().route("/ingest/{instance}", post(ingest))
}
