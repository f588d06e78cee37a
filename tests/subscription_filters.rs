//! Subscription filters (issue 19, item 1) through the real binary: one mixed stream, five
//! subscriptions made through five different APIs, each with its own filter, and WebSocket
//! listeners with the same filters; each receives exactly the events its filter matches,
//! in order. Then: the filters survive a SIGKILL and keep filtering after the restart, and
//! bad filters are refused with the error envelope naming the path.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::time::{Duration, Instant};

use common::ws::{self, Next};
use common::{unique, TestServer};
use futures::SinkExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const PRIVATE: &[(&str, &str)] = &[("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true")];

/// Every subscription below keeps one instance's events in one order, so arrival order is
/// sequence order (the default orders by chat only).
fn in_order() -> Value {
    json!({"ordering": "instance"})
}

/// The filters, one per kind of user (the README's worked examples and two more).
fn bot() -> Value {
    json!({"from_me": false, "chat_types": ["direct"]})
}
fn crm() -> Value {
    json!({"chat_types": ["direct", "newsletter"]})
}
fn escalation() -> Value {
    json!({"chats": {"allow": ["+55 11 91111-0001", "5511944440004"]}})
}
fn images() -> Value {
    json!({"message_types": ["imageMessage"]})
}
fn a_names() -> Value {
    json!({"match": {"data.pushName": {"$startsWith": "A"}}})
}

/// A `messages.upsert` numbered `n`.
fn message(n: u64, chat: &str, from_me: bool, kind: &str, push_name: &str) -> Value {
    let mut key = json!({"remoteJid": chat, "fromMe": from_me, "id": format!("MSG{n:04}")});
    if chat.ends_with("@g.us") || chat == "status@broadcast" {
        key["participant"] = json!("5511922220002@s.whatsapp.net");
    }
    let body = match kind {
        "conversation" => json!({"conversation": format!("text {n}")}),
        other => json!({other: {"caption": format!("media {n}")}}),
    };
    json!({"event": "messages.upsert",
           "data": {"key": key, "pushName": push_name, "message": body,
                    "messageType": kind, "n": n}})
}

/// The mixed stream: direct and group chats, fromMe both ways, status broadcasts, three
/// message types, a `@lid` chat carrying its phone JID, and an event about no chat.
fn stream(from: u64) -> Vec<Value> {
    let group = "120363000000000001@g.us";
    let mut lid = message(
        from + 5,
        "123456789012345@lid",
        false,
        "conversation",
        "Dora",
    );
    lid["data"]["key"]["remoteJidAlt"] = json!("5511944440004@s.whatsapp.net");
    vec![
        message(
            from,
            "5511911110001@s.whatsapp.net",
            false,
            "conversation",
            "Ana",
        ),
        message(
            from + 1,
            "5511911110001@s.whatsapp.net",
            true,
            "conversation",
            "Bruno",
        ),
        message(from + 2, group, false, "imageMessage", "Alice"),
        message(from + 3, "status@broadcast", false, "imageMessage", "Carla"),
        message(
            from + 4,
            "5511922220002@s.whatsapp.net",
            false,
            "audioMessage",
            "Alberto",
        ),
        lid,
        message(from + 6, group, true, "conversation", "Andre"),
        message(
            from + 7,
            "5511944440004@s.whatsapp.net",
            false,
            "imageMessage",
            "Eva",
        ),
        message(from + 8, "status@broadcast", true, "conversation", "Amanda"),
        json!({"event": "connection.update", "data": {"state": "open", "n": from + 9}}),
    ]
}

/// What each filter selects of `stream(0)`, by `n`.
const BOT: &[u64] = &[0, 4, 5, 7];
const CRM: &[u64] = &[0, 1, 4, 5, 7];
const ESCALATION: &[u64] = &[0, 1, 5, 7];
const IMAGES: &[u64] = &[2, 3, 7];
const A_NAMES: &[u64] = &[0, 2, 4, 6, 8];

async fn send(s: &TestServer, method: Method, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .req(method, path)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ingest(s: &TestServer, instance: &str, events: Vec<Value>) {
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
}

/// The `data.n` of what `receiver` got on `path`, in arrival order.
fn numbers(receiver: &support::Receiver, path: &str) -> Vec<u64> {
    receiver
        .delivered()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.json()["data"]["n"].as_u64().expect("a numbered event"))
        .collect()
}

