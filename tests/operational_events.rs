//! Operational events (issue 20, item 3), through the real binary: the server's own
//! `switchyard.*` events reach the subscriptions that named them, once per episode.
//!
//! - A receiver that fails every request: one `switchyard.subscription.failing`, one
//!   `.dead_lettered`, then (its policy disables it after 8 failures) one `.disabled`, all
//!   delivered to a second, healthy subscription (a Ventia `/webhooks` topic hook); after it
//!   is enabled again and succeeds, one `.recovered`. The failing subscription itself, whose
//!   event list is empty ("all"), receives none of them.
//! - An instance that stops receiving for longer than the silence window (2 s here) gets one
//!   `switchyard.instance.silent` (cause `no_events`), none while traffic flows; a
//!   `connection.update` with `state: close` gets one with cause `connection_closed`; with
//!   nobody subscribed nothing is written (the log holds no `switchyard.*` event), while
//!   `switchyard_instance_silence_seconds` shows the silence.
//! - Ingest refuses `switchyard.*` events from outside (400, error envelope).
//! - A subscription whose lag stays above `alerts.lag_threshold` for `alerts.lag_seconds`
//!   gets one `switchyard.subscription.lag_exceeded` per excursion.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::Router;
use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// What the receiver got: (path, envelope, when).
type Received = Arc<Mutex<Vec<(String, Value, Instant)>>>;

/// A receiver that answers 500 on `/failing` while `fail` is set, 200 otherwise, and keeps
/// every request.
async fn receiver(cancel: CancellationToken, fail: Arc<AtomicBool>) -> (String, Received) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let app = Router::new().fallback(move |uri: Uri, body: Bytes| {
        let seen = seen.clone();
        let fail = fail.clone();
        async move {
            let envelope: Value = serde_json::from_slice(&body).unwrap_or_default();
            let path = uri.path().to_owned();
            let failing = path.starts_with("/failing") && fail.load(Ordering::SeqCst);
            seen.lock().unwrap().push((path, envelope, Instant::now()));
            if failing {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .ok();
    });
    (format!("http://{addr}"), received)
}

/// The envelopes received on `path` named `event` (and of `instance`, when given).
fn got(received: &Received, path: &str, event: &str, instance: Option<&str>) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, e, _)| {
            p == path
                && e["event"] == json!(event)
                && instance.is_none_or(|i| e["instance"] == json!(i))
        })
        .map(|(_, e, _)| e.clone())
        .collect()
}

/// Waits (at most `secs`) until `path` got at least one `event` of `instance`; returns when.
async fn wait_for(
    received: &Received,
    path: &str,
    event: &str,
    instance: Option<&str>,
    secs: u64,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let at = received
            .lock()
            .unwrap()
            .iter()
            .find(|(p, e, _)| {
                p == path
                    && e["event"] == json!(event)
                    && instance.is_none_or(|i| e["instance"] == json!(i))
            })
            .map(|(_, _, at)| *at);
        if let Some(at) = at {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "no {event} on {path} within {secs} s; got: {:?}",
            received
                .lock()
                .unwrap()
                .iter()
                .map(|(p, e, _)| format!("{p} {}", e["event"]))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id of `instance`'s webhook subscription.
async fn webhook_id(s: &TestServer, instance: &str) -> String {
    let (_, list) = s.get("/subscriptions").await;
    list["subscriptions"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["instance"] == json!(instance) && x["sink"] == json!("webhook"))
        })
        .and_then(|x| x["id"].as_str())
        .unwrap_or_else(|| panic!("{instance}'s webhook: {list}"))
        .to_owned()
}

