//! SQS sink against a real SQS-compatible server (moto): FIFO names, body, group and dedup
//! ids, batches of 10, oversize, and 10,000 events over three instances.

mod sink_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::Value;
use sink_support::*;
use switchyard::catalog::EventKind;
use switchyard::config::S3Config;
use switchyard::delivery::subscription::SinkTarget;
use switchyard::envelope::LoggedEvent;
use switchyard::sinks::sqs::{SqsConfig, SqsSink, SqsTarget};
use switchyard::sinks::{Outcome, Sink};

const SERVER_URL: &str = "http://switchyard.test";

async fn config() -> SqsConfig {
    SqsConfig {
        enabled: true,
        endpoint_url: Some(sqs_endpoint().await),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        region: "us-east-1".into(),
        ..SqsConfig::default()
    }
}

async fn sink(cfg: &SqsConfig) -> SqsSink {
    SqsSink::new(cfg, SERVER_URL.into(), "switchyard-test".into())
        .await
        .unwrap()
}

/// A received message: body, group id, dedup id.
struct Received {
    body: Value,
    group: String,
    dedup: String,
}

/// Receives and deletes up to `n` messages of `queue` (time-boxed), in queue order.
async fn receive(sink: &SqsSink, queue: &str, n: usize) -> Vec<Received> {
    let client = sink.client();
    let url = client
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {queue} does not exist: {e:?}"))
        .queue_url
        .unwrap();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    while out.len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "queue {queue}: only {} of {n} messages",
            out.len()
        );
        let got = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let mut deletes = Vec::new();
        for (i, m) in got.messages().iter().enumerate() {
            let attrs = m.attributes().unwrap();
            out.push(Received {
                body: serde_json::from_str(m.body().unwrap()).unwrap(),
                group: attrs[&MessageSystemAttributeName::MessageGroupId].clone(),
                dedup: attrs[&MessageSystemAttributeName::MessageDeduplicationId].clone(),
            });
            deletes.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        if !deletes.is_empty() {
            client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(deletes))
                .send()
                .await
                .unwrap();
        }
    }
    out
}

fn ids(events: &[LoggedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.id.to_string()).collect()
}

