//! Pipelined brokers: one instance's events through the delivery engine to RabbitMQ, Kafka
//! and SQS, each next to a raw client with the same pipelining, in the same run.
//!
//! **Engine side.** The events of one instance (spread over 50 chats through
//! `StoredEvent::chat`, as ingest stores them) are in an embedded log (tempdir, fsync
//! always) before a `DeliveryEngine` starts with one subscription scoped to that instance
//! and the server's defaults (`ordering = chat`, `EngineOptions::default()`); the clock runs
//! from the engine's start until the sink reported the last event delivered. This is the
//! backlog case (a restart, a replay, a burst), where only delivery bounds the rate.
//!
//! **Raw side.** The same events (read back from the log) through the broker's own client
//! with the guarantees the sink gives, and as much pipelining as the engine allows (its
//! window of unfinished events, `BENCH_WINDOW`):
//! - RabbitMQ: lapin on a confirm-mode channel, `mandatory` and persistent, the sink's
//!   properties and body, at most `window` publishes unconfirmed, then every confirm.
//! - Kafka: an rdkafka `FutureProducer` with the sink's client settings (idempotent,
//!   `acks=all`), the sink's key, headers and body, at most `window` delivery reports
//!   outstanding, then every report.
//! - SQS: `SendMessageBatch` of 10 entries of one message group (the chat: the bench sets
//!   `sqs.group_by = chat`), each group's batches in order, as many groups at once as the
//!   engine runs lanes (`max_parallel_instances`, at most the 50 chats).
//!
//! Every round uses a fresh instance (so fresh queues and topics, named with a random run
//! id), the two sides alternate which goes first, and the figures are medians. Prints
//! events/s per side, this process's CPU per event on each side (all threads: the engine,
//! the client library; the broker runs on the same cores, so CPU spent here slows it), and
//! the ratio engine / raw (target: >= 0.8x). With `BENCH_VERBOSE` set, each engine round
//! also prints its sink calls, events per call, calls at once and mean events in flight,
//! the figure to set against the raw side's window.
//!
//! Run: `eval "$(cat /tmp/services.env)"` (or `eval "$(bash scripts/services.sh)"`), then
//! `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev --bench broker_engine`.
//! Knobs (env): `BENCH_ONLY` (`rabbitmq,kafka,sqs`: which brokers), `BENCH_ROUNDS` (5),
//! `BENCH_AMQP_EVENTS` (20000), `BENCH_KAFKA_EVENTS` (100000), `BENCH_SQS_EVENTS` (1000:
//! moto is slow), `BENCH_WINDOW` (the engine's window, default its own, and the raw sides'
//! outstanding limit), `BENCH_KAFKA_PROPERTIES` (`k=v,k=v`: librdkafka settings for both
//! Kafka sides), `BENCH_VERBOSE`. Endpoints:
//! `SWITCHYARD_TEST_AMQP_URI`, `SWITCHYARD_TEST_KAFKA_BROKERS`,
//! `SWITCHYARD_TEST_SQS_ENDPOINT`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::StreamExt;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use switchyard::catalog::{kafka_topic, EventKind};
use switchyard::delivery::{
    DeliveryEngine, DeliveryMetrics, EngineDeps, EngineOptions, RetryPolicy, Scope, SinkTarget,
    Subscription, SubscriptionSet,
};
use switchyard::envelope::{LoggedEvent, StoredEvent};
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};
use switchyard::sinks::kafka::{client_config, message_key, KafkaOptions, KafkaSink, KafkaTarget};
use switchyard::sinks::rabbitmq::{RabbitmqConfig, RabbitmqSink, RabbitmqTarget};
use switchyard::sinks::sqs::{SqsConfig, SqsSink, SqsTarget};
use switchyard::sinks::{Outcome, Sink, SinkKind, SinkRegistry, Submitted};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Chats the instance's events are spread over (round-robin).
const CHATS: usize = 50;

/// The `server_url` in every envelope, on both sides.
const SERVER_URL: &str = "http://bench";

/// The longest a side may take to deliver one round before the bench gives up.
const ROUND_LIMIT: Duration = Duration::from_secs(600);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_required(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: eval \"$(cat /tmp/services.env)\""))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A sink that counts what the wrapped one delivered, so the bench knows when a round is
/// over, and keeps the last failure to say why a round does not end.
struct Counting {
    inner: Arc<dyn Sink>,
    /// Shared with the outcome futures of pipelined sends.
    counts: Arc<Counts>,
}

