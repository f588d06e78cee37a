//! `/ingest/{instance}/{provider}`: each gateway's native webhook, normalized to Evolution's
//! events by `ingest::providers`, deduplicated, stored like canonical ingest.
//!
//! Evolution, Whapi and Linq take the usual API auth, or the instance token as `?token=`
//! (providers that can only be given a URL). Meta cannot send our key: its requests are
//! authenticated by `X-Hub-Signature-256` with the instance's app secret instead.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::ingest::{accept, idempotency_key, instance_owner, Accepted};
use super::json::checked_body;
use super::openapi::{ApiRouter, ErrorEnvelope, FreeObject};
use super::schemas::IngestAccepted;
use super::AppState;
use crate::ingest::providers::{evolution, linq, meta, whapi, AdapterError, ErrorKind};
use crate::ingest::IncomingEvent;

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        match e.kind() {
            ErrorKind::Invalid => ApiError::new(ErrorCode::Validation, e.to_string()),
            ErrorKind::Unauthorized => ApiError::new(ErrorCode::Unauthorized, e.to_string()),
        }
    }
}

/// Evolution, Whapi and Linq: authenticate, read, normalize, store.
async fn adapter_ingest(
    state: AppState,
    principal: Principal,
    instance: String,
    request: Request,
    normalize: impl FnOnce(&[u8]) -> Result<Vec<IncomingEvent>, AdapterError>,
) -> Result<Accepted, ApiError> {
    principal.require_instance(&instance)?;
    let owner = instance_owner(&state, &instance)?;
    let request_key = idempotency_key(request.headers())?;
    let body = checked_body(request, &state).await?;
    let mut events = normalize(&body)?;
    if state.config.ingest.keep_evolution_raw {
        keep_evolution_raw(&mut events, &body);
    }
    accept(&state, &instance, owner, request_key, events).await
}

/// Gives Evolution's events the whole body as `raw`, redacted (`ingest.keep_evolution_raw`).
fn keep_evolution_raw(events: &mut [IncomingEvent], body: &[u8]) {
    let Some(raw) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text.to_string()).ok())
    else {
        return;
    };
    let raw = crate::ingest::redact::redact(raw);
    for event in events.iter_mut().filter(|e| e.source == Some("evolution")) {
        event.raw = Some(raw.clone());
    }
}