fn received_ids(r: &[Received]) -> Vec<String> {
    r.iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn per_instance_fifo_queue_created_on_first_use_with_envelope() {
    let cfg = config().await;
    let sink = sink(&cfg).await;
    let inst = unique("sqs");
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), Some(&inst));
    let events = vec![
        event(&inst, "messages.upsert", 1, r#"{"key":{"id":"A1"}}"#),
        event(&inst, "GROUP_PARTICIPANTS_UPDATE", 2, "{}"),
        event(&inst, "messages.upsert", 3, r#"{"key":{"id":"A2"}}"#),
    ];
    assert_eq!(sink.send(&sub, &events).await, vec![Outcome::Delivered; 3]);

    let queue = format!("{inst}_messages_upsert.fifo");
    assert_eq!(queue, EventKind::MessagesUpsert.sqs_instance_queue(&inst));
    let url = sink
        .client()
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let attrs = sink
        .client()
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    assert_eq!(attrs[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(
        attrs[&QueueAttributeName::ContentBasedDeduplication],
        "false"
    );

    let got = receive(&sink, &queue, 2).await;
    assert_eq!(
        received_ids(&got),
        ids(&[events[0].clone(), events[2].clone()])
    );
    let body = &got[0].body;
    assert_eq!(body["event"], "messages.upsert");
    assert_eq!(body["instance"], inst.as_str());
    assert_eq!(body["data"]["key"]["id"], "A1");
    assert_eq!(body["dataType"], "json");
    assert_eq!(body["server"], "switchyard-test");
    assert_eq!(body["server_url"], SERVER_URL);
    assert!(body.get("destination").is_none());
    assert_eq!(got[0].group, inst);
    assert_eq!(got[0].dedup, events[0].event.id.to_string());
    let gpu = receive(&sink, &format!("{inst}_group_participants_update.fifo"), 1).await;
    assert_eq!(received_ids(&gpu), ids(&events[1..2]));
}

#[tokio::test]
async fn batch_of_ten_in_order_and_resend_is_stored_once() {
    let cfg = config().await;
    let sink = sink(&cfg).await;
    assert_eq!(sink.max_batch(), 10);
    let inst = unique("ten");
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), Some(&inst));
    let events: Vec<LoggedEvent> = (1..=10).map(|s| event(&inst, "call", s, "{}")).collect();
    assert_eq!(sink.send(&sub, &events).await, vec![Outcome::Delivered; 10]);
    // The engine re-sends after a lost answer: the dedup id (event id) keeps one copy.
    assert_eq!(
        sink.send(&sub, &events[..3]).await,
        vec![Outcome::Delivered; 3]
    );
    let queue = format!("{inst}_call.fifo");
    let got = receive(&sink, &queue, 10).await;
    assert_eq!(received_ids(&got), ids(&events));
    let more = sink
        .client()
        .receive_message()
        .queue_url(
            sink.client()
                .get_queue_url()
                .queue_name(&queue)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap(),
        )
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(more.messages().is_empty(), "the re-send was stored twice");
}

#[tokio::test]
async fn oversize_payload_is_permanent_with_size_and_neighbours_go() {
    let mut cfg = config().await;
    cfg.max_payload_size = 2_000;
    let sink = sink(&cfg).await;
    let inst = unique("big");
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), Some(&inst));
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(3_000));
    let events = vec![
        event(&inst, "call", 1, "{}"),
        event(&inst, "call", 2, &big),
        event(&inst, "call", 3, "{}"),
    ];
    let out = sink.send(&sub, &events).await;
    assert_eq!(out[0], Outcome::Delivered);
    match &out[1] {
        Outcome::Permanent { reason } => {
            assert!(
                reason.contains("over the SQS limit of 2000 bytes")
                    && reason.contains("S3_ENABLED"),
                "{reason}"
            );
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(out[2], Outcome::Delivered);
    let got = receive(&sink, &format!("{inst}_call.fifo"), 2).await;
    assert_eq!(
        received_ids(&got),
        ids(&[events[0].clone(), events[2].clone()])
    );
}

/// A client of moto's S3 (served on the SQS port).
async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Evolution's large messages: with `[s3]` on, an event over the limit is stored in S3
/// (moto's) and arrives in order as a small `dataType: "s3"` message whose `fileUrl` serves
/// the whole envelope; a re-send overwrites the same object; an upload that fails is a
/// retry that holds its message group's later events.
#[tokio::test]
async fn oversize_payload_goes_to_s3_and_the_queue_gets_its_file_url() {
    let mut cfg = config().await;
    cfg.max_payload_size = 2_000;
    let endpoint = cfg.endpoint_url.clone().unwrap();
    let bucket = unique("large");
    let s3 = |bucket: &str| S3Config {
        enabled: true,
        endpoint: endpoint.clone(),
        bucket: bucket.into(),
        access_key: Some("test".into()),
        secret_key: Some("test".into()),
        ..S3Config::default()
    };
    let client = s3_client(&endpoint).await;
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto's S3 at {endpoint} refused the bucket: {e:?}"));
    let sink = sink(&cfg).await.with_s3(&s3(&bucket)).await;
    let inst = unique("s3");
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), Some(&inst));
    let big_data = format!(r#"{{"text":"{}"}}"#, "x".repeat(3_000));
    let events = vec![
        event(&inst, "call", 1, "{}"),
        event(&inst, "call", 2, &big_data),
        event(&inst, "call", 3, "{}"),
    ];
    let out = sink.send(&sub, &events).await;
    assert_eq!(out, vec![Outcome::Delivered; 3]);
    let got = receive(&sink, &format!("{inst}_call.fifo"), 3).await;
    assert_eq!(received_ids(&got), ids(&events), "in order");
    assert_eq!(got[0].body["dataType"], "json");
    let pointer = &got[1].body;
    assert!(pointer.to_string().len() < 2_000, "{pointer}");
    assert_eq!(pointer["dataType"], "s3", "{pointer}");
    assert_eq!(pointer["event"], "call");
    assert_eq!(pointer["instance"], inst.as_str());
    assert_eq!(pointer["server"], "switchyard-test");
    let file_url = pointer["data"]["fileUrl"].as_str().expect("data.fileUrl");
    let stored: Value = reqwest::get(file_url)
        .await
        .expect("the fileUrl answers")
        .error_for_status()
        .expect("the fileUrl serves the object")
        .json()
        .await
        .expect("the object is JSON");
    assert_eq!(stored["dataType"], "json");
    assert_eq!(stored["id"], pointer["id"]);
    assert_eq!(stored["sequence"], 2);
    assert_eq!(stored["server_url"], SERVER_URL);
    let big: Value = serde_json::from_str(&big_data).unwrap();
    assert_eq!(stored["data"], big, "the whole envelope");

    // A re-send (a redelivery) overwrites the object instead of adding one.
    assert_eq!(sink.send(&sub, &events[1..2]).await, [Outcome::Delivered]);
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        [format!(
            "evolution-api/messages/{inst}_call_{}.json",
            events[1].event.id
        )]
    );

    // No bucket: the upload is retried, and the group's next event waits behind it.
    let missing = crate::sink(&cfg)
        .await
        .with_s3(&s3(&unique("absent")))
        .await;
    let held = vec![
        event(&inst, "call", 4, &big_data),
        event(&inst, "call", 5, "{}"),
    ];
    match &missing.send(&sub, &held).await[..] {
        [Outcome::Retry { reason: first, .. }, Outcome::Retry { reason: next, .. }] => {
            assert!(first.contains("S3 bucket"), "{first}");
            assert!(next.contains("earlier event of message group"), "{next}");
        }
        other => panic!("expected two retries, got {other:?}"),
    }
}

