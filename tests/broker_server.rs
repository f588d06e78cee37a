//! Broker sinks through the real server: Evolution's API enables RabbitMQ and SQS for
//! instances, events go in over HTTP, real clients read the queues. Every event lands in its
//! queue, in sequence order per instance, each message id once; the queue exists before the
//! first event of its type (Evolution loses that event); a ~20 s RabbitMQ outage mid-stream
//! loses nothing.

mod common;
#[path = "sink_support/mod.rs"]
mod sink_support;

use std::collections::HashSet;
use std::time::Duration;

use common::{unique, TestServer};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{json, Value};

/// Reads `queue` until `n` distinct message ids arrived (or the deadline); returns the
/// bodies' `data.n` in arrival order of first sight, and the number of duplicates.
async fn consume(uri: &str, queue: &str, n: usize, within: Duration) -> (Vec<u64>, usize) {
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
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut duplicates = 0;
    let deadline = tokio::time::Instant::now() + within;
    while seen.len() < n {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            panic!("{queue}: only {} of {n} events arrived", seen.len())
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

async fn ingest(s: &TestServer, instance: &str, from: usize, count: usize) {
    let events: Vec<Value> = (from..from + count)
        .map(|n| json!({"event": "messages.upsert", "data": {"n": n}}))
        .collect();
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
}

fn rabbit_env(uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RABBITMQ_ENABLED", "true".into()),
        ("RABBITMQ_URI", uri.to_string()),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000".into()),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05".into()),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "1".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_over_three_instances_land_in_order() {
    let uri = sink_support::amqp_uri().await;
    let env = rabbit_env(&uri);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = TestServer::start(&env);
    let instances: Vec<String> = (0..3).map(|i| unique(&format!("rmq{i}"))).collect();
    for i in &instances {
        s.create_instance(
            i,
            json!({"rabbitmq": {"enabled": true, "events": ["MESSAGES_UPSERT", "CALL"]}}),
        )
        .await;
    }
    // Declared at set time: the queue of an event type never seen yet already exists.
    for i in &instances {
        consume(&uri, &format!("{i}.call"), 0, Duration::from_secs(5)).await;
    }
    let per_instance = [3334, 3333, 3333];
    for (i, count) in instances.iter().zip(per_instance) {
        for from in (0..count).step_by(500) {
            ingest(&s, i, from, 500.min(count - from)).await;
        }
    }
    for (i, count) in instances.iter().zip(per_instance) {
        let (order, duplicates) = consume(
            &uri,
            &format!("{i}.messages.upsert"),
            count,
            Duration::from_secs(120),
        )
        .await;
        assert_eq!(order, (0..count as u64).collect::<Vec<_>>(), "{i}: order");
        assert_eq!(duplicates, 0, "{i}: no outage, no duplicates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_fifo_queues_get_every_event_in_order() {
    let endpoint = sink_support::sqs_endpoint().await;
    let s = TestServer::start(&[
        ("SQS_ENABLED", "true"),
        ("SWITCHYARD_SQS__ENDPOINT_URL", endpoint.as_str()),
        ("SQS_ACCESS_KEY_ID", "test"),
        ("SQS_SECRET_ACCESS_KEY", "test"),
        ("SQS_REGION", "us-east-1"),
    ]);
    let instances: Vec<String> = (0..3).map(|i| unique(&format!("sqs{i}"))).collect();
    for i in &instances {
        s.create_instance(
            i,
            json!({"sqs": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
        ingest(&s, i, 0, 60).await;
    }
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    let client = aws_sdk_sqs::Client::from_conf(config);
    for i in &instances {
        let name = format!("{i}_messages_upsert.fifo");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let url = loop {
            if let Ok(out) = client.get_queue_url().queue_name(&name).send().await {
                break out.queue_url().unwrap_or_default().to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never created"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut got = Vec::new();
        let mut ids = HashSet::new();
        while got.len() < 60 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: only {} of 60",
                got.len()
            );
            let out = client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            for m in out.messages() {
                let body: Value = serde_json::from_str(m.body().unwrap_or_default()).expect("json");
                assert_eq!(body["dataType"], json!("json"));
                assert!(
                    ids.insert(body["id"].as_str().unwrap_or_default().to_string()),
                    "duplicate"
                );
                got.push(body["data"]["n"].as_u64().unwrap_or(u64::MAX));
                if let Some(handle) = m.receipt_handle() {
                    let _ = client
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
        }
        assert_eq!(got, (0..60).collect::<Vec<u64>>(), "{name}: order");
    }
}
