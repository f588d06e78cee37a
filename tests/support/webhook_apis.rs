//! Helpers of `tests/webhook_apis.rs`: requests with the global key, instances with a
//! number, canonical ingest, and waiting until a subscription has seen the whole log.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestServer;
use crate::support::Receiver;

/// A request with the global key and an optional JSON body: (status, JSON).
pub async fn send(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = s.req(method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates an instance owning `number`; returns its id (UUID).
pub async fn instance(s: &TestServer, name: &str, number: &str) -> String {
    let body = json!({"instanceName": name, "number": number});
    let (status, v) = s.post("/instance/create", &body).await;
    assert_eq!(status, 201, "{v}");
    v["instance"]["instanceId"].as_str().unwrap().to_string()
}

pub async fn ingest(s: &TestServer, instance: &str, events: &[&str]) {
    let events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(n, e)| json!({"event": e, "data": {"n": n}}))
        .collect();
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
}

/// Waits until the subscription's committed cursor reaches the log's end: every event so
/// far was delivered or filtered out, so the receiver has seen all it will.
pub async fn drained(s: &TestServer, subscription: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = s.get(&format!("/subscriptions/{subscription}")).await;
        assert_eq!(status, 200, "{v}");
        let st = &v["status"];
        if st["cursor"].as_u64() >= st["log_end"].as_u64() && st["log_end"].as_u64() > Some(0) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not drained: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn events_of(receiver: &Receiver) -> Vec<String> {
    receiver
        .delivered()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_string())
        .collect()
}
