//! RabbitMQ sink against the real broker: names, bindings, body, properties, order,
//! nacks and returns, and 10,000 events over three instances.

mod sink_support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::Value;
use sink_support::*;
use switchyard::catalog::EventKind;
use switchyard::delivery::subscription::SinkTarget;
use switchyard::envelope::LoggedEvent;
use switchyard::sinks::rabbitmq::{RabbitmqConfig, RabbitmqSink, RabbitmqTarget};
use switchyard::sinks::{Outcome, Sink};
use tokio_util::sync::CancellationToken;

const SERVER_URL: &str = "http://switchyard.test";

async fn sink(cfg: RabbitmqConfig) -> RabbitmqSink {
    let sink = RabbitmqSink::new(&cfg, SERVER_URL.into(), CancellationToken::new()).unwrap();
    sink.wait_connected(Duration::from_secs(10)).await.unwrap();
    sink
}

async fn config() -> RabbitmqConfig {
    RabbitmqConfig {
        enabled: true,
        uri: amqp_uri().await,
        ..RabbitmqConfig::default()
    }
}

async fn client() -> (Connection, Channel) {
    let conn = Connection::connect(&amqp_uri().await, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Every message now in `queue`, acknowledged (removed).
async fn drain(ch: &Channel, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(m);
    }
    out
}

fn message_ids(msgs: &[lapin::message::BasicGetMessage]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn ids(events: &[LoggedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.id.to_string()).collect()
}

fn ctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl").args(args).output().unwrap();
    assert!(out.status.success(), "rabbitmqctl {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(source, destination, routing key)` of every binding to `queue`.
fn bindings_of(queue: &str) -> Vec<(String, String)> {
    ctl(&[
        "list_bindings",
        "-q",
        "--no-table-headers",
        "source_name",
        "destination_name",
        "routing_key",
    ])
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (f.len() == 3 && f[1] == queue && !f[0].is_empty())
            .then(|| (f[0].to_string(), f[2].to_string()))
    })
    .collect()
}

fn queue_type(queue: &str) -> Option<String> {
    ctl(&["list_queues", "-q", "--no-table-headers", "name", "type"])
        .lines()
        .find_map(|l| {
            let (name, kind) = l.split_once('\t')?;
            (name == queue).then(|| kind.trim().to_string())
        })
}

#[tokio::test]
async fn per_instance_queues_names_bindings_body_and_properties() {
    let sink = sink(config().await).await;
    let inst = unique("rmq");
    let sub = subscription(
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        Some(&inst),
    );
    let events = vec![
        event(&inst, "messages.upsert", 1, r#"{"key":{"id":"A1"}}"#),
        event(&inst, "group-participants.update", 2, r#"{"id":"g"}"#),
        event(&inst, "messages.upsert", 3, r#"{"key":{"id":"A2"}}"#),
    ];
    // First use of both event types: the queues do not exist yet and nothing is lost.
    let outcomes = sink.send(&sub, &events).await;
    assert_eq!(outcomes, vec![Outcome::Delivered; 3]);

    let upsert = format!("{inst}.messages.upsert");
    let gpu = format!("{inst}.group-participants.update");
    assert_eq!(
        upsert,
        EventKind::MessagesUpsert.rabbitmq_instance_queue(&inst)
    );
    assert_eq!(queue_type(&upsert).as_deref(), Some("quorum"));
    assert_eq!(queue_type(&gpu).as_deref(), Some("quorum"));
    assert_eq!(
        bindings_of(&upsert),
        vec![(inst.clone(), "messages.upsert".to_string())]
    );
    assert_eq!(
        bindings_of(&gpu),
        vec![(inst.clone(), "group-participants.update".to_string())]
    );

    let (_conn, ch) = client().await;
    let got = drain(&ch, &upsert).await;
    assert_eq!(
        message_ids(&got),
        ids(&[events[0].clone(), events[2].clone()])
    );
    let m = &got[0];
    let body: Value = serde_json::from_slice(&m.delivery.data).unwrap();
    assert_eq!(body["event"], "messages.upsert");
    assert_eq!(body["instance"], inst.as_str());
    assert_eq!(body["data"]["key"]["id"], "A1");
    assert_eq!(body["server_url"], SERVER_URL);
    assert_eq!(body["sender"], "5511999990000@s.whatsapp.net");
    assert_eq!(body["id"], events[0].event.id.to_string());
    assert_eq!(body["sequence"], 1);
    assert!(
        body.get("destination").is_none(),
        "RabbitMQ has no destination"
    );
    assert!(body.get("dataType").is_none());
    let p = &m.delivery.properties;
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(
        *p.timestamp(),
        Some(events[0].received_at.timestamp() as u64)
    );
    let headers = p.headers().as_ref().unwrap().inner();
    assert_eq!(
        headers.get("event"),
        Some(&AMQPValue::LongString(LongString::from("messages.upsert")))
    );
    assert_eq!(
        headers.get("instance"),
        Some(&AMQPValue::LongString(LongString::from(inst.as_str())))
    );
    assert_eq!(message_ids(&drain(&ch, &gpu).await), ids(&events[1..2]));
}

#[tokio::test]
async fn global_queues_with_prefix_use_the_configured_exchange() {
    let mut cfg = config().await;
    cfg.exchange_name = unique("exchange");
    let prefix = unique("pfx");
    cfg.prefix_key = Some(prefix.clone());
    let sink = sink(cfg.clone()).await;
    let sub = subscription(SinkTarget::Rabbitmq(RabbitmqTarget { global: true }), None);
    let a = unique("a");
    let b = unique("b");
    let events = vec![event(&a, "call", 1, "{}"), event(&b, "CALL", 2, "{}")];
    assert_eq!(sink.send(&sub, &events).await, vec![Outcome::Delivered; 2]);
    let queue = format!("{prefix}.call");
    assert_eq!(
        bindings_of(&queue),
        vec![(cfg.exchange_name.clone(), "call".to_string())]
    );
    let (_conn, ch) = client().await;
    assert_eq!(message_ids(&drain(&ch, &queue).await), ids(&events));
}

#[tokio::test]
async fn global_queues_without_prefix_are_not_undefined() {
    let mut cfg = config().await;
    cfg.exchange_name = unique("exchange");
    cfg.prefix_key = None;
    let sink = sink(cfg.clone()).await;
    let sub = subscription(SinkTarget::Rabbitmq(RabbitmqTarget { global: true }), None);
    let ev = event(&unique("a"), "labels.association", 1, "{}");
    assert_eq!(
        sink.send(&sub, std::slice::from_ref(&ev)).await,
        vec![Outcome::Delivered]
    );
    // The queue is the bare dotted name, shared by every run: look for our message only.
    let bindings = bindings_of("labels.association");
    assert!(bindings.contains(&(cfg.exchange_name.clone(), "labels.association".into())));
    assert!(queue_type("undefined.labels.association").is_none());
    let (_conn, ch) = client().await;
    let got = message_ids(&drain(&ch, "labels.association").await);
    assert!(got.contains(&ev.event.id.to_string()));
}

#[tokio::test]
async fn eager_topology_declares_before_any_publish() {
    let sink = sink(config().await).await;
    let inst = unique("eager");
    sink.ensure_instance_topology(&inst, &[EventKind::QrcodeUpdated, EventKind::Call])
        .await
        .unwrap();
    assert_eq!(
        bindings_of(&format!("{inst}.qrcode.updated")),
        vec![(inst.clone(), "qrcode.updated".to_string())]
    );
    assert_eq!(
        queue_type(&format!("{inst}.call")).as_deref(),
        Some("quorum")
    );
}

#[tokio::test]
async fn custom_events_are_permanent_not_dropped() {
    let sink = sink(config().await).await;
    let inst = unique("custom");
    let sub = subscription(
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        Some(&inst),
    );
    let out = sink
        .send(&sub, &[event(&inst, "linq.reaction.added", 1, "{}")])
        .await;
    assert!(
        matches!(&out[0], Outcome::Permanent { reason } if reason.contains("linq.reaction.added")),
        "{out:?}"
    );
}

#[tokio::test]
async fn returned_message_is_retry_and_the_queue_comes_back() {
    let sink = sink(config().await).await;
    let inst = unique("ret");
    let sub = subscription(
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        Some(&inst),
    );
    let first = event(&inst, "call", 1, "{}");
    assert_eq!(sink.send(&sub, &[first]).await, vec![Outcome::Delivered]);
    // Someone deletes the queue behind the sink's back: the next publish is unroutable.
    let (_conn, ch) = client().await;
    ch.queue_delete(format!("{inst}.call").into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let second = event(&inst, "call", 2, "{}");
    let out = sink.send(&sub, std::slice::from_ref(&second)).await;
    assert!(
        matches!(&out[0], Outcome::Retry { reason, .. } if reason.contains("returned")),
        "{out:?}"
    );
    // The retry declares the queue again and lands.
    assert_eq!(
        sink.send(&sub, std::slice::from_ref(&second)).await,
        vec![Outcome::Delivered]
    );
    assert_eq!(
        message_ids(&drain(&ch, &format!("{inst}.call")).await),
        ids(&[second])
    );
}

#[tokio::test]
async fn nack_is_retry_and_later_events_of_that_queue_follow() {
    let sink = sink(config().await).await;
    let inst = unique("nack");
    let sub = subscription(
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        Some(&inst),
    );
    // A queue that holds one message and rejects (nacks) further publishes.
    let policy = unique("p");
    ctl(&[
        "set_policy",
        &policy,
        &format!("^{inst}\\."),
        r#"{"max-length":1,"overflow":"reject-publish"}"#,
        "--apply-to",
        "queues",
    ]);
    sink.ensure_instance_topology(&inst, &[EventKind::MessagesUpsert, EventKind::Call])
        .await
        .unwrap();
    // A quorum queue notices it is over its limit after the publish that crosses it, and
    // only then nacks: send one at a time until the broker refuses one.
    let mut nacked = None;
    for seq in 1..=20 {
        let out = sink
            .send(&sub, &[event(&inst, "messages.upsert", seq, "{}")])
            .await;
        if out[0] != Outcome::Delivered {
            nacked = Some(out[0].clone());
            break;
        }
    }
    let nacked = nacked.expect("the full queue never nacked");
    assert!(
        matches!(&nacked, Outcome::Retry { reason, .. } if reason.contains("nack")),
        "{nacked:?}"
    );
    // In a batch: the full queue's events are Retry, another queue's event is not.
    let events = vec![
        event(&inst, "messages.upsert", 21, "{}"),
        event(&inst, "call", 22, "{}"),
        event(&inst, "messages.upsert", 23, "{}"),
    ];
    let out = sink.send(&sub, &events).await;
    ctl(&["clear_policy", &policy]);
    assert!(matches!(&out[0], Outcome::Retry { .. }), "{out:?}");
    assert_eq!(out[1], Outcome::Delivered);
    assert!(matches!(&out[2], Outcome::Retry { .. }), "{out:?}");
}

/// 10,000 events over 3 instances and 4 event types, instances in parallel as the engine
/// runs them: each queue holds exactly its events, in sequence order, each id once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_over_three_instances_in_order_once() {
    let sink: Arc<dyn Sink> = Arc::new(sink(config().await).await);
    let instances: Vec<String> = (0..3).map(|_| unique("bulk")).collect();
    let per_instance = bulk_events(&instances, 10_000, 3);
    deliver_in_parallel(
        sink,
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        &per_instance,
        Duration::from_millis(200),
        Duration::from_secs(120),
    )
    .await;
    let (_conn, ch) = client().await;
    for (inst, events) in &per_instance {
        for kind in BULK_KINDS {
            let queue = format!("{inst}.{kind}");
            let expected: Vec<String> = events
                .iter()
                .filter(|e| e.event.event == kind)
                .map(|e| e.event.id.to_string())
                .collect();
            let got = consume(&ch, &queue, expected.len()).await;
            let dups = assert_in_order(&queue, &got, &expected);
            assert_eq!(dups, 0, "queue {queue}: duplicates");
        }
    }
}

/// Consumes `n` messages from `queue` (time-boxed), then checks nothing more is there.
async fn consume(ch: &Channel, queue: &str, n: usize) -> Vec<String> {
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            unique("c").into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::with_capacity(n);
    let collect = async {
        while out.len() < n {
            let d = consumer.next().await.unwrap().unwrap();
            out.push(d.properties.message_id().clone().unwrap().to_string());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .unwrap_or_else(|_| panic!("queue {queue}: only {} of {n} messages", out.len()));
    // Nothing beyond: a passive declare reports what is left.
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0, "queue {queue}: extra messages");
    out
}
