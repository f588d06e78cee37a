//! Provider ingest over HTTP: Meta's signature and handshake, token-in-URL auth, dedupe of
//! provider retries, and errors that name the field.

mod common;

use common::{unique, TestServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

fn fixture(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/tests/fixtures/providers/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn meta_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PNID"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511988887777"}],
            "messages": [{"from": "5511988887777", "id": "wamid.ABC", "timestamp": "1758749877",
                          "type": "text", "text": {"body": "hello"}}]
        }}]}]
    }))
    .expect("json")
}

#[tokio::test]
async fn meta_needs_a_valid_signature_and_answers_the_handshake() {
    let s = TestServer::start(&[]);
    let inst = unique("meta");
    s.create_instance(
        &inst,
        json!({"providers": {"meta": {"appSecret": "app-secret-1", "verifyToken": "vt-1"}}}),
    )
    .await;
    let url = s.url(&format!("/ingest/{inst}/meta"));
    let body = meta_body();

    let bad = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign("wrong-secret", &body))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 401);
    let unsigned = s
        .http
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(unsigned.status(), 401);
    assert!(
        s.all_events(&format!("&instance={inst}")).await.is_empty(),
        "a bad signature stored nothing"
    );

    let good = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign("app-secret-1", &body))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(good.status(), 202);
    let events = s.all_events(&format!("&instance={inst}")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], json!("messages.upsert"));
    assert_eq!(events[0]["source"], json!("meta"));
    assert_eq!(events[0]["data"]["key"]["id"], json!("wamid.ABC"));
    assert!(events[0]["raw"].is_object());

    // Meta retries the same notification: acknowledged, stored once.
    let retry = s
        .http
        .post(&url)
        .header("x-hub-signature-256", sign("app-secret-1", &body))
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(retry.status(), 202);
    let v: Value = retry.json().await.expect("json");
    assert_eq!(v["deduplicated"], json!(1));
    assert_eq!(s.all_events(&format!("&instance={inst}")).await.len(), 1);

    let ok = s
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=12345"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), "12345");
    let wrong = s
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=12345"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 403);
}

#[tokio::test]
async fn whapi_linq_and_evolution_with_the_token_in_the_url() {
    let s = TestServer::start(&[]);
    let inst = unique("prov");
    let token = s.create_instance(&inst, json!({})).await;
    let post = |path: String, body: Vec<u8>| {
        s.http
            .post(s.url(&path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(
        format!("/ingest/{inst}/whapi?token={token}"),
        fixture("whapi/messages-post-text-batch.json"),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let r = post(
        format!("/ingest/{inst}/linq?token={token}"),
        fixture("linq/message-received.json"),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let evo = serde_json::to_vec(&json!({"event": "chats.update", "instance": inst, "data": [{"id": "5511@s.whatsapp.net"}],
        "date_time": "2025-01-01T00:00:00.000Z", "sender": "5511@s.whatsapp.net", "server_url": "http://evo", "apikey": null}))
    .expect("json");
    let r = post(
        format!("/ingest/{inst}/evolution?token={token}"),
        evo.clone(),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 202);
    let r = post(
        format!("/ingest/{inst}/evolution/chats-update?token={token}"),
        evo,
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 202);
    let r = post(
        format!("/ingest/{inst}/whapi"),
        fixture("whapi/messages-post-text-batch.json"),
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 401, "no token, no ingest");

    let events = s.all_events(&format!("&instance={inst}")).await;
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "messages.upsert",
            "messages.upsert",
            "messages.upsert",
            "chats.update",
            "chats.update"
        ],
        "{events:?}"
    );
    assert_eq!(events[0]["source"], json!("whapi"));
    assert_eq!(events[2]["source"], json!("linq"));

    let bad = serde_json::to_vec(
        &json!({"event": {"type": "chats", "event": "post"}, "chats": [{"id": "not-a-chat-id"}]}),
    )
    .expect("json");
    let r = post(format!("/ingest/{inst}/whapi?token={token}"), bad)
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("whapi") && message.contains("chats[0].id"),
        "{v}"
    );
}
