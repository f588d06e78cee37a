//! RabbitMQ outage: `rabbitmqctl stop_app` in the middle of a stream, `start_app` a few
//! seconds later. Sends return Retry quickly during the outage; afterwards the sink is on a
//! fresh connection and every event is in its queue, in order. Its own test binary, so no
//! other RabbitMQ test runs while the broker is down.

mod sink_support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use sink_support::*;
use switchyard::delivery::subscription::SinkTarget;
use switchyard::envelope::LoggedEvent;
use switchyard::sinks::rabbitmq::{LinkOptions, RabbitmqConfig, RabbitmqSink, RabbitmqTarget};
use switchyard::sinks::Sink;
use tokio_util::sync::CancellationToken;

/// Restarts the RabbitMQ app when dropped, so a failing test never leaves it stopped.
struct StartAppGuard;

impl Drop for StartAppGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl").arg("await_startup").output();
    }
}

async fn ctl(args: &'static [&'static str]) {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_and_keeps_order() {
    let uri = amqp_uri().await;
    let cfg = RabbitmqConfig {
        enabled: true,
        uri: uri.clone(),
        ..RabbitmqConfig::default()
    };
    let options = LinkOptions {
        operation_timeout: Duration::from_secs(3),
        backoff_max: Duration::from_secs(1),
        ..LinkOptions::default()
    };
    let cancel = CancellationToken::new();
    let sink =
        RabbitmqSink::with_options(&cfg, "http://x".into(), options, cancel.clone()).unwrap();
    sink.wait_connected(Duration::from_secs(10)).await.unwrap();
    let sink: Arc<dyn Sink> = Arc::new(sink);

    let inst = unique("outage");
    let events: Vec<LoggedEvent> = (1..=3_000)
        .map(|s| event(&inst, "messages.upsert", s, "{}"))
        .collect();
    let expected: Vec<String> = events.iter().map(|e| e.event.id.to_string()).collect();
    let sub = subscription(
        SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
        Some(&inst),
    );

    // A slow stream: small batches with a pause, so the outage lands in the middle.
    let stream = {
        let sink = sink.clone();
        tokio::spawn(async move {
            let mut stats = RunStats::default();
            for chunk in events.chunks(50) {
                let s = deliver_all(
                    sink.clone(),
                    &sub,
                    chunk.to_vec(),
                    Duration::from_millis(250),
                    Duration::from_secs(60),
                )
                .await;
                stats.retries += s.retries;
                stats.calls += s.calls;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stats
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let _guard = StartAppGuard;
        ctl(&["stop_app"]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        ctl(&["start_app"]).await;
        ctl(&["await_startup"]).await;
    }
    let stats = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .expect("the stream did not finish within 60 s of the broker's return")
        .unwrap();
    assert!(stats.retries > 0, "no send saw the outage: {stats:?}");

    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("{inst}.messages.upsert");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "outage-check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    let collect = async {
        while distinct.len() < expected.len() {
            let d = consumer.next().await.unwrap().unwrap();
            let id = d.properties.message_id().clone().unwrap().to_string();
            distinct.insert(id.clone());
            got.push(id);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} distinct of {} events",
                distinct.len(),
                expected.len()
            )
        });
    let dups = assert_in_order(&queue, &got, &expected);
    println!("outage: {stats:?}, {dups} duplicate(s) of unconfirmed publishes");
    cancel.cancel();
}
