//! Plain `/ws` listeners against the real binary: access checks, selection, instance
//! settings, resume, subscribe messages, slow and dead peers, shutdown.

mod common;

use std::time::Duration;

use common::ws::{
    assert_quiet, connect, ingest, ingest_sized, next, read_envelopes, try_connect, Next, Seen,
};
use common::{unique, TestServer};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

fn assert_error(v: &Value, status: u16, code: u64, needle: &str) {
    assert_eq!(v["success"], json!(false), "{v}");
    assert_eq!(v["error"]["status"], json!(status), "{v}");
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{v}");
}

/// Waits (time-boxed) until `/metrics` has a line starting with `prefix` and a value >= `min`.
async fn wait_metric(s: &TestServer, prefix: &str, min: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = s.metrics_text().await;
        let value = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if value.is_some_and(|v| v >= min) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metric {prefix} did not reach {min}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn access_is_checked_before_the_upgrade() {
    let off = TestServer::start(&[("WEBSOCKET_ENABLED", "false")]);
    let key = off.key.clone();
    let (status, v) = try_connect(&off, &format!("/ws?apikey={key}"))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 404);
    assert_error(&v, 404, 2006, "WEBSOCKET_ENABLED");
    let sio = format!("/socket.io/?EIO=4&transport=websocket&apikey={key}");
    let (status, _) = try_connect(&off, &sio).await.err().unwrap();
    assert_eq!(status, 404);
    drop(off);

    let s = TestServer::start(&[]);
    let a = unique("a");
    let b = unique("b");
    let token_a = s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    let key = s.key.clone();
    let cases = [
        ("/ws".to_string(), 401, 2004, "apikey"),
        ("/ws?apikey=wrong".to_string(), 401, 2004, "invalid"),
        (
            format!("/ws?apikey={token_a}&instance={b}"),
            403,
            2005,
            "own instance",
        ),
        (
            format!("/ws?apikey={key}&instance=nope-{a}"),
            404,
            2006,
            "nope-",
        ),
        (
            format!("/ws?apikey={key}&events=messages.nope"),
            400,
            2003,
            "messages.nope",
        ),
        (
            format!("/ws?apikey={key}&from_sequence=x"),
            400,
            2001,
            "from_sequence",
        ),
    ];
    for (path, status, code, needle) in cases {
        let (got, v) = try_connect(&s, &path).await.err().unwrap();
        assert_eq!(got, status, "{path}: {v}");
        assert_error(&v, status, code, needle);
    }
    // A plain GET (no upgrade) gets the envelope too.
    let (status, v) = s.get("/ws").await;
    assert_eq!(status, 400);
    assert_error(&v, 400, 2001, "WebSocket client");
}

