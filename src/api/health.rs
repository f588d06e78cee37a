//! Liveness, readiness and the Prometheus scrape.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::schemas::{Health, Ready};
use super::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "The process is up", body = Health)))]
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness, with the control records that did not decode.
#[utoipa::path(get, path = "/ready", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready to accept events", body = Ready),
        (status = 503, description = "Starting or shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.ready.load(Ordering::Acquire) {
        // Records that do not decode are skipped, never fatal; this is where an operator
        // sees them (with `/metrics`).
        let control: Vec<_> = state
            .registry
            .unreadable()
            .into_iter()
            .map(|r| json!({"sequence": r.sequence, "error": r.error}))
            .collect();
        Ok(Json(json!({
            "status": "ready",
            "next_sequence": state.events.next_sequence(),
            "unreadable_records": {
                "control": control,
                "event_reads": crate::envelope::unreadable_reads(),
            },
        })))
    } else {
        Err(ApiError::new(
            ErrorCode::Unavailable,
            "not ready: starting or shutting down",
        ))
    }
}

/// The Prometheus scrape (global key only).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
         content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 403, description = "An instance token (2005): the global key only", body = ErrorEnvelope),
    ))]
async fn metrics(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.require_global()?;
    state.metrics.observe_log(&state.events.stats());
    state.delivery.observe_oldest_undelivered().await;
    state.metrics.observe_unreadable(
        state.registry.unreadable().len(),
        crate::envelope::unreadable_reads(),
    );
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}

/// `/health`, `/ready` and `/metrics`. The first two are open so that orchestrator probes need
/// no key; `/metrics` takes the global key (Prometheus sends it as a bearer token).
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}
