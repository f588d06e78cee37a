//! `GET /ws` (plain WebSocket listeners) and `GET /socket.io/` (socket.io over the websocket
//! transport): check the switch, the key and the subscription, then upgrade on the API's
//! own port.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use utoipa_axum::routes;

use super::auth::{authenticate, presented_key, Principal, WS_PROTOCOL};
use super::error::{ApiError, ErrorCode};
use super::instance_body::filter_error;
use super::openapi::{ApiRouter, ErrorEnvelope};
use super::rate_limit::{authenticate_limited, peer_ip};
use super::AppState;
use crate::filter::Filter;
use crate::websocket::engineio::{self, Handshake};
use crate::websocket::filter::Selection;
use crate::websocket::listener::{self, Request};
use crate::websocket::Hub;

/// Read buffer per connection (clients send only subscribe and namespace packets).
const READ_BUFFER: usize = 4 * 1024;

fn hub(state: &AppState) -> Result<Arc<Hub>, ApiError> {
    state.websocket.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "WebSocket listeners are disabled on this server (WEBSOCKET_ENABLED=false)",
        )
    })
}

/// The query string as (key, value) pairs; keys may repeat.
fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    let query = parts.uri.query().unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn values<'a>(pairs: &'a [(String, String)], keys: &[&str]) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn from_sequence(pairs: &[(String, String)]) -> Result<Option<u64>, ApiError> {
    let Some(raw) = values(pairs, &["from_sequence", "last_sequence"]).pop() else {
        return Ok(None);
    };
    let n: u64 = raw
        .parse()
        .map_err(|_| ApiError::validation("from_sequence", "must be a non-negative integer"))?;
    // `last_sequence` names the last one seen: continue right after it. The largest
    // number has no successor; wrapping to 0 would replay the whole log.
    if !values(pairs, &["from_sequence"]).is_empty() {
        return Ok(Some(n));
    }
    n.checked_add(1).map(Some).ok_or_else(|| {
        ApiError::validation(
            "last_sequence",
            format!("must be below {}: no sequence follows it", u64::MAX),
        )
    })
}

/// The content filter of the query string: `from_me`, `chat_types`, `chats` and
/// `message_types` (`Filter::from_query_params`); a bad one is a 400 naming the parameter.
fn query_filter(pairs: &[(String, String)]) -> Result<Filter, ApiError> {
    Filter::from_query_params(pairs.iter().map(|(k, v)| (k, v)))
        .map_err(|e| filter_error(e, "filter"))
}

fn principal(state: &AppState, parts: &Parts) -> Result<Option<Principal>, ApiError> {
    match presented_key(parts) {
        None => Ok(None),
        Some(key) => authenticate(state, &key)
            .map(Some)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "invalid API key")),
    }
}

fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|e| {
        ApiError::validation("Upgrade", format!("connect with a WebSocket client ({e})"))
    })
}

/// A plain WebSocket listener: upgrade (101) and receive the selected events as they are
/// stored, from `from_sequence` or live. Connect with a WebSocket client; any other request
/// is answered 400.
#[utoipa::path(get, path = "/ws", tag = "listeners",
    params(
        ("instance" = Option<String>, Query, description = "Instances to follow (repeatable; `instances` too); an instance token follows its own"),
        ("events" = Option<String>, Query, description = "Events to receive (repeatable, comma-separated; `event` too); none means all"),
        ("from_sequence" = Option<u64>, Query, description = "Replay from this sequence, then follow live"),
        ("last_sequence" = Option<u64>, Query, description = "Continue after this sequence (the last one seen)"),
        ("from_me" = Option<bool>, Query, description = "Content filter: only messages sent (true) or received (false) by the instance"),
        ("chat_types" = Option<String>, Query, description = "Content filter: comma-separated chat types"),
        ("chats" = Option<String>, Query, description = "Content filter: comma-separated chat JIDs"),
        ("message_types" = Option<String>, Query, description = "Content filter: comma-separated message types"),
    ),
    responses(
        (status = 101, description = "Switching protocols: a WebSocket of event envelopes (JSON text frames)"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad parameter (2001); an unknown event (2003)", body = ErrorEnvelope),
        (status = 403, description = "An instance token asking for another instance (2005)", body = ErrorEnvelope),
        (status = 404, description = "Listeners are disabled (`WEBSOCKET_ENABLED=false`) or no such instance (2006)", body = ErrorEnvelope),
    ))]