/// Waits until `id` is delivered by this process (the Kafka engine assigns partitions
/// after a start).
async fn wait_running(s: &TestServer, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = s.get(&format!("/subscriptions/{id}")).await;
        if status == 200 && v["status"]["running"] == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never runs: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ventia_hook(s: &TestServer, url: &str, topics: &[&str]) {
    let (status, v) = s
        .post(
            "/webhooks",
            &json!({"active": true, "name": unique("ops"), "callbackUrl": url, "topics": topics}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

async fn ingest(s: &TestServer, instance: &str, event: &str, data: Value) {
    let (status, v) = s
        .post(
            &format!("/ingest/{instance}"),
            &json!({"event": event, "data": data}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscription_is_reported_once_per_episode_to_a_healthy_one() {
    let cancel = CancellationToken::new();
    let fail = Arc::new(AtomicBool::new(true));
    let (url, received) = receiver(cancel.clone(), fail.clone()).await;
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ALERTS__FAILING_AFTER", "3"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);
    let instance = unique("failing");
    s.create_instance(&instance, json!({})).await;
    let policy = json!({"max_attempts": 2, "retry_delays_ms": [100], "disable_after_failures": 8});
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": format!("{url}/failing"), "events": [],
                "policy": policy}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let failing = webhook_id(&s, &instance).await;
    ventia_hook(
        &s,
        &format!("{url}/ops"),
        &[
            "switchyard.subscription.failing",
            "switchyard.subscription.disabled",
            "switchyard.subscription.recovered",
            "switchyard.subscription.dead_lettered",
        ],
    )
    .await;
    wait_running(&s, &failing).await;
    // The watcher learns the subscription's dead-letter count before any event fails.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (e) Only the server writes its own events, in any spelling, by any ingest route.
    for (path, body) in [
        (
            format!("/ingest/{instance}"),
            json!({"event": "switchyard.subscription.failing", "data": {}}),
        ),
        (
            format!("/ingest/{instance}"),
            json!({"events": [{"event": "messages.upsert", "data": {}},
                {"event": "SWITCHYARD_INSTANCE_SILENT", "data": {}}]}),
        ),
        (
            format!("/ingest/{instance}/evolution"),
            json!({"event": "switchyard.instance.silent", "instance": instance, "data": {}}),
        ),
    ] {
        let (status, v) = s.post(&path, &body).await;
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert_eq!(v["error"]["code"], json!(2001), "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("switchyard."), "{v}");
    }

    for n in 0..6 {
        ingest(&s, &instance, "messages.upsert", json!({"n": n})).await;
    }
    wait_for(
        &received,
        "/ops",
        "switchyard.subscription.disabled",
        None,
        60,
    )
    .await;
    // Anything that would follow (a second failing, a second disabled) has time to come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failing_events = got(&received, "/ops", "switchyard.subscription.failing", None);
    let disabled = got(&received, "/ops", "switchyard.subscription.disabled", None);
    let dead = got(
        &received,
        "/ops",
        "switchyard.subscription.dead_lettered",
        None,
    );
    assert_eq!(failing_events.len(), 1, "{failing_events:?}");
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(dead.len(), 1, "one per episode: {dead:?}");
    let f = &failing_events[0];
    assert_eq!(f["instance"], json!(instance), "{f}");
    assert_eq!(f["data"]["subscription"], json!(failing), "{f}");
    assert_eq!(f["data"]["reason"], json!("consecutive_failures"), "{f}");
    assert!(f["data"]["consecutive_failures"].as_u64() >= Some(3), "{f}");
    assert!(
        f["data"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{f}"
    );
    // Evolution's envelope, like every event.
    assert!(
        f["date_time"].is_string() && f["server_url"].is_string(),
        "{f}"
    );
    assert!(f["id"].is_string() && f["sequence"].is_u64(), "{f}");
    let d = &disabled[0];
    assert_eq!(d["instance"], json!(instance), "{d}");
    assert_eq!(d["data"]["subscription"], json!(failing), "{d}");
    assert!(d["data"]["reason"].is_string(), "{d}");
    assert!(d["data"]["consecutive_failures"].as_u64() >= Some(3), "{d}");
    assert!(
        f["sequence"].as_u64() < d["sequence"].as_u64(),
        "failing is written before disabled: {f} {d}"
    );
    assert_eq!(dead[0]["data"]["subscription"], json!(failing), "{dead:?}");
    assert_eq!(
        dead[0]["data"]["event"],
        json!("messages.upsert"),
        "{dead:?}"
    );
    let (_, v) = s.get(&format!("/subscriptions/{failing}")).await;
    assert_eq!(v["enabled"], json!(false), "disabled by its policy: {v}");

    // Enabled again against a receiver that now succeeds: one `.recovered`.
    fail.store(false, Ordering::SeqCst);
    let (status, v) = s
        .post(&format!("/subscriptions/{failing}/enable"), &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    ingest(&s, &instance, "messages.upsert", json!({"n": "after"})).await;
    wait_for(
        &received,
        "/ops",
        "switchyard.subscription.recovered",
        None,
        60,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let recovered = got(&received, "/ops", "switchyard.subscription.recovered", None);
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let r = &recovered[0];
    assert_eq!(r["instance"], json!(instance), "{r}");
    assert_eq!(r["data"]["subscription"], json!(failing), "{r}");
    assert!(r["data"]["consecutive_failures"].as_u64() >= Some(3), "{r}");
    assert_eq!(
        got(&received, "/ops", "switchyard.subscription.failing", None).len(),
        1,
        "no new failing episode"
    );
    // The failing subscription's "all events" never included the server's own.
    let own: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/failing")
        .map(|(_, e, _)| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!own.is_empty(), "it received its events");
    assert!(
        own.iter().all(|e| e == "messages.upsert"),
        "only its own events: {own:?}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_instance_is_reported_once_and_only_when_subscribed() {
    let cancel = CancellationToken::new();
    let (url, received) = receiver(cancel.clone(), Arc::new(AtomicBool::new(false))).await;
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ALERTS__SILENCE_SECONDS", "2"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);

    // (d) Nobody subscribed: an instance goes silent and another closes, nothing is written;
    // the gauge shows that the silence was seen.
    let mute = unique("mute");
    let closed_early = unique("closedearly");
    s.create_instance(&mute, json!({})).await;
    s.create_instance(&closed_early, json!({})).await;
    ingest(&s, &mute, "messages.upsert", json!({"n": 1})).await;
    ingest(
        &s,
        &closed_early,
        "connection.update",
        json!({"state": "close"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = s.metrics_text().await;
        let silence = text
            .lines()
            .find(|l| {
                l.starts_with("switchyard_instance_silence_seconds{")
                    && l.contains(&format!("instance=\"{mute}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if silence.is_some_and(|s| s >= 3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no silence gauge for {mute}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let written: Vec<Value> = s
        .all_events("")
        .await
        .into_iter()
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|n| n.starts_with("switchyard."))
        })
        .collect();
    assert!(written.is_empty(), "nobody subscribed: {written:?}");

    // Subscribed by name: a Ventia topic hook for every instance, and `quiet`'s own webhook
    // through `/webhook/set`, listing only the operational event.
    ventia_hook(&s, &format!("{url}/ops"), &["switchyard.instance.silent"]).await;
    let quiet = unique("quiet");
    s.create_instance(&quiet, json!({})).await;
    let (status, v) = s
        .post(
            &format!("/webhook/set/{quiet}"),
            &json!({"webhook": {"enabled": true, "url": format!("{url}/quiet"),
                "events": ["SWITCHYARD_INSTANCE_SILENT"]}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["events"], json!(["SWITCHYARD_INSTANCE_SILENT"]), "{v}");
    let quiet_sub = webhook_id(&s, &quiet).await;
    wait_running(&s, &quiet_sub).await;

    // (b) Traffic every 300 ms for twice the window: never silent.
    let flowing = Instant::now();
    let mut n = 0;
    let mut stopped = Instant::now();
    while flowing.elapsed() < Duration::from_secs(4) {
        ingest(&s, &quiet, "messages.upsert", json!({"n": n})).await;
        // The last event's receive time is at most this.
        stopped = Instant::now();
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        got(
            &received,
            "/ops",
            "switchyard.instance.silent",
            Some(&quiet)
        )
        .is_empty(),
        "silent while traffic flows"
    );
    let arrived = wait_for(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&quiet),
        30,
    )
    .await;
    let after = arrived.duration_since(stopped);
    println!(
        "silent event arrived {after:?} after the last event (window 2 s, checks every 100 ms)"
    );
    assert!(
        after >= Duration::from_millis(1900),
        "before the window ended: {after:?}"
    );

    // (c) A closed connection: one silent event with its cause, at once.
    let closing = unique("closing");
    s.create_instance(&closing, json!({})).await;
    ingest(&s, &closing, "messages.upsert", json!({"n": 0})).await;
    let closed_at = Instant::now();
    ingest(
        &s,
        &closing,
        "connection.update",
        json!({"instance": closing, "state": "close", "statusReason": 428}),
    )
    .await;
    let arrived = wait_for(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&closing),
        30,
    )
    .await;
    println!(
        "connection_closed arrived {:?} after the close",
        arrived.duration_since(closed_at)
    );

    // Past another window or two: still one per episode, whatever the cause.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet_ops = got(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&quiet),
    );
    assert_eq!(quiet_ops.len(), 1, "{quiet_ops:?}");
    let q = &quiet_ops[0];
    assert_eq!(q["data"]["cause"], json!("no_events"), "{q}");
    assert_eq!(q["data"]["reason"], json!("no_events"), "{q}");
    assert!(q["data"]["seconds_silent"].as_f64() >= Some(2.0), "{q}");
    assert_eq!(q["data"]["silence_seconds"].as_f64(), Some(2.0), "{q}");
    let own = got(
        &received,
        "/quiet",
        "switchyard.instance.silent",
        Some(&quiet),
    );
    assert_eq!(own.len(), 1, "through /webhook/set too: {own:?}");
    let only_listed = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/quiet")
        .all(|(_, e, _)| e["event"] == json!("switchyard.instance.silent"));
    assert!(only_listed, "its list names only the operational event");
    let closing_ops = got(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&closing),
    );
    assert_eq!(closing_ops.len(), 1, "{closing_ops:?}");
    assert_eq!(
        closing_ops[0]["data"]["cause"],
        json!("connection_closed"),
        "{closing_ops:?}"
    );
    // Silent before anyone subscribed: those episodes were open already, nothing new.
    for early in [&mute, &closed_early] {
        let late = got(&received, "/ops", "switchyard.instance.silent", Some(early));
        assert!(late.is_empty(), "{early}: {late:?}");
    }
    cancel.cancel();
}

// Episodes across a restart (issue 20): the watcher keeps its episodes and each instance's
// activity in `{data_dir}/alerts/episodes.json`; `TestServer::restart` SIGKILLs the server and
// starts it again on the same data dir, so only what that file held before the kill counts.

/// The events among `envelopes`, each once: delivery is at least once, and a SIGKILL can
/// lose a cursor commit, so an event delivered before the kill may come again after it.
/// A second report would be a second event (its own id).
fn distinct(envelopes: Vec<Value>) -> Vec<Value> {
    let mut ids = std::collections::HashSet::new();
    envelopes
        .into_iter()
        .filter(|e| ids.insert(e["id"].to_string()))
        .collect()
}

/// The episodes file as the server last wrote it (`Null` before its first write).
fn episodes_file(s: &TestServer) -> Value {
    std::fs::read(s.data_dir().join("alerts/episodes.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Waits (at most 30 s) until the episodes file satisfies `ready`.
async fn wait_file(s: &TestServer, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file = episodes_file(s);
        if ready(&file) {
            return file;
        }
        assert!(
            Instant::now() < deadline,
            "episodes file never {what}: {file}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook for `instance` on the receiver's `/failing`, retried every 150 ms (up to 1000
/// attempts, never disabled), so its failure run goes on for as long as `fail` is set and
/// its cursor stays on its first event; returns its id once it runs.
async fn failing_webhook(s: &TestServer, instance: &str, url: &str) -> String {
    let policy =
        json!({"max_attempts": 1000, "retry_delays_ms": [150], "disable_after_failures": 0});
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": format!("{url}/failing"), "events": [],
                "policy": policy}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = webhook_id(s, instance).await;
    wait_running(s, &id).await;
    id
}

/// A receiver that never answers (until `cancel`): its requests stay in flight.
async fn hanging_receiver(cancel: CancellationToken) -> String {
    let app = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        StatusCode::OK
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .ok();
    });
    format!("http://{addr}")
}

/// Requests `path` got.
fn requests(received: &Received, path: &str) -> usize {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_episode_is_not_reported_again_after_a_restart_and_recovers_once() {
    let cancel = CancellationToken::new();
    let fail = Arc::new(AtomicBool::new(true));
    let (url, received) = receiver(cancel.clone(), fail.clone()).await;
    let mut s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ALERTS__FAILING_AFTER", "3"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);
    let instance = unique("restarted");
    s.create_instance(&instance, json!({})).await;
    ventia_hook(
        &s,
        &format!("{url}/ops"),
        &[
            "switchyard.subscription.failing",
            "switchyard.subscription.recovered",
        ],
    )
    .await;
    let failing = failing_webhook(&s, &instance, &url).await;
    ingest(&s, &instance, "messages.upsert", json!({"n": 1})).await;
    wait_for(
        &received,
        "/ops",
        "switchyard.subscription.failing",
        Some(&instance),
        60,
    )
    .await;
    // The reported episode is on disk before the kill.
    let file = wait_file(&s, "holds the failing episode", |f| {
        f["subscriptions"][&failing]["failing"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(file["v"], json!(1), "{file}");

    s.restart();
    wait_running(&s, &failing).await;
    // Still failing after the restart: its run (rebuilt from the attempt log) grows past
    // the threshold again while the watcher checks every 100 ms.
    let before = requests(&received, "/failing");
    let deadline = Instant::now() + Duration::from_secs(30);
    while requests(&received, "/failing") < before + 5 {
        assert!(Instant::now() < deadline, "no retries after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let failing_events = distinct(got(
        &received,
        "/ops",
        "switchyard.subscription.failing",
        Some(&instance),
    ));
    assert_eq!(
        failing_events.len(),
        1,
        "the episode was reported before the restart: {failing_events:?}"
    );

    // It delivers again: the episode that started before the restart ends, once.
    fail.store(false, Ordering::SeqCst);
    wait_for(
        &received,
        "/ops",
        "switchyard.subscription.recovered",
        Some(&instance),
        60,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let recovered = distinct(got(
        &received,
        "/ops",
        "switchyard.subscription.recovered",
        Some(&instance),
    ));
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let r = &recovered[0];
    assert_eq!(r["data"]["subscription"], json!(failing), "{r}");
    assert!(
        r["data"]["consecutive_failures"].as_u64() >= Some(5),
        "the longest run, counted across the restart: {r}"
    );
    assert_eq!(
        distinct(got(
            &received,
            "/ops",
            "switchyard.subscription.failing",
            Some(&instance)
        ))
        .len(),
        1
    );
    wait_file(&s, "drops the ended episode", |f| {
        f["v"] == json!(1) && f["subscriptions"].get(&failing).is_none()
    })
    .await;
    cancel.cancel();
}

/// Milliseconds of an RFC 3339 time.
fn millis(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_that_spans_a_restart_is_reported_once() {
    let cancel = CancellationToken::new();
    let (url, received) = receiver(cancel.clone(), Arc::new(AtomicBool::new(false))).await;
    let mut s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ALERTS__SILENCE_SECONDS", "4"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);
    // The hook takes the instance's events too: once it delivered the last one its cursor
    // is at the log's end, so the restarted tail reads nothing again and only the stored
    // activity knows the instance.
    ventia_hook(
        &s,
        &format!("{url}/ops"),
        &["switchyard.instance.silent", "messages.upsert"],
    )
    .await;
    let instance = unique("spanning");
    s.create_instance(&instance, json!({})).await;
    let mut stopped = Instant::now();
    for n in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ingest(&s, &instance, "messages.upsert", json!({"n": n})).await;
        // The last event's receive time is at most this.
        stopped = Instant::now();
    }
    let events = s.all_events(&format!("&instance={instance}")).await;
    let last = events
        .iter()
        .map(|e| millis(&e["date_time"]))
        .max()
        .expect("its events");
    // Its activity up to the last event is on disk; the window (4 s) is still open.
    wait_file(&s, "holds the last event", |f| {
        f["instances"][&instance]["last_event_ms"].as_i64() == Some(last)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got(&received, "/ops", "messages.upsert", Some(&instance)).len() < 5 {
        assert!(Instant::now() < deadline, "the hook never got the events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its cursor is committed every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        got(&received, "/ops", "switchyard.instance.silent", None).is_empty(),
        "silent before the window ended"
    );

    s.restart();
    let arrived = wait_for(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&instance),
        60,
    )
    .await;
    let after = arrived.duration_since(stopped);
    println!("silent event arrived {after:?} after the last event (window 4 s, a restart between)");
    assert!(
        after >= Duration::from_millis(3900),
        "before the window ended: {after:?}"
    );
    // A window and more later: still one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let silent = distinct(got(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&instance),
    ));
    assert_eq!(silent.len(), 1, "{silent:?}");
    let e = &silent[0];
    assert_eq!(e["data"]["cause"], json!("no_events"), "{e}");
    assert_eq!(
        millis(&e["data"]["since"]),
        last,
        "measured from its last event before the restart: {e}"
    );
    assert_eq!(millis(&e["data"]["last_event_at"]), last, "{e}");
    assert!(e["data"]["seconds_silent"].as_f64() >= Some(4.0), "{e}");
    assert_eq!(e["data"]["silence_seconds"].as_f64(), Some(4.0), "{e}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_reported_before_a_restart_is_not_reported_again() {
    let cancel = CancellationToken::new();
    let (url, received) = receiver(cancel.clone(), Arc::new(AtomicBool::new(false))).await;
    let hanging = hanging_receiver(cancel.clone()).await;
    let mut s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ALERTS__SILENCE_SECONDS", "2"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);
    ventia_hook(&s, &format!("{url}/ops"), &["switchyard.instance.silent"]).await;
    let instance = unique("reported");
    s.create_instance(&instance, json!({})).await;
    // Its own webhook never gets an answer (the request stays in flight), so its cursor
    // stays on the instance's first event and the tail reads those events again after the
    // restart: the backlog that, read into an empty activity, looked like a silence never
    // reported.
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": format!("{hanging}/hang"), "events": [],
                "policy": {"timeout_ms": 600_000}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let failing = webhook_id(&s, &instance).await;
    wait_running(&s, &failing).await;
    for n in 0..3 {
        ingest(&s, &instance, "messages.upsert", json!({"n": n})).await;
    }
    wait_for(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&instance),
        30,
    )
    .await;
    wait_file(&s, "holds the reported silence", |f| {
        f["instances"][&instance]["silent"]["cause"] == json!("no_events")
    })
    .await;

    s.restart();
    wait_running(&s, &failing).await;
    // The tail has read the backlog again (the silence gauge shows the instance), and more
    // than a window passes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.metrics_text().await.lines().any(|l| {
        l.starts_with("switchyard_instance_silence_seconds{")
            && l.contains(&format!("instance=\"{instance}\""))
    }) {
        assert!(Instant::now() < deadline, "no silence gauge for {instance}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let silent = distinct(got(
        &received,
        "/ops",
        "switchyard.instance.silent",
        Some(&instance),
    ));
    assert_eq!(
        silent.len(),
        1,
        "reported before the restart only: {silent:?}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_listener_gets_the_silent_event_only_when_it_names_it() {
    use common::ws::{assert_quiet, connect, read_envelopes};
    let s = TestServer::start(&[
        ("SWITCHYARD_ALERTS__SILENCE_SECONDS", "2"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);
    let instance = unique("wsquiet");
    s.create_instance(&instance, json!({})).await;
    let key = &s.key;
    let mut named = connect(
        &s,
        &format!("/ws?apikey={key}&events=switchyard.instance.silent"),
    )
    .await;
    let mut upserts = connect(&s, &format!("/ws?apikey={key}&events=messages.upsert")).await;
    let mut everything = connect(&s, &format!("/ws?apikey={key}")).await;
    ingest(&s, &instance, "messages.upsert", json!({"n": 1})).await;
    let silent = read_envelopes(&mut named, 1, Duration::from_secs(30)).await;
    assert_eq!(silent[0].event, "switchyard.instance.silent", "{silent:?}");
    assert_eq!(silent[0].instance, instance, "{silent:?}");
    for ws in [&mut upserts, &mut everything] {
        let got = read_envelopes(ws, 1, Duration::from_secs(10)).await;
        assert_eq!(got[0].event, "messages.upsert", "{got:?}");
        // The silent event is in the log already: a listener that did not name it gets
        // nothing more.
        assert_quiet(ws, Duration::from_millis(1500)).await;
    }
    assert_quiet(&mut named, Duration::from_millis(500)).await;
    let written: Vec<Value> = s
        .all_events("")
        .await
        .into_iter()
        .filter(|e| e["event"] == json!("switchyard.instance.silent"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
}

/// `switchyard.subscription.lag_exceeded`: a subscription whose receiver fails keeps every
/// event of its one chat waiting behind the first; once its lag has stayed above
/// `alerts.lag_threshold` for `alerts.lag_seconds`, one event reaches the healthy hook, and
/// no second one while the episode lasts. The episode ends when the lag drops (the receiver
/// answers again); the next excursion is a new episode with its own event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscription_is_reported_once_per_excursion() {
    let cancel = CancellationToken::new();
    let fail = Arc::new(AtomicBool::new(true));
    let (url, received) = receiver(cancel.clone(), fail.clone()).await;
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ALERTS__LAG_THRESHOLD", "3"),
        ("SWITCHYARD_ALERTS__LAG_SECONDS", "1"),
        ("SWITCHYARD_ALERTS__CHECK_INTERVAL_MS", "100"),
    ]);
    let instance = unique("lagging");
    s.create_instance(&instance, json!({})).await;
    let policy = json!({"max_attempts": 1000, "retry_delays_ms": [200]});
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": format!("{url}/failing"), "events": [],
                "policy": policy}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let lagging = webhook_id(&s, &instance).await;
    ventia_hook(
        &s,
        &format!("{url}/ops"),
        &["switchyard.subscription.lag_exceeded"],
    )
    .await;
    wait_running(&s, &lagging).await;

    let chat = json!({"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false});
    let burst = |round: usize| {
        let s = &s;
        let instance = &instance;
        let chat = chat.clone();
        async move {
            for n in 0..10 {
                let mut key = chat.clone();
                key["id"] = json!(format!("3EB0LAG{round}{n:04}"));
                ingest(s, instance, "messages.upsert", json!({"key": key, "n": n})).await;
            }
        }
    };
    let first_burst = Instant::now();
    burst(1).await;
    let arrived = wait_for(
        &received,
        "/ops",
        "switchyard.subscription.lag_exceeded",
        Some(&instance),
        60,
    )
    .await;
    let after = arrived.duration_since(first_burst);
    println!("lag_exceeded arrived {after:?} after the burst (threshold 3 events for 1 s)");
    assert!(
        after >= Duration::from_millis(900),
        "before the lag lasted its time: {after:?}"
    );
    // The episode goes on (the receiver still fails): nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lag_events = got(
        &received,
        "/ops",
        "switchyard.subscription.lag_exceeded",
        Some(&instance),
    );
    assert_eq!(lag_events.len(), 1, "one per episode: {lag_events:?}");
    let e = &lag_events[0];
    assert_eq!(e["data"]["subscription"], json!(lagging), "{e}");
    assert_eq!(e["data"]["reason"], json!("lag_exceeded"), "{e}");
    assert_eq!(e["data"]["threshold"], json!(3), "{e}");
    assert!(e["data"]["lag"].as_u64() > Some(3), "{e}");
    assert!(e["data"]["seconds_above"].as_f64() >= Some(1.0), "{e}");
    assert!(e["data"]["consecutive_failures"].as_u64() >= Some(1), "{e}");

    // The receiver answers again: the backlog drains, the episode ends quietly.
    fail.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = s.get(&format!("/subscriptions/{lagging}")).await;
        if v["status"]["lag"] == json!(0) {
            break;
        }
        assert!(Instant::now() < deadline, "never drained: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        got(
            &received,
            "/ops",
            "switchyard.subscription.lag_exceeded",
            Some(&instance)
        )
        .len(),
        1,
        "a drained backlog is no news"
    );

    // A second excursion is a second episode.
    fail.store(true, Ordering::SeqCst);
    burst(2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got(
        &received,
        "/ops",
        "switchyard.subscription.lag_exceeded",
        Some(&instance),
    )
    .len()
        < 2
    {
        assert!(Instant::now() < deadline, "no second episode reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fail.store(false, Ordering::SeqCst);
    cancel.cancel();
}