#[tokio::test]
async fn group_id_by_chat_falls_back_to_instance() {
    let mut cfg = config().await;
    cfg.group_by = "chat".into();
    let sink = sink(&cfg).await;
    let inst = unique("chat");
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), Some(&inst));
    let events = vec![
        event(
            &inst,
            "messages.upsert",
            1,
            r#"{"key":{"remoteJid":"5511@s.whatsapp.net"}}"#,
        ),
        event(
            &inst,
            "messages.upsert",
            2,
            r#"{"key":{"remoteJid":"5522@s.whatsapp.net"}}"#,
        ),
        event(&inst, "messages.upsert", 3, r#"{"status":"no key"}"#),
    ];
    assert_eq!(sink.send(&sub, &events).await, vec![Outcome::Delivered; 3]);
    let got = receive(&sink, &format!("{inst}_messages_upsert.fifo"), 3).await;
    let groups: HashMap<String, String> = got
        .iter()
        .map(|m| (m.body["id"].as_str().unwrap().to_string(), m.group.clone()))
        .collect();
    assert_eq!(
        groups[&events[0].event.id.to_string()],
        "5511@s.whatsapp.net"
    );
    assert_eq!(
        groups[&events[1].event.id.to_string()],
        "5522@s.whatsapp.net"
    );
    assert_eq!(groups[&events[2].event.id.to_string()], inst);
}

#[tokio::test]
async fn global_queues_per_event_and_single() {
    let mut cfg = config().await;
    let prefix = unique("g");
    cfg.global_prefix_name = prefix.clone();
    let per_event = sink(&cfg).await;
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: true }), None);
    let ev = event(&unique("a"), "qrcode.updated", 1, "{}");
    assert_eq!(
        per_event.send(&sub, std::slice::from_ref(&ev)).await,
        vec![Outcome::Delivered]
    );
    let got = receive(&per_event, &format!("{prefix}_qrcode_updated.fifo"), 1).await;
    assert_eq!(received_ids(&got), ids(&[ev]));

    cfg.global_force_single_queue = true;
    let single = sink(&cfg).await;
    let evs = vec![
        event(&unique("a"), "call", 1, "{}"),
        event(&unique("b"), "linq.message.received", 2, "{}"),
    ];
    assert_eq!(single.send(&sub, &evs).await, vec![Outcome::Delivered; 2]);
    let got = receive(&single, &format!("{prefix}_singlequeue.fifo"), 2).await;
    assert_eq!(received_ids(&got), ids(&evs));
}

#[tokio::test]
async fn eager_creation_and_custom_events() {
    let cfg = config().await;
    let sink = sink(&cfg).await;
    let inst = unique("eager");
    let names = sink
        .ensure_instance_queues(&inst, &[EventKind::Call, EventKind::ConnectionUpdate])
        .await
        .unwrap();
    assert_eq!(
        names,
        vec![
            format!("{inst}_call.fifo"),
            format!("{inst}_connection_update.fifo")
        ]
    );
    for name in &names {
        sink.client()
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .unwrap();
    }
    let sub = subscription(SinkTarget::Sqs(SqsTarget { global: false }), Some(&inst));
    let out = sink
        .send(&sub, &[event(&inst, "linq.custom", 1, "{}")])
        .await;
    assert!(matches!(&out[0], Outcome::Permanent { .. }), "{out:?}");
}

/// 10,000 events over 3 instances and 4 event types, instances in parallel: each FIFO queue
/// holds exactly its events, in sequence order, each id once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_events_over_three_instances_in_order_once() {
    let total: u64 = 10_000;
    let cfg = config().await;
    let sink = Arc::new(sink(&cfg).await);
    let instances: Vec<String> = (0..3).map(|_| unique("bulk")).collect();
    // Runs of the same type, so batches fill up to 10 per queue.
    let per_instance = bulk_events(&instances, total, 30);
    let started = std::time::Instant::now();
    deliver_in_parallel(
        sink.clone(),
        SinkTarget::Sqs(SqsTarget { global: false }),
        &per_instance,
        Duration::from_millis(200),
        Duration::from_secs(300),
    )
    .await;
    println!("sent {total} events in {:?}", started.elapsed());
    for (inst, events) in &per_instance {
        for kind in BULK_KINDS {
            let queue = format!("{inst}_{}.fifo", kind.replace('.', "_"));
            let expected: Vec<String> = events
                .iter()
                .filter(|e| e.event.event == kind)
                .map(|e| e.event.id.to_string())
                .collect();
            let got = received_ids(&receive(&sink, &queue, expected.len()).await);
            assert_eq!(
                assert_in_order(&queue, &got, &expected),
                0,
                "{queue}: duplicates"
            );
        }
    }
}