impl std::ops::Deref for Counting {
    type Target = Counts;

    fn deref(&self) -> &Counts {
        &self.counts
    }
}

/// What [`Counting`] counts.
#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_failure: Mutex<Option<Outcome>>,
    notify: Notify,
    /// Calls in progress now, and the most at once: the pipelining the engine achieved.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Calls made.
    calls: AtomicU64,
    /// When the first call came.
    first: std::sync::OnceLock<Instant>,
    /// Sum over calls of events × call duration (ns): over the round's time, the mean
    /// events in flight, to set against the raw side's window.
    event_ns: AtomicU64,
}

#[async_trait]
impl Sink for Counting {
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        let sent = self.sending();
        let outcomes = self.inner.send(subscription, events).await;
        self.record(events.len(), sent, &outcomes);
        outcomes
    }

    fn pipelines(&self) -> bool {
        self.inner.pipelines()
    }

    async fn submit(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Submitted {
        let sent = self.sending();
        let answers = self.inner.submit(subscription, events).await;
        let this = self.counts.clone();
        let n = events.len();
        Box::pin(async move {
            let outcomes = answers.await;
            this.record(n, sent, &outcomes);
            outcomes
        })
    }
}

impl Counts {
    /// Counts a send that starts now.
    fn sending(&self) -> Instant {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.first.get_or_init(Instant::now);
        Instant::now()
    }

