//! Hostile input against what is stored: nothing a client sends can leave a record that a
//! reader cannot decode, an unreadable record never stops the server, a re-created instance
//! never reads its predecessor's events, `raw` never carries a credential, and a retried
//! request is stored once (across a SIGKILL, and across the processes of the Kafka engine).
//! Everything runs through the real binary.

mod common;

use std::time::Duration;

use common::{unique, TestServer};
use serde_json::{json, Value};
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::EventLog;

/// `depth` nested objects `{"a":{"a":...}}` around `inner`.
fn nested_objects(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_deeply_nested_create_is_refused_and_the_server_still_starts() {
    let mut server = TestServer::start(&[]);
    let name = unique("deep");
    // An unknown extra field nested 126 levels deep: this used to be stored as a control
    // record serde_json could not read back, and every later start failed on it.
    let body = format!(
        r#"{{"instanceName":"{name}","number":"5511999990000","junk":{}}}"#,
        nested_objects(126, "1")
    );
    let (status, v) = server.post_raw("/instance/create", body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], 2001, "{v}");
    assert!(message(&v).contains("$.junk.a.a"), "names the path: {v}");
    assert!(message(&v).contains("deeper than 64"), "{v}");

    // The registry is not bricked: creates go on, and the server restarts on its data.
    let ok = unique("ok");
    server.create_instance(&ok, json!({})).await;
    // Within the limit, a nested extra field is stored and read back after a restart.
    let within = unique("within");
    let body = format!(
        r#"{{"instanceName":"{within}","number":"5511999990001","junk":{}}}"#,
        nested_objects(60, "1")
    );
    let (status, v) = server.post_raw("/instance/create", body).await;
    assert_eq!(status, 201, "{v}");
    server.restart();
    let (status, v) = server.get("/instance/fetchInstances").await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| {
            i["instance"]["instanceName"]
                .as_str()
                .or(i["name"].as_str())
        })
        .collect();
    assert!(names.contains(&ok.as_str()), "{names:?}");
    assert!(names.contains(&within.as_str()), "{names:?}");
    assert!(!names.contains(&name.as_str()), "{names:?}");
}

