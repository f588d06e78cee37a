//! `/ingest/{instance}/{provider}`: each gateway's native webhook, normalized to Evolution's
//! events by `ingest::providers`, deduplicated, stored like canonical ingest.
//!
//! Evolution, Whapi and Linq take the usual API auth, or the instance token as `?token=`
//! (providers that can only be given a URL). Meta cannot send our key: its requests are
//! authenticated by `X-Hub-Signature-256` with the instance's app secret instead.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::ingest::{accept, idempotency_key, instance_owner, Accepted};
use super::json::checked_body;
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

/// The adapters that take the usual API auth: body in, events out.
type Adapter = fn(&[u8]) -> Result<Vec<IncomingEvent>, AdapterError>;

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

fn adapter_route(normalize: Adapter) -> axum::routing::MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              principal: Principal,
              Path(instance): Path<String>,
              request: Request| {
            adapter_ingest(state, principal, instance, request, normalize)
        },
    )
}

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
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/ingest/{instance}/evolution",
            adapter_route(|body| evolution::normalize(body, None)),
        )
        .route(
            "/ingest/{instance}/evolution/{event}",
            post(evolution_by_event),
        )
        .route("/ingest/{instance}/whapi", adapter_route(whapi::normalize))
        .route("/ingest/{instance}/linq", adapter_route(linq::normalize))
        .route(
            "/ingest/{instance}/meta",
            post(meta_ingest).get(meta_verify),
        )
}
