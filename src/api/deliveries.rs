//! `/deliveries` and `/subscriptions/{id}/undelivered`: what became of an event (by id, by
//! WhatsApp message id, or an instance's events in a time range) at each subscription, with
//! every attempt; and a subscription's in-flight, parked and dead events. The lookups are
//! `delivery::lookup`; here they are only read from the query and rendered.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::pagination::{PageRequest, Pagination};
use super::schemas::DeliveryPage;
use super::AppState;
use crate::delivery::lookup::{Delivery, DeliveryQuery, DeliveryStatus, LookupError, Page, Viewer};

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NoAttemptLog => ApiError::new(ErrorCode::Conflict, e.to_string()),
            LookupError::NotDelivering => ApiError::new(ErrorCode::Unavailable, e.to_string()),
            LookupError::UnknownSubscription(id) => {
                ApiError::not_found(format!("subscription `{id}`"))
            }
            LookupError::Log(e) => ApiError::internal(e),
        }
    }
}

/// The query parameters both routes take.
fn query(q: &HashMap<String, String>) -> Result<DeliveryQuery, ApiError> {
    let text = |key: &str| q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let time = |key: &str| -> Result<Option<i64>, ApiError> {
        text(key)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| {
                        ApiError::validation(key, "must be RFC 3339, e.g. 2025-01-31T12:00:00Z")
                    })
            })
            .transpose()
    };
    let event_id = text("event_id")
        .map(|v| Uuid::parse_str(v).map_err(|_| ApiError::validation("event_id", "must be a UUID")))
        .transpose()?;
    let mut statuses = Vec::new();
    for part in text("status").unwrap_or_default().split(',') {
        if part.trim().is_empty() {
            continue;
        }
        let status = DeliveryStatus::parse(part).ok_or_else(|| {
            ApiError::validation(
                "status",
                "must be delivered, in_flight, parked, dead or filtered (comma-separated)",
            )
        })?;
        statuses.push(status);
    }
    Ok(DeliveryQuery {
        event_id,
        message_id: text("message_id").map(str::to_owned),
        instance: text("instance").map(str::to_owned),
        since_ms: time("since")?,
        until_ms: time("until")?,
        statuses,
        subscription: text("subscription").map(str::to_owned),
    })
}

/// What the caller may see; an instance token asking for another instance is refused.
fn viewer(principal: &Principal, query: &DeliveryQuery) -> Result<Viewer, ApiError> {
    if let Some(instance) = &query.instance {
        principal.require_instance(instance)?;
    }
    Ok(match principal {
        Principal::Global => Viewer::All,
        Principal::Instance(name) => Viewer::Instance(name.clone()),
    })
}

fn page(q: &HashMap<String, String>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest::from_query(q)?.unwrap_or_else(PageRequest::first))
}

fn render(deliveries: Vec<Delivery>, total: usize, page: PageRequest) -> Json<Value> {
    let pagination = Pagination {
        total_items: total,
        total_pages: total.div_ceil(page.limit).max(1),
        current_page: page.page,
    };
    Json(json!({"deliveries": deliveries, "pagination": pagination}))
}

fn window(page: PageRequest) -> Page {
    Page {
        offset: (page.page - 1).saturating_mul(page.limit),
        limit: page.limit,
    }
}

/// What became of events (by id, by WhatsApp message id, or an instance's in a time range)
/// at each subscription, with every attempt.
#[utoipa::path(get, path = "/deliveries", tag = "deliveries",
    params(
        ("event_id" = Option<String>, Query, description = "An event id (UUID)"),
        ("message_id" = Option<String>, Query, description = "A WhatsApp message id"),
        ("instance" = Option<String>, Query, description = "Only this instance's events"),
        ("since" = Option<String>, Query, description = "From this time (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Until this time (RFC 3339)"),
        ("status" = Option<String>, Query, description = "Comma-separated: delivered, in_flight, parked, dead, filtered"),
        ("subscription" = Option<String>, Query, description = "Only this subscription"),
        ("page" = Option<u32>, Query, description = "Page, from 1", minimum = 1),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (default 50)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "One page of deliveries", body = DeliveryPage),
        (status = 400, description = "A bad parameter (2001)", body = ErrorEnvelope),
        (status = 403, description = "An instance token asking for another instance (2005)", body = ErrorEnvelope),
        (status = 404, description = "`subscription` names no subscription the key can see (2006)", body = ErrorEnvelope),
        (status = 409, description = "The attempt log is off (`attempts.enabled = false`) (2007)", body = ErrorEnvelope),
        (status = 503, description = "This process delivers no partition right now; retry (2010)", body = ErrorEnvelope),
    ))]
async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = query(&q)?;
    let viewer = viewer(&principal, &query)?;
    let page = page(&q)?;
    let (items, total) = state
        .delivery
        .deliveries(&viewer, &query, window(page))
        .await?;
    Ok(render(items, total, page))
}

/// A subscription's events not delivered yet: in flight, parked, dead.
#[utoipa::path(get, path = "/subscriptions/{id}/undelivered", tag = "deliveries",
    params(
        ("id" = String, Path, description = "Subscription id"),
        ("event_id" = Option<String>, Query, description = "An event id (UUID)"),
        ("message_id" = Option<String>, Query, description = "A WhatsApp message id"),
        ("instance" = Option<String>, Query, description = "Only this instance's events"),
        ("since" = Option<String>, Query, description = "From this time (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Until this time (RFC 3339)"),
        ("status" = Option<String>, Query, description = "Comma-separated: delivered, in_flight, parked, dead, filtered"),
        ("subscription" = Option<String>, Query, description = "Only this subscription"),
        ("page" = Option<u32>, Query, description = "Page, from 1", minimum = 1),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (default 50)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "One page of deliveries", body = DeliveryPage),
        (status = 400, description = "A bad parameter (2001)", body = ErrorEnvelope),
        (status = 403, description = "An instance token asking for another instance (2005)", body = ErrorEnvelope),
        (status = 409, description = "The attempt log is off (`attempts.enabled = false`) (2007)", body = ErrorEnvelope),
        (status = 503, description = "This process delivers no partition right now; retry (2010)", body = ErrorEnvelope),
        (status = 404, description = "No such subscription, or not the caller's (2006)", body = ErrorEnvelope),
    ))]
async fn undelivered(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = query(&q)?;
    let viewer = viewer(&principal, &query)?;
    let page = page(&q)?;
    let (items, total) = state
        .delivery
        .undelivered(&viewer, &id, &query, window(page))
        .await?;
    Ok(render(items, total, page))
}

/// The lookup routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(deliveries))
        .routes(routes!(undelivered))
}
