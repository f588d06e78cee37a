//! Who is calling: the global key or an instance token, from any of the places Evolution
//! clients put it (`apikey`, `X-API-KEY`, `Authorization: Bearer`, `?api-key=`), and, for
//! browsers opening `/ws` (which cannot set headers on a WebSocket), a subprotocol.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::error::{ApiError, ErrorCode};
use super::AppState;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The global key: every instance.
    Global,
    /// An instance token: that instance only.
    Instance(String),
}

impl Principal {
    /// Refuses a caller that may not reach `instance`.
    pub fn require_instance(&self, instance: &str) -> Result<(), ApiError> {
        match self {
            Principal::Global => Ok(()),
            Principal::Instance(own) if own == instance => Ok(()),
            Principal::Instance(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this instance token only reaches its own instance",
            )),
        }
    }

    /// Refuses anything but the global key (account-wide resources).
    pub fn require_global(&self) -> Result<(), ApiError> {
        match self {
            Principal::Global => Ok(()),
            Principal::Instance(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this route needs the global API key",
            )),
        }
    }

    /// The rate-limit account: the global key is one account, each instance another.
    pub fn account(&self) -> String {
        match self {
            Principal::Global => "global".to_string(),
            Principal::Instance(name) => format!("instance:{name}"),
        }
    }
}

/// The presented key, wherever it was put.
pub fn presented_key(parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(key) = header("apikey").or_else(|| header("x-api-key")) {
        return Some(key);
    }
    if let Some(auth) = header("authorization") {
        if let Some(token) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        {
            return Some(token.trim().to_string());
        }
    }
    if let Some(key) = subprotocol_key(parts) {
        return Some(key);
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "api-key" || k == "apikey" || k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The subprotocol a WebSocket client offers to carry its key: `switchyard.apikey.` then the
/// key in unpadded base64url (a subprotocol is an HTTP token, which a key need not be).
/// Browsers cannot set headers on a WebSocket, and a key in the URL ends up in proxies'
/// access logs and the browser's history; the `Sec-WebSocket-Protocol` header does not.
/// The client offers [`WS_PROTOCOL`] beside it, which the server selects, as browsers
/// require the server to select one of the offered protocols.
pub const WS_KEY_PROTOCOL_PREFIX: &str = "switchyard.apikey.";

/// The subprotocol the server selects when a client offers it (with its key beside it).
pub const WS_PROTOCOL: &str = "switchyard";

fn subprotocol_key(parts: &Parts) -> Option<String> {
    use base64::Engine;
    parts
        .headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix(WS_KEY_PROTOCOL_PREFIX))
        .find_map(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        })
        .filter(|key| !key.is_empty())
}

/// Resolves a key to a principal; `None` when it matches nothing.
pub fn authenticate(state: &AppState, key: &str) -> Option<Principal> {
    if bool::from(key.as_bytes().ct_eq(state.api_key.as_bytes())) {
        return Some(Principal::Global);
    }
    state
        .registry
        .instance_for_token(key)
        .map(Principal::Instance)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let key = presented_key(parts).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "missing API key: send it in the `apikey` header",
            )
        })?;
        let principal = authenticate(state, &key)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "invalid API key"))?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}
