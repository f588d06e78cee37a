//! socket.io compatibility: an unmodified socket.io-client from npm, written as Evolution
//! API's docs show (`io(`${server}/${instance}`, {transports: ['websocket']})`), against
//! the real binary.

mod common;

use std::time::Duration;

use common::socketio::listen;
use common::ws::ingest;
use common::{unique, TestServer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn triples(seen: &[common::ws::Seen]) -> Vec<(String, String, u64)> {
    seen.iter()
        .map(|e| (e.event.clone(), e.instance.clone(), e.sequence))
        .collect()
}

#[tokio::test]
async fn an_instance_namespace_exists_before_any_event_and_carries_its_events() {
    let s = TestServer::start(&[]);
    let (a, b) = (unique("a"), unique("b"));
    let token_a = s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;

    // Key in the query string (Evolution's allowRequest reads it there), no event yet.
    let mut by_query = listen(&format!("{}/{a}", s.base), &s.key, "query", 0, &[]);
    assert_eq!(by_query.line(WAIT).await, "connected");
    // Instance token in the CONNECT auth payload; listening to one named event.
    let mut by_auth = listen(
        &format!("{}/{a}", s.base),
        &token_a,
        "auth",
        0,
        &["chats.update"],
    );
    assert_eq!(by_auth.line(WAIT).await, "connected");

    let mut sent = ingest(
        &s,
        &a,
        &["messages.upsert", "chats.update", "messages.upsert"],
    )
    .await;
    ingest(&s, &b, &["messages.upsert"]).await;
    sent.extend(ingest(&s, &a, &["chats.update"]).await);
    assert_eq!(by_query.events(4, WAIT).await, triples(&sent));
    let chats: Vec<_> = sent
        .into_iter()
        .filter(|e| e.event == "chats.update")
        .collect();
    assert_eq!(by_auth.events(2, WAIT).await, triples(&chats));

    // The instance's websocket settings narrow its namespace, as in Evolution.
    let (status, v) = s
        .post(
            &format!("/websocket/set/{a}"),
            &json!({"websocket": {"enabled": true, "events": ["CHATS_UPDATE"]}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let sent = ingest(&s, &a, &["messages.upsert", "chats.update"]).await;
    assert_eq!(by_query.events(1, WAIT).await, triples(&sent[1..]));
}

#[tokio::test]
async fn refused_connects_reach_the_client_as_connect_error() {
    let s = TestServer::start(&[]);
    let (a, b) = (unique("a"), unique("b"));
    let token_a = s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    let cases = [
        (
            format!("{}/{a}", s.base),
            "wrong-key".to_string(),
            "auth",
            "apikey is invalid",
        ),
        (
            format!("{}/{a}", s.base),
            String::new(),
            "none",
            "apikey is required",
        ),
        (
            format!("{}/{b}", s.base),
            token_a.clone(),
            "auth",
            "own instance",
        ),
        (
            format!("{}/nope-{a}", s.base),
            s.key.clone(),
            "auth",
            "not found",
        ),
        (
            s.base.clone(),
            s.key.clone(),
            "auth",
            "WEBSOCKET_GLOBAL_EVENTS",
        ),
    ];
    for (url, key, mode, needle) in cases {
        let mut client = listen(&url, &key, mode, 0, &[]);
        let line = client.line(WAIT).await;
        assert!(
            line.starts_with("connect_error") && line.contains(needle),
            "{url} {mode}: {line}"
        );
        assert_eq!(client.exit_code(WAIT).await, Some(2));
    }
    // The polling transport is refused with a message that says what to do.
    let r = s
        .http
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("transports: ['websocket']"), "{body}");
}

#[tokio::test]
async fn global_mode_sends_every_instance_on_the_default_namespace() {
    let s = TestServer::start(&[("WEBSOCKET_GLOBAL_EVENTS", "true")]);
    let (a, b) = (unique("a"), unique("b"));
    s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    let mut global = listen(&s.base, &s.key, "query", 0, &[]);
    assert_eq!(global.line(WAIT).await, "connected");
    let mut sent = ingest(&s, &a, &["messages.upsert"]).await;
    sent.extend(ingest(&s, &b, &["contacts.update", "call"]).await);
    assert_eq!(global.events(3, WAIT).await, triples(&sent));
}
