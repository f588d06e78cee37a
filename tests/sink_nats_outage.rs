//! nats-server stopped for ~10 s in the middle of a stream through the real server: ingest
//! keeps answering 202, sends fail fast with a `Retry` that names NATS (shown as the
//! subscription's `last_error`), the client reconnects by itself, and afterwards the
//! JetStream stream on the subjects holds every event once, in order per chat. Its own test
//! binary: it stops the suite's shared nats-server, and cargo runs test binaries one at a
//! time; a guard starts the server again however the test ends.

mod common;
#[path = "nats_support/mod.rs"]
mod nats_support;

use std::time::{Duration, Instant};

use common::{unique, TestServer};
use nats_support::{
    chat_events, check_order_per_chat, nats_server, nats_url, StartNatsGuard, Stream,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_outage_loses_nothing_and_keeps_order() {
    let url = nats_url().await;
    let instances: Vec<String> = (0..2).map(|i| unique(&format!("nout{i}"))).collect();
    let subjects: Vec<String> = instances.iter().map(|i| format!("{i}.>")).collect();
    let stream = Stream::create(&url, &unique("NOUT"), &subjects).await;
    let s = TestServer::start(&[
        ("NATS_ENABLED", "true"),
        ("NATS_URI", url.as_str()),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000"),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "1"),
    ]);
    for i in &instances {
        s.create_instance(
            i,
            json!({"nats": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
    }
    const PER_INSTANCE: usize = 1000;
    let guard = StartNatsGuard;
    let mut stopped_at = None;
    let mut error_seen = None;
    for from in (0..PER_INSTANCE).step_by(100) {
        if from == 300 {
            nats_server("stop");
            stopped_at = Some(Instant::now());
        }
        for i in &instances {
            let events = chat_events(from, 100, 10);
            let (status, v) = s
                .post(&format!("/ingest/{i}"), &json!({"events": events}))
                .await;
            assert_eq!(status, 202, "ingest answers 202 while NATS is down: {v}");
        }
        if from >= 300 {
            // Spread the rest of the stream over the outage.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let (_, v) = s.get("/subscriptions").await;
            let errors: Vec<String> = v["subscriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["status"]["last_error"].as_str().map(str::to_owned))
                .collect();
            if let Some(e) = errors.iter().find(|e| e.contains("NATS")) {
                error_seen.get_or_insert_with(|| e.clone());
            }
        }
    }
    let stopped_at = stopped_at.expect("stopped");
    let wait = Duration::from_secs(10).saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(wait).await;
    let outage = stopped_at.elapsed();
    nats_server("start");
    let restarted = Instant::now();
    drop(guard);
    let error_seen = error_seen
        .unwrap_or_else(|| panic!("no subscription showed a NATS error during the outage"));

    let total = PER_INSTANCE * instances.len();
    let stored = stream
        .wait_for(total as u64, Duration::from_secs(120))
        .await;
    let caught_up = restarted.elapsed();
    assert_eq!(stored, total as u64, "each event stored exactly once");
    for i in &instances {
        let subject = format!("{i}.messages.upsert");
        let got = stream.read(&subject).await;
        let (distinct, duplicates) = check_order_per_chat(&subject, false, &got, false);
        assert_eq!((distinct, duplicates), (PER_INSTANCE, 0), "{subject}");
    }
    println!(
        "nats-server down {outage:?} mid-stream ({error_seen}); all {total} events stored once \
         {caught_up:?} after it came back"
    );
}
