//! Kafka sink bench: the Kafka sink next to a raw rdkafka `FutureProducer` (same settings,
//! same broker, same run), as a ratio; and the whole delivery path (engine + sink) next to
//! the same baseline.
//!
//! Every side produces the same events (Evolution envelope, key, headers) to its own
//! per-instance topics, created beforehand, with the sink's client settings (idempotent,
//! `acks=all`), after a warm-up event per topic. The raw side enqueues everything at once
//! and awaits every delivery report: the ceiling. The sink side calls `Sink::send` as the
//! engine does (each instance's events in order, `max_batch` per call, one call per
//! instance at a time, all instances at once). The engine side reads the events from the
//! log and delivers them through `DeliveryEngine`, whose window bounds the events in
//! flight per subscription.
//!
//! Run: `SWITCHYARD_TEST_KAFKA_BROKERS=127.0.0.1:19092 cargo bench --bench kafka_sink`
//! (add `--profile dev` to reuse debug deps). Knobs (env): `BENCH_EVENTS` (default
//! 100000), `BENCH_INSTANCES` (6), `BENCH_LINGER_MS` (the sink's `linger.ms` on every side),
//! `BENCH_WINDOW` (the engine's window, default its own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use switchyard::catalog::kafka_topic;
use switchyard::delivery::{
    DeliveryEngine, EngineDeps, EngineOptions, RetryPolicy, Scope, SinkTarget, Subscription,
    SubscriptionSet,
};
use switchyard::envelope::{LoggedEvent, StoredEvent};
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};
use switchyard::sinks::kafka::{client_config, message_key, KafkaOptions, KafkaSink, KafkaTarget};
use switchyard::sinks::{Outcome, Sink, SinkKind, SinkRegistry, Submitted};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Kafka sink, counting delivered events so the bench knows when the run is over.
struct Counting {
    inner: KafkaSink,
    counts: Arc<Counts>,
}

/// Delivered events, and a wake-up for the waiter at each answer.
#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    notify: Notify,
}

