//! RabbitMQ unavailable for ~20 s in the middle of a stream through the real server: ingest
//! keeps answering 202 (the log does not need the broker), and afterwards every event is in
//! its queue, in order, nothing lost. Its own test binary: it stops the shared broker, and
//! cargo runs test binaries one at a time.

mod common;
#[path = "sink_support/mod.rs"]
mod sink_support;

use std::process::Command;
use std::time::Duration;

use common::{unique, TestServer};
use serde_json::json;

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
    let guard = RestartGuard;
    for from in (0..PER_INSTANCE).step_by(100) {
        if from == 300 {
            rabbitmqctl("stop_app");
        }
        for i in &instances {
            s.ingest_numbered(i, from as usize, 100).await;
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

    for i in &instances {
        let queue = format!("{i}.messages.upsert");
        let (order, _duplicates) = sink_support::consume_queue(
            &uri,
            &queue,
            PER_INSTANCE as usize,
            Duration::from_secs(120),
        )
        .await;
        assert_eq!(
            order,
            (0..PER_INSTANCE).collect::<Vec<_>>(),
            "{queue}: order kept, nothing lost"
        );
    }
}
