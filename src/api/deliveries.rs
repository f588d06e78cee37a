//! `/deliveries` and `/subscriptions/{id}/undelivered`: what became of an event (by id, by
//! WhatsApp message id, or an instance's events in a time range) at each subscription, with
//! every attempt; and a subscription's in-flight, parked and dead events. The lookups are
//! `delivery::lookup`; here they are only read from the query and rendered.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ErrorCode};
use super::pagination::{PageRequest, Pagination};
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
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/deliveries", get(deliveries))
        .route("/subscriptions/{id}/undelivered", get(undelivered))
}
