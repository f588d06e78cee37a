//! Delivery through the real server: Evolution's API sets signed webhooks, events go in over
//! HTTP, a chaotic receiver answers 500 to half the requests and stalls some past the
//! timeout, and the server is SIGKILLed midway and restarted. Every event still arrives, in
//! order per instance, duplicates only from the in-flight window, every signature verifies
//! with the PyPI `standardwebhooks` package; then dead letters, redrive and replay over HTTP.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{unique, TestServer};
use serde_json::{json, Value};
use switchyard::sinks::webhook::SigningKey;
use tokio_util::sync::CancellationToken;

const FAST_RETRIES: &[(&str, &str)] = &[
    ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOK_REQUEST_TIMEOUT_MS", "300"),
    ("WEBHOOK_RETRY_MAX_ATTEMPTS", "1000"),
    ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.05"),
    ("WEBHOOK_RETRY_JITTER_FACTOR", "0.2"),
];

async fn set_webhook(s: &TestServer, instance: &str, url: &str, secret: Option<&str>) {
    let mut hook = json!({"enabled": true, "url": url, "events": []});
    if let Some(secret) = secret {
        hook["secret"] = json!(secret);
    }
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": hook}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

/// Evolution's `jwt_key` in a webhook's `headers`: never sent as a header nor shown by
/// `/webhook/find`; every request carries `Authorization: Bearer <JWT>` that the receiver
/// verifies with the key (HS256, Evolution's claims, valid for 600 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_key_header_becomes_a_bearer_jwt_and_is_never_shown() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = TestServer::start(FAST_RETRIES);
    let instance = unique("jwt");
    s.create_instance(&instance, json!({})).await;
    let key = unique("jwt-key-secret");
    let hook = json!({"enabled": true, "url": receiver.url, "events": [],
        "headers": {"jwt_key": key, "x-tenant": "acme"}});
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": hook}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(!v.to_string().contains(&key), "set echoes no key: {v}");
    let (status, found) = s.get(&format!("/webhook/find/{instance}")).await;
    assert_eq!(status, 200, "{found}");
    assert!(
        !found.to_string().contains(&key),
        "find shows no key: {found}"
    );
    assert_eq!(found["headers"], json!({"x-tenant": "acme"}), "{found}");
    assert_eq!(found["jwt"], true, "{found}");

    let empty = json!({"webhook": {"enabled": true, "url": receiver.url,
        "headers": {"jwt_key": ""}}});
    let (status, v) = s.post(&format!("/webhook/set/{instance}"), &empty).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("headers.jwt_key"), "{v}");

    s.ingest_numbered(&instance, 0, 3).await;
    support::wait_for("3 deliveries", Duration::from_secs(30), || {
        receiver.delivered().len() >= 3
    })
    .await;
    cancel.cancel();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iat"]);
    let now = chrono::Utc::now().timestamp();
    for r in receiver.delivered() {
        assert!(!r.headers.contains_key("jwt_key"), "{:?}", r.headers);
        assert!(
            !r.headers.values().any(|v| v.contains(&key)),
            "{:?}",
            r.headers
        );
        assert_eq!(r.headers.get("x-tenant").map(String::as_str), Some("acme"));
        let token = r.headers["authorization"]
            .strip_prefix("Bearer ")
            .expect("a bearer token");
        let claims = jsonwebtoken::decode::<Value>(
            token,
            &DecodingKey::from_secret(key.as_bytes()).unwrap(),
            &validation,
        )
        .expect("the JWT verifies with the key")
        .claims;
        assert_eq!(claims["app"], "evolution", "{claims}");
        assert_eq!(claims["action"], "webhook", "{claims}");
        let iat = claims["iat"].as_i64().expect("iat");
        assert_eq!(claims["exp"].as_i64(), Some(iat + 600), "{claims}");
        assert!((now - 60..=now).contains(&iat), "iat {iat}, now {now}");
        let wrong = DecodingKey::from_secret(b"another key").unwrap();
        assert!(jsonwebtoken::decode::<Value>(token, &wrong, &validation).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_and_sigkill_lose_nothing_and_keep_order() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    receiver.behaviour.fail_percent.store(50, Ordering::SeqCst);
    receiver.behaviour.stall_percent.store(1, Ordering::SeqCst);
    receiver.behaviour.stall_ms.store(600, Ordering::SeqCst);
    let mut s = TestServer::start(FAST_RETRIES);
    let secret = SigningKey::generate_secret();
    let instances: Vec<String> = (0..5).map(|i| unique(&format!("chaos{i}"))).collect();
    for i in &instances {
        s.create_instance(i, json!({})).await;
        set_webhook(&s, i, &receiver.url, Some(&secret)).await;
    }
    const PER_INSTANCE: usize = 1000;
    const BATCH: usize = 100;
    for b in 0..PER_INSTANCE / BATCH {
        if b == PER_INSTANCE / BATCH / 2 {
            // Midway: wait until deliveries are flowing, then SIGKILL and restart.
            support::wait_for(
                "some deliveries before the kill",
                Duration::from_secs(60),
                || receiver.delivered().len() >= 500,
            )
            .await;
            s.kill();
            s.restart();
        }
        for i in &instances {
            s.ingest_numbered(i, b * BATCH, BATCH).await;
        }
    }
    let total = instances.len() * PER_INSTANCE;
    support::wait_for("every event delivered", Duration::from_secs(240), || {
        let seen: HashSet<(String, u64)> = receiver
            .delivered()
            .iter()
            .map(|r| (r.instance(), r.sequence()))
            .collect();
        seen.len() >= total
    })
    .await;
    cancel.cancel();

    let delivered = receiver.delivered();
    for r in &delivered {
        let v = r.json();
        assert_eq!(v["destination"], json!(receiver.url));
        assert_eq!(
            r.headers.get("webhook-id").map(String::as_str),
            v["id"].as_str()
        );
    }
    let (first_success, duplicates) = support::first_successes(&delivered);
    support::assert_first_successes_in_order(&first_success, PER_INSTANCE);
    for instance in first_success.keys() {
        // The log gives each instance's events consecutive positions within a batch; no gaps
        // means every ingested event of the instance arrived.
        let ns: Vec<u64> = delivered
            .iter()
            .filter(|r| r.instance() == *instance)
            .map(|r| r.json()["data"]["n"].as_u64().unwrap_or(u64::MAX))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(ns.len(), PER_INSTANCE, "{instance}: payloads missing");
    }
    // Redelivery after a crash is bounded by the in-flight window, not the history.
    assert!(duplicates < 2_000, "{duplicates} duplicates");
    let signed: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.status != 0)
        .collect();
    let verified = support::verify_with_standardwebhooks(&secret, &signed);
    assert_eq!(verified, signed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_redrive_and_replay_over_http() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    receiver.set_status(503);
    let mut env = FAST_RETRIES.to_vec();
    env.retain(|(k, _)| *k != "WEBHOOK_RETRY_MAX_ATTEMPTS");
    env.push(("WEBHOOK_RETRY_MAX_ATTEMPTS", "3"));
    let s = TestServer::start(&env);
    let inst = unique("dlq");
    s.create_instance(&inst, json!({})).await;
    set_webhook(&s, &inst, &receiver.url, None).await;
    s.ingest_numbered(&inst, 0, 5).await;

    let (_, subs) = s.get("/subscriptions").await;
    let sub = subs["subscriptions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["instance"] == json!(inst)))
        .cloned()
        .expect("the webhook is a subscription");
    let id = sub["id"].as_str().expect("id").to_string();
    let mut letters = Value::Null;
    for _ in 0..400 {
        let (_, v) = s.get(&format!("/subscriptions/{id}/dead-letters")).await;
        if v["dead_letters"].as_array().is_some_and(|a| a.len() == 5) {
            letters = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let letters = letters["dead_letters"]
        .as_array()
        .cloned()
        .expect("5 dead letters");
    assert_eq!(
        letters[0]["attempts"].as_array().map(Vec::len),
        Some(3),
        "{letters:?}"
    );
    let (_, status) = s.get(&format!("/subscriptions/{id}")).await;
    assert_eq!(status["status"]["dead_letters"], json!(5), "{status}");
    assert!(
        status["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{status}"
    );

    // The endpoint recovers: redrive delivers every dead letter.
    receiver.set_status(0);
    let (code, v) = s
        .post(
            &format!("/subscriptions/{id}/dead-letters/redrive"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["redriven"], json!(5));
    support::wait_for("redriven events delivered", Duration::from_secs(30), || {
        receiver.delivered().len() == 5
    })
    .await;

    // Replay from 0 delivers the whole history again.
    let (code, v) = s
        .post(
            &format!("/subscriptions/{id}/replay"),
            &json!({"from_sequence": 0}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    support::wait_for(
        "replayed history delivered",
        Duration::from_secs(30),
        || receiver.delivered().len() == 10,
    )
    .await;
    let (code, v) = s
        .post(&format!("/subscriptions/{id}/replay"), &json!({}))
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = s.get("/subscriptions/nope").await;
    assert_eq!(code, 404);
    cancel.cancel();
}

#[tokio::test]
async fn private_targets_are_refused_by_default() {
    let s = TestServer::start(&[
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.02"),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "2"),
    ]);
    let inst = unique("ssrf");
    s.create_instance(&inst, json!({})).await;
    set_webhook(&s, &inst, "http://127.0.0.1:9/hook", None).await;
    s.ingest_numbered(&inst, 0, 1).await;
    let (_, subs) = s.get("/subscriptions").await;
    let id = subs["subscriptions"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, v) = s.get(&format!("/subscriptions/{id}/dead-letters")).await;
        if v["dead_letters"].as_array().is_some_and(|a| !a.is_empty()) {
            last = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let reason = last["dead_letters"][0]["attempts"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("private") || reason.contains("loopback") || reason.contains("refused"),
        "{last}"
    );
}

/// The server's durable cursors, read where its engine keeps them: the embedded log's
/// cursor file, or the Kafka engine's compacted cursor topic (through the engine's own
/// client, as another process of the cluster would read it).
enum Cursors {
    Embedded(std::path::PathBuf),
    Kafka(switchyard::log::kafka::KafkaLog, CancellationToken),
}

impl Cursors {
    async fn of(s: &TestServer) -> Cursors {
        let Some(prefix) = s.kafka_topic_prefix() else {
            return Cursors::Embedded(s.data_dir().join("events").join("cursors"));
        };
        let partitions: i32 = common::kafka_test_partitions()
            .parse()
            .expect("SWITCHYARD_TEST_KAFKA_PARTITIONS is a number");
        let options = common::kafka_log_options(&prefix, partitions);
        let cancel = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let log = switchyard::log::kafka::KafkaLog::open(options, cancel.clone(), &tasks)
            .await
            .expect("open the server's Kafka log");
        Cursors::Kafka(log, cancel)
    }

    async fn names(&self) -> Vec<String> {
        match self {
            Cursors::Embedded(path) => {
                let Ok(text) = std::fs::read_to_string(path) else {
                    return Vec::new();
                };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                v["cursors"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            }
            Cursors::Kafka(log, _) => {
                use switchyard::log::EventLog;
                let mut names = Vec::new();
                for partition in &log.events {
                    let cursors = partition.cursors().await.expect("read the cursor topic");
                    names.extend(cursors.into_iter().map(|(name, _)| name));
                }
                names
            }
        }
    }

    /// Waits (bounded) until the cursor names satisfy `cond`.
    async fn wait_for(&self, what: &str, cond: impl Fn(&[String]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let names = self.names().await;
            if cond(&names) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; cursors: {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cursors {
    fn drop(&mut self) {
        if let Cursors::Kafka(_, cancel) = self {
            cancel.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_instance_releases_its_cursor_for_retention() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = TestServer::start(FAST_RETRIES);
    let inst = unique("gone");
    s.create_instance(&inst, json!({})).await;
    set_webhook(&s, &inst, &receiver.url, None).await;
    s.ingest_numbered(&inst, 0, 3).await;
    support::wait_for("delivery", Duration::from_secs(30), || {
        receiver.delivered().len() == 3
    })
    .await;
    let cursors = Cursors::of(&s).await;
    cursors
        .wait_for("a committed cursor", |names| !names.is_empty())
        .await;
    let r = s
        .req(reqwest::Method::DELETE, &format!("/instance/delete/{inst}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    cursors
        .wait_for("the cursor to be deleted", |names| names.is_empty())
        .await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_webhook_from_evolution_env_gets_every_instance_filtered_by_event() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let url = receiver.url.clone();
    let mut env = FAST_RETRIES.to_vec();
    env.extend([
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
        ("WEBHOOK_GLOBAL_URL", url.as_str()),
        ("WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS", "true"),
        ("WEBHOOK_EVENTS_CALL", "true"),
        ("WEBHOOK_EVENTS_MESSAGES_UPSERT", "false"),
    ]);
    let s = TestServer::start(&env);
    let a = unique("ga");
    let b = unique("gb");
    for inst in [&a, &b] {
        s.create_instance(inst, json!({})).await;
        let (status, _) = s
            .post(
                &format!("/ingest/{inst}"),
                &json!({"events": [{"event": "call", "data": {}}, {"event": "messages.upsert", "data": {}}]}),
            )
            .await;
        assert_eq!(status, 202);
    }
    support::wait_for("two calls delivered", Duration::from_secs(30), || {
        receiver.delivered().len() >= 2
    })
    .await;
    // Nothing else is coming: the upserts are filtered out, not late.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 2);
    let instances: HashSet<String> = delivered.iter().map(|r| r.instance()).collect();
    assert_eq!(instances, HashSet::from([a.clone(), b.clone()]));
    for r in &delivered {
        assert_eq!(r.json()["event"], json!("call"));
        assert_eq!(r.path, "/hook/call", "byEvents appends the kebab event");
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_tokens_ride_in_apikey_and_short_tokens_are_accepted() {
    // AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES: Evolution's envelopes carry the instance
    // token as `apikey`, per-instance and global webhooks alike. "123456" is the seed's own
    // example token: accepted (with a warning), as Evolution does.
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let global_url = format!("{}/global", receiver.url);
    let mut env = FAST_RETRIES.to_vec();
    env.extend([
        ("AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES", "true"),
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
        ("WEBHOOK_GLOBAL_URL", global_url.as_str()),
    ]);
    let s = TestServer::start(&env);
    let short = unique("short");
    let long = unique("long");
    let tokens = [
        (&short, "123456"),
        (&long, "a-much-longer-token-0123456789"),
    ];
    for (instance, token) in tokens {
        let (status, created) = s
            .post(
                "/instance/create",
                &json!({"instanceName": instance, "token": token}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["hash"]["apikey"], json!(token));
        let own = format!("{}/own", receiver.url);
        set_webhook(&s, instance, &own, None).await;
    }
    // The short token works as a key, scoped to its instance.
    let response = reqwest::Client::new()
        .get(s.url("/instance/fetchInstances"))
        .header("apikey", "123456")
        .send()
        .await
        .expect("fetchInstances");
    assert_eq!(response.status().as_u16(), 200);
    let list: Value = response.json().await.expect("a JSON list");
    let names: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, [short.as_str()], "{list}");
    for (instance, _) in tokens {
        let (status, v) = s
            .post(
                &format!("/ingest/{instance}"),
                &json!({"event": "messages.upsert", "data": {"key": {"id": "M1"}}}),
            )
            .await;
        assert_eq!(status, 202, "{v}");
    }
    support::wait_for("4 deliveries", Duration::from_secs(30), || {
        receiver.delivered().len() >= 4
    })
    .await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 4);
    for (instance, token) in tokens {
        for path in ["/hook/own", "/hook/global"] {
            let got: Vec<_> = delivered
                .iter()
                .filter(|r| r.instance() == *instance && r.path == path)
                .collect();
            assert_eq!(got.len(), 1, "{instance} at {path}");
            assert_eq!(
                got[0].json()["apikey"],
                json!(token),
                "{instance} at {path}"
            );
        }
    }
    cancel.cancel();
}
