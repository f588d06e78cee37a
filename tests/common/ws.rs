//! WebSocket test helpers: connect a plain `/ws` listener, read envelopes with time boxes,
//! ingest batches and keep their sequences.
#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestServer;

/// A connected client.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The fields a test checks of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Seen {
    /// Log position.
    pub sequence: u64,
    /// Instance.
    pub instance: String,
    /// Dotted event.
    pub event: String,
}

/// What the next read produced.
#[derive(Debug)]
pub enum Next {
    /// An envelope (or another JSON text message).
    Text(String),
    /// The server closed, with its frame.
    Closed(Option<CloseFrame>),
}

/// `ws://host:port{path_and_query}`.
pub fn ws_url(server: &TestServer, path_and_query: &str) -> String {
    format!(
        "{}{path_and_query}",
        server.base.replacen("http://", "ws://", 1)
    )
}

/// Connects, panicking with the server's answer when the upgrade is refused.
pub async fn connect(server: &TestServer, path_and_query: &str) -> Ws {
    match try_connect(server, path_and_query).await {
        Ok(ws) => ws,
        Err((status, body)) => panic!("connect {path_and_query}: {status} {body}"),
    }
}

/// Connects, or returns the refusal's status and JSON body.
pub async fn try_connect(server: &TestServer, path_and_query: &str) -> Result<Ws, (u16, Value)> {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async(ws_url(server, path_and_query)).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(e) => panic!("connect {path_and_query}: {e}"),
    }
}

/// The next text message or close, skipping pings; panics after `within`.
pub async fn next(ws: &mut Ws, within: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {within:?}"));
        match msg {
            Some(Ok(Message::Text(t))) => return Next::Text(t.to_string()),
            Some(Ok(Message::Close(frame))) => return Next::Closed(frame),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("websocket error: {e}"),
            None => return Next::Closed(None),
        }
    }
}

/// Reads `n` envelopes; panics on a close or after `within`.
pub async fn read_envelopes(ws: &mut Ws, n: usize, within: Duration) -> Vec<Seen> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(ws, left).await {
            Next::Text(t) => out.push(
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("not an envelope: {e}: {t}")),
            ),
            Next::Closed(frame) => panic!("closed after {} of {n}: {frame:?}", out.len()),
        }
    }
    out
}

/// Asserts that nothing but pings arrives within `quiet`.
pub async fn assert_quiet(ws: &mut Ws, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected nothing, got {other:?}"),
        }
    }
}

/// Ingests `events` (dotted names, each with a small body) into `instance`; returns what the
/// log assigned, in order.
pub async fn ingest(server: &TestServer, instance: &str, events: &[&str]) -> Vec<Seen> {
    ingest_sized(server, instance, events, 0).await
}

/// As [`ingest`], with `pad` bytes of filler in each event's data.
pub async fn ingest_sized(
    server: &TestServer,
    instance: &str,
    events: &[&str],
    pad: usize,
) -> Vec<Seen> {
    let filler = "x".repeat(pad);
    let batch: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"event": e, "data": {"n": i, "pad": filler}}))
        .collect();
    let (status, v) = server
        .post(&format!("/ingest/{instance}"), &json!({ "events": batch }))
        .await;
    assert_eq!(status, 202, "{v}");
    let first = v["first_sequence"].as_u64().expect("first_sequence");
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Seen {
            sequence: first + i as u64,
            instance: instance.to_string(),
            event: (*e).to_string(),
        })
        .collect()
}