    /// Counts the outcomes of `events` events sent at `sent`.
    fn record(&self, events: usize, sent: Instant, outcomes: &[Outcome]) {
        self.event_ns.fetch_add(
            events as u64 * sent.elapsed().as_nanos() as u64,
            Ordering::Relaxed,
        );
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ok = outcomes
            .iter()
            .filter(|o| **o == Outcome::Delivered)
            .count();
        if ok < outcomes.len() {
            self.failed
                .fetch_add((outcomes.len() - ok) as u64, Ordering::Relaxed);
            if let Ok(mut last) = self.last_failure.lock() {
                *last = outcomes.iter().find(|o| **o != Outcome::Delivered).cloned();
            }
        }
        self.delivered.fetch_add(ok as u64, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
}

/// The shared event log and where the rounds keep their delivery state.
struct Bench {
    dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    run: String,
    rounds: usize,
    window: usize,
}

fn open(dir: &Path) -> Arc<dyn EventLog> {
    let mut o = EmbeddedOptions::new(dir);
    o.fsync = FsyncPolicy::Always;
    EmbeddedLog::open(o).unwrap()
}

/// Message `n` of `instance`, in chat `n % CHATS`, as ingest stores it (chat derived).
fn stored(instance: &str, n: usize) -> bytes::Bytes {
    let chat = format!("55119{:08}@s.whatsapp.net", n % CHATS);
    let data = serde_json::value::RawValue::from_string(format!(
        r#"{{"key":{{"remoteJid":"{chat}","fromMe":false,"id":"BAE5{n:012}"}},"pushName":"Ana","message":{{"conversation":"hello there, this is benchmark message {n}"}},"messageType":"conversation","messageTimestamp":1758749877}}"#
    ))
    .unwrap();
    StoredEvent {
        id: uuid::Uuid::now_v7(),
        instance: instance.to_owned(),
        instance_id: None,
        event: "messages.upsert".into(),
        chat: switchyard::chat::chat_of("messages.upsert", &data),
        data,
        sender: Some("5511888888888@s.whatsapp.net".into()),
        source: None,
        raw: None,
        key: None,
        request: None,
    }
    .to_bytes()
    .expect("a stored event of strings encodes")
}

impl Bench {
    /// Appends `n` events of `instance` (100 per append, a busy gateway's request) and
    /// returns them as the log holds them (sequence, receive time).
    async fn append(&self, instance: &str, n: usize) -> Vec<LoggedEvent> {
        let first = self.log.next_sequence();
        let all: Vec<bytes::Bytes> = (0..n).map(|i| stored(instance, i)).collect();
        for chunk in all.chunks(100) {
            self.log.append(chunk.to_vec()).await.unwrap();
        }
        let mut events = Vec::with_capacity(n);
        let mut from = first;
        while events.len() < n {
            let records = self.log.read(from, 1000, 8 << 20).await.unwrap();
            assert!(
                !records.is_empty(),
                "the log ends before the round's events"
            );
            for record in &records {
                from = record.sequence + 1;
                let event = LoggedEvent::decode(record).unwrap();
                if event.event.instance == instance {
                    events.push(event);
                }
            }
        }
        events
    }

    /// Delivers `events` (one instance's, already in the log) through a fresh engine with
    /// `sink`; events per second, from the engine's start to the last delivery.
    async fn through_engine(
        &self,
        kind: SinkKind,
        sink: Arc<dyn Sink>,
        target: SinkTarget,
        events: &[LoggedEvent],
    ) -> f64 {
        let instance = events[0].event.instance.clone();
        let counting = Arc::new(Counting {
            inner: sink,
            counts: Arc::default(),
        });
        let sub = Subscription {
            policy: Default::default(),
            filter: Default::default(),
            id: format!("{}:{instance}", kind.as_str()),
            target,
            scope: Scope::Instance(instance.clone()),
            events: vec![],
            custom_events: vec![],
            phone_numbers: vec![],
            start_sequence: events[0].sequence,
            start_positions: Vec::new(),
            enabled: true,
        };
        let (_set_tx, set_rx) = watch::channel(Arc::new(SubscriptionSet {
            subscriptions: vec![sub],
            instance_numbers: HashMap::new(),
            instance_tokens: HashMap::new(),
        }));
        let state = open(&self.dir.path().join(format!("state-{instance}")));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let total = events.len() as u64;
        let started = Instant::now();
        let engine = DeliveryEngine::start(EngineDeps {
            log: self.log.clone(),
            state_log: state,
            subscriptions: set_rx,
            sinks: SinkRegistry::new().with(kind, counting.clone()),
            policy: RetryPolicy::default(),
            options: EngineOptions {
                window: self.window,
                ..EngineOptions::default()
            },
            disable_requests: mpsc::unbounded_channel().0,
            metrics: DeliveryMetrics::register(&prometheus::Registry::new())
                .expect("delivery metrics"),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            attempts: None,
            activity: None,
        })
        .await
        .unwrap();
        loop {
            let notified = counting.notify.notified();
            if counting.delivered.load(Ordering::Relaxed) >= total {
                break;
            }
            assert!(
                started.elapsed() < ROUND_LIMIT,
                "{kind}: {} of {total} delivered, {} failed attempts, last: {:?}",
                counting.delivered.load(Ordering::Relaxed),
                counting.failed.load(Ordering::Relaxed),
                counting.last_failure.lock().ok().and_then(|l| l.clone()),
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
        let elapsed = started.elapsed();
        let rate = total as f64 / elapsed.as_secs_f64();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            let mean = counting.event_ns.load(Ordering::Relaxed) as f64 / elapsed.as_nanos() as f64;
            let calls = counting.calls.load(Ordering::Relaxed);
            let first = counting.first.get().map(|f| f.duration_since(started));
            println!(
                "  ({kind} engine: {calls} sends, {:.1} events per send, at most {} at once, {mean:.0} events in flight on average, first after {first:?})",
                total as f64 / calls.max(1) as f64,
                counting.max_in_flight.load(Ordering::Relaxed)
            );
        }
        let failed = counting.failed.load(Ordering::Relaxed);
        if failed > 0 {
            println!("  ({kind}: {failed} failed attempts in this round, retried by the engine)");
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        drop(engine);
        rate
    }

    /// Runs `rounds` rounds of (engine, raw), alternating which goes first; `round(r,
    /// engine_first)` returns each side's figures. Prints the rounds and the medians.
    async fn compare<F, Fut>(&self, broker: &str, raw_name: &str, events: usize, mut round: F)
    where
        F: FnMut(usize, bool) -> Fut,
        Fut: Future<Output = (Side, Side)>,
    {
        let (mut engine, mut raw) = (Vec::new(), Vec::new());
        for r in 0..self.rounds {
            let (e, w) = round(r, r % 2 == 0).await;
            engine.push(e);
            raw.push(w);
        }
        let rates = |v: &[Side]| v.iter().map(|s| s.rate).collect::<Vec<_>>();
        println!(
            "{broker} rounds: engine {:.0?}, raw {:.0?}",
            rates(&engine),
            rates(&raw)
        );
        let cpu = |v: &[Side]| {
            median(
                v.iter()
                    .map(|s| s.cpu.as_secs_f64() * 1e6 / events as f64)
                    .collect(),
            )
        };
        let (e, w) = (median(rates(&engine)), median(rates(&raw)));
        println!(
            "{broker}: 1 instance, {CHATS} chats, {events} events/round, window {}, {} rounds: engine + sink {e:.0} ev/s ({:.1} µs CPU/ev), {raw_name} {w:.0} ev/s ({:.1} µs CPU/ev), ratio {:.2}x (target >= 0.8x)",
            self.window,
            self.rounds,
            cpu(&engine),
            cpu(&raw),
            e / w
        );
    }
}

/// One side's figures for one round.
struct Side {
    /// Events per second.
    rate: f64,
    /// This process's CPU time (all threads) while the side ran.
    cpu: Duration,
}

/// This process's CPU time so far, user and system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `side`, measuring the process's CPU meanwhile.
async fn measured(side: impl Future<Output = f64>) -> Side {
    let before = process_cpu();
    let rate = side.await;
    Side {
        rate,
        cpu: process_cpu().saturating_sub(before),
    }
}

/// Runs `engine` then `raw`, or the other way round, each measured with the process's CPU.
async fn in_order(
    engine_first: bool,
    engine: impl Future<Output = f64>,
    raw: impl Future<Output = f64>,
) -> (Side, Side) {
    if engine_first {
        let e = measured(engine).await;
        (e, measured(raw).await)
    } else {
        let w = measured(raw).await;
        (measured(engine).await, w)
    }
}

// ---------------------------------------------------------------- RabbitMQ

/// The properties the sink sets (`sinks/rabbitmq/message.rs`).
fn amqp_properties(e: &LoggedEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in [("event", &e.event.event), ("instance", &e.event.instance)] {
        headers.insert(k.into(), AMQPValue::LongString(v.as_str().into()));
    }
    headers.insert("sequence".into(), AMQPValue::LongLongInt(e.sequence as i64));
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(e.event.id.to_string().into())
        .with_timestamp(e.received_at.timestamp() as u64)
        .with_type(e.event.event.as_str().into())
        .with_app_id("switchyard".into())
        .with_headers(headers)
}

/// The raw publisher: every event in order on one confirm channel, at most `window`
/// unconfirmed, then every remaining confirm. Events per second.
async fn raw_amqp(channel: &lapin::Channel, events: &[LoggedEvent], window: usize) -> f64 {
    let exchange = events[0].event.instance.as_str();
    let check = |c: lapin::Result<Confirmation>| match c.unwrap() {
        Confirmation::Ack(None) => {}
        other => panic!("raw publish not confirmed: {other:?}"),
    };
    let started = Instant::now();
    let mut outstanding = VecDeque::with_capacity(window);
    for e in events {
        if outstanding.len() >= window {
            let confirm: PublisherConfirm = outstanding.pop_front().unwrap();
            check(confirm.await);
        }
        let body = e.envelope(SERVER_URL).to_vec();
        let confirm = channel
            .basic_publish(
                exchange.into(),
                EventKind::MessagesUpsert.rabbitmq_routing_key().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                amqp_properties(e),
            )
            .await
            .unwrap();
        outstanding.push_back(confirm);
    }
    for confirm in outstanding {
        check(confirm.await);
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn bench_rabbitmq(bench: &Bench) {
    let uri = env_required("SWITCHYARD_TEST_AMQP_URI");
    let n = env_or("BENCH_AMQP_EVENTS", 20_000);
    let cfg = RabbitmqConfig {
        enabled: true,
        uri: uri.clone(),
        ..RabbitmqConfig::default()
    };
    let sink =
        Arc::new(RabbitmqSink::new(&cfg, SERVER_URL.into(), CancellationToken::new()).unwrap());
    sink.wait_connected(Duration::from_secs(10)).await.unwrap();
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let raw = conn.create_channel().await.unwrap();
    raw.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    bench
        .compare(
            "rabbitmq",
            "raw lapin with confirms",
            n,
            |r, engine_first| {
                let (sink, raw) = (sink.clone(), &raw);
                async move {
                    let instance = format!("amqp{}r{r}", bench.run);
                    // Declared before the clock on both sides (the sink caches it).
                    sink.ensure_instance_topology(&instance, &[EventKind::MessagesUpsert])
                        .await
                        .unwrap();
                    let queue = EventKind::MessagesUpsert.rabbitmq_instance_queue(&instance);
                    let events = bench.append(&instance, n).await;
                    // Each side starts on an empty queue.
                    let purge = || async {
                        raw.queue_purge(queue.as_str().into(), Default::default())
                            .await
                            .unwrap();
                    };
                    let engine = async {
                        let rate = bench
                            .through_engine(
                                SinkKind::Rabbitmq,
                                sink.clone(),
                                SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
                                &events,
                            )
                            .await;
                        purge().await;
                        rate
                    };
                    let direct = async {
                        let rate = raw_amqp(raw, &events, bench.window).await;
                        purge().await;
                        rate
                    };
                    let rates = in_order(engine_first, engine, direct).await;
                    raw.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await
                        .unwrap();
                    raw.exchange_delete(instance.as_str().into(), ExchangeDeleteOptions::default())
                        .await
                        .unwrap();
                    rates
                }
            },
        )
        .await;
}

// ---------------------------------------------------------------- Kafka

async fn create_topics(options: &KafkaOptions, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = client_config(options).create().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                options.num_partitions,
                TopicReplication::Fixed(options.replication_factor),
            )
        })
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// The record the sink produces for `e` (`sinks/kafka/sink.rs`), to `topic`; at most
/// `window` reports outstanding, then every report. Events per second.
async fn raw_kafka(
    producer: &FutureProducer,
    options: &KafkaOptions,
    topic: &str,
    events: &[LoggedEvent],
    window: usize,
) -> f64 {
    let started = Instant::now();
    let mut outstanding = VecDeque::with_capacity(window);
    for e in events {
        if outstanding.len() >= window {
            let report: rdkafka::producer::DeliveryFuture = outstanding.pop_front().unwrap();
            report.await.unwrap().unwrap();
        }
        let mut envelope = e.envelope(&options.server_url);
        let ms = e.received_at.timestamp_millis();
        envelope.timestamp = Some(ms);
        let body = envelope.to_vec();
        let key = message_key(options.key_by, e);
        let (ms_text, id) = (ms.to_string(), e.event.id.to_string());
        let headers = [
            ("event", e.event.event.as_str()),
            ("instance", e.event.instance.as_str()),
            ("origin", options.server_url.as_str()),
            ("timestamp", ms_text.as_str()),
            ("event_id", id.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new_with_capacity(5), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&body)
            .timestamp(ms)
            .headers(headers);
        match producer.send_result(record) {
            Ok(report) => outstanding.push_back(report),
            Err((e, _)) => panic!("raw enqueue: {e}"),
        }
    }
    for report in outstanding {
        report.await.unwrap().unwrap();
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn bench_kafka(bench: &Bench) {
    let brokers = env_required("SWITCHYARD_TEST_KAFKA_BROKERS");
    let n = env_or("BENCH_KAFKA_EVENTS", 100_000);
    let options = KafkaOptions {
        brokers,
        server_url: SERVER_URL.into(),
        topic_prefix: format!("bench-{}", bench.run),
        auto_create_topics: true,
        ..KafkaOptions::default()
    };
    let mut options = options;
    // Extra librdkafka properties for both sides, to try settings: `k=v,k=v`.
    for pair in std::env::var("BENCH_KAFKA_PROPERTIES")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .expect("BENCH_KAFKA_PROPERTIES: k=v,k=v");
        options.properties.insert(k.into(), v.into());
    }
    let sink = Arc::new(KafkaSink::new(options.clone()).unwrap());
    let producer: FutureProducer = client_config(&options).create().unwrap();
    let raw_prefix = format!("{}-raw", options.topic_prefix);
    bench
        .compare(
            "kafka",
            "raw idempotent FutureProducer",
            n,
            |r, engine_first| {
                let (sink, producer, options, raw_prefix) =
                    (sink.clone(), &producer, &options, &raw_prefix);
                async move {
                    let instance = format!("kafka{}r{r}", bench.run);
                    let topic =
                        kafka_topic(&options.topic_prefix, Some(&instance), "messages.upsert");
                    let raw_topic = kafka_topic(raw_prefix, Some(&instance), "messages.upsert");
                    create_topics(options, &[topic, raw_topic.clone()]).await;
                    let events = bench.append(&instance, n).await;
                    // Warm-up outside the clock on both sides: connections, the producer id,
                    // the topic's metadata (one event more in each topic).
                    let sub = Subscription {
                        policy: Default::default(),
                        filter: Default::default(),
                        id: "warm-up".into(),
                        target: SinkTarget::Kafka(KafkaTarget { global: false }),
                        scope: Scope::Instance(instance.clone()),
                        events: vec![],
                        custom_events: vec![],
                        phone_numbers: vec![],
                        start_sequence: 0,
                        start_positions: Vec::new(),
                        enabled: true,
                    };
                    let warmed = sink.send(&sub, &events[..1]).await;
                    assert_eq!(warmed, vec![Outcome::Delivered]);
                    raw_kafka(producer, options, &raw_topic, &events[..1], 1).await;
                    in_order(
                        engine_first,
                        bench.through_engine(
                            SinkKind::Kafka,
                            sink.clone(),
                            SinkTarget::Kafka(KafkaTarget { global: false }),
                            &events,
                        ),
                        raw_kafka(producer, options, &raw_topic, &events, bench.window),
                    )
                    .await
                }
            },
        )
        .await;
}

// ---------------------------------------------------------------- SQS

/// The raw sender: the events grouped by chat (the message group), each group's entries
/// in batches of 10 in order, `parallel` groups at once. Events per second.
async fn raw_sqs(
    client: &aws_sdk_sqs::Client,
    url: &str,
    events: &[LoggedEvent],
    parallel: usize,
) -> f64 {
    let started = Instant::now();
    let mut groups: Vec<(String, Vec<&LoggedEvent>)> = Vec::new();
    for e in events {
        let chat = e.event.chat.clone().unwrap_or_default();
        match groups.iter_mut().find(|(g, _)| *g == chat) {
            Some((_, mine)) => mine.push(e),
            None => groups.push((chat, vec![e])),
        }
    }
    futures::stream::iter(groups)
        .map(|(group, mine)| async move {
            for chunk in mine.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let mut env = e.envelope(SERVER_URL);
                        env.data_type = Some("json");
                        env.server = Some("bench");
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(String::from_utf8(env.to_vec()).unwrap())
                            .message_group_id(group.as_str())
                            .message_deduplication_id(e.event.id.to_string())
                            .build()
                            .unwrap()
                    })
                    .collect();
                let out = client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .unwrap();
                assert!(out.failed().is_empty(), "{:?}", out.failed());
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect::<Vec<()>>()
        .await;
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn bench_sqs(bench: &Bench) {
    let endpoint = env_required("SWITCHYARD_TEST_SQS_ENDPOINT");
    let n = env_or("BENCH_SQS_EVENTS", 1_000);
    let cfg = SqsConfig {
        enabled: true,
        endpoint_url: Some(endpoint),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        group_by: "chat".into(),
        ..SqsConfig::default()
    };
    let sink = Arc::new(
        SqsSink::new(&cfg, SERVER_URL.into(), "bench".into())
            .await
            .unwrap(),
    );
    let client = sink.client().clone();
    let parallel = EngineOptions::default().max_parallel_instances.min(CHATS);
    bench
        .compare(
            "sqs",
            &format!("raw SendMessageBatch, {parallel} groups at once"),
            n,
            |r, engine_first| {
                let (sink, client) = (sink.clone(), &client);
                async move {
                    // Fresh queues each round for both sides: moto slows down as a FIFO queue
                    // grows. Both created before the clock.
                    let instance = format!("sqs{}r{r}", bench.run);
                    sink.ensure_instance_queues(&instance, &[EventKind::MessagesUpsert])
                        .await
                        .unwrap();
                    let url = client
                        .create_queue()
                        .queue_name(format!("raw{instance}.fifo"))
                        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                        .send()
                        .await
                        .unwrap()
                        .queue_url
                        .unwrap();
                    let events = bench.append(&instance, n).await;
                    in_order(
                        engine_first,
                        bench.through_engine(
                            SinkKind::Sqs,
                            sink.clone(),
                            SinkTarget::Sqs(SqsTarget { global: false }),
                            &events,
                        ),
                        raw_sqs(client, &url, &events, parallel),
                    )
                    .await
                }
            },
        )
        .await;
}

#[tokio::main]
async fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "rabbitmq,kafka,sqs".into());
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench {
        log: open(&dir.path().join("events")),
        dir,
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        rounds: env_or("BENCH_ROUNDS", 5).max(1),
        window: env_or("BENCH_WINDOW", EngineOptions::default().window),
    };
    for broker in only.split(',').map(str::trim) {
        match broker {
            "rabbitmq" => bench_rabbitmq(&bench).await,
            "kafka" => bench_kafka(&bench).await,
            "sqs" => bench_sqs(&bench).await,
            other => panic!("BENCH_ONLY: unknown broker `{other}` (rabbitmq, kafka, sqs)"),
        }
    }
}