/// Evolution's webhook (`WEBHOOK_BY_EVENTS=false`): the event named in the body.
#[utoipa::path(post, path = "/ingest/{instance}/evolution", tag = "ingest",
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters"),
    ),
    request_body(content = FreeObject, description = "Evolution's webhook body, as Evolution sends it"),
    responses(
        (status = 202, description = "Stored durably (or deduplicated)", body = IngestAccepted),
        (status = 400, description = "Not the gateway's shape (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key is being stored right now (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn evolution_ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<Accepted, ApiError> {
    adapter_ingest(state, principal, instance, request, |body| {
        evolution::normalize(body, None)
    })
    .await
}

/// Whapi's webhook.
#[utoipa::path(post, path = "/ingest/{instance}/whapi", tag = "ingest",
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters"),
    ),
    request_body(content = FreeObject, description = "Whapi's webhook body"),
    responses(
        (status = 202, description = "Stored durably (or deduplicated)", body = IngestAccepted),
        (status = 400, description = "Not the gateway's shape (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key is being stored right now (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn whapi_ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<Accepted, ApiError> {
    adapter_ingest(state, principal, instance, request, whapi::normalize).await
}

/// Linq's webhook (v3 events).
#[utoipa::path(post, path = "/ingest/{instance}/linq", tag = "ingest",
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters"),
    ),
    request_body(content = FreeObject, description = "Linq's webhook body"),
    responses(
        (status = 202, description = "Stored durably (or deduplicated)", body = IngestAccepted),
        (status = 400, description = "Not the gateway's shape (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key is being stored right now (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn linq_ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(instance): Path<String>,
    request: Request,
) -> Result<Accepted, ApiError> {
    adapter_ingest(state, principal, instance, request, linq::normalize).await
}

/// Evolution's webhook with `WEBHOOK_BY_EVENTS=true`: the event named in the path.
#[utoipa::path(post, path = "/ingest/{instance}/evolution/{event}", tag = "ingest",
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("event" = String, Path, description = "Evolution's event path segment (`messages-upsert`, ...)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters"),
    ),
    request_body(content = FreeObject, description = "Evolution's webhook body"),
    responses(
        (status = 202, description = "Stored durably (or deduplicated)", body = IngestAccepted),
        (status = 400, description = "Not the gateway's shape or an unknown event (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 403, description = "Another instance's token (2005)", body = ErrorEnvelope),
        (status = 404, description = "No such instance (2006)", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key is being stored right now (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn evolution_by_event(
    State(state): State<AppState>,
    principal: Principal,
    Path((instance, event)): Path<(String, String)>,
    request: Request,
) -> Result<Accepted, ApiError> {
    adapter_ingest(state, principal, instance, request, |body| {
        evolution::normalize(body, Some(&event))
    })
    .await
}

/// The instance's Meta settings. Where there are none (no such instance, or no Meta
/// settings), a caller without a key for the instance gets a stand-in that matches no
/// verify token and no signature, so its answer is exactly a wrong token's or a wrong
/// signature's and instance names cannot be enumerated; a caller with a key gets the
/// precise 404 or 401.
fn meta_settings(
    state: &AppState,
    instance: &str,
    extensions: &axum::http::Extensions,
) -> Result<crate::registry::records::MetaSettings, ApiError> {
    let found = precise_meta_settings(state, instance);
    match (found, extensions.get::<Principal>()) {
        (Ok(settings), _) => Ok(settings),
        (Err(precise), Some(p)) if p.require_instance(instance).is_ok() => Err(precise),
        (Err(_), _) => Ok(crate::registry::records::MetaSettings {
            // Random, so the HMAC is computed (same timing) and never matches.
            app_secret: uuid::Uuid::new_v4().to_string(),
            verify_token: String::new(),
        }),
    }
}

fn precise_meta_settings(
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
/// Open: Meta cannot send a key.
#[utoipa::path(get, path = "/ingest/{instance}/meta", tag = "ingest", security(()),
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("hub.mode" = Option<String>, Query, description = "`subscribe`"),
        ("hub.verify_token" = Option<String>, Query, description = "Must equal the instance's `providers.meta.verifyToken`"),
        ("hub.challenge" = Option<String>, Query, description = "Echoed back"),
    ),
    responses(
        (status = 200, description = "The challenge, echoed", body = String, content_type = "text/plain"),
        (status = 400, description = "A missing or bad handshake parameter (2001)", body = ErrorEnvelope),
        (status = 401, description = "With a key for the instance: it has no Meta settings (2004)", body = ErrorEnvelope),
        (status = 403, description = "The verify token does not match (2005)", body = ErrorEnvelope),
        (status = 404, description = "With a key for the instance: no such instance (2006)", body = ErrorEnvelope),
    ))]
async fn meta_verify(
    State(state): State<AppState>,
    Path(instance): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let settings = meta_settings(&state, &instance, request.extensions())?;
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

/// Meta's (WhatsApp Cloud API) webhook, authenticated by `X-Hub-Signature-256` with the
/// instance's app secret instead of a key.
#[utoipa::path(post, path = "/ingest/{instance}/meta", tag = "ingest", security(()),
    params(
        ("instance" = String, Path, description = "Instance name", example = "my-instance"),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "`sha256=` and the HMAC-SHA256 of the body with the app secret"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters"),
    ),
    request_body(content = FreeObject, description = "Meta's webhook body"),
    responses(
        (status = 202, description = "Stored durably (or deduplicated)", body = IngestAccepted),
        (status = 400, description = "Not Meta's shape (2001), not JSON (2002)", body = ErrorEnvelope),
        (status = 401, description = "The signature is missing or does not match, or the instance has no Meta settings (2004)", body = ErrorEnvelope),
        (status = 404, description = "With a key for the instance: no such instance (2006)", body = ErrorEnvelope),
        (status = 409, description = "This Idempotency-Key is being stored right now (2007)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn meta_ingest(
    State(state): State<AppState>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Accepted, ApiError> {
    let settings = meta_settings(&state, &instance, request.extensions())?;
    let body = checked_body(request, &state).await?;
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !meta::verify_signature(settings.app_secret.as_bytes(), &body, signature) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "X-Hub-Signature-256 is missing or does not match the instance's Meta app secret",
        ));
    }
    let owner = instance_owner(&state, &instance)?;
    let request_key = idempotency_key(&headers)?;
    accept(
        &state,
        &instance,
        owner,
        request_key,
        meta::normalize(&body)?,
    )
    .await
}

/// The provider ingest routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(evolution_ingest))
        .routes(routes!(evolution_by_event))
        .routes(routes!(whapi_ingest))
        .routes(routes!(linq_ingest))
        .routes(routes!(meta_ingest, meta_verify))
}