/// Waits until subscription `id` has committed its cursor to the log's end: everything it
/// was going to deliver is delivered, and what it filtered is behind its cursor too.
async fn drained(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = s.get(&format!("/subscriptions/{id}")).await;
        assert_eq!(status, 200, "{v}");
        let st = &v["status"];
        if st["cursor"].as_u64() >= st["log_end"].as_u64() && st["log_end"].as_u64() > Some(0) {
            return v;
        }
        assert!(Instant::now() < deadline, "{id} not drained: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `n` envelopes' `data.n`, then checks that nothing else arrives for a moment.
async fn listener_numbers(listener: &mut ws::Ws, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        match ws::next(listener, Duration::from_secs(10)).await {
            Next::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v.get("subscribed").is_some() {
                    continue;
                }
                got.push(v["data"]["n"].as_u64().expect("a numbered event"));
            }
            Next::Closed(frame) => panic!("closed after {got:?}: {frame:?}"),
        }
    }
    ws::assert_quiet(listener, Duration::from_millis(300)).await;
    got
}

struct Setup {
    instance: String,
    ids: Vec<(&'static str, String, &'static [u64])>,
}

/// The five subscriptions, each through a different API, all to `receiver`.
async fn subscribe(s: &TestServer, receiver: &support::Receiver) -> Setup {
    let url = |path: &str| format!("{}/{path}", receiver.url);
    // 1. A bot: incoming direct messages only, set with the instance (`/instance/create`).
    let instance = unique("filters");
    let body = json!({"instanceName": instance, "number": "5511999990000",
        "webhook": {"enabled": true, "url": url("bot"), "filter": bot(), "policy": in_order()}});
    let (status, created) = s.post("/instance/create", &body).await;
    assert_eq!(status, 201, "{created}");
    let instance_id = created["instance"]["instanceId"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, found) = s.get(&format!("/webhook/find/{instance}")).await;
    assert_eq!(found["filter"], bot(), "shown back as stored: {found}");

    // 2. A CRM: no groups, no status broadcasts (CodeChat's per-instance webhooks).
    let body = json!({"name": "crm", "url": url("crm"), "enabled": true,
                      "filter": crm(), "policy": in_order()});
    let path = format!("/api/v2/instance/{instance}/webhook");
    let (status, hook) = send(s, Method::POST, &path, body).await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["filter"], crm(), "{hook}");
    let crm_id = format!("codechat:{}", hook["webhookId"].as_str().expect("id"));

    // 3. An escalation flow: two customers' chats, by phone number in any spelling; the
    // @lid chat matches through its phone JID (Ventia's account-wide webhooks).
    let body = json!({"active": true, "name": "escalation", "callbackUrl": url("escalation"),
                      "topics": ["messages.upsert"], "filter": escalation(),
                      "policy": in_order()});
    let (status, v) = send(s, Method::POST, "/webhooks", body).await;
    assert_eq!(status, 200, "{v}");
    let ventia_id = v["id"].as_str().expect("id").to_owned();
    let (_, got) = s.get(&format!("/webhooks/{ventia_id}")).await;
    assert_eq!(got["result"]["filter"], escalation(), "{got}");

    // 4. Images only (Linq's account-wide subscriptions).
    let body = json!({"target_url": url("images"), "subscribed_events": ["message.received"],
                      "filter": images(), "policy": in_order()});
    let (status, v) = send(s, Method::POST, "/v3/webhook-subscriptions", body).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["filter"], images(), "{v}");
    let linq_id = format!("linq:{}", v["id"].as_str().expect("id"));

    // 5. An expression on `data.pushName`, laid on the config-defined global webhook.
    let body = json!({"filter": a_names(), "policy": in_order()});
    let (status, v) = send(s, Method::PATCH, "/subscriptions/global:webhook", body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["filter"], a_names(), "{v}");
    assert_eq!(v["policy"], in_order(), "{v}");

    Setup {
        instance,
        ids: vec![
            ("/hook/bot", format!("webhook:{instance_id}"), BOT),
            ("/hook/crm", crm_id, CRM),
            (
                "/hook/escalation",
                format!("ventia:{ventia_id}"),
                ESCALATION,
            ),
            ("/hook/images", linq_id, IMAGES),
            ("/hook/global", "global:webhook".to_owned(), A_NAMES),
        ],
    }
}

