//! The HTTP API: one router per resource, merged here, with auth and the error envelope on
//! every route. Handlers extract, check access, and call plain functions.

pub mod auth;
pub mod error;
pub use rate_limit::RateLimits;
mod deliveries;
mod events;
mod health;
mod ingest;
mod instance;
pub(crate) mod instance_body;
mod json;
pub mod openapi;
mod pagination;
mod providers;
mod rate_limit;
mod schemas;
mod sinks;
mod subscriptions;
mod webhooks_codechat;
mod webhooks_linq;
mod webhooks_named;
mod webhooks_ventia;
mod websocket;

use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use utoipa_axum::routes;

use crate::config::Config;
use crate::delivery::PartitionedDelivery;
use crate::ingest::idempotency::Idempotency;
use crate::log::EventPartitions;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// What every handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The shared parts behind [`AppState`].
pub struct AppInner {
    /// The loaded configuration.
    pub config: Config,
    /// The event log's partitions (one with the embedded engine).
    pub events: EventPartitions,
    /// Instances and subscriptions.
    pub registry: Arc<Registry>,
    /// The delivery engines of the partitions delivered here: status, dead letters,
    /// redrive, replay.
    pub delivery: Arc<PartitionedDelivery>,
    /// The global API key.
    pub api_key: String,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Per-account rate limits.
    pub rate_limits: rate_limit::RateLimits,
    /// Idempotent ingest: request keys, event ids and provider retry keys, indexed from
    /// the log.
    pub idempotency: Idempotency,
    /// False while starting or shutting down: `/ready` answers 503 then.
    pub ready: AtomicBool,
    /// The WebSocket listeners' hub; `None` when `WEBSOCKET_ENABLED=false`.
    pub websocket: Option<Arc<crate::websocket::Hub>>,
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(inner: AppInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// The whole API, with `/openapi.json` serving its document.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.ingest.max_body_bytes;
    let (router, doc) = api().split_for_parts();
    let json = serde_json::to_vec(&openapi::finish(doc))
        .expect("the OpenAPI document is plain data and always serializes");
    router
        // The console's static files: not API operations, so outside the document.
        .merge(crate::console::router())
        .fallback(|| async { error::ApiError::new(error::ErrorCode::NotFound, "no such route") })
        .layer(Extension(openapi::OpenApiJson(json.into())))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ))
        .layer(axum::middleware::from_fn(error::envelope_plain_errors))
        .with_state(state)
}

/// Every route, each registered with its OpenAPI annotation (`openapi`).
fn api() -> openapi::ApiRouter {
    openapi::ApiRouter::new()
        .routes(routes!(openapi::openapi_json))
        .merge(health::router())
        .merge(instance::router())
        .merge(ingest::router())
        .merge(providers::router())
        .merge(events::router())
        .merge(sinks::router())
        .merge(websocket::router())
        .merge(subscriptions::router())
        .merge(deliveries::router())
        .merge(webhooks_codechat::router())
        .merge(webhooks_linq::router())
        .merge(webhooks_ventia::router())
}

/// The OpenAPI document `/openapi.json` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(api().into_openapi())
}
