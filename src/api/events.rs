//! `GET /events`: read the log by sequence or time, filtered by instance and event, with an
//! optional long-poll so that `switchyard tail` follows the log without polling.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::routes;

use super::auth::Principal;
use super::error::ApiError;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::schemas::EventsPage;
use super::AppState;
use crate::catalog::EventKind;
use crate::envelope::LoggedEvent;
use crate::log::{partition_base, partition_of};

/// Records examined per request at most, so a selective filter cannot pin a worker.
const SCAN_LIMIT: usize = 50_000;
/// Longest long-poll.
const MAX_WAIT_MS: u64 = 60_000;

struct EventsQuery {
    instance: Option<String>,
    event: Option<EventKind>,
    from: Option<u64>,
    since_ms: Option<i64>,
    limit: usize,
    wait: Duration,
}

fn parse_query(q: &HashMap<String, String>) -> Result<EventsQuery, ApiError> {
    let number = |field: &str| -> Result<Option<u64>, ApiError> {
        q.get(field)
            .map(|v| v.parse::<u64>())
            .transpose()
            .map_err(|_| ApiError::validation(field, "must be a non-negative integer"))
    };
    let since_ms = match q.get("since") {
        None => None,
        Some(v) => Some(match v.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => chrono::DateTime::parse_from_rfc3339(v)
                .map_err(|_| {
                    ApiError::validation(
                        "since",
                        "must be RFC 3339 (2025-01-31T12:00:00Z) or epoch ms",
                    )
                })?
                .timestamp_millis(),
        }),
    };
    let limit = number("limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 1000"));
    }
    Ok(EventsQuery {
        instance: q.get("instance").filter(|s| !s.is_empty()).cloned(),
        event: q.get("event").map(|e| EventKind::parse(e)).transpose()?,
        from: number("from_sequence")?,
        since_ms,
        limit: limit as usize,
        wait: Duration::from_millis(number("wait_ms")?.unwrap_or(0).min(MAX_WAIT_MS)),
    })
}

/// Reads the log by sequence or time, filtered by instance and event, optionally waiting
/// for the next event (long-poll). An instance token reads its own instance only.
#[utoipa::path(get, path = "/events", tag = "events",
    params(
        ("instance" = Option<String>, Query, description = "Only this instance's events"),
        ("event" = Option<String>, Query, description = "Only this event (any Evolution spelling)"),
        ("from_sequence" = Option<u64>, Query, description = "Start at this sequence"),
        ("since" = Option<String>, Query, description = "Start at this time: RFC 3339 or epoch milliseconds"),
        ("limit" = Option<u32>, Query, description = "Events at most, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
        ("wait_ms" = Option<u64>, Query, description = "Wait up to this long (at most 60000) for an event when none is found", maximum = 60000),
    ),
    responses(
        (status = 200, description = "The events found and where to continue", body = EventsPage),
        (status = 400, description = "A bad parameter (2001) or an unknown event (2003)", body = ErrorEnvelope),
        (status = 403, description = "An instance token asking for another instance (2005)", body = ErrorEnvelope),
        (status = 503, description = "Shutting down (2010)", body = ErrorEnvelope),
    ))]
async fn events(
    State(state): State<AppState>,
    principal: Principal,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let mut q = parse_query(&raw)?;
    if let Principal::Instance(own) = &principal {
        principal.require_instance(q.instance.get_or_insert_with(|| own.clone()))?;
    }
    // Names are reused after a delete: an existing instance's events are the ones stored
    // under its id (a deleted one's history stays readable by name to the global key).
    let identity = q.instance.as_deref().and_then(|name| {
        state.registry.read(|s| {
            s.instances
                .get(name)
                .map(|i| (i.created.id, i.created.created_at))
        })
    });
    // One instance lives in one partition; without one, a scan walks the partitions in
    // turn (the embedded log has just one).
    let pinned = q.instance.as_deref().map(|i| state.events.index_for(i));
    let mut from = q.from.unwrap_or(0);
    // A position below the instance's partition starts at its beginning; one above it is
    // past everything the instance has.
    let past_end = pinned.is_some_and(|p| partition_of(from) > p);
    if let Some(p) = pinned {
        if partition_of(from) < p {
            from = partition_base(p);
        }
    }
    if let (None, Some(ms)) = (q.from, q.since_ms) {
        from = start_at(&state, from, ms).await?;
    }
    let deadline = tokio::time::Instant::now() + q.wait;
    let server_url = state.config.server.url.as_str();
    let mut out: Vec<u8> = b"{\"events\":[".to_vec();
    let mut found = 0usize;
    while let Some(log) = (!past_end)
        .then(|| state.events.for_sequence(from))
        .flatten()
    {
        let mut changes = log.subscribe();
        let mut scanned = 0usize;
        while found < q.limit && scanned < SCAN_LIMIT {
            let records = log.read(from, 1000, 4 * 1024 * 1024).await?;
            let Some(last) = records.last() else { break };
            let next = last.sequence + 1;
            for record in &records {
                scanned += 1;
                from = record.sequence + 1;
                let event = match LoggedEvent::decode(record) {
                    Ok(event) => event,
                    // Counted (`/metrics`, `/ready`) and skipped: one bad record must not
                    // hide the rest of the log.
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an undecodable event record");
                        continue;
                    }
                };
                let wanted = q
                    .instance
                    .as_ref()
                    .is_none_or(|i| *i == event.event.instance)
                    && identity.is_none_or(|(id, at)| event.belongs_to(id, at))
                    && q.event.is_none_or(|k| k.dotted() == event.event.event);
                if wanted {
                    if found > 0 {
                        out.push(b',');
                    }
                    out.extend(event.envelope(server_url).to_vec());
                    found += 1;
                    if found == q.limit {
                        break;
                    }
                }
            }
            if found < q.limit {
                from = next;
            }
        }
        if found < q.limit && scanned < SCAN_LIMIT && pinned.is_none() {
            // This partition is exhausted: go on with the next one, if any.
            if let Some(next_start) = state.events.next_partition_start(from) {
                from = match q.since_ms {
                    Some(ms) => start_at(&state, next_start, ms).await?,
                    None => next_start,
                };
                continue;
            }
        }
        if found > 0 || q.wait.is_zero() {
            break;
        }
        // Nothing yet: wait for the next append (or the deadline) instead of polling.
        changes.borrow_and_update();
        if log.next_sequence() > from {
            continue;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => break,
        }
    }
    out.extend(format!("],\"next_sequence\":{from}}}").as_bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], out))
}

/// The first sequence at or after `ms` in the partition holding `sequence`.
async fn start_at(state: &AppState, sequence: u64, ms: i64) -> Result<u64, ApiError> {
    match state.events.for_sequence(sequence) {
        Some(log) => Ok(log.sequence_at(ms).await?),
        None => Ok(sequence),
    }
}

/// The events route.
pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(events))
}
