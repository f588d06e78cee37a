//! The Kafka sink against a real Kafka-protocol broker (Tansu from `scripts/services.sh`,
//! address in `SWITCHYARD_TEST_KAFKA_BROKERS`), read back with a real rdkafka consumer:
//! Evolution's topic names, headers, key and body; per-key order; topic creation and its
//! absence; size limits; a lane pipelined through the delivery engine with a failed event
//! retried behind the batches that were out with it; and the acceptance run (3 instances x
//! 1,000 events through the real server, each event id once, in order per key).

mod common;
#[path = "sink_support/mod.rs"]
mod sink_support;

use std::collections::{HashMap, HashSet};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use common::{unique, TestServer};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use switchyard::delivery::{
    DeliveryEngine, DeliveryMetrics, EngineDeps, EngineOptions, RetryPolicy, Scope, SinkTarget,
    Subscription, SubscriptionSet,
};
use switchyard::envelope::LoggedEvent;
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};
use switchyard::sinks::kafka::{KafkaOptions, KafkaSink, KafkaTarget, KeyBy};
use switchyard::sinks::{Outcome, Sink, SinkKind, SinkRegistry, Submitted};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The broker address; fails (never skips) when it is not configured or not reachable.
fn brokers() -> String {
    let brokers = std::env::var("SWITCHYARD_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_KAFKA_BROKERS is not set: run `eval \"$(bash scripts/services.sh)\"` \
             (it installs and starts the Tansu broker) or use scripts/test.sh"
        )
    });
    let first = brokers.split(',').next().unwrap_or_default().trim();
    let reachable = first
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok());
    assert!(
        reachable,
        "the Kafka broker at {first} (SWITCHYARD_TEST_KAFKA_BROKERS) is not reachable: \
         start it with `bash scripts/services.sh`"
    );
    brokers
}

fn options(brokers: &str, prefix: &str) -> KafkaOptions {
    KafkaOptions {
        brokers: brokers.into(),
        topic_prefix: prefix.into(),
        server_url: "http://switchyard.test".into(),
        ..KafkaOptions::default()
    }
}

/// The shared event builder, with a JSON value as the body.
fn event(instance: &str, name: &str, sequence: u64, data: Value) -> LoggedEvent {
    sink_support::event(instance, name, sequence, &data.to_string())
}

fn subscription(instance: &str, global: bool) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
        id: format!("kafka:{instance}"),
        target: SinkTarget::Kafka(KafkaTarget { global }),
        scope: if global {
            Scope::AllInstances
        } else {
            Scope::Instance(instance.into())
        },
        events: Vec::new(),
        custom_events: Vec::new(),
        phone_numbers: Vec::new(),
        start_sequence: 0,
        start_positions: Vec::new(),
        enabled: true,
    }
}

/// One consumed record.
#[derive(Debug)]
struct Consumed {
    topic: String,
    partition: i32,
    key: String,
    headers: HashMap<String, String>,
    body: Value,
}

fn consumer_config(brokers: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", unique("switchyard-test"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Tansu: small session timeout or the group joins slowly; classic protocol only.
        .set("session.timeout.ms", "6000")
        .set("group.protocol", "classic")
        // The sink creates topics as events arrive: a group notices them within this.
        .set("topic.metadata.refresh.interval.ms", "500");
    cfg
}

