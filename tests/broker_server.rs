//! Broker sinks through the real server: Evolution's API enables RabbitMQ and SQS for
//! instances, events go in over HTTP, real clients read the queues. 10,000 events over three
//! instances: every event lands in its queue, in sequence order per instance, each message id
//! once (and an SQS queue holds nothing else); the queue exists before the first event of its
//! type (the engine prepares a subscription's queues when it starts; Evolution loses that
//! event); a ~20 s RabbitMQ outage mid-stream loses nothing.

mod common;
#[path = "sink_support/mod.rs"]
mod sink_support;

use std::collections::HashSet;
use std::time::Duration;

use common::{unique, TestServer};
use serde_json::{json, Value};

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
    // Prepared by the engine as the subscription starts: the queue of an event type that
    // is never sent exists all the same.
    for i in &instances {
        sink_support::wait_for_queue(&uri, &format!("{i}.call"), Duration::from_secs(5)).await;
    }
    let per_instance = [3334, 3333, 3333];
    for (i, count) in instances.iter().zip(per_instance) {
        for from in (0..count).step_by(500) {
            s.ingest_numbered(i, from, 500.min(count - from)).await;
        }
    }
    for (i, count) in instances.iter().zip(per_instance) {
        let (order, duplicates) = sink_support::consume_queue(
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
async fn setting_and_changing_a_sink_prepares_its_queues() {
    let uri = sink_support::amqp_uri().await;
    let env = rabbit_env(&uri);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = TestServer::start(&env);
    let instance = unique("rmqprep");
    s.create_instance(&instance, json!({})).await;
    // No event is ever sent: only the engine's preparation can declare these queues.
    let set = |events: Value| json!({"rabbitmq": {"enabled": true, "events": events}});
    let path = format!("/rabbitmq/set/{instance}");
    let (status, v) = s.post(&path, &set(json!(["CALL"]))).await;
    assert_eq!(status, 201, "{v}");
    sink_support::wait_for_queue(&uri, &format!("{instance}.call"), Duration::from_secs(5)).await;
    let (status, v) = s.post(&path, &set(json!(["CALL", "QRCODE_UPDATED"]))).await;
    assert_eq!(status, 201, "{v}");
    let queue = format!("{instance}.qrcode.updated");
    sink_support::wait_for_queue(&uri, &queue, Duration::from_secs(5)).await;
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
    // The acceptance size: under 30 s on moto as scripts/moto_server.py runs it.
    let total: usize = 10_000;
    let per_instance = [total - 2 * (total / 3), total / 3, total / 3];
    for i in &instances {
        s.create_instance(
            i,
            json!({"sqs": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
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
    // A consumer per queue from the start, as workers would be: each queue's one message
    // group is read 10 at a time, received then deleted.
    let started = std::time::Instant::now();
    let mut drains = Vec::new();
    for (i, count) in instances.iter().zip(per_instance) {
        let client = client.clone();
        let name = format!("{i}_messages_upsert.fifo");
        drains.push(tokio::spawn(async move {
            drain_fifo(&client, &name, count).await
        }));
    }
    for (i, count) in instances.iter().zip(per_instance) {
        for from in (0..count).step_by(500) {
            s.ingest_numbered(i, from, 500.min(count - from)).await;
        }
    }
    for drain in drains {
        drain.await.expect("drain task");
    }
    println!("{total} events through SQS in {:?}", started.elapsed());
}

/// Receives and deletes from `name` until `count` distinct events came, checking the SQS
/// envelope, each id once, sequence order, and that nothing else is in the queue.
async fn drain_fifo(client: &aws_sdk_sqs::Client, name: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let url = loop {
        if let Ok(out) = client.get_queue_url().queue_name(name).send().await {
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
    while got.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: only {} of {count}",
            got.len()
        );
        let out = receive_ten(client, &url).await;
        let mut delete = client.delete_message_batch().queue_url(&url);
        for (k, m) in out.messages().iter().enumerate() {
            let body: Value = serde_json::from_str(m.body().unwrap_or_default()).expect("json");
            assert_eq!(body["dataType"], json!("json"));
            assert!(
                ids.insert(body["id"].as_str().unwrap_or_default().to_string()),
                "{name}: duplicate"
            );
            got.push(body["data"]["n"].as_u64().unwrap_or(u64::MAX));
            if let Some(handle) = m.receipt_handle() {
                let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(k.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("entry");
                delete = delete.entries(entry);
            }
        }
        if !out.messages().is_empty() {
            let deleted = delete.send().await.expect("delete");
            assert!(
                deleted.failed().is_empty(),
                "{name}: {:?}",
                deleted.failed()
            );
        }
    }
    assert_eq!(
        got,
        (0..count as u64).collect::<Vec<u64>>(),
        "{name}: order"
    );
    let rest = receive_ten(client, &url).await;
    assert!(
        rest.messages().is_empty(),
        "{name}: more than its {count} events"
    );
}

/// One `ReceiveMessage` of up to 10 messages, waiting up to a second for them.
async fn receive_ten(
    client: &aws_sdk_sqs::Client,
    url: &str,
) -> aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput {
    client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive")
}
