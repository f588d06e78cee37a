//! Broker sinks next to raw clients on the same server, in the same run, rounds alternated:
//! `RabbitmqSink` vs a raw lapin publisher with confirms (same batch size, same quorum
//! queue topology, mandatory + persistent), and `SqsSink` vs raw `SendMessageBatch` of 10
//! (pre-serialized bodies, same FIFO server). Prints events/s per side and the ratio.
//!
//! Run: `eval "$(bash scripts/services.sh)"; cargo bench --bench broker_sinks`.
//! `BENCH_AMQP_EVENTS` (default 20,000) and `BENCH_SQS_EVENTS` (default 500: moto is slow) per round.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::Utc;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::value::RawValue;
use switchyard::catalog::EventKind;
use switchyard::delivery::subscription::{Scope, SinkTarget, Subscription};
use switchyard::envelope::{LoggedEvent, StoredEvent};
use switchyard::sinks::rabbitmq::{RabbitmqConfig, RabbitmqSink, RabbitmqTarget};
use switchyard::sinks::sqs::{SqsConfig, SqsSink, SqsTarget};
use switchyard::sinks::{Outcome, Sink};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rounds per broker; the side that goes first alternates, so drift (a queue filling, a
/// busy machine) does not favour one side.
const ROUNDS: usize = 6;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn events(instance: &str, kind: &str, n: usize) -> Vec<LoggedEvent> {
    // A typical message event body, ~300 bytes.
    let data = r#"{"key":{"remoteJid":"5511999990000@s.whatsapp.net","fromMe":false,"id":"3EB0C767D26A1D8E"},"pushName":"Ana","message":{"conversation":"hello there, this is a benchmark message"},"messageType":"conversation","messageTimestamp":1758749877}"#;
    (1..=n as u64)
        .map(|sequence| LoggedEvent {
            apikey: None,
            message_id: None,
            sequence,
            received_at: Utc::now(),
            event: StoredEvent {
                id: Uuid::new_v4(),
                instance: instance.into(),
                event: kind.into(),
                data: RawValue::from_string(data.into()).unwrap(),
                sender: Some("5511888888888@s.whatsapp.net".into()),
                source: None,
                raw: None,
                instance_id: None,
                key: None,
                request: None,
                chat: None,
            },
        })
        .collect()
}

fn subscription(target: SinkTarget, instance: &str) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
        id: "bench".into(),
        target,
        scope: Scope::Instance(instance.into()),
        events: vec![],
        custom_events: vec![],
        phone_numbers: vec![],
        start_sequence: 1,
        start_positions: Vec::new(),
        enabled: true,
    }
}

async fn run_sink(sink: &dyn Sink, sub: &Subscription, events: &[LoggedEvent]) -> Duration {
    let started = Instant::now();
    for batch in events.chunks(sink.max_batch()) {
        let out = sink.send(sub, batch).await;
        assert!(out.iter().all(|o| *o == Outcome::Delivered), "{out:?}");
    }
    started.elapsed()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bench_rabbitmq(uri: &str) {
    let n = env_or("BENCH_AMQP_EVENTS", 20_000);
    let cfg = RabbitmqConfig {
        enabled: true,
        uri: uri.into(),
        ..RabbitmqConfig::default()
    };
    let sink = RabbitmqSink::new(&cfg, "http://bench".into(), CancellationToken::new()).unwrap();
    sink.wait_connected(Duration::from_secs(10)).await.unwrap();
    let instance = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    sink.ensure_instance_topology(&instance, &[EventKind::MessagesUpsert])
        .await
        .unwrap();
    let queue = EventKind::MessagesUpsert.rabbitmq_instance_queue(&instance);
    let sub = subscription(
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        &instance,
    );
    let evs = events(&instance, "messages.upsert", n);

    let conn = lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let raw = conn.create_channel().await.unwrap();
    raw.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // The raw side publishes the same messages (body and the properties the sink sets:
    // persistent, JSON, message_id, timestamp, event headers), built before it starts.
    let bodies: Vec<(Vec<u8>, BasicProperties)> = evs
        .iter()
        .map(|e| {
            let mut headers = FieldTable::default();
            for (k, v) in [("event", &e.event.event), ("instance", &e.event.instance)] {
                headers.insert(k.into(), AMQPValue::LongString(v.as_str().into()));
            }
            headers.insert("sequence".into(), AMQPValue::LongLongInt(e.sequence as i64));
            let props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(e.event.id.to_string().into())
                .with_timestamp(e.received_at.timestamp() as u64)
                .with_type(e.event.event.as_str().into())
                .with_app_id("switchyard".into())
                .with_headers(headers);
            (e.envelope("http://bench").to_vec(), props)
        })
        .collect();
    let batch = sink.max_batch();

    let purge = || async {
        raw.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
    };
    let (mut sink_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                sink_rates.push(rate(n, run_sink(&sink, &sub, &evs).await));
            } else {
                raw_rates.push(rate(n, raw_publish(&raw, &instance, &bodies, batch).await));
            }
            // Each side starts on an empty queue.
            purge().await;
        }
    }
    println!("rabbitmq rounds: sink {sink_rates:.0?}, raw {raw_rates:.0?}");
    let (s, r) = (median(sink_rates), median(raw_rates));
    println!(
        "rabbitmq: {n} events/round, batch {batch}, {ROUNDS} rounds: sink {s:.0} ev/s, raw lapin+confirms {r:.0} ev/s, ratio {:.2}x",
        s / r
    );
}

