//! A JSON body extractor whose rejections are the error envelope, naming what is wrong.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};
use crate::ingest::limits;

/// Like `axum::Json`, but every failure is an [`ApiError`] that says where the JSON broke.
pub struct JsonBody<T>(pub T);

/// Reads the raw body, mapping an over-limit body to 413.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body exceeds the configured limit (ingest.max_body_bytes)",
                )
            } else {
                ApiError::new(ErrorCode::InvalidJson, format!("could not read body: {e}"))
            }
        })
}

/// Reads the raw body and checks it against the limits of what may be stored
/// (`ingest::limits`); for routes that parse the body themselves (provider ingest).
pub async fn checked_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let bytes = body_bytes(req, state).await?;
    check_limits(&bytes)?;
    Ok(bytes)
}

/// Refuses a body that breaks `ingest::limits` (too deep, a number or string no reader can
/// hold, an oversized key) with a 400 naming the path. Every body that can reach a log
/// passes through here, so every stored record reads back.
pub fn check_limits(bytes: &[u8]) -> Result<(), ApiError> {
    limits::check(bytes).map_err(|e| {
        let code = if e.syntax {
            ErrorCode::InvalidJson
        } else {
            ErrorCode::Validation
        };
        ApiError::new(code, format!("invalid request body: {e}"))
    })
}

/// Parses JSON, with the line/column and serde's reason in the message, after the limits
/// check ([`check_limits`]).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    check_limits(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::Validation
        } else {
            ErrorCode::InvalidJson
        };
        ApiError::new(code, format!("invalid request body: {e}"))
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}