fn server_env(global: &str) -> Vec<(&str, &str)> {
    let mut env = PRIVATE.to_vec();
    env.extend([
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
        ("WEBHOOK_GLOBAL_URL", global),
    ]);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscription_and_listener_receives_exactly_what_its_filter_selects() {
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let global = format!("{}/global", receiver.url);
    let s = TestServer::start(&server_env(&global));
    let setup = subscribe(&s, &receiver).await;
    let instance = &setup.instance;

    // Listeners: the bot's filter in the query string; the pushName expression in a
    // subscribe message.
    let query = format!(
        "/ws?apikey={}&instance={instance}&from_me=false&chat_types=direct",
        s.key
    );
    let mut bot_listener = ws::connect(&s, &query).await;
    let mut a_listener = ws::connect(&s, &format!("/ws?apikey={}", s.key)).await;
    let subscribe = json!({"action": "subscribe", "instances": [instance],
                           "filter": a_names()});
    a_listener
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("send subscribe");
    match ws::next(&mut a_listener, Duration::from_secs(5)).await {
        Next::Text(t) => {
            let ack: Value = serde_json::from_str(&t).expect("JSON");
            assert_eq!(ack["subscribed"]["filter"], a_names(), "shown back: {t}");
        }
        Next::Closed(frame) => panic!("closed: {frame:?}"),
    }

    ingest(&s, instance, stream(0)).await;

    for (path, id, expected) in &setup.ids {
        let status = drained(&s, id).await;
        assert_eq!(&numbers(&receiver, path), expected, "{path} ({id})");
        // Everything it did not deliver of the stream it filtered (the Linq and Ventia
        // ones select messages.upsert by name first: the connection.update is not theirs).
        let selected_by_name = if path.ends_with("images") || path.ends_with("escalation") {
            9
        } else {
            10
        };
        assert_eq!(
            status["status"]["filtered"].as_u64(),
            Some(selected_by_name - expected.len() as u64),
            "{path}: {status}"
        );
    }
    assert_eq!(listener_numbers(&mut bot_listener, BOT.len()).await, BOT);
    assert_eq!(
        listener_numbers(&mut a_listener, A_NAMES.len()).await,
        A_NAMES
    );
    println!(
        "mixed stream, five subscriptions and two listeners: {:?}",
        started.elapsed()
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_survive_a_sigkill_and_keep_filtering() {
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let global = format!("{}/global", receiver.url);
    let mut s = TestServer::start(&server_env(&global));
    let setup = subscribe(&s, &receiver).await;
    let instance = setup.instance.clone();
    let (_, before) = s.get("/subscriptions?limit=100").await;

    s.kill();
    s.restart();

    // Shown back exactly as stored, through every API that made them.
    let (_, after) = s.get("/subscriptions?limit=100").await;
    let shapes = |v: &Value| -> Vec<(Value, Value, Value)> {
        let mut out: Vec<_> = v["subscriptions"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|x| (x["id"].clone(), x["filter"].clone(), x["policy"].clone()))
            .collect();
        out.sort_by_key(|(id, _, _)| id.to_string());
        out
    };
    assert_eq!(shapes(&after), shapes(&before), "{after}");
    assert_eq!(shapes(&after).len(), 5, "{after}");
    let (_, found) = s.get(&format!("/webhook/find/{instance}")).await;
    assert_eq!(found["filter"], bot(), "{found}");
    let (_, v) = s.get("/subscriptions/global:webhook").await;
    assert_eq!(v["filter"], a_names(), "{v}");

    // And they still filter: the stream again, after the restart.
    ingest(&s, &instance, stream(0)).await;
    for (path, id, expected) in &setup.ids {
        drained(&s, id).await;
        assert_eq!(
            &numbers(&receiver, path),
            expected,
            "{path} ({id}) after a restart"
        );
    }

    // A PATCH with null clears the filter: the global webhook then gets everything.
    let body = json!({"filter": null});
    let (status, v) = send(&s, Method::PATCH, "/subscriptions/global:webhook", body).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("filter").is_none(), "cleared: {v}");
    assert_eq!(v["policy"], in_order(), "the policy stays: {v}");
    ingest(&s, &instance, stream(100)).await;
    drained(&s, "global:webhook").await;
    let all: Vec<u64> = (100..110).collect();
    let got = numbers(&receiver, "/hook/global");
    assert_eq!(&got[A_NAMES.len()..], all, "{got:?}");
    println!("filters across a SIGKILL: {:?}", started.elapsed());
    cancel.cancel();
}

#[tokio::test]
async fn bad_filters_are_refused_with_the_envelope_naming_the_path() {
    let s = TestServer::start(PRIVATE);
    let instance = unique("badfilter");
    s.create_instance(&instance, json!({})).await;
    let url = "http://127.0.0.1:9/hook";
    let refused = |status: u16, v: &Value, path: &str| {
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["success"], json!(false), "{v}");
        assert_eq!(v["error"]["status"], json!(400), "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`{path}`")), "{path}: {v}");
    };
    for (filter, path) in [
        (
            json!({"chat_types": ["dm"]}),
            "webhook.filter.chat_types[0]",
        ),
        (json!({"chat_types": []}), "webhook.filter.chat_types"),
        (json!({"from_me": "yes"}), "webhook.filter.from_me"),
        (
            json!({"chats": {"allow": ["+55 11", "5511911110001"]}}),
            "webhook.filter.chats.allow[0]",
        ),
        (json!({"chats": {"only": []}}), "webhook.filter.chats.only"),
        (
            json!({"message_types": ["image message"]}),
            "webhook.filter.message_types[0]",
        ),
        (
            json!({"match": {"data.pushName": {"$begins": "A"}}}),
            "webhook.filter.match.data.pushName.$begins",
        ),
        (json!({"fromMe": false}), "webhook.filter.fromMe"),
        (json!(["direct"]), "webhook.filter"),
    ] {
        let body = json!({"webhook": {"enabled": true, "url": url, "filter": filter}});
        let (status, v) = s.post(&format!("/webhook/set/{instance}"), &body).await;
        refused(status, &v, path);
    }
    // The same shape everywhere a subscription is made.
    let body = json!({"instanceName": unique("badcreate"),
                      "rabbitmq": {"enabled": true, "filter": {"chat_types": ["dm"]}}});
    let (status, v) = s.post("/instance/create", &body).await;
    refused(status, &v, "rabbitmq.filter.chat_types[0]");
    let body = json!({"name": "x", "url": url, "filter": {"from_me": 1}});
    let path = format!("/api/v2/instance/{instance}/webhook");
    let (status, v) = send(&s, Method::POST, &path, body).await;
    refused(status, &v, "filter.from_me");
    let body = json!({"active": true, "name": "x", "callbackUrl": url,
                      "filter": {"participants": {"deny": ["nobody"]}}});
    let (status, v) = send(&s, Method::POST, "/webhooks", body).await;
    refused(status, &v, "filter.participants.deny[0]");
    let body = json!({"target_url": url, "subscribed_events": ["message.received"],
                      "filter": {"message_types": "imageMessage"}});
    let (status, v) = send(&s, Method::POST, "/v3/webhook-subscriptions", body).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("filter.message_types"), "{v}");
    // Nothing above was stored; a good one is, and PATCH refuses bad ones on it.
    let body = json!({"webhook": {"enabled": true, "url": url, "filter": bot()}});
    let (status, v) = s.post(&format!("/webhook/set/{instance}"), &body).await;
    assert_eq!(status, 201, "{v}");
    let (_, subs) = s.get("/subscriptions").await;
    let list = subs["subscriptions"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "only the good one was stored: {subs}");
    let id = list[0]["id"].as_str().expect("a subscription").to_owned();
    let body = json!({"filter": {"match": {"$or": []}}});
    let (status, v) = send(&s, Method::PATCH, &format!("/subscriptions/{id}"), body).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("`filter.match"), "{v}");
    let body = json!({"filters": {}});
    let (status, v) = send(&s, Method::PATCH, &format!("/subscriptions/{id}"), body).await;
    refused(status, &v, "filters");
    // Listeners: a bad query parameter is a 400 before the upgrade.
    let query = format!("/ws?apikey={}&chat_types=dm", s.key);
    let Err((status, v)) = ws::try_connect(&s, &query).await else {
        panic!("a listener with a bad filter was let in: {query}");
    };
    refused(status, &v, "chat_types");
    let query = format!("/ws?apikey={}&from_me=maybe", s.key);
    let Err((status, v)) = ws::try_connect(&s, &query).await else {
        panic!("a listener with a bad filter was let in: {query}");
    };
    refused(status, &v, "from_me");
}
