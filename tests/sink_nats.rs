//! NATS sink against the suite's nats-server (JetStream on), read by nats-py: Evolution's
//! subjects and envelope, `Nats-Msg-Id`, JetStream acks and dedupe, core publishes
//! confirmed by a round trip, quick `Retry` when the server is unreachable, `Permanent`
//! for what can never be published; through the real server, 3 instances x 1,000 events on
//! per-instance and global subjects in order per chat, `/nats/set` and `/nats/find`, and a
//! stream that stores every event once across a SIGKILL of Switchyard.

mod common;
#[path = "nats_support/mod.rs"]
mod nats_support;
#[path = "sink_support/mod.rs"]
mod sink_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{unique, TestServer};
use nats_support::{chat_events, check_order_per_chat, nats_url, Stream, Subscriber};
use serde_json::json;
use switchyard::delivery::subscription::SinkTarget;
use switchyard::sinks::nats::{NatsOptions, NatsSink, NatsTarget};
use switchyard::sinks::{Outcome, Sink};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SERVER_URL: &str = "http://switchyard.test";

/// A sink on `uri` with the global prefix `prefix`.
async fn sink(uri: &str, prefix: Option<&str>) -> (NatsSink, CancellationToken) {
    let options = NatsOptions {
        server_url: SERVER_URL.into(),
        uri: uri.into(),
        prefix: prefix.map(str::to_owned),
        operation_timeout: Duration::from_secs(3),
        ..NatsOptions::default()
    };
    let cancel = CancellationToken::new();
    let sink = NatsSink::start(options, cancel.clone(), &TaskTracker::new())
        .await
        .expect("sink");
    (sink, cancel)
}

fn target(global: bool) -> SinkTarget {
    SinkTarget::Nats(NatsTarget { global })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_acks_each_event_once_and_core_subjects_are_confirmed() {
    let url = nats_url().await;
    let inst = unique("njs");
    let prefix = unique("ncore");
    let stream = Stream::create(&url, &unique("NJS"), &[format!("{inst}.>")]).await;
    let (sink, cancel) = sink(&url, Some(&prefix)).await;
    sink.wait_connected(Duration::from_secs(10)).await.unwrap();

    let events: Vec<_> = (1..=5)
        .map(|s| sink_support::event(&inst, "messages.upsert", s, &format!(r#"{{"n":{s}}}"#)))
        .collect();
    let sub = sink_support::subscription(target(false), Some(&inst));
    // Acked by the stream; sent again (as after a crash) they are acked as duplicates and
    // not stored twice.
    for round in 0..2 {
        let outcomes = sink.send(&sub, &events).await;
        assert_eq!(outcomes, vec![Outcome::Delivered; 5], "round {round}");
    }
    assert_eq!(stream.count().await, 5, "each event stored once");
    let stored = stream.read(&format!("{inst}.messages.upsert")).await;
    let (distinct, _) =
        check_order_per_chat(&format!("{inst}.messages.upsert"), false, &stored, false);
    assert_eq!(distinct, 5);
    let body = &stored[0].body;
    assert_eq!(body["event"], "messages.upsert");
    assert_eq!(body["instance"], inst.as_str());
    assert_eq!(body["server_url"], SERVER_URL);
    assert_eq!(body["sender"], "5511999990000@s.whatsapp.net");
    assert_eq!(body["sequence"], 1);
    assert!(body["date_time"].as_str().is_some_and(|d| d.ends_with('Z')));
    assert!(body.get("destination").is_none(), "no destination on NATS");

    // No stream captures the global subject: core publishes, confirmed by the round trip,
    // reach a subscriber as they are.
    let subject = format!("{prefix}.messages.upsert");
    let reader = Subscriber::start(
        &url,
        5,
        Duration::from_secs(10),
        Duration::from_millis(200),
        std::slice::from_ref(&subject),
    )
    .await;
    let global = sink_support::subscription(target(true), None);
    let outcomes = sink.send(&global, &events).await;
    assert_eq!(outcomes, vec![Outcome::Delivered; 5]);
    let got = reader.finish().await;
    let (distinct, _) = check_order_per_chat(&subject, true, &got, false);
    assert_eq!(distinct, 5);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_quick_retry_and_bad_messages_are_permanent() {
    // Nothing listens on port 1: every send is a Retry at once, never a hang.
    let (down, cancel_down) = sink("nats://127.0.0.1:1", None).await;
    let inst = unique("nbad");
    let sub = sink_support::subscription(target(false), Some(&inst));
    let events = vec![sink_support::event(&inst, "call", 1, "{}")];
    let started = Instant::now();
    let outcomes = down.send(&sub, &events).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&outcomes[0], Outcome::Retry { reason, .. } if reason.contains("NATS")),
        "{outcomes:?}"
    );
    cancel_down.cancel();

    let url = nats_url().await;
    let (sink, cancel) = sink(&url, None).await;
    sink.wait_connected(Duration::from_secs(10)).await.unwrap();
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(2 << 20));
    let events = vec![
        sink_support::event(&inst, "call", 1, "{}"),
        // Over the server's max_payload (1 MiB).
        sink_support::event(&inst, "call", 2, &big),
        sink_support::event(&inst, "call", 3, "{}"),
    ];
    let outcomes = sink.send(&sub, &events).await;
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Permanent { reason } if reason.contains("payload")),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[2],
        Outcome::Delivered,
        "a permanent failure holds nothing back"
    );
    // An instance name no subject can hold.
    let bad = vec![sink_support::event("my shop", "call", 4, "{}")];
    let outcomes = sink.send(&sub, &bad).await;
    assert!(
        matches!(&outcomes[0], Outcome::Permanent { reason } if reason.contains("whitespace")),
        "{outcomes:?}"
    );
    cancel.cancel();
}

