//! Per-account rate limits (GCRA, via `governor`): the global key is one account, each
//! instance token counts toward its instance. Management routes and ingest routes have
//! separate limits, so a busy gateway is never throttled by the management limit.
//!
//! Every limited response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds
//! until the allowance is full again); a refused one is 429 with `Retry-After`.
//!
//! Wrong keys have their own budget ([`AuthFailures`]), per client address and per key
//! prefix, so that guessing keys is slow. Once an address (or prefix) is over it, its
//! requests are refused *before* the key is checked: a 429 that came only after a wrong
//! key would let a guesser tell right keys (200) from wrong ones (429) at full speed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
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
    /// Wrong-key budgets; `None` when `auth_failures_burst` is 0.
    pub auth_failures: Option<AuthFailures>,
}

impl RateLimits {
    /// Builds the limiters from config.
    pub fn new(cfg: &RateLimitConfig) -> RateLimits {
        RateLimits {
            management: Limit::new(cfg.per_minute),
            ingest: Limit::new(cfg.ingest_per_minute),
            auth_failures: AuthFailures::new(cfg.auth_failures_burst, cfg.auth_failures_per_minute),
        }
    }

    /// Forgets accounts idle long enough to be back at full allowance (bounded memory).
    pub fn shrink(&self) {
        for limit in [&self.management, &self.ingest].into_iter().flatten() {
            limit.limiter.retain_recent();
        }
        if let Some(failures) = &self.auth_failures {
            failures.shrink();
        }
    }
}

type PlainKeyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Budgets of wrong keys, by client address (IPv6 by its /64, what one host is usually
/// given) and by the presented key's prefix, plus who is over budget until when.
pub struct AuthFailures {
    limiter: PlainKeyed,
    /// Budget key -> the time it may present a key again.
    blocked: Mutex<HashMap<String, Instant>>,
    burst: u32,
    per_minute: u32,
}

impl AuthFailures {
    /// `burst` wrong keys at once, then `per_minute`; `None` when `burst` is 0.
    pub fn new(burst: u32, per_minute: u32) -> Option<AuthFailures> {
        let burst = NonZeroU32::new(burst)?;
        // A zero refill would block an address forever; one a minute is the floor.
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Some(AuthFailures {
            limiter: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
            burst: burst.get(),
            per_minute: rate.get(),
        })
    }

    /// The budgets a request spends from: its address's (when known) and its key prefix's.
    fn budgets(peer: Option<IpAddr>, key: &str) -> Vec<String> {
        let mut budgets = Vec::with_capacity(2);
        if let Some(ip) = peer {
            budgets.push(match ip {
                IpAddr::V4(v4) => format!("addr:{v4}"),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => format!("addr:{v4}"),
                    None => {
                        let s = v6.segments();
                        format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                    }
                },
            });
        }
        // Half the key, at most 8 characters: a right key shares its prefix with a wrong one
        // only when the guesser already knows half of it.
        let chars = key.chars().count();
        let prefix: String = key.chars().take((chars / 2).min(8)).collect();
        budgets.push(format!("prefix:{prefix}"));
        budgets
    }

    /// How long `peer` (or this key's prefix) must still wait before a key is checked;
    /// `None` when it may present one now.
    pub fn refused(&self, peer: Option<IpAddr>, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        Self::budgets(peer, key)
            .iter()
            .filter_map(|b| blocked.get(b))
            .filter_map(|until| until.checked_duration_since(now))
            .max()
    }

    /// Spends one wrong key; returns the wait when that was over a budget.
    pub fn failed(&self, peer: Option<IpAddr>, key: &str) -> Option<Duration> {
        let mut wait: Option<Duration> = None;
        for budget in Self::budgets(peer, key) {
            if let Err(not_until) = self.limiter.check_key(&budget) {
                let w = not_until.wait_time_from(self.limiter.clock().now());
                let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
                blocked.insert(budget, Instant::now() + w);
                wait = Some(wait.map_or(w, |x| x.max(w)));
            }
        }
        wait
    }

    /// The refusal for a request that must wait `wait`.
    fn refusal(&self, wait: Duration) -> TooManyWrongKeys {
        TooManyWrongKeys {
            wait,
            burst: self.burst,
            per_minute: self.per_minute,
        }
    }

    fn shrink(&self) {
        self.limiter.retain_recent();
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
    }
}

/// An address (or key prefix) over its wrong-key budget: answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct TooManyWrongKeys {
    wait: Duration,
    burst: u32,
    per_minute: u32,
}

impl IntoResponse for TooManyWrongKeys {
    fn into_response(self) -> Response {
        let wait = self.wait;
        let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut error = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many wrong API keys from this address (more than {} at once, then {} per minute); retry in {retry_after} s",
                self.burst, self.per_minute
            ),
        );
        error.retry_after = Some(retry_after);
        error.into_response()
    }
}

/// The client address axum's `ConnectInfo` carries (set by `app::http_server`).
pub fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Checks `key` for `peer` under the wrong-key budgets: `Err` is the 429 to send (over
/// budget: the key is not even checked), `Ok(None)` a wrong key within budget.
pub fn authenticate_limited(
    state: &AppState,
    peer: Option<IpAddr>,
    key: &str,
) -> Result<Option<super::auth::Principal>, TooManyWrongKeys> {
    let Some(failures) = &state.rate_limits.auth_failures else {
        return Ok(authenticate(state, key));
    };
    if let Some(wait) = failures.refused(peer, key) {
        return Err(failures.refusal(wait));
    }
    match authenticate(state, key) {
        Some(principal) => Ok(Some(principal)),
        None => match failures.failed(peer, key) {
            Some(wait) => Err(failures.refusal(wait)),
            None => Ok(None),
        },
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
    if path == "/health" || path == "/ready" {
        return next.run(request).await;
    }
    // Listener connections are long-lived streams, not management calls: a thousand
    // dashboards reconnecting after a restart must not be refused by the per-minute limit.
    // Their keys still spend the wrong-key budget.
    let is_listener = path == "/ws" || path.starts_with("/socket.io");
    let is_ingest = path.starts_with("/ingest/");
    let (mut parts, body) = request.into_parts();
    let peer = peer_ip(&parts.extensions);
    // Unauthenticated requests go on to the handler, which answers 401 (or, for Meta,
    // checks the signature).
    let principal = match presented_key(&parts) {
        None => None,
        Some(key) => match authenticate_limited(&state, peer, &key) {
            Ok(principal) => principal,
            Err(too_many) => return too_many.into_response(),
        },
    };
    let Some(principal) = principal else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    if is_listener {
        return next.run(Request::from_parts(parts, body)).await;
    }
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