/// Reads `want` records from `topics` (every partition from the start, or through a
/// consumer group with `group`), failing after `within`.
async fn consume(
    brokers: &str,
    topics: &[String],
    partitions: i32,
    want: usize,
    group: bool,
    within: Duration,
) -> Vec<Consumed> {
    let consumer: StreamConsumer = consumer_config(brokers).create().expect("consumer");
    if group {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).expect("subscribe");
    } else {
        let mut list = TopicPartitionList::new();
        for topic in topics {
            for p in 0..partitions {
                list.add_partition_offset(topic, p, Offset::Beginning)
                    .expect("offset");
            }
        }
        consumer.assign(&list).expect("assign");
    }
    let mut out = Vec::with_capacity(want);
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < want {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            // A subscribed topic the sink has not created yet: it will appear.
            Ok(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                continue
            }
            Ok(message) => message.expect("consume"),
            Err(_) => panic!("consumed {} of {want} records within {within:?}", out.len()),
        };
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            topic: message.topic().to_string(),
            partition: message.partition(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            headers,
            body: serde_json::from_slice(message.payload().unwrap_or_default()).expect("json"),
        });
    }
    out
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        consumer_config(brokers).create().expect("admin");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_headers_key_and_body_match_evolution() {
    let brokers = brokers();
    let prefix = unique("evo");
    let instance = unique("inst");
    let sink = KafkaSink::new(options(&brokers, &prefix)).expect("sink");
    let events = vec![
        event(
            &instance,
            "messages.upsert",
            1,
            json!({"key": {"id": "A1"}}),
        ),
        event(&instance, "connection.update", 2, json!({"state": "open"})),
        event(
            &instance,
            "messages.upsert",
            3,
            json!({"key": {"id": "A2"}}),
        ),
        event(&instance, "linq.message_received", 4, json!({"x": 1})),
    ];
    let outcomes = sink.send(&subscription(&instance, false), &events).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );

    let topics = vec![
        format!("{prefix}.{instance}.messages.upsert"),
        format!("{prefix}.{instance}.connection.update"),
        format!("{prefix}.{instance}.linq.message_received"),
    ];
    let got = consume(&brokers, &topics, 1, 4, false, Duration::from_secs(30)).await;
    let by_id: HashMap<String, &Consumed> = got
        .iter()
        .map(|c| (c.headers["event_id"].clone(), c))
        .collect();
    for sent in &events {
        let c = by_id[&sent.event.id.to_string()];
        let ms = sent.received_at.timestamp_millis();
        let dotted = &sent.event.event;
        assert_eq!(c.topic, format!("{prefix}.{instance}.{dotted}"));
        assert_eq!(c.key, instance);
        assert_eq!(c.headers["event"], *dotted);
        assert_eq!(c.headers["instance"], instance);
        assert_eq!(c.headers["origin"], "http://switchyard.test");
        assert_eq!(c.headers["timestamp"], ms.to_string());
        assert_eq!(c.body["event"], *dotted);
        assert_eq!(c.body["instance"], instance);
        assert_eq!(c.body["timestamp"], ms);
        assert_eq!(c.body["date_time"], sent.date_time());
        assert_eq!(c.body["server_url"], "http://switchyard.test");
        assert_eq!(c.body["sender"], "5511999990000@s.whatsapp.net");
        assert_eq!(c.body["id"], sent.event.id.to_string());
        assert_eq!(c.body["sequence"], sent.sequence);
        let data: Value = serde_json::from_str(sent.event.data.get()).unwrap();
        assert_eq!(c.body["data"], data);
        assert!(c.body.get("destination").is_none());
    }
    let upserts: Vec<&Value> = got
        .iter()
        .filter(|c| c.topic.ends_with(".messages.upsert"))
        .map(|c| &c.body["data"]["key"]["id"])
        .collect();
    assert_eq!(
        upserts,
        [&json!("A1"), &json!("A2")],
        "order within the topic"
    );
}