/// The raw publisher: batches of `batch` publishes, then every confirm.
async fn raw_publish(
    raw: &lapin::Channel,
    exchange: &str,
    messages: &[(Vec<u8>, BasicProperties)],
    batch: usize,
) -> Duration {
    let started = Instant::now();
    for chunk in messages.chunks(batch) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for (body, props) in chunk {
            let c = raw
                .basic_publish(
                    exchange.into(),
                    "messages.upsert".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    body,
                    props.clone(),
                )
                .await
                .unwrap();
            confirms.push(c);
        }
        for c in futures::future::join_all(confirms).await {
            assert!(c.unwrap().is_ack());
        }
    }
    started.elapsed()
}

async fn bench_sqs(endpoint: &str) {
    let n = env_or("BENCH_SQS_EVENTS", 500);
    let cfg = SqsConfig {
        enabled: true,
        endpoint_url: Some(endpoint.into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..SqsConfig::default()
    };
    let sink = SqsSink::new(&cfg, "http://bench".into(), "bench".into())
        .await
        .unwrap();
    let client = sink.client().clone();
    let (mut sink_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Fresh queues each round for both sides: moto slows down as a FIFO queue grows.
        let instance = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
        sink.ensure_instance_queues(&instance, &[EventKind::MessagesUpsert])
            .await
            .unwrap();
        let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), &instance);
        let evs = events(&instance, "messages.upsert", n);
        if round % 2 == 0 {
            sink_rates.push(rate(n, run_sink(&sink, &sub, &evs).await));
        }
        let raw_queue = format!("raw-{instance}.fifo");
        let url = client
            .create_queue()
            .queue_name(&raw_queue)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let entries: Vec<SendMessageBatchRequestEntry> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut env = e.envelope("http://bench");
                env.data_type = Some("json");
                env.server = Some("bench");
                SendMessageBatchRequestEntry::builder()
                    .id((i % 10).to_string())
                    .message_body(String::from_utf8(env.to_vec()).unwrap())
                    .message_group_id(instance.as_str())
                    .message_deduplication_id(e.event.id.to_string())
                    .build()
                    .unwrap()
            })
            .collect();
        let started = Instant::now();
        for chunk in entries.chunks(10) {
            let out = client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            assert!(out.failed().is_empty());
        }
        raw_rates.push(rate(n, started.elapsed()));
        if round % 2 == 1 {
            sink_rates.push(rate(n, run_sink(&sink, &sub, &evs).await));
        }
    }
    println!("sqs rounds: sink {sink_rates:.0?}, raw {raw_rates:.0?}");
    let (s, r) = (median(sink_rates), median(raw_rates));
    println!(
        "sqs: {n} events/round, batch 10, {ROUNDS} rounds: sink {s:.0} ev/s, raw SendMessageBatch {r:.0} ev/s, ratio {:.2}x",
        s / r
    );
}

#[tokio::main]
async fn main() {
    let uri = std::env::var("SWITCHYARD_TEST_AMQP_URI")
        .expect("SWITCHYARD_TEST_AMQP_URI is not set: eval \"$(bash scripts/services.sh)\"");
    let endpoint = std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT")
        .expect("SWITCHYARD_TEST_SQS_ENDPOINT is not set: eval \"$(bash scripts/services.sh)\"");
    bench_rabbitmq(&uri).await;
    bench_sqs(&endpoint).await;
}
