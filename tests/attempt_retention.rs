//! Attempt-log retention through the real binary (issue 20): 200,000 events delivered to a
//! webhook, one attempt each, with `attempts.retention_bytes` at 2 MiB (about 70 MB of
//! attempts written through it). The attempt log's directory, sampled every 20 ms while
//! the events flow, never passes the bound by more than one segment (an eighth of it);
//! every attempt was written (none dropped); the newest message is found with its attempt,
//! the oldest one's attempts are gone with the segment that held them.
//!
//! The embedded engine only: the attempt log is the same with either event log, and 200,000
//! events through the Kafka engine would cost the suite minutes for nothing new.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 200_000;
const PER_REQUEST: usize = 1000;
const BOUND: u64 = 2 << 20;
/// The attempt log's segment under that bound: an eighth of it, at least 256 KiB.
const SEGMENT: u64 = 256 * 1024;

/// A receiver that accepts everything and counts it.
async fn receiver(cancel: CancellationToken) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let app = Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .ok();
    });
    (format!("http://{addr}"), count)
}

/// Bytes of every file in `dir` (segments and their indexes).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A counter or gauge from `/metrics` (the first line of `name`).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn message_id(n: usize) -> String {
    format!("3EB0RET{n:08}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_log_holds_its_byte_bound_through_200000_events() {
    let cancel = CancellationToken::new();
    let (url, delivered) = receiver(cancel.clone()).await;
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_ATTEMPTS__RETENTION_BYTES", &BOUND.to_string()),
    ]);
    let instance = unique("retained");
    s.create_instance(&instance, json!({})).await;
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": format!("{url}/hook"), "events": []}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");

    // The sampler: the attempt log's directory every 20 ms, until the run ends.
    let dir = s.data_dir().join("attempts");
    let done = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (dir, done, largest) = (dir.clone(), done.clone(), largest.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::Relaxed) {
                largest.fetch_max(dir_bytes(&dir), Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };

    let started = Instant::now();
    for first in (0..EVENTS).step_by(PER_REQUEST) {
        let events: Vec<Value> = (first..first + PER_REQUEST)
            .map(|n| {
                json!({"event": "messages.upsert", "data": {
                    "key": {"remoteJid": format!("55119{:08}@s.whatsapp.net", n % 50),
                        "fromMe": false, "id": message_id(n)},
                    "message": {"conversation": format!("hello {n}")},
                }})
            })
            .collect();
        let (status, v) = s
            .post(&format!("/ingest/{instance}"), &json!({"events": events}))
            .await;
        assert_eq!(status, 202, "{v}");
    }
    let ingested = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(900);
    while delivered.load(Ordering::Relaxed) < EVENTS as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {EVENTS} delivered",
            delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_in = started.elapsed();
    // Every attempt flushed (the flusher writes every 100 ms).
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = s.metrics_text().await;
        if metric(&text, "switchyard_attempt_log_written_total") >= Some(EVENTS as f64) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "attempts not all written: {:?}",
            metric(&text, "switchyard_attempt_log_written_total")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let largest = largest.load(Ordering::Relaxed);
    let now = dir_bytes(&dir);
    println!(
        "{EVENTS} events ingested in {ingested:?}, delivered in {delivered_in:?}; attempt log \
         directory at most {largest} bytes over {samples} samples, {now} at the end \
         (bound {BOUND}, segment {SEGMENT})"
    );
    assert_eq!(
        metric(&text, "switchyard_attempt_log_written_total"),
        Some(EVENTS as f64),
        "one attempt per event"
    );
    assert_eq!(
        metric(&text, "switchyard_attempt_log_dropped_total"),
        Some(0.0),
        "none dropped"
    );
    assert!(samples > 10, "the sampler ran: {samples}");
    assert!(
        largest <= BOUND + SEGMENT,
        "the attempt log reached {largest} bytes, bound {BOUND} + one segment {SEGMENT}"
    );
    assert!(
        largest > BOUND / 2,
        "the run filled the bound (else it proves nothing): {largest}"
    );
    let gauge = metric(&text, "switchyard_attempt_log_bytes").unwrap_or(f64::MAX);
    assert!(gauge <= (BOUND + SEGMENT) as f64, "gauge {gauge}");

    // The newest message's attempt is kept and found; the oldest one's went with its segment.
    let (status, v) = s
        .get(&format!(
            "/deliveries?message_id={}",
            message_id(EVENTS - 1)
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    let newest = &v["deliveries"][0];
    assert_eq!(newest["status"], json!("delivered"), "{v}");
    assert_eq!(newest["attempts"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(newest["attempts"][0]["http_status"], json!(200), "{v}");
    let (status, v) = s
        .get(&format!("/deliveries?message_id={}", message_id(0)))
        .await;
    assert_eq!(status, 200, "{v}");
    let kept: usize = v["deliveries"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|x| x["attempts"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(kept, 0, "the oldest attempts are trimmed: {v}");
    cancel.cancel();
}