/// Global topics are keyed `{instance}-{event}` (the dotted event, whatever spelling was
/// stored), as Evolution's global producer keys them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_mode_writes_global_topics_keyed_instance_dash_event() {
    let brokers = brokers();
    let prefix = unique("evo");
    let (a, b) = (unique("ga"), unique("gb"));
    let sink = KafkaSink::new(options(&brokers, &prefix)).expect("sink");
    let events = vec![
        event(&a, "MESSAGES_UPSERT", 1, json!({"n": 1})),
        event(&b, "messages.upsert", 2, json!({"n": 2})),
    ];
    let outcomes = sink.send(&subscription("global", true), &events).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let topic = format!("{prefix}.global.messages.upsert");
    let got = consume(
        &brokers,
        std::slice::from_ref(&topic),
        1,
        2,
        false,
        Duration::from_secs(30),
    )
    .await;
    let keys: Vec<&str> = got.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{a}-messages.upsert"),
            format!("{b}-messages.upsert")
        ]
    );
    assert!(got.iter().all(|c| c.topic == topic));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_keys_spread_partitions_and_keep_order_per_chat() {
    let brokers = brokers();
    let prefix = unique("evo");
    let instance = unique("chat");
    let mut opts = options(&brokers, &prefix);
    opts.key_by = KeyBy::Chat;
    opts.num_partitions = 3;
    let sink = KafkaSink::new(opts).expect("sink");
    let events: Vec<LoggedEvent> = (0..300u64)
        .map(|n| {
            let jid = format!("55110000{}@s.whatsapp.net", n % 7);
            event(
                &instance,
                "messages.upsert",
                n,
                json!({"key": {"remoteJid": jid, "id": format!("M{n}")}, "n": n}),
            )
        })
        .collect();
    let outcomes = sink.send(&subscription(&instance, false), &events).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let topic = format!("{prefix}.{instance}.messages.upsert");
    let got = consume(&brokers, &[topic], 3, 300, false, Duration::from_secs(30)).await;
    let mut per_key: HashMap<&str, (i32, Vec<u64>)> = HashMap::new();
    for c in &got {
        let entry = per_key.entry(&c.key).or_insert((c.partition, Vec::new()));
        assert_eq!(entry.0, c.partition, "one key, one partition");
        entry.1.push(c.body["data"]["n"].as_u64().unwrap());
    }
    assert_eq!(per_key.len(), 7);
    for (key, (_, ns)) in &per_key {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key} out of order");
    }
    let partitions: HashSet<i32> = per_key.values().map(|(p, _)| *p).collect();
    assert!(
        partitions.len() > 1,
        "7 chats over 3 partitions use more than one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_create_a_missing_topic_is_a_retry_that_names_it() {
    let brokers = brokers();
    let prefix = unique("evo");
    let instance = unique("manual");
    let mut opts = options(&brokers, &prefix);
    opts.auto_create_topics = false;
    let sink = KafkaSink::new(opts).expect("sink");
    let events = vec![event(&instance, "call", 1, json!({"id": "c1"}))];
    let topic = format!("{prefix}.{instance}.call");
    let outcomes = sink.send(&subscription(&instance, false), &events).await;
    match &outcomes[..] {
        [Outcome::Retry { reason, .. }] => assert!(reason.contains(&topic), "{reason}"),
        other => panic!("expected one retry, got {other:?}"),
    }
    create_topic(&brokers, &topic, 1).await;
    let outcomes = sink.send(&subscription(&instance, false), &events).await;
    assert_eq!(outcomes, [Outcome::Delivered]);
    let got = consume(&brokers, &[topic], 1, 1, false, Duration::from_secs(30)).await;
    assert_eq!(got[0].headers["event_id"], events[0].event.id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_unnameable_events_are_permanent_the_rest_delivered() {
    let brokers = brokers();
    let prefix = unique("evo");
    let instance = unique("big");
    let mut opts = options(&brokers, &prefix);
    opts.properties
        .insert("message.max.bytes".into(), "20000".into());
    let sink = KafkaSink::new(opts).expect("sink");
    let events = vec![
        event(&instance, "messages.upsert", 1, json!({"n": 1})),
        event(
            &instance,
            "messages.upsert",
            2,
            json!({"blob": "x".repeat(50_000)}),
        ),
        event(&instance, "bad name!", 3, json!({})),
        event(&instance, "messages.upsert", 4, json!({"n": 4})),
    ];
    let outcomes = sink.send(&subscription(&instance, false), &events).await;
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Permanent { .. }),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[2], Outcome::Permanent { reason } if reason.contains("invalid")));
    assert_eq!(outcomes[3], Outcome::Delivered);
}

