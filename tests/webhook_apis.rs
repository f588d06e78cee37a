//! The named-webhook APIs against the real binary: CodeChat (per instance, per-event
//! booleans), Linq (account-wide, E.164 phone filter, Linq-signed, secret shown once) and
//! Ventia (account-wide topics, pagination), each delivering to a real HTTP receiver.

mod common;
#[path = "support/delivery.rs"]
mod support;
#[path = "support/webhook_apis.rs"]
mod webhook_support;

use common::{unique, TestServer};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use webhook_support::{drained, events_of, ingest, instance, send};

const PRIVATE: &[(&str, &str)] = &[("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true")];

#[tokio::test]
async fn codechat_crud_and_flags_select_events() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = TestServer::start(PRIVATE);
    let name = unique("cc");
    let id = instance(&s, &name, "5511999990000").await;

    // By UUID; every flag defaults to true but messagesUpsert is turned off.
    let base = format!("/api/v2/instance/{id}/webhook");
    let body = json!({"name": "orders", "url": receiver.url, "enabled": true,
                      "WebhookEvents": {"messagesUpsert": false}});
    let (status, hook) = send(&s, Method::POST, &base, Some(body)).await;
    assert_eq!(status, 201, "{hook}");
    for key in [
        "name",
        "url",
        "enabled",
        "webhookId",
        "createdAt",
        "updatedAt",
    ] {
        assert!(!hook[key].is_null(), "{key} in {hook}");
    }
    assert_eq!(hook["instanceInstanceId"], id);
    let events = &hook["WebhookEvents"];
    assert_eq!(events["messagesUpsert"], false);
    assert_eq!(events["messagesUpdate"], true);
    assert_eq!(events["newJwt"], true);
    assert!(events["webhookEventsId"].is_string() && events["createdAt"].is_string());
    let hook_id = hook["webhookId"].as_str().unwrap().to_string();

    // By name, the same webhook; list holds it.
    let by_name = format!("/api/v2/instance/{name}/webhook");
    let (status, got) = send(&s, Method::GET, &format!("{by_name}/{hook_id}"), None).await;
    assert_eq!((status, &got), (200, &hook));
    let (status, list) = send(&s, Method::GET, &by_name, None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Per-event booleans select: messages.upsert off, call is no CodeChat flag.
    ingest(
        &s,
        &name,
        &[
            "messages.upsert",
            "messages.update",
            "call",
            "connection.update",
        ],
    )
    .await;
    drained(&s, &format!("codechat:{hook_id}")).await;
    assert_eq!(
        events_of(&receiver),
        ["messages.update", "connection.update"]
    );

    // Update: name required, flags merge, omitted fields keep their value.
    let path = format!("{base}/{hook_id}");
    let (status, v) = send(&s, Method::PUT, &path, Some(json!({"url": receiver.url}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("name"));
    let body = json!({"name": "renamed", "WebhookEvents": {"connectionUpdate": false}});
    let (status, updated) = send(&s, Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["enabled"], true);
    assert_eq!(updated["url"], hook["url"]);
    assert_eq!(updated["WebhookEvents"]["connectionUpdate"], false);
    assert_eq!(updated["WebhookEvents"]["messagesUpsert"], false);
    assert_eq!(updated["createdAt"], hook["createdAt"]);

    // Validation and access.
    let (status, v) = send(&s, Method::POST, &base, Some(json!({"url": receiver.url}))).await;
    assert_eq!(status, 400, "{v}");
    let bad = json!({"name": "x", "url": receiver.url, "WebhookEvents": {"nope": true}});
    let (status, v) = send(&s, Method::POST, &base, Some(bad)).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("WebhookEvents.nope"));
    let other = unique("cc-other");
    let other_token = s.create_instance(&other, json!({})).await;
    let r = s
        .http
        .get(s.url(&format!("{by_name}/{hook_id}")))
        .header("apikey", &other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (status, _) = send(
        &s,
        Method::GET,
        &format!("/api/v2/instance/{other}/webhook/{hook_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "another instance's path does not reach it");

    // Delete.
    let (status, _) = send(&s, Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = send(&s, Method::GET, &path, None).await;
    assert_eq!(status, 404);
    let (_, list) = send(&s, Method::GET, &by_name, None).await;
    assert_eq!(list, json!([]));
    cancel.cancel();
}

#[tokio::test]
async fn linq_crud_secret_once_and_errors() {
    let s = TestServer::start(PRIVATE);
    let base = "/v3/webhook-subscriptions";
    let body = json!({"target_url": "https://webhooks.example.com/linq/events",
                      "subscribed_events": ["message.sent", "message.delivered", "message.read"]});
    let (status, created) = send(&s, Method::POST, base, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    assert_eq!(created["is_active"], true);
    assert_eq!(created["phone_numbers"], Value::Null);
    assert_eq!(
        created["subscribed_events"],
        json!(["message.sent", "message.delivered", "message.read"])
    );
    let id = created["id"].as_str().unwrap().to_string();
    uuid::Uuid::parse_str(&id).expect("Linq ids are UUIDs");

    let path = format!("{base}/{id}");
    let (status, got) = send(&s, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert!(got.get("signing_secret").is_none(), "{got}");
    let (_, list) = send(&s, Method::GET, base, None).await;
    assert_eq!(list["subscriptions"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&secret));

    let body = json!({"is_active": false, "phone_numbers": ["+14155550123"],
                      "target_url": "https://webhooks.example.com/v2"});
    let (status, updated) = send(&s, Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["is_active"], false);
    assert_eq!(updated["phone_numbers"], json!(["+14155550123"]));
    assert_eq!(updated["target_url"], "https://webhooks.example.com/v2");
    assert_eq!(updated["subscribed_events"], created["subscribed_events"]);
    assert!(updated.get("signing_secret").is_none());
    let (_, cleared) = send(&s, Method::PUT, &path, Some(json!({"phone_numbers": null}))).await;
    assert_eq!(cleared["phone_numbers"], Value::Null);

    // Linq's error envelope and codes.
    let bad = json!({"phone_numbers": ["4155550123"]});
    let (status, v) = send(&s, Method::PUT, &path, Some(bad)).await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"error": {"status": 400, "code": 1002, "message": "Phone number must be in E.164 format"}, "success": false})
    );
    let bad = json!({"target_url": "https://x.example", "subscribed_events": ["message.sent"],
                     "phone_numbers": ["+1 415"]});
    let (status, v) = send(&s, Method::POST, base, Some(bad)).await;
    assert_eq!((status, v["error"]["code"].as_u64()), (400, Some(1002)));
    let bad = json!({"target_url": "https://x.example", "subscribed_events": ["message.nope"]});
    let (status, v) = send(&s, Method::POST, base, Some(bad)).await;
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (400, Some(1001)),
        "{v}"
    );
    let missing = format!("{base}/{}", uuid::Uuid::new_v4());
    let (status, v) = send(&s, Method::GET, &missing, None).await;
    assert_eq!(status, 404);
    assert_eq!(
        v["error"],
        json!({"status": 404, "code": 2001, "message": "Resource not found"})
    );
    let token = s.create_instance(&unique("linq-tok"), json!({})).await;
    let r = s
        .http
        .get(s.url(base))
        .header("apikey", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 2005);

    let (status, _) = send(&s, Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = send(&s, Method::GET, &path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn linq_deliveries_are_linq_signed_and_phone_filtered() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = TestServer::start(PRIVATE);
    let (mine, theirs) = (unique("linq-a"), unique("linq-b"));
    instance(&s, &mine, "5511999990000").await;
    instance(&s, &theirs, "5511888880000").await;
    let body = json!({"target_url": "https://placeholder.example/hook",
                      "subscribed_events": ["message.read"],
                      "phone_numbers": ["+5511999990000"]});
    let (status, created) = send(&s, Method::POST, "/v3/webhook-subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["signing_secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    // Update the target: the secret must stay the one shown at create.
    let body = json!({"target_url": receiver.url});
    let path = format!("/v3/webhook-subscriptions/{id}");
    let (status, _) = send(&s, Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 200);

    ingest(&s, &theirs, &["messages.update", "messages.upsert"]).await;
    ingest(&s, &mine, &["messages.upsert", "messages.update", "call"]).await;
    drained(&s, &format!("linq:{id}")).await;
    let got = receiver.delivered();
    assert_eq!(
        got.len(),
        1,
        "only {mine}'s messages.update: {:?}",
        events_of(&receiver)
    );
    let r = &got[0];
    assert_eq!(r.instance(), mine);
    assert_eq!(r.headers["x-webhook-event"], "messages.update");
    let timestamp = &r.headers["x-webhook-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&r.body);
    assert_eq!(
        r.headers["x-webhook-signature"],
        hex::encode(mac.finalize().into_bytes())
    );
    assert!(!r.headers.contains_key("webhook-signature"));
    cancel.cancel();
}

#[tokio::test]
async fn ventia_crud_pagination_and_validation() {
    let mut s = TestServer::start(&[]);
    let (status, v) = send(
        &s,
        Method::POST,
        "/webhooks",
        Some(json!({"active": true, "name": "plain", "callbackUrl": "http://example.com/h"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("callbackUrl"));
    let cases = [
        (
            json!({"name": "x", "callbackUrl": "https://e.com"}),
            "active",
        ),
        (
            json!({"active": true, "name": "", "callbackUrl": "https://e.com"}),
            "name",
        ),
        (
            json!({"active": true, "name": "x".repeat(65), "callbackUrl": "https://e.com"}),
            "name",
        ),
        (
            json!({"active": true, "name": "x", "callbackUrl": "https://e.com", "topics": ["interactions.email"]}),
            "interactions.email",
        ),
    ];
    for (body, needle) in cases {
        let (status, v) = send(&s, Method::POST, "/webhooks", Some(body)).await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }

    let mut ids = Vec::new();
    for n in 0..3 {
        let body = json!({"active": true, "name": format!("hook {n}"),
                          "callbackUrl": format!("https://example.com/{n}"),
                          "topics": ["interactions.official_whatsapp"]});
        let (status, v) = send(&s, Method::POST, "/webhooks", Some(body)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["success"], true);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (status, page) = s.get("/webhooks?page=2&limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["paging"], json!({"totalCount": 3}));
    assert_eq!(page["result"].as_array().unwrap().len(), 1);
    assert_eq!(page["result"][0]["_id"], ids[2].as_str());
    let (_, all) = s.get("/webhooks").await;
    assert_eq!(all["result"].as_array().unwrap().len(), 3);
    for bad in ["limit=0", "limit=101", "page=0"] {
        let (status, v) = s.get(&format!("/webhooks?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }

    let path = format!("/webhooks/{}", ids[0]);
    let body =
        json!({"active": false, "topics": ["interactions.official_whatsapp_statuses", "call"]});
    let (status, v) = send(&s, Method::PUT, &path, Some(body)).await;
    assert_eq!((status, &v), (200, &json!({"success": true})));
    let (status, one) = s.get(&path).await;
    assert_eq!(status, 200);
    let r = &one["result"];
    assert_eq!(r["_id"], ids[0].as_str());
    assert_eq!(r["name"], "hook 0");
    assert_eq!(r["active"], false);
    assert_eq!(r["callbackUrl"], "https://example.com/0");
    assert_eq!(
        r["topics"],
        json!(["interactions.official_whatsapp_statuses", "call"])
    );

    let (status, v) = send(&s, Method::DELETE, &path, None).await;
    assert_eq!((status, v["success"].as_bool()), (200, Some(true)));
    let (status, _) = s.get(&path).await;
    assert_eq!(status, 404);
    // The control log keeps them across a restart.
    s.restart();
    let (_, all) = s.get("/webhooks").await;
    assert_eq!(all["paging"]["totalCount"], 2);
    let token = s.create_instance(&unique("ventia-tok"), json!({})).await;
    let r = s
        .http
        .get(s.url("/webhooks"))
        .header("apikey", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Acceptance: a topic webhook on `interactions.official_whatsapp_statuses` receives the
/// `messages.update` events of every instance and nothing else.
#[tokio::test]
async fn ventia_statuses_topic_receives_only_status_events() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = TestServer::start(PRIVATE);
    let (a, b) = (unique("ventia-a"), unique("ventia-b"));
    instance(&s, &a, "5511999990000").await;
    instance(&s, &b, "5511888880000").await;
    let body = json!({"active": true, "name": "statuses", "callbackUrl": receiver.url,
                      "topics": ["interactions.official_whatsapp_statuses"]});
    let (status, v) = send(&s, Method::POST, "/webhooks", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    let mix = [
        "messages.upsert",
        "messages.update",
        "send.message",
        "chats.update",
        "messages.update",
        "presence.update",
        "messages.edited",
        "call",
    ];
    ingest(&s, &a, &mix).await;
    ingest(&s, &b, &mix).await;
    drained(&s, &format!("ventia:{id}")).await;
    let got = receiver.delivered();
    assert_eq!(events_of(&receiver), vec!["messages.update"; 4]);
    let from_a = got.iter().filter(|r| r.instance() == a).count();
    let from_b = got.iter().filter(|r| r.instance() == b).count();
    assert_eq!((from_a, from_b), (2, 2));
    cancel.cancel();
}
