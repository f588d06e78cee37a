//! The one API error type and its JSON envelope:
//! `{"error":{"status":401,"code":2004,"message":"..."},"success":false}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Stable numeric codes, one per kind of error; clients switch on these, never on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A field breaks a rule (400).
    Validation = 2001,
    /// The body is not valid JSON or not the expected shape (400).
    InvalidJson = 2002,
    /// An event name not in the catalog (400).
    UnknownEvent = 2003,
    /// No key, or a wrong one (401).
    Unauthorized = 2004,
    /// A valid key that may not reach this resource (403).
    Forbidden = 2005,
    /// No such route, instance or resource (404).
    NotFound = 2006,
    /// The resource already exists (409).
    Conflict = 2007,
    /// Body or batch over the limit (413).
    PayloadTooLarge = 2008,
    /// Rate limit exceeded (429).
    RateLimited = 2009,
    /// The server cannot accept events right now (503).
    Unavailable = 2010,
    /// A bug or a failed disk (500).
    Internal = 2011,
    /// The route exists but not with this method (405).
    MethodNotAllowed = 2012,
    /// Not JSON when JSON is required (415).
    UnsupportedMediaType = 2013,
}

impl ErrorCode {
    /// Every code, in numeric order (the OpenAPI document lists them).
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Validation,
        ErrorCode::InvalidJson,
        ErrorCode::UnknownEvent,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
    ];
}

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the status implied by its code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::Validation | ErrorCode::InvalidJson | ErrorCode::UnknownEvent => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        };
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: a field breaks a rule; the message names the field.
    pub fn validation(field: &str, rule: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Validation, format!("`{field}`: {rule}"))
    }

    /// 404 for a named thing.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 500: logged with its cause; the client sees no internals.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; the server log has the details",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {"status": self.status.as_u16(), "code": self.code as u16, "message": self.message},
            "success": false,
        })
    }
}

impl From<crate::catalog::UnknownEvent> for ApiError {
    fn from(e: crate::catalog::UnknownEvent) -> Self {
        ApiError::new(ErrorCode::UnknownEvent, e.to_string())
    }
}

impl From<crate::log::LogError> for ApiError {
    fn from(e: crate::log::LogError) -> Self {
        match e {
            crate::log::LogError::TooLarge { size, limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("an event of {size} bytes exceeds the limit of {limit} bytes"),
            ),
            crate::log::LogError::Closed => {
                ApiError::new(ErrorCode::Unavailable, "the server is shutting down")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::registry::RegistryError> for ApiError {
    fn from(e: crate::registry::RegistryError) -> Self {
        match e {
            crate::registry::RegistryError::Log(log) => log.into(),
            crate::registry::RegistryError::Encode(why) => ApiError::new(
                ErrorCode::Validation,
                format!("the request cannot be stored: {why}"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::registry::ChangeError<ApiError>> for ApiError {
    fn from(e: crate::registry::ChangeError<ApiError>) -> Self {
        match e {
            crate::registry::ChangeError::Rejected(api) => api,
            crate::registry::ChangeError::Registry(reg) => reg.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Turns axum's own plain-text rejections (unknown route, wrong method, body over the limit)
/// into the envelope, so that every error on every route has the same shape.
pub async fn envelope_plain_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this route does not accept that method".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "request body exceeds the configured limit (ingest.max_body_bytes)".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "send JSON with Content-Type: application/json".to_string(),
        ),
        s if s.is_server_error() => (ErrorCode::Internal, "internal error".to_string()),
        _ => (ErrorCode::Validation, format!("bad request ({status})")),
    };
    let mut error = ApiError::new(code, message);
    error.status = status;
    error.into_response()
}
