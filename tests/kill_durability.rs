//! Crash safety: a server under concurrent batch ingest is SIGKILLed; after restart every
//! event whose ingest returned 202 is readable, sequences are contiguous and unique, and
//! payloads are intact.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{unique, TestServer};
use serde_json::{json, Value};

const TOTAL: usize = 20_000;
const BATCH: usize = 100;
const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_event() {
    let mut s = TestServer::start(&[]);
    let inst = unique("kill");
    s.create_instance(&inst, json!({})).await;
    let url = s.url(&format!("/ingest/{inst}"));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let http = s.http.clone();
        let url = url.clone();
        let key = s.key.clone();
        let acked_count = acked_count.clone();
        writers.push(tokio::spawn(async move {
            // (writer, batch) -> (first_sequence, last_sequence) for acknowledged batches.
            let mut acked: Vec<(usize, usize, u64, u64)> = Vec::new();
            for b in 0..TOTAL / BATCH / WRITERS {
                let events: Vec<Value> = (0..BATCH)
                    .map(|i| json!({"event": "messages.upsert", "data": {"w": w, "b": b, "i": i, "pad": "p".repeat(200 + i)}}))
                    .collect();
                let sent = http.post(&url).header("apikey", &key).json(&json!({"events": events})).send().await;
                let Ok(r) = sent else { break };
                if r.status() != 202 {
                    break;
                }
                let Ok(v) = r.json::<Value>().await else { break };
                let first = v["first_sequence"].as_u64().expect("first");
                let last = v["last_sequence"].as_u64().expect("last");
                assert_eq!(last - first + 1, BATCH as u64);
                acked.push((w, b, first, last));
                acked_count.fetch_add(BATCH, Ordering::SeqCst);
            }
            acked
        }));
    }
    // Kill midway: once a good share is acknowledged, but well before the end.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while acked_count.load(Ordering::SeqCst) < TOTAL / 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest too slow to reach the kill point"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.kill();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    let acked_events: usize = acked.len() * BATCH;
    assert!(
        (TOTAL / 3..TOTAL).contains(&acked_events),
        "killed at {acked_events}"
    );

    s.restart();
    let stored = s.all_events(&format!("&instance={inst}")).await;
    // Contiguous, unique sequences from the first event on.
    let first_seq = stored
        .first()
        .and_then(|e| e["sequence"].as_u64())
        .expect("events");
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(
            e["sequence"].as_u64().unwrap(),
            first_seq + i as u64,
            "gap or duplicate at {i}"
        );
    }
    let ids: HashSet<&str> = stored.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "duplicate ids");
    let by_seq: HashMap<u64, &Value> = stored
        .iter()
        .map(|e| (e["sequence"].as_u64().unwrap(), e))
        .collect();
    // Every acknowledged event is there, at its acknowledged sequence, with its payload.
    for (w, b, first, _) in &acked {
        for i in 0..BATCH {
            let e = by_seq
                .get(&(first + i as u64))
                .unwrap_or_else(|| panic!("acknowledged event w{w} b{b} i{i} lost"));
            assert_eq!(e["data"]["w"], json!(w));
            assert_eq!(e["data"]["b"], json!(b));
            assert_eq!(e["data"]["i"], json!(i));
            assert_eq!(e["data"]["pad"], json!("p".repeat(200 + i)));
        }
    }
    // And the restarted server keeps appending right after the recovered tail.
    let (status, v) = s
        .post(
            &format!("/ingest/{inst}"),
            &json!({"event": "call", "data": {}}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        v["first_sequence"].as_u64().unwrap(),
        first_seq + stored.len() as u64
    );
}
