//! Helpers for the broker sink tests: the real services' addresses, events, subscriptions,
//! and a miniature delivery loop that retries failed events in order, as the engine does.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use switchyard::delivery::subscription::{Scope, SinkTarget, Subscription};
use switchyard::envelope::{LoggedEvent, StoredEvent};
use switchyard::sinks::{Outcome, Sink};
use uuid::Uuid;

/// The AMQP URI from `SWITCHYARD_TEST_AMQP_URI`; fails the test when unset or unreachable.
pub async fn amqp_uri() -> String {
    let uri = std::env::var("SWITCHYARD_TEST_AMQP_URI").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_AMQP_URI is not set: run `eval \"$(bash scripts/services.sh)\"` first"
        )
    });
    let connect = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(conn)) => {
            let _ = conn.close(200, "probe".into()).await;
        }
        Ok(Err(e)) => panic!("RabbitMQ at {uri} is unreachable: {e} (run scripts/services.sh)"),
        Err(_) => panic!("RabbitMQ at {uri} did not answer within 10 s (run scripts/services.sh)"),
    }
    uri
}

/// The SQS endpoint from `SWITCHYARD_TEST_SQS_ENDPOINT`; fails the test when unset or
/// unreachable.
pub async fn sqs_endpoint() -> String {
    let endpoint = std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SWITCHYARD_TEST_SQS_ENDPOINT is not set: run `eval \"$(bash scripts/services.sh)\"` first")
    });
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => endpoint,
        _ => panic!("the SQS server at {endpoint} is unreachable (run scripts/services.sh)"),
    }
}

/// A random name so tests never collide, between themselves or between runs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// A logged event of `instance` with `data` as its body, its chat derived as ingest does.
pub fn event(instance: &str, name: &str, sequence: u64, data: &str) -> LoggedEvent {
    let data = RawValue::from_string(data.to_string()).unwrap();
    LoggedEvent {
        apikey: None,
        message_id: None,
        sequence,
        received_at: Utc
            .timestamp_millis_opt(1_758_749_877_000 + sequence as i64)
            .unwrap(),
        event: StoredEvent {
            id: Uuid::new_v4(),
            instance: instance.to_string(),
            event: name.to_string(),
            chat: switchyard::chat::chat_of(name, &data),
            data,
            sender: Some("5511999990000@s.whatsapp.net".into()),
            source: None,
            raw: None,
            instance_id: None,
            key: None,
            request: None,
        },
    }
}

/// A subscription with `target` for one instance (or all when `instance` is None).
pub fn subscription(target: SinkTarget, instance: Option<&str>) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
        id: format!("test:{}", unique("sub")),
        target,
        scope: match instance {
            Some(i) => Scope::Instance(i.to_string()),
            None => Scope::AllInstances,
        },
        events: vec![],
        custom_events: vec![],
        phone_numbers: vec![],
        start_sequence: 1,
        start_positions: Vec::new(),
        enabled: true,
    }
}

/// What a miniature engine run saw.
#[derive(Debug, Default)]
pub struct RunStats {
    /// `Retry` outcomes seen.
    pub retries: usize,
    /// Send calls made.
    pub calls: usize,
}

/// Delivers `events` (one instance's, in order) the way the engine does: batches of
/// `max_batch`, failed events retried together in order after `backoff`, until every event
/// is delivered or `deadline` passes (then panics). Panics on `Permanent`.
pub async fn deliver_all(
    sink: Arc<dyn Sink>,
    sub: &Subscription,
    events: Vec<LoggedEvent>,
    backoff: Duration,
    deadline: Duration,
) -> RunStats {
    let started = tokio::time::Instant::now();
    let mut stats = RunStats::default();
    let mut rest = events.into_iter().peekable();
    let mut pending: Vec<LoggedEvent> = Vec::new();
    loop {
        while pending.len() < sink.max_batch() {
            match rest.next() {
                Some(e) => pending.push(e),
                None => break,
            }
        }
        if pending.is_empty() {
            return stats;
        }
        assert!(
            started.elapsed() < deadline,
            "events still undelivered after {deadline:?}"
        );
        let outcomes = sink.send(sub, &pending).await;
        stats.calls += 1;
        assert_eq!(outcomes.len(), pending.len());
        let mut again = Vec::new();
        for (e, o) in pending.drain(..).zip(outcomes) {
            match o {
                Outcome::Delivered => {}
                Outcome::Retry { .. } => {
                    stats.retries += 1;
                    again.push(e);
                }
                other => panic!("unexpected outcome for {}: {other:?}", e.sequence),
            }
        }
        if !again.is_empty() {
            // Backoff between attempts, as the engine's retry policy does.
            tokio::time::sleep(backoff).await;
        }
        pending = again;
    }
}