#[tokio::test]
async fn ingest_refuses_what_no_reader_can_read() {
    let server = TestServer::start(&[]);
    let instance = unique("hostile");
    server.create_instance(&instance, json!({})).await;
    let path = format!("/ingest/{instance}");
    let deep = format!(
        r#"{{"event":"messages.upsert","data":{}}}"#,
        "[".repeat(100_000) + &"]".repeat(100_000)
    );
    let long_key = "k".repeat(2000);
    let cases = [
        (deep, "$.data[0]", "deeper than 64"),
        (
            r#"{"event":"messages.upsert","data":{"n":[1,1e999]}}"#.to_string(),
            "$.data.n[1]",
            "out of range",
        ),
        (
            r#"{"event":"messages.upsert","data":{"t":"\ud800"}}"#.to_string(),
            "$.data.t",
            "invalid Unicode",
        ),
        (
            format!(r#"{{"event":"messages.upsert","data":{{"{long_key}":1}}}}"#),
            "$.data.kkkk",
            "key longer than 1024",
        ),
    ];
    for (body, at, problem) in cases {
        let (status, v) = server.post_raw(&path, body).await;
        assert_eq!(status, 400, "{at}: {v}");
        assert!(message(&v).contains(at), "{at}: {v}");
        assert!(message(&v).contains(problem), "{problem}: {v}");
        // Provider ingest holds bodies to the same limits.
        let (status, v) = server
            .post_raw(
                &format!("/ingest/{instance}/evolution"),
                format!(
                    r#"{{"event":"messages.upsert","data":{}}}"#,
                    nested_objects(70, "1")
                ),
            )
            .await;
        assert_eq!(status, 400, "{v}");
    }
    assert!(
        server
            .all_events(&format!("&instance={instance}"))
            .await
            .is_empty(),
        "nothing refused was stored"
    );
    // What is accepted reads back, through `switchyard tail`'s route.
    let (status, v) = server.post_raw(&path,
        format!(
            r#"{{"event":"messages.upsert","data":{{"deep":{},"n":1.5e300,"t":"caf\u00e9 \ud83d\ude00"}}}}"#,
            nested_objects(60, "true")
        ),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let events = server.all_events(&format!("&instance={instance}")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["t"], "café 😀");
}

/// Appends `payload` to the embedded log `name` of a stopped server's data dir.
async fn append_garbage(data_dir: &std::path::Path, name: &str, payload: &'static [u8]) -> u64 {
    let log = EmbeddedLog::open(EmbeddedOptions::new(data_dir.join(name))).expect("open log");
    let receipt = log
        .append(vec![bytes::Bytes::from_static(payload)])
        .await
        .expect("append");
    receipt.first_sequence
}

#[tokio::test]
async fn an_unreadable_record_is_reported_and_skipped() {
    let mut server = TestServer::start(&[]);
    let before = unique("before");
    server.create_instance(&before, json!({})).await;
    server.ingest_numbered(&before, 0, 2).await;
    assert!(server.terminate().success());

    // Written by hand, as damage or a foreign writer would leave them.
    let control = append_garbage(
        server.data_dir(),
        "control",
        b"{\"type\":\"instance_created\",",
    )
    .await;
    let event = append_garbage(server.data_dir(), "events", b"not json at all").await;

    server.restart();
    let (status, ready) = server.get("/ready").await;
    assert_eq!(status, 200, "the server starts and is ready: {ready}");
    let unreadable = &ready["unreadable_records"];
    assert_eq!(unreadable["control"][0]["sequence"], control, "{ready}");
    assert!(
        !unreadable["control"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{ready}"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("switchyard_unreadable_control_records 1"),
        "{metrics}"
    );

    // Everything else is served: the instance from before, new instances, ingest, reads.
    let (status, v) = server.get("/instance/fetchInstances").await;
    assert_eq!(status, 200);
    assert!(v.to_string().contains(&before), "{v}");
    let after = unique("after");
    server.create_instance(&after, json!({})).await;
    server.ingest_numbered(&after, 0, 1).await;
    let all = server.all_events("").await;
    assert_eq!(all.len(), 3, "the two before and the one after: {all:?}");
    assert!(all.iter().all(|e| e["sequence"] != event));
    let (_, ready) = server.get("/ready").await;
    assert!(
        ready["unreadable_records"]["event_reads"].as_u64() >= Some(1),
        "{ready}"
    );
    assert!(server
        .metrics_text()
        .await
        .contains("switchyard_unreadable_event_reads_total"));
}

#[tokio::test]
async fn a_recreated_instance_reads_only_its_own_events() {
    let server = TestServer::start(&[]);
    let name = unique("reborn");
    let old_token = server.create_instance(&name, json!({})).await;
    server.ingest_numbered(&name, 0, 3).await;
    let r = server
        .req(reqwest::Method::DELETE, &format!("/instance/delete/{name}"))
        .send()
        .await
        .expect("DELETE");
    assert!(r.status().is_success(), "{}", r.status());
    let new_token = server.create_instance(&name, json!({})).await;
    server.ingest_numbered(&name, 100, 1).await;

    let read = |token: String| {
        let url = server.url(&format!("/events?instance={name}&from_sequence=0"));
        let http = server.http.clone();
        async move {
            let r = http
                .get(url)
                .header("apikey", token)
                .send()
                .await
                .expect("GET");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, v) = read(new_token).await;
    assert_eq!(status, 200, "{v}");
    let ns: Vec<&Value> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["data"]["n"])
        .collect();
    assert_eq!(ns, [&json!(100)], "only the new instance's event: {v}");
    let (status, v) = read(old_token).await;
    assert_eq!(status, 401, "a deleted instance's token is dead: {v}");
    // The global key asking by name gets the current instance too.
    let events = server.all_events(&format!("&instance={name}")).await;
    assert_eq!(events.len(), 1, "{events:?}");
}

fn evolution_envelope(instance: &str, token: &str, id: &str) -> Value {
    json!({
        "event": "messages.upsert",
        "instance": "gateway-name",
        "data": {
            "key": {"remoteJid": "5511912345678@s.whatsapp.net", "fromMe": false, "id": id},
            "pushName": "Ana",
            "message": {"conversation": "hello"},
            "messageType": "conversation",
            "messageTimestamp": 1758749877
        },
        "destination": format!("http://switchyard:8080/ingest/{instance}/evolution?token={token}"),
        "date_time": "2025-09-24T18:04:37.000Z",
        "sender": "5511888888888@s.whatsapp.net",
        "server_url": "http://evolution:8080",
        "apikey": "EVOLUTION-INSTANCE-APIKEY-0001"
    })
}

async fn post_as(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let r = server
        .http
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn raw_never_carries_a_credential() {
    for keep in [false, true] {
        // The default first: no setting at all.
        let keep_env = [("SWITCHYARD_INGEST__KEEP_EVOLUTION_RAW", "true")];
        let server = TestServer::start(if keep { &keep_env } else { &[] });
        let instance = unique("raw");
        let token = server.create_instance(&instance, json!({})).await;
        let body = evolution_envelope(&instance, &token, &unique("3EB0"));
        let (status, v) = post_as(
            &server,
            &format!("/ingest/{instance}/evolution?token={token}"),
            &body,
        )
        .await;
        assert_eq!(status, 202, "{v}");
        let events = server.all_events(&format!("&instance={instance}")).await;
        assert_eq!(events.len(), 1);
        let text = events[0].to_string();
        assert!(!text.contains(&token), "the instance token leaked: {text}");
        assert!(!text.contains("EVOLUTION-INSTANCE-APIKEY"), "{text}");
        assert_eq!(events[0]["data"], body["data"], "data is verbatim");
        if keep {
            let raw = &events[0]["raw"];
            assert_eq!(raw["apikey"], "[redacted]", "{text}");
            assert!(
                raw["destination"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("token=%5Bredacted%5D"),
                "{text}"
            );
        } else {
            assert!(events[0].get("raw").is_none(), "no raw by default: {text}");
        }
    }
}

/// POSTs `body` to canonical ingest with an `Idempotency-Key`; (status, replayed, JSON).
async fn ingest_keyed(
    server: &TestServer,
    instance: &str,
    key: &str,
    body: &Value,
) -> (u16, bool, Value) {
    let r = server
        .req(reqwest::Method::POST, &format!("/ingest/{instance}"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retried_request_is_stored_once_even_after_a_sigkill() {
    let mut server = TestServer::start(&[]);
    let instance = unique("idem");
    let token = server.create_instance(&instance, json!({})).await;
    let key = unique("key");
    let body = json!({"events": [
        {"event": "messages.upsert", "data": {"n": 1}},
        {"event": "messages.upsert", "data": {"n": 2}},
    ]});
    let (status, replayed, first) = ingest_keyed(&server, &instance, &key, &body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    assert_eq!(first["accepted"], 2);
    let (status, replayed, again) = ingest_keyed(&server, &instance, &key, &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first, "the same answer");

    // Per-event ids (canonical) and provider retry keys (Evolution's message key).
    let by_id = json!({"event": "messages.upsert", "id": "evt-1", "data": {"n": 3}});
    let (status, v) = server.post(&format!("/ingest/{instance}"), &by_id).await;
    assert_eq!((status, &v["accepted"]), (202, &json!(1)), "{v}");
    let (status, v) = server.post(&format!("/ingest/{instance}"), &by_id).await;
    assert_eq!((status, &v["deduplicated"]), (202, &json!(1)), "{v}");
    let envelope = evolution_envelope(&instance, &token, "3EB0AAAA0001");
    let evolution = format!("/ingest/{instance}/evolution");
    let (status, v) = server.post(&evolution, &envelope).await;
    assert_eq!((status, &v["accepted"]), (202, &json!(1)), "{v}");

    // SIGKILL: nothing in memory survives; the keys are in the log.
    server.kill();
    server.restart();
    let (status, replayed, after) = ingest_keyed(&server, &instance, &key, &body).await;
    assert_eq!((status, replayed), (202, true), "{after}");
    assert_eq!(after, first, "the same answer after a restart");
    let (_, v) = server.post(&format!("/ingest/{instance}"), &by_id).await;
    assert_eq!(v["deduplicated"], 1, "{v}");
    let (_, v) = server.post(&evolution, &envelope).await;
    assert_eq!(v["deduplicated"], 1, "{v}");

    let events = server.all_events(&format!("&instance={instance}")).await;
    assert_eq!(events.len(), 4, "2 + 1 + 1, each once: {events:?}");
    // A bad key is refused, not ignored.
    let (status, _, v) = ingest_keyed(&server, &instance, "has space", &body).await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn a_retried_request_is_stored_once_across_kafka_processes() {
    let brokers = common::kafka_brokers();
    let prefix = unique("sy-idem");
    let env = [
        ("SWITCHYARD_LOG__ENGINE", "kafka"),
        ("SWITCHYARD_KAFKA__BROKERS", brokers.as_str()),
        ("SWITCHYARD_LOG__KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SWITCHYARD_LOG__KAFKA_PARTITIONS", "2"),
        ("SWITCHYARD_LOG__KAFKA_SESSION_TIMEOUT_SECONDS", "6"),
    ];
    let a = TestServer::start(&env);
    let b = TestServer::start(&env);
    let instance = unique("idem");
    a.create_instance(&instance, json!({})).await;
    // The second process learns of the instance through the shared control topic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = b.get("/instance/fetchInstances").await;
        if v.to_string().contains(&instance) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never saw {instance}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = unique("key");
    let body = json!({"event": "messages.upsert", "data": {"n": 1}});
    let (status, replayed, first) = ingest_keyed(&a, &instance, &key, &body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let (status, replayed, again) = ingest_keyed(&b, &instance, &key, &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first, "the second process answers as the first did");
    let by_id = json!({"event": "messages.upsert", "id": "evt-k", "data": {"n": 2}});
    let (_, v) = a.post(&format!("/ingest/{instance}"), &by_id).await;
    assert_eq!(v["accepted"], 1, "{v}");
    let (_, v) = b.post(&format!("/ingest/{instance}"), &by_id).await;
    assert_eq!(v["deduplicated"], 1, "{v}");
    let events = b.all_events(&format!("&instance={instance}")).await;
    assert_eq!(events.len(), 2, "{events:?}");
}
