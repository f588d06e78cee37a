//! `POST /ingest/{instance}`: canonical events in, 202 only once they are durable.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::json::checked_body;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::schemas::{IngestAccepted, IngestBody};
use super::AppState;
use crate::catalog::OPERATIONAL_PREFIX;
use crate::ingest::canonical::{self, CanonicalError};
use crate::ingest::idempotency::{Decision, StoredAnswer};
use crate::ingest::{store, IncomingEvent, Owner, StoreError};

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

/// Who a known instance's events belong to: its id and owner JID, or 404.
pub fn instance_owner(state: &AppState, instance: &str) -> Result<InstanceOwner, ApiError> {
    state.registry.read(|s| {
        s.instances
            .get(instance)
            .map(|i| InstanceOwner {
                id: i.created.id,
                owner_jid: i
                    .created
                    .number
                    .as_ref()
                    .map(|n| format!("{n}@s.whatsapp.net")),
            })
            .ok_or_else(|| ApiError::not_found(format!("instance `{instance}`")))
    })
}

/// What [`instance_owner`] finds.
#[derive(Debug, Clone)]
pub struct InstanceOwner {
    /// The instance's id.
    pub id: uuid::Uuid,
    /// The owner's JID, when the instance has a number.
    pub owner_jid: Option<String>,
}

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The request's `Idempotency-Key`, if any: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        _ => Err(ApiError::validation(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"),
        )),
    }
}

/// Ingest's answer: 202 with what was stored; a replayed request says so in
/// `Idempotent-Replayed: true`.
#[derive(Debug)]
pub struct Accepted {
    body: Value,
    replayed: bool,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::ACCEPTED, Json(self.body)).into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

fn answer(accepted: usize, deduplicated: usize, receipt: Option<StoredAnswer>) -> Value {
    json!({
        "accepted": accepted,
        "deduplicated": deduplicated,
        "first_sequence": receipt.map(|r| r.first_sequence),
        "last_sequence": receipt.map(|r| r.last_sequence),
    })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Log(e) => e.into(),
            StoreError::Encode(e) => ApiError::new(
                ErrorCode::Validation,
                format!("an event cannot be stored: {e}"),
            ),
        }
    }
}

/// Stores parsed events for `instance` and answers 202; shared by canonical and provider
/// ingest. A request whose `Idempotency-Key` was stored within the window gets the first
/// answer back; an event whose key (canonical `id`, provider retry key) was stored is
/// acknowledged as deduplicated and not stored again (`ingest::idempotency`). Keys count
/// as stored only once their append is durable, so a failed request's retry is stored.
pub async fn accept(
    state: &AppState,
    instance: &str,
    owner: InstanceOwner,
    request_key: Option<String>,
    events: Vec<IncomingEvent>,
) -> Result<Accepted, ApiError> {
    // Only the server writes its own events (`alerts`); no provider may pass one in.
    if let Some(n) = events
        .iter()
        .position(|e| e.event.starts_with(OPERATIONAL_PREFIX))
    {
        return Err(ApiError::validation(
            &format!("events[{n}].event"),
            canonical::OPERATIONAL_RULE,
        ));
    }
    let total = events.len();
    let log = state.events.for_key(instance);
    let keys: Vec<Option<&str>> = events.iter().map(|e| e.dedupe_key.as_deref()).collect();
    // A zero window turns idempotency off (`ingest.dedupe_window_seconds = 0`).
    let keyed = request_key.is_some() || keys.iter().any(Option::is_some);
    let reservation = if keyed && !state.idempotency.window().is_zero() {
        match state
            .idempotency
            .reserve(log.as_ref(), instance, request_key.as_deref(), &keys)
            .await?
        {
            Decision::Replay(stored) => {
                return Ok(Accepted {
                    body: answer(stored.accepted, 0, Some(stored)),
                    replayed: true,
                })
            }
            Decision::InProgress => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "a request with this Idempotency-Key is being stored right now; retry it",
                ))
            }
            Decision::Proceed(reservation) => Some(reservation),
        }
    } else {
        None
    };
    let fresh: Vec<IncomingEvent> = match &reservation {
        Some(r) => events
            .into_iter()
            .zip(&r.fresh)
            .filter_map(|(e, fresh)| fresh.then_some(e))
            .collect(),
        None => events,
    };
    let duplicates = total - fresh.len();
    state.metrics.ingest_deduplicated.inc_by(duplicates as u64);
    if fresh.is_empty() {
        if let Some(r) = reservation {
            r.stored(None);
        }
        return Ok(Accepted {
            body: answer(0, duplicates, None),
            replayed: false,
        });
    }
    let count = fresh.len();
    let bytes: usize = fresh.iter().map(|e| e.data.get().len()).sum();
    let stamp = Owner {
        instance,
        instance_id: Some(owner.id),
        owner_jid: owner.owner_jid.as_deref(),
        request_key: request_key.as_deref(),
    };
    // On an error the reservation drops and releases its keys: a retry is stored.
    let receipt = store(log.as_ref(), stamp, fresh).await?;
    let stored = StoredAnswer {
        first_sequence: receipt.first_sequence,
        last_sequence: receipt.last_sequence,
        accepted: count,
    };
    if let Some(r) = reservation {
        r.stored(Some(stored));
    }
    state.metrics.ingest_events.inc_by(count as u64);
    state.metrics.ingest_bytes.inc_by(bytes as u64);
    Ok(Accepted {
        body: answer(count, duplicates, Some(stored)),
        replayed: false,
    })
}

/// Canonical ingest: one event or a batch, answered 202 once durable.
#[utoipa::path(post, path = "/ingest/{instance}", tag = "ingest",
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a retried request within the window gets the first answer back"),
    ),
    request_body = IngestBody,
    responses(
        (status = 202, description = "Stored durably (or deduplicated); `Idempotent-Replayed: true` when this is a replayed answer", body = IngestAccepted),
        (status = 400, description = "Not JSON (2002), a field breaks a rule or a bad Idempotency-Key (2001), an unknown event (2003)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 409, description = "A request with this Idempotency-Key is being stored right now (2007)", body = ErrorEnvelope),
        (status = 413, description = "Body over the limit, an event over the record limit, or a batch over `ingest.max_batch_events` (2008)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<Accepted, ApiError> {
    principal.require_instance(&instance)?;
    let owner = instance_owner(&state, &instance)?;
    let request_key = idempotency_key(request.headers())?;
    let body = checked_body(request, &state).await?;
    let events = canonical::parse(&body, state.config.ingest.max_batch_events)?;
    accept(&state, &instance, owner, request_key, events).await
}

/// The canonical ingest route.
pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(ingest))
}