#[tokio::test]
async fn listeners_get_exactly_their_selection_in_order() {
    let s = TestServer::start(&[]);
    let (a, b, c) = (unique("a"), unique("b"), unique("c"));
    let token_a = s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    s.create_instance(&c, json!({"websocket": {"enabled": false, "events": []}}))
        .await;
    // b's own websocket settings narrow every listener of b to messages.upsert.
    let (status, v) = s
        .post(
            &format!("/websocket/set/{b}"),
            &json!({"websocket": {"enabled": true, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (_, found) = s.get(&format!("/websocket/find/{b}")).await;
    assert_eq!(found["events"], json!(["MESSAGES_UPSERT"]), "{found}");

    let key = &s.key;
    let mut all = connect(&s, &format!("/ws?apikey={key}")).await;
    let mut only_a = connect(&s, &format!("/ws?apikey={key}&instance={a}")).await;
    let mut token = connect(&s, &format!("/ws?apikey={token_a}")).await;
    let mut upserts = connect(
        &s,
        &format!("/ws?apikey={key}&instance={a}&instance={b}&events=messages.upsert"),
    )
    .await;
    let mut two_kinds = connect(
        &s,
        &format!("/ws?apikey={key}&events=CHATS_UPDATE,messages.upsert"),
    )
    .await;
    let mut disabled = connect(&s, &format!("/ws?apikey={key}&instance={c}")).await;

    let kinds = [
        "messages.upsert",
        "chats.update",
        "contacts.update",
        "messages.upsert",
    ];
    let mut sent = Vec::new();
    for round in 0..5 {
        for inst in [&a, &b, &c] {
            let events: Vec<&str> = kinds.iter().cycle().skip(round).take(4).copied().collect();
            sent.extend(ingest(&s, inst, &events).await);
        }
    }
    let expect = |f: &dyn Fn(&Seen) -> bool| -> Vec<Seen> {
        sent.iter().filter(|e| f(e)).cloned().collect()
    };
    let visible = |e: &Seen| e.instance == a || (e.instance == b && e.event == "messages.upsert");
    let cases = [
        (&mut all, expect(&|e| visible(e))),
        (&mut only_a, expect(&|e| e.instance == a)),
        (&mut token, expect(&|e| e.instance == a)),
        (
            &mut upserts,
            expect(&|e| visible(e) && e.event == "messages.upsert"),
        ),
        (
            &mut two_kinds,
            expect(&|e| visible(e) && (e.event == "messages.upsert" || e.event == "chats.update")),
        ),
    ];
    for (ws, expected) in cases {
        assert!(!expected.is_empty());
        assert_eq!(read_envelopes(ws, expected.len(), WAIT).await, expected);
        assert_quiet(ws, Duration::from_millis(200)).await;
    }
    assert_quiet(&mut disabled, Duration::from_millis(200)).await;

    // The message is the envelope: Evolution's fields, no destination, our sequence.
    let mut one = connect(&s, &format!("/ws?apikey={key}&instance={a}")).await;
    let seq = ingest(&s, &a, &["messages.upsert"]).await[0].sequence;
    let Next::Text(text) = next(&mut one, WAIT).await else {
        panic!("closed")
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["event"], json!("messages.upsert"));
    assert_eq!(v["instance"], json!(a));
    assert_eq!(v["sequence"], json!(seq));
    assert_eq!(v["data"]["n"], json!(0));
    for field in ["date_time", "server_url", "id"] {
        assert!(v[field].is_string(), "{field}: {v}");
    }
    assert!(v.get("destination").is_none(), "{v}");
}

#[tokio::test]
async fn a_listener_resumes_where_it_left_off() {
    let s = TestServer::start(&[]);
    let a = unique("a");
    s.create_instance(&a, json!({})).await;
    let events: Vec<&str> = ["messages.upsert", "chats.update"].repeat(150);
    let mut sent = ingest(&s, &a, &events).await;
    let first = sent[0].sequence;

    let key = &s.key;
    let mut ws = connect(&s, &format!("/ws?apikey={key}&from_sequence={first}")).await;
    let mut got = read_envelopes(&mut ws, 120, WAIT).await;
    drop(ws);
    sent.extend(ingest(&s, &a, &events[..200]).await);

    // `last_sequence` names the last one seen; `from_sequence` the next one wanted.
    let last = got.last().unwrap().sequence;
    let mut ws = connect(&s, &format!("/ws?apikey={key}&last_sequence={last}")).await;
    got.extend(read_envelopes(&mut ws, sent.len() - got.len(), WAIT).await);
    assert_eq!(got, sent);
    // Live events follow the replay with no seam.
    let more = ingest(&s, &a, &events[..10]).await;
    assert_eq!(read_envelopes(&mut ws, 10, WAIT).await, more);
    assert_quiet(&mut ws, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_subscribe_message_switches_without_gap_or_duplicate() {
    let s = TestServer::start(&[]);
    let (a, b) = (unique("a"), unique("b"));
    s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    let key = &s.key;
    let mut ws = connect(&s, &format!("/ws?apikey={key}&instance={a}")).await;
    let sent_a = ingest(&s, &a, &["messages.upsert"; 10]).await;
    ingest(&s, &b, &["messages.upsert"; 10]).await;
    assert_eq!(read_envelopes(&mut ws, 10, WAIT).await, sent_a);

    let bad = json!({"action": "subscribe", "events": ["nope.nope"]}).to_string();
    ws.send(Message::text(bad)).await.unwrap();
    let Next::Text(reply) = next(&mut ws, WAIT).await else {
        panic!("closed")
    };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_error(&reply, 400, 2003, "nope.nope");

    let sub = json!({"action": "subscribe", "instances": [a, b]}).to_string();
    ws.send(Message::text(sub)).await.unwrap();
    let Next::Text(ack) = next(&mut ws, WAIT).await else {
        panic!("closed")
    };
    let ack: Value = serde_json::from_str(&ack).unwrap();
    assert_eq!(ack["subscribed"]["instances"], json!([a, b]), "{ack}");
    let mut more = ingest(&s, &a, &["chats.update"; 5]).await;
    more.extend(ingest(&s, &b, &["chats.update"; 5]).await);
    assert_eq!(read_envelopes(&mut ws, 10, WAIT).await, more);
    assert_quiet(&mut ws, Duration::from_millis(200)).await;

    // An explicit from_sequence replays.
    let from = sent_a[0].sequence;
    let sub = json!({"action": "subscribe", "instance": b, "event": "CHATS_UPDATE", "from_sequence": from});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let _ack = next(&mut ws, WAIT).await;
    assert_eq!(read_envelopes(&mut ws, 5, WAIT).await, more[5..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_stops_reading_is_cut_off_and_others_keep_going() {
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBSOCKET__BUFFER_MESSAGES", "64"),
        ("SWITCHYARD_WEBSOCKET__SLOW_TIMEOUT_SECONDS", "1"),
    ]);
    let a = unique("a");
    s.create_instance(&a, json!({})).await;
    let key = s.key.clone();
    let path = format!("/ws?apikey={key}");
    let mut slow = connect(&s, &path).await;
    let start = s.get("/ready").await.1["next_sequence"].as_u64().unwrap();
    let readers: Vec<_> = futures::future::join_all((0..2).map(|_| connect(&s, &path))).await;

    // 3,000 events of ~4 KB: far more than the socket buffers and the 64-message outbox.
    let n = 3000;
    let readers: Vec<_> = readers
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { read_envelopes(&mut ws, n, WAIT * 2).await }))
        .collect();
    let mut sent = Vec::new();
    for _ in 0..30 {
        sent.extend(ingest_sized(&s, &a, &["messages.upsert"; 100], 4096).await);
    }
    assert_eq!(sent[0].sequence, start);
    for reader in readers {
        assert_eq!(
            reader.await.unwrap(),
            sent,
            "a reading listener lost events"
        );
    }
    wait_metric(
        &s,
        "switchyard_websocket_server_closed_total{reason=\"too_slow\"}",
        1.0,
    )
    .await;

    // The slow listener now reads: what was buffered, in order, then the close frame.
    let mut got = Vec::new();
    let frame = loop {
        match next(&mut slow, WAIT).await {
            Next::Text(t) => got.push(serde_json::from_str::<Seen>(&t).unwrap()),
            Next::Closed(frame) => break frame.expect("a close frame with a reason"),
        }
    };
    assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
    let resume = got.last().map_or(start, |e| e.sequence + 1);
    assert_eq!(
        frame.reason.as_str(),
        format!("listener too slow; resume with from_sequence={resume}")
    );
    assert!(got.len() < n, "the slow listener was not cut off early");
    assert_eq!(got[..], sent[..got.len()]);
    let mut ws = connect(&s, &format!("{path}&from_sequence={resume}")).await;
    got.extend(read_envelopes(&mut ws, n - got.len(), WAIT).await);
    assert_eq!(got, sent);
}

#[tokio::test]
async fn dead_peers_are_dropped_and_live_ones_kept() {
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBSOCKET__PING_INTERVAL_SECONDS", "0.3"),
        ("SWITCHYARD_WEBSOCKET__PING_TIMEOUT_SECONDS", "0.3"),
    ]);
    let a = unique("a");
    s.create_instance(&a, json!({})).await;
    let path = format!("/ws?apikey={}&instance={a}", s.key);
    // Never read: tungstenite answers pings only while reading, so this peer looks dead.
    let _dead = connect(&s, &path).await;
    let mut alive = connect(&s, &path).await;
    // Reading answers pings; nothing arrives for a while, yet the listener stays.
    assert_quiet(&mut alive, Duration::from_millis(1500)).await;
    wait_metric(
        &s,
        "switchyard_websocket_server_closed_total{reason=\"dead_peer\"}",
        1.0,
    )
    .await;
    let sent = ingest(&s, &a, &["messages.upsert"]).await;
    assert_eq!(read_envelopes(&mut alive, 1, WAIT).await, sent);
}

#[tokio::test]
async fn shutdown_closes_listeners_with_going_away_and_a_resume_point() {
    let mut s = TestServer::start(&[]);
    let a = unique("a");
    s.create_instance(&a, json!({})).await;
    let mut ws = connect(&s, &format!("/ws?apikey={}", s.key)).await;
    let sent = ingest(&s, &a, &["messages.upsert"; 3]).await;
    assert_eq!(read_envelopes(&mut ws, 3, WAIT).await, sent);
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let Next::Closed(Some(frame)) = next(&mut ws, WAIT).await else {
        panic!("expected a close frame")
    };
    assert_eq!(u16::from(frame.code), 1001);
    let resume = sent[2].sequence + 1;
    assert!(
        frame.reason.ends_with(&format!("from_sequence={resume}")),
        "{frame:?}"
    );
}
