//! RabbitMQ unavailable for ~20 s in the middle of a stream through the real server: ingest
//! keeps answering 202 (the log does not need the broker), and afterwards every event is in
//! its queue, in order, nothing lost. Its own test binary: it stops the shared broker, and
//! cargo runs test binaries one at a time.

mod common;
#[path = "sink_support/mod.rs"]
mod sink_support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::{unique, TestServer};
use futures::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use serde_json::{json, Value};

/// Starts the broker app again however the test ends.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl").arg("await_startup").output();
    }
}

fn rabbitmqctl(arg: &str) {
    let out = Command::new("rabbitmqctl")
        .arg(arg)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_second_outage_loses_nothing_and_keeps_order() {
    let uri = sink_support::amqp_uri().await;
    let s = TestServer::start(&[
        ("RABBITMQ_ENABLED", "true"),
        ("RABBITMQ_URI", uri.as_str()),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000"),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "1"),
    ]);
    let instances: Vec<String> = (0..2).map(|i| unique(&format!("out{i}"))).collect();
    for i in &instances {
        s.create_instance(
            i,
            json!({"rabbitmq": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
    }
    const PER_INSTANCE: u64 = 1000;
    let ingest = |instance: String, from: u64| {
        let s = &s;
        async move {
            let events: Vec<Value> = (from..from + 100)
                .map(|n| json!({"event": "messages.upsert", "data": {"n": n}}))
                .collect();
            let (status, v) = s
                .post(&format!("/ingest/{instance}"), &json!({"events": events}))
                .await;
            assert_eq!(status, 202, "ingest must not depend on the broker: {v}");
        }
    };
    let guard = RestartGuard;
    for from in (0..PER_INSTANCE).step_by(100) {
        if from == 300 {
            rabbitmqctl("stop_app");
        }
        for i in &instances {
            ingest(i.clone(), from).await;
        }
        if from >= 300 {
            // Spread the rest of the stream over the outage.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    rabbitmqctl("start_app");
    rabbitmqctl("await_startup");
    drop(guard);

    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    for i in &instances {
        let ch = conn.create_channel().await.expect("channel");
        let queue = format!("{i}.messages.upsert");
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "outage".into(),
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while (seen.len() as u64) < PER_INSTANCE {
            let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, consumer.next()).await else {
                panic!("{queue}: {} of {PER_INSTANCE} after the outage", seen.len())
            };
            let body: Value = serde_json::from_slice(&d.data).expect("json");
            if seen.insert(body["id"].as_str().unwrap_or_default().to_string()) {
                order.push(body["data"]["n"].as_u64().unwrap_or(u64::MAX));
            }
        }
        assert_eq!(
            order,
            (0..PER_INSTANCE).collect::<Vec<_>>(),
            "{queue}: order kept"
        );
    }
}