/// The env of a server with the NATS sink on, global mode on `prefix` (messages.upsert).
fn nats_env(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_ENABLED", "true".into()),
        ("NATS_URI", url.into()),
        ("NATS_GLOBAL_ENABLED", "true".into()),
        ("NATS_PREFIX_KEY", prefix.into()),
        ("NATS_EVENTS_MESSAGES_UPSERT", "true".into()),
        ("SERVER_URL", SERVER_URL.into()),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000".into()),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05".into()),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "1".into()),
    ]
}

fn as_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn ingest_chats(s: &TestServer, instance: &str, from: usize, count: usize, chats: usize) {
    let (status, v) = s
        .post(
            &format!("/ingest/{instance}"),
            &json!({"events": chat_events(from, count, chats)}),
        )
        .await;
    assert_eq!(status, 202, "ingest must answer 202: {v}");
}

/// Acceptance: 3 instances x 1,000 events, 10 chats each, through the real server, on the
/// instances' own subjects and on the global one, read by nats-py: every event once, in
/// order per chat, with Evolution's envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_times_a_thousand_on_instance_and_global_subjects() {
    let url = nats_url().await;
    let prefix = unique("nglobal");
    let env = nats_env(&url, &prefix);
    let s = TestServer::start(&as_env(&env));
    let instances: Vec<String> = (0..3).map(|i| unique(&format!("nats{i}"))).collect();
    for i in &instances {
        s.create_instance(
            i,
            json!({"nats": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
        let (status, v) = s.get(&format!("/nats/find/{i}")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["enabled"], true, "{v}");
        assert_eq!(v["events"], json!(["MESSAGES_UPSERT"]), "{v}");
    }
    const PER_INSTANCE: usize = 1000;
    let global = format!("{prefix}.messages.upsert");
    let mut subjects: Vec<String> = instances
        .iter()
        .map(|i| format!("{i}.messages.upsert"))
        .collect();
    subjects.push(global.clone());
    let want = 2 * PER_INSTANCE * instances.len();
    let reader = Subscriber::start(
        &url,
        want,
        Duration::from_secs(120),
        Duration::from_secs(1),
        &subjects,
    )
    .await;
    let started = Instant::now();
    for from in (0..PER_INSTANCE).step_by(250) {
        for i in &instances {
            ingest_chats(&s, i, from, 250, 10).await;
        }
    }
    let got = reader.finish().await;
    let elapsed = started.elapsed();
    for (subject, expected) in
        subjects
            .iter()
            .zip([PER_INSTANCE, PER_INSTANCE, PER_INSTANCE, 3 * PER_INSTANCE])
    {
        let on: Vec<_> = got
            .iter()
            .filter(|m| &m.subject == subject)
            .cloned()
            .collect();
        let (distinct, _) = check_order_per_chat(subject, subject == &global, &on, false);
        assert_eq!(distinct, expected, "{subject}: every event once");
    }
    for i in &instances {
        let mine = got
            .iter()
            .filter(|m| m.subject == global && m.body["instance"] == i.as_str());
        let ns: HashSet<u64> = mine.map(|m| m.n()).collect();
        assert_eq!(
            ns.len(),
            PER_INSTANCE,
            "{i}: all its events on the global subject"
        );
    }
    let body = &got[0].body;
    for field in [
        "event",
        "instance",
        "data",
        "date_time",
        "sender",
        "server_url",
        "apikey",
        "id",
        "sequence",
    ] {
        assert!(body.get(field).is_some(), "envelope field {field}: {body}");
    }
    assert_eq!(body["server_url"], SERVER_URL);
    println!(
        "{want} messages ({} events) through NATS to nats-py in {elapsed:?}",
        want / 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_find_follow_evolutions_contract() {
    let url = nats_url().await;
    let env = nats_env(&url, &unique("nset"));
    let s = TestServer::start(&as_env(&env));
    let instance = unique("nset");
    s.create_instance(&instance, json!({})).await;
    let (status, v) = s.get(&format!("/nats/find/{instance}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], false, "off until set: {v}");

    let path = format!("/nats/set/{instance}");
    let body = json!({"nats": {"enabled": true, "events": ["CALL", "MESSAGES_UPSERT"]}});
    let (status, v) = s.post(&path, &body).await;
    assert_eq!(status, 201, "{v}");
    let (_, v) = s.get(&format!("/nats/find/{instance}")).await;
    assert_eq!(v["enabled"], true, "{v}");
    assert_eq!(v["events"], json!(["CALL", "MESSAGES_UPSERT"]), "{v}");
    let (status, v) = s.get("/subscriptions").await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v.to_string().contains("global:nats"),
        "the global subscription: {v}"
    );

    // Bad input: a clear JSON error naming the field, nothing stored.
    let (status, v) = s.post(&path, &json!({"nats": {"enabled": "yes"}})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("enabled"), "names the field: {v}");
    let (status, v) = s
        .post(
            &path,
            &json!({"nats": {"enabled": true, "events": ["NOT_AN_EVENT"]}}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (_, v) = s.get(&format!("/nats/find/{instance}")).await;
    assert_eq!(
        v["events"],
        json!(["CALL", "MESSAGES_UPSERT"]),
        "unchanged: {v}"
    );

    // Off again: nothing more is delivered.
    let (status, v) = s.post(&path, &json!({"nats": {"enabled": false}})).await;
    assert_eq!(status, 201, "{v}");
    let (_, v) = s.get(&format!("/nats/find/{instance}")).await;
    assert_eq!(v["enabled"], false, "{v}");
}

/// Acceptance: with a JetStream stream on the subjects, every event is stored once even
/// though Switchyard is SIGKILLed mid-stream and restarted on the same data dir (it sends
/// again what it had not committed; `Nats-Msg-Id` makes the stream drop those copies). A
/// core subscriber beside the stream counts the copies that were sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stores_every_event_once_across_a_sigkill() {
    let url = nats_url().await;
    let prefix = unique("nkill");
    let instances: Vec<String> = (0..3).map(|i| unique(&format!("nk{i}"))).collect();
    let mut subjects: Vec<String> = instances.iter().map(|i| format!("{i}.>")).collect();
    subjects.push(format!("{prefix}.>"));
    let stream = Stream::create(&url, &unique("NKILL"), &subjects).await;
    const PER_INSTANCE: usize = 1000;
    let total = 2 * PER_INSTANCE * instances.len();
    let mut exact: Vec<String> = instances
        .iter()
        .map(|i| format!("{i}.messages.upsert"))
        .collect();
    exact.push(format!("{prefix}.messages.upsert"));
    let copies = Subscriber::start(
        &url,
        total,
        Duration::from_secs(120),
        Duration::from_secs(2),
        &exact,
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let env = nats_env(&url, &prefix);
    let mut s = TestServer::start_in(dir.path(), &as_env(&env));
    for i in &instances {
        s.create_instance(
            i,
            json!({"nats": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
    }
    let started = Instant::now();
    let mut killed_at = None;
    for from in (0..PER_INSTANCE).step_by(100) {
        for i in &instances {
            ingest_chats(&s, i, from, 100, 10).await;
        }
        if from == 400 {
            // Mid-stream, while the last 300 events are being delivered: some are in the
            // stream with their cursor not yet committed (it commits every 100 ms), so the
            // restarted server sends them again.
            tokio::time::sleep(Duration::from_millis(40)).await;
            s.kill();
            killed_at = Some(stream.count().await);
            s.restart();
        }
    }
    let stored = stream
        .wait_for(total as u64, Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed();
    let killed_at = killed_at.expect("killed");
    assert!(
        killed_at < total as u64,
        "killed mid-stream, with {killed_at} stored"
    );
    assert_eq!(stored, total as u64, "each event stored exactly once");
    for (subject, expected) in
        exact
            .iter()
            .zip([PER_INSTANCE, PER_INSTANCE, PER_INSTANCE, 3 * PER_INSTANCE])
    {
        let got = stream.read(subject).await;
        let global = subject.starts_with(&prefix);
        let (distinct, duplicates) = check_order_per_chat(subject, global, &got, false);
        assert_eq!((distinct, duplicates), (expected, 0), "{subject}");
    }
    drop(s);
    let seen = copies.finish().await;
    let distinct: HashSet<(&str, &str)> = seen
        .iter()
        .map(|m| (m.subject.as_str(), m.msg_id.as_str()))
        .collect();
    println!(
        "SIGKILL with {} of {total} messages stored; all {total} stored once in {elapsed:?}; \
         a core subscriber saw {} messages, {} distinct ({} copies sent again after the restart)",
        killed_at,
        seen.len(),
        distinct.len(),
        seen.len() - distinct.len()
    );
}