impl Counts {
    fn count(&self, outcomes: &[Outcome]) {
        let ok = outcomes
            .iter()
            .filter(|o| **o == Outcome::Delivered)
            .count();
        self.delivered.fetch_add(ok as u64, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
}

#[async_trait]
impl Sink for Counting {
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        let outcomes = self.inner.send(subscription, events).await;
        self.counts.count(&outcomes);
        outcomes
    }

    // The engine pipelines a lane's batches through the Kafka sink; a wrapper that did not
    // say so would measure the engine one batch per lane at a time.
    fn pipelines(&self) -> bool {
        self.inner.pipelines()
    }

    async fn submit(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Submitted {
        let answers = self.inner.submit(subscription, events).await;
        let counts = self.counts.clone();
        Box::pin(async move {
            let outcomes = answers.await;
            counts.count(&outcomes);
            outcomes
        })
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stored(instance: &str, n: usize) -> StoredEvent {
    StoredEvent {
        id: uuid::Uuid::now_v7(),
        instance: instance.to_owned(),
        event: "messages.upsert".into(),
        data: serde_json::value::RawValue::from_string(format!(
            r#"{{"key":{{"remoteJid":"5511999990000@s.whatsapp.net","fromMe":false,"id":"BAE5{n:012}"}},"message":{{"conversation":"hello {n}"}},"messageTimestamp":1758749877}}"#
        ))
        .unwrap(),
        sender: Some("5511888888888@s.whatsapp.net".into()),
        source: None,
        raw: None,
        instance_id: None,
        key: None,
        request: None,
        chat: None,
    }
}

async fn create_topics(options: &KafkaOptions, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = client_config(options).create().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// The same records through a plain `FutureProducer`: all enqueued, then every report
/// awaited. Events per second.
async fn raw(options: &KafkaOptions, events: &[LoggedEvent], instances: usize) -> f64 {
    let producer: FutureProducer = client_config(options).create().unwrap();
    // Warm-up outside the clock, as for the sink: connection, producer id, topic metadata.
    produce_all(&producer, options, &events[..instances]).await;
    let started = Instant::now();
    produce_all(&producer, options, events).await;
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// Enqueues every event, then awaits every delivery report.
async fn produce_all(producer: &FutureProducer, options: &KafkaOptions, events: &[LoggedEvent]) {
    let mut reports = Vec::with_capacity(events.len());
    for e in events {
        let mut envelope = e.envelope(&options.server_url);
        let ms = e.received_at.timestamp_millis();
        envelope.timestamp = Some(ms);
        let body = envelope.to_vec();
        let key = message_key(options.key_by, e);
        let topic = format!(
            "{}.{}.messages.upsert",
            options.topic_prefix, e.event.instance
        );
        let (ms_text, id) = (ms.to_string(), e.event.id.to_string());
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "event",
                value: Some(e.event.event.as_str()),
            })
            .insert(Header {
                key: "instance",
                value: Some(e.event.instance.as_str()),
            })
            .insert(Header {
                key: "origin",
                value: Some(options.server_url.as_str()),
            })
            .insert(Header {
                key: "timestamp",
                value: Some(ms_text.as_str()),
            })
            .insert(Header {
                key: "event_id",
                value: Some(id.as_str()),
            });
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&body)
            .timestamp(ms)
            .headers(headers);
        match producer.send_result(record) {
            Ok(report) => reports.push(report),
            Err((e, _)) => panic!("raw enqueue: {e}"),
        }
    }
    for report in reports {
        report.await.unwrap().unwrap();
    }
}

/// The Kafka sink called directly, as the engine would with an unbounded window: each
/// instance's events in order, `max_batch` per call, one call per instance at a time, all
/// instances at once. Events per second.
async fn direct(options: &KafkaOptions, events: &[LoggedEvent], instances: &[String]) -> f64 {
    let sink = KafkaSink::new(options.clone()).unwrap();
    let sub = bench_subscription(options);
    let warmed = sink.send(&sub, &warm_up(instances)).await;
    assert!(
        warmed.iter().all(|o| *o == Outcome::Delivered),
        "{warmed:?}"
    );
    let per_instance: Vec<Vec<LoggedEvent>> = instances
        .iter()
        .map(|i| {
            events
                .iter()
                .filter(|e| e.event.instance == *i)
                .cloned()
                .collect()
        })
        .collect();
    let started = Instant::now();
    let runs = per_instance.iter().map(|mine| async {
        for batch in mine.chunks(sink.max_batch()) {
            let outcomes = sink.send(&sub, batch).await;
            assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
        }
    });
    futures::future::join_all(runs).await;
    events.len() as f64 / started.elapsed().as_secs_f64()
}

fn bench_subscription(options: &KafkaOptions) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
        id: format!("bench-{}", options.topic_prefix),
        target: SinkTarget::Kafka(KafkaTarget { global: false }),
        scope: Scope::AllInstances,
        events: vec![],
        custom_events: vec![],
        phone_numbers: vec![],
        start_sequence: 0,
        start_positions: Vec::new(),
        enabled: true,
    }
}

/// One event per instance, sent before the clock starts so that connections, the producer
/// id and topic metadata are in place on every side.
fn warm_up(instances: &[String]) -> Vec<LoggedEvent> {
    instances
        .iter()
        .enumerate()
        .map(|(i, inst)| LoggedEvent {
            apikey: None,
            message_id: None,
            sequence: i as u64,
            received_at: chrono::Utc::now(),
            event: stored(inst, i),
        })
        .collect()
}

/// The events delivered by the engine with the Kafka sink. Events per second.
async fn through_engine(
    options: &KafkaOptions,
    log: Arc<dyn EventLog>,
    state: Arc<dyn EventLog>,
    instances: &[String],
    total: u64,
) -> f64 {
    let sink = Arc::new(Counting {
        inner: KafkaSink::new(options.clone()).unwrap(),
        counts: Arc::default(),
    });
    let sub = bench_subscription(options);
    let warmed = sink.inner.send(&sub, &warm_up(instances)).await;
    assert!(
        warmed.iter().all(|o| *o == Outcome::Delivered),
        "{warmed:?}"
    );

    let (_, set_rx) = watch::channel(Arc::new(SubscriptionSet {
        subscriptions: vec![sub],
        instance_numbers: HashMap::new(),
        instance_tokens: HashMap::new(),
    }));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let started = Instant::now();
    let _engine = DeliveryEngine::start(EngineDeps {
        log,
        state_log: state,
        subscriptions: set_rx,
        sinks: SinkRegistry::new().with(SinkKind::Kafka, sink.clone()),
        policy: RetryPolicy::default(),
        options: EngineOptions {
            window: env_or("BENCH_WINDOW", EngineOptions::default().window),
            ..EngineOptions::default()
        },
        disable_requests: mpsc::unbounded_channel().0,
        metrics: switchyard::delivery::DeliveryMetrics::register(&prometheus::Registry::new())
            .expect("delivery metrics"),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        attempts: None,
        activity: None,
    })
    .await
    .unwrap();
    loop {
        let notified = sink.counts.notify.notified();
        if sink.counts.delivered.load(Ordering::Relaxed) >= total {
            break;
        }
        notified.await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    rate
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let brokers = std::env::var("SWITCHYARD_TEST_KAFKA_BROKERS")
        .expect("set SWITCHYARD_TEST_KAFKA_BROKERS (eval \"$(bash scripts/services.sh)\")");
    let total = env_or("BENCH_EVENTS", 100_000);
    let n_instances = env_or("BENCH_INSTANCES", 6);
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let instances: Vec<String> = (0..n_instances).map(|i| format!("bench{i}")).collect();

    // The events, in the log once; the raw side gets the same records as read back.
    let dir = tempfile::tempdir().unwrap();
    let mut o = EmbeddedOptions::new(dir.path().join("events"));
    o.fsync = FsyncPolicy::Always;
    let log: Arc<dyn EventLog> = EmbeddedLog::open(o).unwrap();
    let stored: Vec<StoredEvent> = (0..total)
        .map(|n| stored(&instances[n % n_instances], n))
        .collect();
    for chunk in stored.chunks(1000) {
        log.append(
            chunk
                .iter()
                .map(|e| e.to_bytes().expect("a stored event of strings encodes"))
                .collect(),
        )
        .await
        .unwrap();
    }
    let received_at = chrono::Utc::now();
    let logged: Vec<LoggedEvent> = stored
        .into_iter()
        .enumerate()
        .map(|(n, event)| LoggedEvent {
            apikey: None,
            message_id: None,
            sequence: n as u64,
            received_at,
            event,
        })
        .collect();

    println!("Kafka sink throughput ({total} events over {n_instances} instances, idempotent, acks=all):");
    let mut ratios = Vec::new();
    let mut engine_ratios = Vec::new();
    for round in 0..3 {
        // Fresh topics per side and round, so neither reads the other's partitions' state.
        let mut per_side = Vec::new();
        for side in ["raw", "direct", "engine"] {
            let mut options = KafkaOptions {
                brokers: brokers.clone(),
                topic_prefix: format!("bench-{run_id}-{round}-{side}"),
                ..KafkaOptions::default()
            };
            options.auto_create_topics = true;
            if let Ok(linger) = std::env::var("BENCH_LINGER_MS") {
                options.properties.insert("linger.ms".into(), linger);
            }
            let topics: Vec<String> = instances
                .iter()
                .map(|i| kafka_topic(&options.topic_prefix, Some(i), "messages.upsert"))
                .collect();
            create_topics(&options, &topics).await;
            per_side.push(options);
        }
        let raw_rate = raw(&per_side[0], &logged, n_instances).await;
        let direct_rate = direct(&per_side[1], &logged, &instances).await;
        let mut so = EmbeddedOptions::new(dir.path().join(format!("state-{round}")));
        so.fsync = FsyncPolicy::Always;
        let state: Arc<dyn EventLog> = EmbeddedLog::open(so).unwrap();
        let engine_rate =
            through_engine(&per_side[2], log.clone(), state, &instances, total as u64).await;
        let ratio = direct_rate / raw_rate;
        ratios.push(ratio);
        engine_ratios.push(engine_rate / raw_rate);
        println!(
            "  round {round}: raw FutureProducer {raw_rate:>7.0}/s, Kafka sink {direct_rate:>7.0}/s ({ratio:.2}x), engine + sink {engine_rate:>7.0}/s ({:.2}x)",
            engine_rate / raw_rate
        );
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    engine_ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  median ratio: Kafka sink {:.2}x (target >= 0.8x), engine + sink {:.2}x",
        ratios[1], engine_ratios[1]
    );
}
