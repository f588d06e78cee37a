//! A local stand-in for Pusher's HTTP API that checks what Pusher checks: the app id in the
//! path, `auth_key`, `auth_version=1.0`, `auth_timestamp` within 600 s of its clock,
//! `body_md5` against the body, and `auth_signature` (HMAC-SHA256 with the app secret of
//! `POST\n{path}\n{every other parameter, sorted}`), then the body's shape and Pusher's
//! limits (10 events per batch, 10 KiB of data per event). It records every request and
//! every accepted event, and can be told to answer with an error status for a while.
//!
//! Its verification is written here from Pusher's documentation, independently of the
//! sink's signer; the official library's signatures are compared in `sink_pusher.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// An event the checker accepted.
#[derive(Debug, Clone)]
pub struct Triggered {
    /// The channel (our instance name).
    pub channel: String,
    /// The event name.
    pub name: String,
    /// The data, parsed (our envelope).
    pub data: Value,
}

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// `/apps/{id}/batch_events`.
    pub path: String,
    /// The query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// What the checker answered.
    pub status: u16,
}

/// An error answer to give instead of checking.
#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    body: String,
    times: u64,
}

#[derive(Default)]
struct Inner {
    triggered: Vec<Triggered>,
    requests: Vec<Request>,
    failure: Option<Failure>,
}

/// The app the checker serves and what it saw.
#[derive(Clone)]
pub struct Checker {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The app id.
    pub app_id: String,
    /// The app key.
    pub key: String,
    /// The app secret.
    pub secret: String,
    inner: Arc<Mutex<Inner>>,
    /// Milliseconds to wait before answering (a network round trip).
    pub delay_ms: Arc<AtomicU64>,
}

impl Checker {
    /// Serves an app with random credentials on a loopback port until `stop`.
    pub async fn start(stop: CancellationToken) -> Checker {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let checker = Checker {
            url: String::new(),
            app_id: (u64::from_str_radix(&suffix[..8], 16).unwrap() % 9_000_000 + 1_000_000)
                .to_string(),
            key: suffix[..20].to_string(),
            secret: suffix[12..32].to_string(),
            inner: Arc::default(),
            delay_ms: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/apps/{app_id}/batch_events", post(batch_events))
            .route("/apps/{app_id}/events", post(events))
            .with_state(checker.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        Checker { url, ..checker }
    }

    /// Every accepted event, in the order accepted.
    pub fn triggered(&self) -> Vec<Triggered> {
        self.inner.lock().unwrap().triggered.clone()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Answers the next `times` requests with `status` and `body` without checking them.
    pub fn fail_next(&self, times: u64, status: u16, body: &str) {
        self.inner.lock().unwrap().failure = Some(Failure {
            status,
            body: body.to_owned(),
            times,
        });
    }

    /// Checks a request as Pusher does; `Err` is the status and error Pusher would answer.
    pub fn verify(
        &self,
        app_id: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<(), (StatusCode, String)> {
        let unauthorized = |why: &str| Err((StatusCode::UNAUTHORIZED, why.to_owned()));
        if app_id != self.app_id {
            return Err((StatusCode::NOT_FOUND, format!("Unknown app `{app_id}`")));
        }
        let param = |name: &str| query.get(name).map(String::as_str);
        if param("auth_key") != Some(self.key.as_str()) {
            return unauthorized("Unknown auth_key");
        }
        if param("auth_version") != Some("1.0") {
            return unauthorized("auth_version must be 1.0");
        }
        let now = chrono::Utc::now().timestamp();
        match param("auth_timestamp").and_then(|t| t.parse::<i64>().ok()) {
            Some(t) if (now - t).abs() <= 600 => {}
            _ => return unauthorized("Timestamp expired: not within 600 s of the server's time"),
        }
        if param("body_md5") != Some(hex::encode(Md5::digest(body)).as_str()) {
            return unauthorized("body_md5 does not match the body");
        }
        let to_sign: Vec<String> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "auth_signature")
            .map(|(k, v)| format!("{}={v}", k.to_lowercase()))
            .collect();
        let to_sign = format!("POST\n{path}\n{}", to_sign.join("&"));
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).unwrap();
        mac.update(to_sign.as_bytes());
        let given = param("auth_signature").and_then(|s| hex::decode(s).ok());
        match given {
            Some(given) if mac.verify_slice(&given).is_ok() => Ok(()),
            _ => unauthorized("Invalid signature"),
        }
    }

    async fn handle(
        &self,
        app_id: String,
        path: String,
        query: Option<String>,
        body: Bytes,
        batch: bool,
    ) -> (StatusCode, Json<Value>) {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let query: BTreeMap<String, String> =
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let answer = self.answer(&app_id, &path, &query, &body, batch);
        let mut inner = self.inner.lock().unwrap();
        inner.requests.push(Request {
            path,
            query,
            body: body.to_vec(),
            status: answer.0.as_u16(),
        });
        if answer.0.is_success() {
            inner.triggered.extend(answer.1);
            (answer.0, Json(json!({})))
        } else {
            (answer.0, Json(json!({"error": answer.2})))
        }
    }

    /// The status, the accepted events and the error of one request.
    fn answer(
        &self,
        app_id: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
        batch: bool,
    ) -> (StatusCode, Vec<Triggered>, String) {
        {
            let mut inner = self.inner.lock().unwrap();
            if let Some(failure) = inner.failure.as_mut() {
                if failure.times > 0 {
                    failure.times -= 1;
                    let status = StatusCode::from_u16(failure.status).unwrap();
                    return (status, Vec::new(), failure.body.clone());
                }
            }
        }
        if let Err((status, why)) = self.verify(app_id, path, query, body) {
            return (status, Vec::new(), why);
        }
        let bad = |why: &str| (StatusCode::BAD_REQUEST, Vec::new(), why.to_owned());
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return bad("the body is not JSON");
        };
        let entries: Vec<Value> = if batch {
            match body["batch"].as_array() {
                Some(list) if !list.is_empty() && list.len() <= 10 => list.clone(),
                _ => return bad("batch must hold 1 to 10 events"),
            }
        } else {
            vec![
                json!({"channel": body["channels"][0], "name": body["name"], "data": body["data"]}),
            ]
        };
        let mut accepted = Vec::new();
        for entry in entries {
            let (Some(channel), Some(name), Some(data)) = (
                entry["channel"].as_str(),
                entry["name"].as_str(),
                entry["data"].as_str(),
            ) else {
                return bad("each event needs a channel, a name and data as a string");
            };
            if data.len() > 10 * 1024 {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Vec::new(),
                    "event data over 10 KiB".into(),
                );
            }
            let Ok(data) = serde_json::from_str(data) else {
                return bad("data is not the JSON envelope");
            };
            accepted.push(Triggered {
                channel: channel.to_owned(),
                name: name.to_owned(),
                data,
            });
        }
        (StatusCode::OK, accepted, String::new())
    }
}

async fn batch_events(
    State(checker): State<Checker>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let path = format!("/apps/{app_id}/batch_events");
    checker.handle(app_id, path, query, body, true).await
}

async fn events(
    State(checker): State<Checker>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let path = format!("/apps/{app_id}/events");
    checker.handle(app_id, path, query, body, false).await
}
