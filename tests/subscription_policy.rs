//! A subscription's own delivery policy (`"policy"` in its sink object), through the real
//! server: a throttle in events/s shared by its lanes, its own attempt limit and retry
//! schedule over the server's, its own request timeout, validation, and the settings kept
//! across a SIGKILL.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const FAST_RETRIES: &[(&str, &str)] = &[
    ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOK_RETRY_MAX_ATTEMPTS", "10"),
    ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.05"),
    // In memory all the way: the attempt counts below are the schedule's, not parking's.
    ("SWITCHYARD_DELIVERY__PARK_AFTER_ATTEMPTS", "0"),
];

async fn set_webhook(s: &TestServer, instance: &str, url: &str, policy: Value) -> (u16, Value) {
    s.post(
        &format!("/webhook/set/{instance}"),
        &json!({"webhook": {"enabled": true, "url": url, "events": [], "policy": policy}}),
    )
    .await
}

/// The id of `instance`'s subscription.
async fn subscription_of(s: &TestServer, instance: &str) -> String {
    let (_, subs) = s.get("/subscriptions").await;
    subs["subscriptions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["instance"] == json!(instance)))
        .and_then(|x| x["id"].as_str())
        .expect("the webhook is a subscription")
        .to_owned()
}

/// Waits until `id` has `n` dead letters and returns them.
async fn dead_letters(s: &TestServer, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = s.get(&format!("/subscriptions/{id}/dead-letters")).await;
        if let Some(letters) = v["dead_letters"].as_array().filter(|a| a.len() >= n) {
            return letters.clone();
        }
        assert!(Instant::now() < deadline, "{n} dead letters for {id}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_subscription_keeps_its_rate_while_another_gets_everything_at_once() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let global = format!("{}/global", receiver.url);
    let mut env = FAST_RETRIES.to_vec();
    env.extend([
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
        ("WEBHOOK_GLOBAL_URL", global.as_str()),
    ]);
    let s = TestServer::start(&env);
    let instance = unique("throttled");
    s.create_instance(&instance, json!({})).await;
    let own = format!("{}/own", receiver.url);
    let (status, v) = set_webhook(&s, &instance, &own, json!({"rate_per_second": 20})).await;
    assert_eq!(status, 201, "{v}");
    // 400 events over 8 chats: the throttle is the subscription's, across its lanes.
    let events: Vec<Value> = (0..400)
        .map(|n| {
            json!({"event": "messages.upsert",
                   "data": {"key": {"remoteJid": format!("55119{}@s.whatsapp.net", n % 8), "id": format!("M{n}")}, "n": n}})
        })
        .collect();
    let started = Instant::now();
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
    let count = |path: &str| {
        receiver
            .delivered()
            .iter()
            .filter(|r| r.path == path)
            .count()
    };
    support::wait_for("the unthrottled 400", Duration::from_secs(10), || {
        count("/hook/global") >= 400
    })
    .await;
    let unthrottled = started.elapsed();
    support::wait_for("the throttled 400", Duration::from_secs(40), || {
        count("/hook/own") >= 400
    })
    .await;
    let throttled = started.elapsed();
    println!("400 events: unthrottled {unthrottled:?}, at 20/s {throttled:?}");
    assert!(unthrottled < Duration::from_secs(2), "{unthrottled:?}");
    assert!(
        (Duration::from_secs(19)..Duration::from_secs(22)).contains(&throttled),
        "{throttled:?}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_attempts_schedule_and_timeout_override_the_servers() {
    let cancel = CancellationToken::new();
    let failing = support::Receiver::start(cancel.clone()).await;
    failing.set_status(500);
    let slow = support::Receiver::start(cancel.clone()).await;
    slow.behaviour
        .stall_percent
        .store(100, std::sync::atomic::Ordering::SeqCst);
    slow.behaviour
        .stall_ms
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    let s = TestServer::start(FAST_RETRIES);
    let three = unique("three");
    let timed = unique("timed");
    let defaults = unique("defaults");
    for instance in [&three, &timed, &defaults] {
        s.create_instance(instance, json!({})).await;
    }
    let policy = json!({"max_attempts": 3, "retry_delays_ms": [20, 40]});
    let (status, v) = set_webhook(&s, &three, &failing.url, policy).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["policy"]["max_attempts"], json!(3), "{v}");
    let policy = json!({"timeout_ms": 200, "max_attempts": 2, "retry_delays_ms": [10]});
    let (status, v) = set_webhook(&s, &timed, &slow.url, policy).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = set_webhook(&s, &defaults, &failing.url, json!(null)).await;
    assert_eq!(status, 201, "{v}");
    for instance in [&three, &timed, &defaults] {
        s.ingest_numbered(instance, 0, 1).await;
    }

    // Three attempts, where the server's default is ten.
    let id = subscription_of(&s, &three).await;
    let letters = dead_letters(&s, &id, 1).await;
    let attempts = letters[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{letters:?}");
    // The explicit schedule: 20 ms, then 40 ms, as written (no jitter).
    let at: Vec<i64> = attempts
        .iter()
        .map(|a| {
            a["at_ms"]
                .as_i64()
                .unwrap_or_else(|| panic!("a start time in {a}"))
        })
        .collect();
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= 20 && gaps[1] >= 40, "gaps {gaps:?}");

    // A 1 s receiver under a 200 ms timeout: each attempt times out, then dead letter.
    let id = subscription_of(&s, &timed).await;
    let letters = dead_letters(&s, &id, 1).await;
    let attempts = letters[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{letters:?}");
    for attempt in attempts {
        let reason = attempt["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("timed out after 200 ms"), "{attempt}");
    }

    // The server's default (10 attempts) still holds for a subscription without a policy.
    let id = subscription_of(&s, &defaults).await;
    let letters = dead_letters(&s, &id, 1).await;
    assert_eq!(
        letters[0]["attempts"].as_array().map(Vec::len),
        Some(10),
        "{letters:?}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn bad_policies_are_refused_and_good_ones_survive_a_sigkill() {
    let mut s = TestServer::start(&[("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true")]);
    let instance = unique("policy");
    s.create_instance(&instance, json!({})).await;
    let url = "http://127.0.0.1:9/hook";
    for (policy, path) in [
        (json!({"max_attempts": 0}), "webhook.policy.max_attempts"),
        (
            json!({"retry_delays_ms": []}),
            "webhook.policy.retry_delays_ms",
        ),
        (
            json!({"retry_delays_ms": [10, -1]}),
            "webhook.policy.retry_delays_ms[1]",
        ),
        (json!({"timeout_ms": "fast"}), "webhook.policy.timeout_ms"),
        (
            json!({"non_retryable_status_codes": [200]}),
            "webhook.policy.non_retryable_status_codes[0]",
        ),
        (
            json!({"rate_per_second": 0}),
            "webhook.policy.rate_per_second",
        ),
        (
            json!({"max_in_flight": 1.5}),
            "webhook.policy.max_in_flight",
        ),
        (json!({"retries": 3}), "webhook.policy.retries"),
        (json!("fast"), "webhook.policy"),
    ] {
        let (status, v) = set_webhook(&s, &instance, url, policy.clone()).await;
        assert_eq!(status, 400, "{policy}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`{path}`")), "{policy}: {v}");
    }
    let policy = json!({"max_attempts": 3, "retry_delays_ms": [1000, 5000], "timeout_ms": 5000,
        "non_retryable_status_codes": [400, 422], "rate_per_second": 20, "max_in_flight": 16,
        "disable_after_failures": 0, "ordering": "chat"});
    let (status, v) = set_webhook(&s, &instance, url, policy.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["policy"], policy, "{v}");
    s.kill();
    s.restart();
    let (status, v) = s.get(&format!("/webhook/find/{instance}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["policy"], policy, "as stored: {v}");
}
