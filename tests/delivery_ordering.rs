//! Ordering per chat through the real server: one instance, 20 chats, a receiver that fails
//! every request about one chat for about 20 s. The other chats keep flowing meanwhile; the
//! failing chat is parked (the cursor moves on, its events wait durably); the server is
//! SIGKILLed and restarted while that chat is parked; when the receiver recovers, the
//! failing chat's events arrive complete and in order, and nothing is lost anywhere. Also: `policy.ordering` is accepted, echoed and validated on every API that
//! creates a subscription.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const FAST_RETRIES: &[(&str, &str)] = &[
    ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000"),
    ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.2"),
];

const CHATS: usize = 20;

fn chat(c: usize) -> String {
    format!("55119{c:08}@s.whatsapp.net")
}

/// One message per chat, `n` in each body; returns when the server answered 202.
async fn ingest_round(s: &TestServer, instance: &str, n: usize) {
    let events: Vec<Value> = (0..CHATS)
        .map(|c| {
            json!({"event": "messages.upsert",
                   "data": {"key": {"remoteJid": chat(c), "fromMe": false, "id": format!("M{c}-{n}")},
                            "n": n}})
        })
        .collect();
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
}

/// The delivery status of the instance's one subscription.
async fn subscription_status(s: &TestServer, instance: &str) -> Value {
    let (status, v) = s.get("/subscriptions").await;
    assert_eq!(status, 200, "{v}");
    v["subscriptions"]
        .as_array()
        .and_then(|subs| subs.iter().find(|sub| sub["instance"] == json!(instance)))
        .map(|sub| sub["status"].clone())
        .unwrap_or_else(|| panic!("no subscription of {instance}: {v}"))
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chat_holds_back_only_itself_across_a_sigkill() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let poisoned = chat(7);
    *receiver.behaviour.failing_chat.lock().unwrap() = Some(poisoned.clone());
    let mut s = TestServer::start(FAST_RETRIES);
    let instance = unique("chats");
    s.create_instance(&instance, json!({})).await;
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": receiver.url, "policy": {"ordering": "chat"}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["policy"], json!({"ordering": "chat"}), "{v}");
    // Warm-up: one message of another chat, delivered before the clock starts (the Kafka
    // engine assigns its partitions first).
    let warm_up = chat(99);
    let (status, v) = s
        .post(
            &format!("/ingest/{instance}"),
            &json!({"events": [{"event": "messages.upsert",
                                "data": {"key": {"remoteJid": warm_up, "id": "W"}, "n": 0}}]}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    support::wait_for("the warm-up message", Duration::from_secs(60), || {
        receiver.delivered().iter().any(|r| r.chat() == warm_up)
    })
    .await;

    // Phase 1: 15 s of steady traffic, one message per chat every 100 ms.
    let mut ingested: HashMap<(String, u64), Instant> = HashMap::new();
    let mut n = 0usize;
    let phase_one = Instant::now() + Duration::from_secs(15);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < phase_one {
        tick.tick().await;
        ingest_round(&s, &instance, n).await;
        let at = Instant::now();
        for c in 0..CHATS {
            ingested.insert((chat(c), n as u64), at);
        }
        n += 1;
    }
    // Let the last round arrive, then measure the healthy chats' ingest -> delivery time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut first_arrival: HashMap<(String, u64), Instant> = HashMap::new();
    for r in receiver
        .delivered()
        .into_iter()
        .filter(|r| r.chat() != warm_up)
    {
        let key = (r.chat(), r.json()["data"]["n"].as_u64().unwrap());
        first_arrival.entry(key).or_insert(r.at);
    }
    let latencies: Vec<f64> = ingested
        .iter()
        .filter(|((c, _), _)| *c != poisoned)
        .map(|(key, at)| {
            let arrived = first_arrival.get(key).unwrap_or_else(|| {
                panic!("{key:?} of a healthy chat not delivered while chat 7 fails")
            });
            arrived.saturating_duration_since(*at).as_secs_f64() * 1e3
        })
        .collect();
    let p99 = percentile(latencies.clone(), 0.99);
    let p50 = percentile(latencies, 0.5);
    println!("healthy chats while one fails: p50 {p50:.1} ms, p99 {p99:.1} ms over {n} rounds");
    assert!(
        p99 < 200.0,
        "healthy chats p99 {p99:.1} ms (must be < 200 ms)"
    );
    assert!(
        !first_arrival.keys().any(|(c, _)| *c == poisoned),
        "the failing chat's receiver accepted nothing"
    );
    // The failing chat is parked: all its events wait, none of them holds the cursor.
    let status = subscription_status(&s, &instance).await;
    println!("while chat 7 fails: {status}");
    assert_eq!(
        status["parked"],
        json!(n),
        "every event of chat 7 parked: {status}"
    );
    assert_eq!(
        status["position"], status["log_end"],
        "the cursor moved past the parked chat: {status}"
    );
    let healthy_before_kill = receiver
        .delivered()
        .iter()
        .filter(|r| r.chat() != warm_up && r.chat() != poisoned)
        .count();
    // The committed cursor catches up within a commit interval.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 2: SIGKILL and restart while the chat is parked; more traffic after it.
    s.kill();
    s.restart();
    for _ in 0..40 {
        tick.tick().await;
        ingest_round(&s, &instance, n).await;
        n += 1;
    }
    let mut status = subscription_status(&s, &instance).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while status["parked"].as_u64() < Some(n as u64) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = subscription_status(&s, &instance).await;
    }
    assert!(
        status["parked"].as_u64() >= Some(n as u64),
        "the parked chat is restored after SIGKILL: {status}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    *receiver.behaviour.failing_chat.lock().unwrap() = None;
    let recovered_at = Instant::now();

    // Everything arrives: every (chat, n) at least once; each chat's first deliveries in
    // sequence order (the restart may repeat what was in flight, never reorder a chat).
    let total = CHATS * n;
    support::wait_for("every event delivered", Duration::from_secs(120), || {
        let seen: HashSet<(String, u64)> = receiver
            .delivered()
            .iter()
            .filter(|r| r.chat() != warm_up)
            .map(|r| (r.chat(), r.json()["data"]["n"].as_u64().unwrap_or(u64::MAX)))
            .collect();
        seen.len() >= total
    })
    .await;
    println!(
        "the parked chat's {n} events delivered {:.1} s after the receiver recovered",
        recovered_at.elapsed().as_secs_f64()
    );
    let mut per_chat: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    let mut seen = HashSet::new();
    for r in receiver
        .delivered()
        .into_iter()
        .filter(|r| r.chat() != warm_up)
    {
        let n = r.json()["data"]["n"].as_u64().unwrap();
        if seen.insert((r.chat(), n)) {
            per_chat
                .entry(r.chat())
                .or_default()
                .push((r.sequence(), n));
        }
    }
    assert_eq!(per_chat.len(), CHATS);
    // The cursor had moved past the parked chat, so the restart did not send the healthy
    // chats' history again (before parking, it sent everything since chat 7's first event).
    let healthy_total = receiver
        .delivered()
        .iter()
        .filter(|r| r.chat() != warm_up && r.chat() != poisoned)
        .count();
    let healthy_unique = (CHATS - 1) * n;
    let repeated = healthy_total.saturating_sub(healthy_unique);
    println!(
        "healthy chats: {healthy_unique} events, {repeated} sent again after the SIGKILL \
         ({healthy_before_kill} delivered before it)"
    );
    assert!(
        repeated < healthy_before_kill / 10,
        "{repeated} healthy events sent again after the restart"
    );
    let mut status = subscription_status(&s, &instance).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while status["parked"] != json!(0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = subscription_status(&s, &instance).await;
    }
    assert_eq!(
        status["parked"],
        json!(0),
        "nothing parked at the end: {status}"
    );
    for (c, firsts) in &per_chat {
        assert_eq!(firsts.len(), n, "{c}: every event");
        assert!(
            firsts
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
            "{c}: first deliveries out of order"
        );
    }
    cancel.cancel();
}

#[tokio::test]
async fn policy_ordering_is_set_echoed_and_validated_on_every_api() {
    let s = TestServer::start(&[("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true")]);
    let instance = unique("policy");
    // Instance create, v2 body: per sink object.
    let (status, v) = s
        .post(
            "/instance/create",
            &json!({"instanceName": instance, "webhook": {"enabled": true, "url": "http://127.0.0.1:9/h",
                    "policy": {"ordering": "instance"}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = s.get(&format!("/webhook/find/{instance}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["policy"], json!({"ordering": "instance"}), "{v}");

    // /{sink}/set: each sink object, and the errors name the field.
    let (status, v) = s
        .post(
            &format!("/rabbitmq/set/{instance}"),
            &json!({"rabbitmq": {"enabled": false, "policy": {"ordering": "none"}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["policy"], json!({"ordering": "none"}), "{v}");
    for (body, field) in [
        (
            json!({"policy": {"ordering": "per-chat"}}),
            "webhook.policy.ordering",
        ),
        (
            json!({"policy": {"orderng": "chat"}}),
            "webhook.policy.orderng",
        ),
        (json!({"policy": "chat"}), "webhook.policy"),
    ] {
        let mut hook = json!({"enabled": true, "url": "http://127.0.0.1:9/h"});
        hook.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let (status, v) = s
            .post(
                &format!("/webhook/set/{instance}"),
                &json!({"webhook": hook}),
            )
            .await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v.to_string().contains(field),
            "the error names `{field}`: {v}"
        );
    }
    // Without a policy nothing is echoed (the server's default applies).
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": "http://127.0.0.1:9/h"}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(v.get("policy").is_none(), "{v}");

    // The named-webhook APIs take it at their top level.
    let (status, v) = s
        .post(
            &format!("/api/v2/instance/{instance}/webhook"),
            &json!({"name": "crm", "url": "http://127.0.0.1:9/c", "enabled": true,
                    "policy": {"ordering": "instance"}}),
        )
        .await;
    assert_eq!(status, 201, "codechat: {v}");
    assert_eq!(v["policy"], json!({"ordering": "instance"}), "{v}");
}
