//! The acceptance run: 200 plain listeners and one socket.io-client, 5,000 events over four
//! instances; each listener gets exactly what it subscribed to, in order, and one that
//! disconnects midway resumes with no gap and no duplicate.

mod common;

use std::time::{Duration, Instant};

use common::socketio::listen;
use common::ws::{connect, read_envelopes, Seen};
use common::{unique, TestServer};
use serde_json::json;

const LISTENERS: usize = 200;
const BATCHES: usize = 100;
const PER_BATCH: usize = 50;
const KINDS: [&str; 4] = [
    "messages.upsert",
    "chats.update",
    "presence.update",
    "messages.upsert",
];
const WAIT: Duration = Duration::from_secs(60);

/// Which planned events a listener should get.
type Wanted = Box<dyn Fn(&Seen) -> bool + Send>;

/// What listener `k` asks for (query string) and which planned events match it.
fn subscription(k: usize, instances: &[String], tokens: &[String], key: &str) -> (String, Wanted) {
    let own = instances[k % 4].clone();
    let (i0, i1) = (instances[0].clone(), instances[1].clone());
    match k % 5 {
        0 => (format!("apikey={key}"), Box::new(|_| true)),
        1 => (
            format!("apikey={key}&instance={own}"),
            Box::new(move |e| e.instance == own),
        ),
        2 => (
            format!("apikey={}&events=MESSAGES_UPSERT", tokens[k % 4]),
            Box::new(move |e| e.instance == own && e.event == "messages.upsert"),
        ),
        3 => (
            format!("apikey={key}&instance={i0}&instance={i1}&events=chats.update,presence.update"),
            Box::new(move |e| {
                (e.instance == i0 || e.instance == i1) && e.event != "messages.upsert"
            }),
        ),
        _ => (
            format!("apikey={key}&events=messages.upsert"),
            Box::new(|e| e.event == "messages.upsert"),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_listeners_and_a_socket_io_client_get_exactly_their_events() {
    let s = TestServer::start(&[]);
    let mut instances = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..4 {
        let name = unique(&format!("acc{i}"));
        tokens.push(s.create_instance(&name, json!({})).await);
        instances.push(name);
    }
    let start = s.get("/ready").await.1["next_sequence"].as_u64().unwrap();
    // The plan: sequential batches from one client get consecutive sequences.
    let plan: Vec<Seen> = (0..BATCHES * PER_BATCH)
        .map(|i| Seen {
            sequence: start + i as u64,
            instance: instances[(i / PER_BATCH) % 4].clone(),
            event: KINDS[i % 4].to_string(),
        })
        .collect();

    let socketio_expected: Vec<(String, String, u64)> = plan
        .iter()
        .filter(|e| e.instance == instances[0])
        .map(|e| (e.event.clone(), e.instance.clone(), e.sequence))
        .collect();
    let mut sio = listen(
        &format!("{}/{}", s.base, instances[0]),
        &s.key,
        "query",
        0,
        &[],
    );
    assert_eq!(sio.line(WAIT).await, "connected");

    // Every plain listener replays from `start`, so it gets the whole plan wherever its
    // connection lands relative to ingest: replay, seam and live all get exercised.
    let began = Instant::now();
    let mut readers = Vec::new();
    for k in 0..LISTENERS {
        let (query, wanted) = subscription(k, &instances, &tokens, &s.key);
        let expected: Vec<Seen> = plan.iter().filter(|e| wanted(e)).cloned().collect();
        assert!(!expected.is_empty(), "listener {k} expects nothing");
        let path = format!("/ws?{query}&from_sequence={start}");
        let mut ws = connect(&s, &path).await;
        let base = s.base.clone();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(expected.len());
            if k == 0 {
                // Disconnect midway, then resume from the last sequence seen.
                got = read_envelopes(&mut ws, expected.len() / 2, WAIT).await;
                drop(ws);
                let last = got.last().unwrap().sequence;
                let url = format!(
                    "{}/ws?{query}&from_sequence={}",
                    base.replacen("http://", "ws://", 1),
                    last + 1
                );
                ws = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("reconnect")
                    .0;
            }
            let rest = expected.len() - got.len();
            got.extend(read_envelopes(&mut ws, rest, WAIT).await);
            assert!(
                got == expected,
                "listener {k} ({query}) got a different stream"
            );
            got.len()
        }));
    }

    for batch in plan.chunks(PER_BATCH) {
        let events: Vec<_> = batch
            .iter()
            .map(|e| json!({"event": e.event, "data": {"seq_hint": e.sequence}}))
            .collect();
        let (status, v) = s
            .post(
                &format!("/ingest/{}", batch[0].instance),
                &json!({ "events": events }),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["first_sequence"].as_u64(), Some(batch[0].sequence), "{v}");
    }
    let ingested = began.elapsed();

    let mut delivered = 0;
    for reader in readers {
        delivered += reader.await.expect("listener task");
    }
    assert_eq!(
        sio.events(socketio_expected.len(), WAIT).await,
        socketio_expected
    );
    println!(
        "{} events ingested in {ingested:?}; {delivered} envelopes to {LISTENERS} listeners \
         and {} to socket.io in {:?}",
        plan.len(),
        socketio_expected.len(),
        began.elapsed()
    );
}
