//! Per-account rate limits (GCRA, via `governor`): the global key is one account, each
//! instance token counts toward its instance. Management routes and ingest routes have
//! separate limits, so a busy gateway is never throttled by the management limit.
//!
//! Every limited response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds
//! until the allowance is full again); a refused one is 429 with `Retry-After`.

use std::num::NonZeroU32;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::auth::{authenticate, presented_key};
use super::error::{ApiError, ErrorCode};
use super::AppState;
use crate::config::RateLimitConfig;

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One limit: `per_minute` requests, all of them available as a burst.
struct Limit {
    limiter: Keyed,
    per_minute: u32,
}

impl Limit {
    fn new(per_minute: u32) -> Option<Limit> {
        let n = NonZeroU32::new(per_minute)?;
        Some(Limit {
            limiter: RateLimiter::keyed(Quota::per_minute(n))
                .with_middleware::<StateInformationMiddleware>(),
            per_minute,
        })
    }

    /// Seconds until `used` requests have been replenished.
    fn reset_seconds(&self, used: u32) -> u64 {
        (u64::from(used) * 60).div_ceil(u64::from(self.per_minute))
    }
}

/// The limits of this server; `None` where the config says 0 (unlimited).
pub struct RateLimits {
    management: Option<Limit>,
    ingest: Option<Limit>,
}

impl RateLimits {
    /// Builds the limiters from config.
    pub fn new(cfg: &RateLimitConfig) -> RateLimits {
        RateLimits {
            management: Limit::new(cfg.per_minute),
            ingest: Limit::new(cfg.ingest_per_minute),
        }
    }

    /// Forgets accounts idle long enough to be back at full allowance (bounded memory).
    pub fn shrink(&self) {
        for limit in [&self.management, &self.ingest].into_iter().flatten() {
            limit.limiter.retain_recent();
        }
    }
}

fn set_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    for (name, value) in [
        ("x-ratelimit-limit", u64::from(limit)),
        ("x-ratelimit-remaining", u64::from(remaining)),
        ("x-ratelimit-reset", reset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// Authenticates once (handlers reuse the `Principal` it leaves in the request), then
/// applies the account's limit for the route class.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // Listener connections are long-lived streams, not management calls: a thousand
    // dashboards reconnecting after a restart must not be refused by the per-minute limit.
    if path == "/health" || path == "/ready" || path == "/ws" || path.starts_with("/socket.io") {
        return next.run(request).await;
    }
    let is_ingest = path.starts_with("/ingest/");
    let (mut parts, body) = request.into_parts();
    // Unauthenticated requests go on to the handler, which answers 401 (or, for Meta,
    // checks the signature).
    let Some(principal) = presented_key(&parts).and_then(|key| authenticate(&state, &key)) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let account = principal.account();
    parts.extensions.insert(principal);
    let request = Request::from_parts(parts, body);
    let limits = &state.rate_limits;
    let Some(limit) = (if is_ingest {
        &limits.ingest
    } else {
        &limits.management
    }) else {
        return next.run(request).await;
    };
    match limit.limiter.check_key(&account) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let mut response = next.run(request).await;
            let reset = limit.reset_seconds(limit.per_minute.saturating_sub(remaining));
            set_headers(response.headers_mut(), limit.per_minute, remaining, reset);
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limit.limiter.clock().now());
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut error = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "rate limit of {} requests per minute exceeded for this key; retry in {retry_after} s",
                    limit.per_minute
                ),
            );
            error.retry_after = Some(retry_after.max(1));
            let mut response = error.into_response();
            set_headers(
                response.headers_mut(),
                limit.per_minute,
                0,
                limit.reset_seconds(limit.per_minute),
            );
            response
        }
    }
}