async fn plain(
    State(state): State<AppState>,
    parts: Parts,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let hub = hub(&state)?;
    let principal = principal(&state, &parts)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "missing API key: send the `apikey` header, offer the subprotocols `switchyard` and `switchyard.apikey.<base64url key>`, or add ?apikey=KEY",
        )
    })?;
    let pairs = query_pairs(&parts);
    let mut selection = Selection::parse(
        &values(&pairs, &["instance", "instances"]),
        &values(&pairs, &["events", "event"]),
    )?;
    selection.content = query_filter(&pairs)?;
    let selection = listener::authorize(&hub, &principal, selection)?;
    // A live-only listener starts at the log's end as of now, before the 101 goes out: every
    // event accepted after the client sees the upgrade reaches it.
    let from = from_sequence(&pairs)?.unwrap_or_else(|| hub.next_sequence());
    let request = Request {
        selection,
        from: Some(from),
    };
    // Listeners send only small subscribe messages: a small read buffer keeps an idle
    // connection cheap (tungstenite's default is 128 KiB each).
    // A browser offering its key as a subprotocol also offers `switchyard`, which is
    // selected (never the key's, so the key is not echoed back).
    let ws = upgrade(ws)?
        .protocols([WS_PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .max_message_size(64 * 1024);
    let tracker = hub.tasks.clone();
    Ok(ws.on_upgrade(move |socket| {
        tracker.track_future(listener::serve(socket, hub, principal, request))
    }))
}

/// socket.io (Engine.IO 4, websocket transport only): Evolution's socket.io listeners. The
/// key may also come in the CONNECT packet's `auth`.
#[utoipa::path(get, path = "/socket.io/", tag = "listeners", security(()),
    params(
        ("EIO" = String, Query, description = "Must be `4`"),
        ("transport" = String, Query, description = "Must be `websocket`"),
        ("apikey" = Option<String>, Query, description = "The key (or in a header, or in the CONNECT packet)"),
        ("from_sequence" = Option<u64>, Query, description = "Replay from this sequence, then follow live"),
        ("last_sequence" = Option<u64>, Query, description = "Continue after this sequence"),
    ),
    responses(
        (status = 101, description = "Switching protocols: Engine.IO 4 over WebSocket"),
        (status = 400, description = "Not Engine.IO 4 over a WebSocket upgrade, or a bad parameter (2001)", body = ErrorEnvelope),
        (status = 401, description = "A key that matches nothing (2004)", body = ErrorEnvelope),
        (status = 404, description = "Listeners are disabled (`WEBSOCKET_ENABLED=false`) (2006)", body = ErrorEnvelope),
    ))]
async fn socket_io(
    State(state): State<AppState>,
    parts: Parts,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let hub = hub(&state)?;
    let pairs = query_pairs(&parts);
    if values(&pairs, &["EIO"]).first() != Some(&"4") {
        return Err(ApiError::validation(
            "EIO",
            "only Engine.IO 4 is served (socket.io-client 3 or newer)",
        ));
    }
    if values(&pairs, &["transport"]).first() != Some(&"websocket") {
        return Err(ApiError::validation(
            "transport",
            "only the websocket transport is served: connect with io(url, {transports: ['websocket']})",
        ));
    }
    let handshake = Handshake {
        principal: principal(&state, &parts)?,
        from: from_sequence(&pairs)?,
        content: query_filter(&pairs)?,
        // A key sent in the CONNECT packet spends the same wrong-key budget as one in the
        // query string; over budget, every key is "invalid".
        authenticate: {
            let state = state.clone();
            let peer = peer_ip(&parts.extensions);
            Arc::new(move |key: &str| authenticate_limited(&state, peer, key).ok().flatten())
        },
    };
    let ws = upgrade(ws)?
        .read_buffer_size(READ_BUFFER)
        .max_message_size(1_000_000);
    let tracker = hub.tasks.clone();
    Ok(ws.on_upgrade(move |socket| tracker.track_future(engineio::serve(socket, hub, handshake))))
}

/// `/socket.io` without the trailing slash: the same as [`socket_io`].
#[utoipa::path(get, path = "/socket.io", tag = "listeners", security(()),
    params(
        ("EIO" = String, Query, description = "Must be `4`"),
        ("transport" = String, Query, description = "Must be `websocket`"),
        ("apikey" = Option<String>, Query, description = "The key (or in a header, or in the CONNECT packet)"),
        ("from_sequence" = Option<u64>, Query, description = "Replay from this sequence, then follow live"),
        ("last_sequence" = Option<u64>, Query, description = "Continue after this sequence"),
    ),
    responses(
        (status = 101, description = "Switching protocols: Engine.IO 4 over WebSocket"),
        (status = 400, description = "Not Engine.IO 4 over a WebSocket upgrade, or a bad parameter (2001)", body = ErrorEnvelope),
        (status = 401, description = "A key that matches nothing (2004)", body = ErrorEnvelope),
        (status = 404, description = "Listeners are disabled (`WEBSOCKET_ENABLED=false`) (2006)", body = ErrorEnvelope),
    ))]
async fn socket_io_bare(
    state: State<AppState>,
    parts: Parts,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    socket_io(state, parts, ws).await
}

/// The listener routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(plain))
        .routes(routes!(socket_io))
        .routes(routes!(socket_io_bare))
}