async fn set_kafka(s: &TestServer, instance: &str) {
    let body = json!({"kafka": {"enabled": true, "events": ["MESSAGES_UPSERT"]}});
    let (status, v) = s.post(&format!("/kafka/set/{instance}"), &body).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = s.get(&format!("/kafka/find/{instance}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], true, "{v}");
}

/// Acceptance: 3 instances x 1,000 events through the real server land in their topics,
/// each event id once, in order per key, read by a consumer group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_times_a_thousand_through_the_server() {
    let brokers = brokers();
    let prefix = unique("evo");
    let s = TestServer::start(&[
        ("KAFKA_ENABLED", "true"),
        ("KAFKA_BROKERS", &brokers),
        ("KAFKA_TOPIC_PREFIX", &prefix),
        ("SERVER_URL", "http://switchyard.test"),
    ]);
    let instances: Vec<String> = (0..3).map(|i| unique(&format!("acc{i}"))).collect();
    for i in &instances {
        s.create_instance(i, json!({})).await;
        set_kafka(&s, i).await;
    }
    const PER_INSTANCE: usize = 1000;
    const BATCH: usize = 100;
    for b in 0..PER_INSTANCE / BATCH {
        for i in &instances {
            let events: Vec<Value> = (b * BATCH..(b + 1) * BATCH)
                .map(|n| json!({"event": "messages.upsert", "data": {"n": n}}))
                .collect();
            let (status, v) = s
                .post(&format!("/ingest/{i}"), &json!({"events": events}))
                .await;
            assert_eq!(status, 202, "{v}");
        }
    }
    let topics: Vec<String> = instances
        .iter()
        .map(|i| format!("{prefix}.{i}.messages.upsert"))
        .collect();
    let want = PER_INSTANCE * instances.len();
    let got = consume(&brokers, &topics, 1, want, true, Duration::from_secs(120)).await;

    let ids: HashSet<&str> = got.iter().map(|c| c.headers["event_id"].as_str()).collect();
    assert_eq!(ids.len(), want, "each event id exactly once");
    let mut per_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for c in &got {
        assert_eq!(c.topic, format!("{prefix}.{}.messages.upsert", c.key));
        assert_eq!(c.body["instance"], c.key);
        assert_eq!(c.body["id"].as_str(), Some(c.headers["event_id"].as_str()));
        per_key
            .entry(&c.key)
            .or_default()
            .push(c.body["data"]["n"].as_u64().unwrap());
    }
    for i in &instances {
        let expected: Vec<u64> = (0..PER_INSTANCE as u64).collect();
        assert_eq!(per_key[i.as_str()], expected, "{i}: every event, in order");
    }
}

/// The real Kafka sink behind a fault: the first attempt of one event fails (it is kept out
/// of the batch handed to Kafka and answered `Retry`), and the batches out at once are
/// counted, so the engine's pipelining of a lane is seen from outside.
struct FailOnceAndCount {
    inner: KafkaSink,
    fail_sequence: u64,
    failed: std::sync::atomic::AtomicBool,
    out: Arc<AtomicUsize>,
    most_out: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Sink for FailOnceAndCount {
    fn max_batch(&self) -> usize {
        20
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        self.submit(subscription, events).await.await
    }

    fn pipelines(&self) -> bool {
        self.inner.pipelines()
    }

    async fn submit(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Submitted {
        let failing = events
            .iter()
            .position(|e| e.sequence == self.fail_sequence)
            .filter(|_| !self.failed.swap(true, AtomicOrdering::SeqCst));
        let handed: Vec<LoggedEvent> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != failing)
            .map(|(_, e)| e.clone())
            .collect();
        let answers = self.inner.submit(subscription, &handed).await;
        let now = self.out.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        self.most_out.fetch_max(now, AtomicOrdering::SeqCst);
        let out = self.out.clone();
        Box::pin(async move {
            let mut outcomes = answers.await;
            if let Some(i) = failing {
                let reason = "failed on purpose by the test".to_owned();
                outcomes.insert(
                    i,
                    Outcome::Retry {
                        after: None,
                        reason,
                    },
                );
            }
            out.fetch_sub(1, AtomicOrdering::SeqCst);
            outcomes
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_pipelines_and_a_failed_event_is_retried_behind_the_batches_out() {
    let brokers = brokers();
    let prefix = unique("evo");
    let instance = unique("pipe");
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |name: &str| {
        let mut o = EmbeddedOptions::new(dir.path().join(name));
        o.fsync = FsyncPolicy::Never;
        EmbeddedLog::open(o).expect("open log")
    };
    let log: Arc<dyn EventLog> = open("events");
    // One chat, so one lane: everything it gets in parallel comes from pipelining.
    const EVENTS: u64 = 1_000;
    const FAIL: u64 = 300;
    let jid = "5511988887777@s.whatsapp.net";
    let payloads = (0..EVENTS)
        .map(|n| {
            let data = json!({"key": {"remoteJid": jid, "id": format!("M{n}")}, "n": n});
            let logged = sink_support::event(&instance, "messages.upsert", n, &data.to_string());
            logged.event.to_bytes().expect("encode")
        })
        .collect();
    log.append(payloads).await.expect("append");
    let out = Arc::new(AtomicUsize::new(0));
    let most_out = Arc::new(AtomicUsize::new(0));
    let sink = FailOnceAndCount {
        inner: KafkaSink::new(KafkaOptions {
            num_partitions: 1,
            ..options(&brokers, &prefix)
        })
        .expect("sink"),
        fail_sequence: FAIL,
        failed: Default::default(),
        out: out.clone(),
        most_out: most_out.clone(),
    };
    let (_set, set_rx) = watch::channel(Arc::new(SubscriptionSet {
        subscriptions: vec![subscription(&instance, false)],
        instance_numbers: HashMap::new(),
        instance_tokens: HashMap::new(),
    }));
    let (disable_tx, _disables) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let policy = RetryPolicy {
        max_attempts: 5,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
        jitter_factor: 0.0,
        disable_after_failures: 0,
        park_after_attempts: 3,
        delays: Vec::new(),
    };
    let engine = DeliveryEngine::start(EngineDeps {
        log,
        state_log: open("delivery-state"),
        subscriptions: set_rx,
        sinks: SinkRegistry::new().with(SinkKind::Kafka, Arc::new(sink)),
        policy,
        options: EngineOptions::default(),
        disable_requests: disable_tx,
        metrics: DeliveryMetrics::register(&prometheus::Registry::new()).expect("metrics"),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        attempts: None,
        activity: None,
    })
    .await
    .expect("engine");

    let topic = format!("{prefix}.{instance}.messages.upsert");
    let got = consume(
        &brokers,
        &[topic],
        1,
        EVENTS as usize,
        false,
        Duration::from_secs(60),
    )
    .await;
    let order: Vec<u64> = got
        .iter()
        .map(|c| c.body["data"]["n"].as_u64().expect("n"))
        .collect();
    // Sequences start at 1: event n is sequence n + 1.
    let failed_n = FAIL - 1;
    let retried_at = order
        .iter()
        .position(|n| *n == failed_n)
        .expect("the failed event arrives in the end");
    let mut without: Vec<u64> = order.clone();
    without.remove(retried_at);
    assert_eq!(
        without,
        (0..EVENTS).filter(|n| *n != failed_n).collect::<Vec<_>>(),
        "every other event once, in order"
    );
    // It was retried behind what was out with it (at most the engine's pipeline depth, 8
    // batches of 20), never later.
    let overtaken = retried_at - failed_n as usize;
    assert!(
        (1..8 * 20).contains(&overtaken),
        "the failed event arrived after {overtaken} later ones"
    );
    let most = most_out.load(AtomicOrdering::SeqCst);
    assert!(most >= 2, "one lane had at most {most} batch out at once");
    let status = engine.subscription_status(&format!("kafka:{instance}"));
    println!(
        "pipelined lane: at most {most} batches out at once; the failed event came {overtaken} \
         events late; status {status:?}"
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}
