//! A JSON body extractor whose rejections are the error envelope, naming what is wrong.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

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

/// Parses JSON, with the line/column and serde's reason in the message.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
