//! `/ingest/{instance}/{provider}`: each gateway's native webhook, normalized to Evolution's
//! events by `ingest::providers`, deduplicated, stored like canonical ingest.
//!
//! Evolution, Whapi and Linq take the usual API auth, or the instance token as `?token=`
//! (providers that can only be given a URL). Meta cannot send our key: its requests are
//! authenticated by `X-Hub-Signature-256` with the instance's app secret instead.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::ingest::{accept, owner_jid};
use super::json::body_bytes;
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
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_instance(&instance)?;
    let owner = owner_jid(&state, &instance)?;
    let body = body_bytes(request, &state).await?;
    accept(&state, &instance, owner, normalize(&body)?).await
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
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let settings = meta_settings(&state, &instance, request.extensions())?;
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
    let owner = owner_jid(&state, &instance)?;
    accept(&state, &instance, owner, meta::normalize(&body)?).await
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