/// Asserts the ids, once de-duplicated (first occurrence kept), are exactly `expected` in
/// order. Returns how many duplicates there were.
pub fn assert_in_order(queue: &str, got: &[String], expected: &[String]) -> usize {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|id| seen.insert(*id)).collect();
    let expected: Vec<&String> = expected.iter().collect();
    assert_eq!(
        firsts.len(),
        expected.len(),
        "queue {queue}: {} distinct messages, expected {}",
        firsts.len(),
        expected.len()
    );
    assert!(firsts == expected, "queue {queue}: messages out of order");
    got.len() - firsts.len()
}

/// Waits until `queue` exists (declared by the server, not by us: a passive declare, retried
/// on a fresh channel, since a failed one closes its channel); panics after `within`.
pub async fn wait_for_queue(uri: &str, queue: &str, within: Duration) {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ch = conn.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(_) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("queue {queue} does not exist after {within:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Reads `queue` until `n` distinct message ids arrived (or the deadline); returns the
/// bodies' `data.n` in the queue's order of first sight, and the number of duplicates.
///
/// Reads with `basic.get`, which always takes the queue's head, rather than a consumer:
/// RabbitMQ 3.10's quorum-queue client can hand a consumer that attaches to a backlog
/// (just after a broker restart, say) a later chunk before the first one while it fetches
/// "missing" deliveries (rabbitmq-server#14386), which would read as a reordering by us.
pub async fn consume_queue(
    uri: &str,
    queue: &str,
    n: usize,
    within: Duration,
) -> (Vec<u64>, usize) {
    use lapin::options::{BasicGetOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    // Passive: the queue must already exist (declared by the server, not by us).
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("queue {queue} does not exist: {e}"));
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut duplicates = 0;
    let deadline = tokio::time::Instant::now() + within;
    while seen.len() < n {
        let got = tokio::time::timeout_at(
            deadline,
            ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
        )
        .await;
        let delivery = match got {
            Ok(Ok(Some(message))) => message.delivery,
            Ok(Ok(None)) if tokio::time::Instant::now() < deadline => {
                // Empty for now: the rest may still be on its way.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(Err(e)) => panic!("{queue}: basic.get failed: {e}"),
            _ => panic!("{queue}: only {} of {n} events arrived", seen.len()),
        };
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .expect("message_id");
        let body: Value = serde_json::from_slice(&delivery.data).expect("body");
        assert!(
            body.get("destination").is_none(),
            "no destination on RabbitMQ"
        );
        assert_eq!(
            body["id"].as_str(),
            Some(id.as_str()),
            "message_id is the event id"
        );
        if seen.insert(id) {
            order.push(body["data"]["n"].as_u64().expect("n"));
        } else {
            duplicates += 1;
        }
    }
    let _ = conn.close(200, "done".into()).await;
    (order, duplicates)
}

/// The event types the bulk tests spread their events over.
pub const BULK_KINDS: [&str; 4] = [
    "messages.upsert",
    "messages.update",
    "presence.update",
    "chats.upsert",
];

/// `total` numbered events (`data.n` = sequence) round-robin over `instances`, the type
/// changing every `run` sequences, grouped by instance in sequence order.
pub fn bulk_events(
    instances: &[String],
    total: u64,
    run: u64,
) -> HashMap<String, Vec<LoggedEvent>> {
    let mut per_instance: HashMap<String, Vec<LoggedEvent>> = HashMap::new();
    for seq in 1..=total {
        let inst = &instances[(seq % instances.len() as u64) as usize];
        let kind = BULK_KINDS[(seq / run % BULK_KINDS.len() as u64) as usize];
        let data = format!(r#"{{"n":{seq}}}"#);
        per_instance
            .entry(inst.clone())
            .or_default()
            .push(event(inst, kind, seq, &data));
    }
    per_instance
}

/// Delivers each instance's events through `sink` with [`deliver_all`], instances in
/// parallel as the engine runs them.
pub async fn deliver_in_parallel(
    sink: Arc<dyn Sink>,
    target: SinkTarget,
    per_instance: &HashMap<String, Vec<LoggedEvent>>,
    backoff: Duration,
    deadline: Duration,
) {
    let mut tasks = Vec::new();
    for (inst, events) in per_instance.clone() {
        let (sink, target) = (sink.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let sub = subscription(target, Some(&inst));
            deliver_all(sink, &sub, events, backoff, deadline).await
        }));
    }
    for t in tasks {
        t.await.expect("delivery task");
    }
}
