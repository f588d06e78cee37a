//! The outer contract of the core: instances, auth, ingest, `/events`, errors, restarts.

mod common;

use common::{unique, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

fn assert_error(v: &Value, status: u16, code: u64) {
    assert_eq!(v["success"], json!(false), "{v}");
    assert_eq!(v["error"]["status"], json!(status), "{v}");
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn create_fetch_delete_instance_with_both_body_forms() {
    let s = TestServer::start(&[]);
    let v1 = unique("v1");
    let body = json!({
        "instanceName": v1, "token": "tok-v1-0123456789", "number": "5511999990000",
        "integration": "WHATSAPP-BAILEYS", "webhook": "https://example.com/hook",
        "webhook_by_events": true, "events": ["MESSAGES_UPSERT"], "reject_call": true,
        "rabbitmq_enabled": true, "rabbitmq_events": ["GROUP_UPDATE"],
        "typebot_url": "https://typebot", "chatwoot_account_id": 7,
        "proxy": {"host": "p", "port": "1", "protocol": "http"}
    });
    let (status, created) = s.post("/instance/create", &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["instance"]["instanceName"], json!(v1));
    assert_eq!(created["instance"]["status"], json!("created"));
    assert!(created["instance"]["instanceId"].as_str().is_some());
    assert_eq!(created["hash"]["apikey"], json!("tok-v1-0123456789"));
    assert_eq!(created["settings"]["reject_call"], json!(true));
    assert_eq!(created["typebot_url"], json!("https://typebot"));
    assert_eq!(created["proxy"]["host"], json!("p"));

    let v2 = unique("v2");
    let (status, created2) = s
        .post(
            "/instance/create",
            &json!({"instanceName": v2, "webhook": {"url": "https://example.com/x", "byEvents": false,
                    "events": ["messages.upsert"]}, "sqs": {"enabled": true, "events": []}}),
        )
        .await;
    assert_eq!(status, 201, "{created2}");
    assert_eq!(created2["webhook"]["url"], json!("https://example.com/x"));
    assert_eq!(created2["sqs"]["enabled"], json!(true));

    let (status, _) = s
        .post("/instance/create", &json!({"instanceName": v1}))
        .await;
    assert_eq!(status, 409);

    let (status, list) = s.get("/instance/fetchInstances").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&v1.as_str()) && names.contains(&v2.as_str()),
        "{list}"
    );
    let one = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == json!(v1))
        .unwrap();
    assert_eq!(one["rabbitmq"]["events"], json!(["GROUPS_UPDATE"]));
    assert_eq!(one["webhook"]["webhookByEvents"], json!(true));
    assert_eq!(one["chatwoot_account_id"], json!(7));

    let (status, v) = s.get(&format!("/webhook/find/{v1}")).await;
    assert_eq!(status, 200);
    assert_eq!(v["url"], json!("https://example.com/hook"));

    let r = s
        .req(Method::DELETE, &format!("/instance/delete/{v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req(Method::DELETE, &format!("/instance/delete/{v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_error(&r.json().await.unwrap(), 404, 2006);
}

#[tokio::test]
async fn auth_accepts_every_place_and_scopes_instance_tokens() {
    let s = TestServer::start(&[]);
    let a = unique("a");
    let b = unique("b");
    let token_a = s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    let url = s.url("/instance/fetchInstances");
    let http = &s.http;
    for req in [
        http.get(&url).header("apikey", &s.key),
        http.get(&url).header("X-API-KEY", &s.key),
        http.get(&url)
            .header("Authorization", format!("Bearer {}", s.key)),
        http.get(format!("{url}?api-key={}", s.key)),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), 401, 2004);
    let r = http
        .get(&url)
        .header("apikey", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An instance token sees only its own instance.
    let r = http
        .get(&url)
        .header("apikey", &token_a)
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], json!(a));
    assert!(
        list[0].get("token").is_none(),
        "token shown to an instance token: {list}"
    );
    let ingest = |inst: &str| {
        http.post(s.url(&format!("/ingest/{inst}")))
            .header("apikey", &token_a)
            .json(&json!({"event": "call", "data": {}}))
            .send()
    };
    assert_eq!(ingest(&a).await.unwrap().status(), 202);
    let r = ingest(&b).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_error(&r.json().await.unwrap(), 403, 2005);
    let r = http
        .post(s.url("/instance/create"))
        .header("apikey", &token_a)
        .json(&json!({"instanceName": unique("c")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // /events with an instance token is scoped to its instance.
    let r = http
        .get(s.url(&format!("/events?instance={b}")))
        .header("apikey", &token_a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn ingest_stores_envelopes_in_order_and_reads_them_back() {
    let s = TestServer::start(&[("SERVER_URL", "https://bridge.example.com")]);
    let a = unique("inst");
    s.create_instance(&a, json!({})).await;
    let (status, v) = s
        .post(
            &format!("/ingest/{a}"),
            &json!({"event": "MESSAGES_UPSERT", "data": {"key": {"id": "M1"}}}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["accepted"], json!(1));
    let first = v["first_sequence"].as_u64().unwrap();
    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"event": if i % 2 == 0 { "chats.update" } else { "CALL" }, "data": {"n": i}}))
        .collect();
    let (status, v) = s
        .post(&format!("/ingest/{a}"), &json!({"events": batch}))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["accepted"], json!(50));
    assert_eq!(v["first_sequence"].as_u64().unwrap(), first + 1);
    assert_eq!(v["last_sequence"].as_u64().unwrap(), first + 50);

    let events = s.all_events(&format!("&instance={a}")).await;
    assert_eq!(events.len(), 51);
    let e0 = &events[0];
    assert_eq!(e0["event"], json!("messages.upsert"));
    assert_eq!(e0["instance"], json!(a));
    assert_eq!(e0["data"]["key"]["id"], json!("M1"));
    assert_eq!(e0["server_url"], json!("https://bridge.example.com"));
    assert_eq!(e0["sender"], json!("5511999990000@s.whatsapp.net"));
    assert!(e0["apikey"].is_null());
    assert!(e0.get("destination").is_none());
    let dt = e0["date_time"].as_str().unwrap();
    assert!(
        dt.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(dt).is_ok(),
        "{dt}"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence"].as_u64().unwrap(), first + i as u64);
    }
    for (i, e) in events[1..].iter().enumerate() {
        assert_eq!(e["data"]["n"], json!(i));
    }
    let ids: std::collections::HashSet<&str> =
        events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 51);

    // Filters: by event, and by sequence.
    let calls = s.all_events(&format!("&instance={a}&event=CALL")).await;
    assert_eq!(calls.len(), 25);
    assert!(calls.iter().all(|e| e["event"] == json!("call")));
    let (_, page) = s
        .get(&format!("/events?from_sequence={}&limit=5", first + 10))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    assert_eq!(page["events"][0]["sequence"].as_u64().unwrap(), first + 10);
    assert_eq!(page["next_sequence"].as_u64().unwrap(), first + 15);
    // A position past the instance's partition (sequences carry the partition above bit 48)
    // finds nothing and stays where it was, rather than starting over.
    let beyond = (1u64 << 48) + 1;
    let (_, past_end) = s
        .get(&format!("/events?instance={a}&from_sequence={beyond}"))
        .await;
    assert_eq!(past_end["events"], json!([]));
    assert_eq!(past_end["next_sequence"].as_u64().unwrap(), beyond);
    // since= in the future finds nothing; in the past finds everything.
    let (_, future) = s.get("/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["events"], json!([]));
    let (_, past) = s
        .get(&format!(
            "/events?since=2000-01-01T00:00:00Z&instance={a}&limit=1000"
        ))
        .await;
    assert_eq!(past["events"].as_array().unwrap().len(), 51);
}

#[tokio::test]
async fn bad_input_gets_the_error_envelope() {
    let s = TestServer::start(&[
        ("SWITCHYARD_INGEST__MAX_BODY_BYTES", "4096"),
        ("SWITCHYARD_INGEST__MAX_BATCH_EVENTS", "10"),
    ]);
    let a = unique("inst");
    s.create_instance(&a, json!({})).await;
    let path = format!("/ingest/{a}");
    let raw = |body: &'static str| {
        s.req(Method::POST, &path)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw("{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.unwrap(), 400, 2002);
    let (status, v) = s
        .post(&path, &json!({"event": "messages.upserted", "data": {}}))
        .await;
    assert_eq!(status, 400);
    assert_error(&v, 400, 2003);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MESSAGES_UPSERT"),
        "{v}"
    );
    let (status, v) = s.post(&path, &json!({"event": "call"})).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("data"),
        "{v}"
    );
    let (status, v) = s
        .post(
            "/ingest/no-such-instance",
            &json!({"event": "call", "data": {}}),
        )
        .await;
    assert_eq!(status, 404);
    assert_error(&v, 404, 2006);
    let big = json!({"event": "call", "data": {"blob": "x".repeat(8192)}});
    let (status, v) = s.post(&path, &big).await;
    assert_eq!(status, 413);
    assert_error(&v, 413, 2008);
    let eleven: Vec<Value> = (0..11)
        .map(|_| json!({"event": "call", "data": {}}))
        .collect();
    let (status, v) = s.post(&path, &json!({"events": eleven})).await;
    assert_eq!(status, 413, "{v}");
    let (status, v) = s.get("/events?limit=0").await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("limit"));
    let (status, v) = s.get("/no/such/route").await;
    assert_eq!(status, 404);
    assert_error(&v, 404, 2006);
    let r = s.req(Method::GET, &path).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_error(&r.json().await.unwrap(), 405, 2012);
    let (status, v) = s
        .post("/instance/create", &json!({"instanceName": "bad name!"}))
        .await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("instanceName"));
    // Nothing of the refused requests was stored.
    assert!(s.all_events(&format!("&instance={a}")).await.is_empty());
}

#[tokio::test]
async fn registry_and_log_survive_restart_and_sigterm_exits_zero() {
    let mut s = TestServer::start(&[]);
    let a = unique("inst");
    let token = s
        .create_instance(
            &a,
            json!({"rabbitmq": {"enabled": true, "events": ["CALL"]}}),
        )
        .await;
    let (status, _) = s
        .post(&format!("/webhook/set/{a}"), &json!({"webhook": {"enabled": true, "url": "https://example.com/w", "events": ["CALL"]}}))
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .post(
            &format!("/ingest/{a}"),
            &json!({"event": "call", "data": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 202);
    assert!(s.terminate().success(), "SIGTERM must exit 0");
    s.restart();
    let (_, hook) = s.get(&format!("/webhook/find/{a}")).await;
    assert_eq!(hook["url"], json!("https://example.com/w"));
    assert_eq!(hook["events"], json!(["CALL"]));
    let (_, rmq) = s.get(&format!("/rabbitmq/find/{a}")).await;
    assert_eq!(rmq["enabled"], json!(true));
    let r = s
        .http
        .get(s.url("/instance/fetchInstances"))
        .header("apikey", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "instance token must survive restart");
    let events = s.all_events(&format!("&instance={a}")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["n"], json!(1));
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let s = TestServer::start(&[]);
    let r = s.http.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.http.get(s.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401, "metrics need the key");
    let text = s
        .req(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("switchyard_ingest_events_total"), "{text}");
    assert!(text.contains("switchyard_log_next_sequence"), "{text}");
}

#[test]
fn check_config_names_the_bad_key_and_exits_non_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check-config")
        .env("SWITCHYARD_LOG__FSYNC", "sometimes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fsync"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check-config")
        .env("SWITCHYARD_LOG__FSYNC", "250")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn tail_follows_the_log_like_kcat() {
    use std::io::{BufRead, BufReader};
    let s = TestServer::start(&[]);
    let a = unique("tail");
    let b = unique("other");
    s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    for inst in [&a, &b, &a] {
        let (status, _) = s
            .post(
                &format!("/ingest/{inst}"),
                &json!({"event": "call", "data": {"i": inst}}),
            )
            .await;
        assert_eq!(status, 202);
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "tail",
            "--url",
            &s.base,
            "--apikey",
            &s.key,
            "--instance",
            &a,
            "--from",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> Value {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a line from tail");
        serde_json::from_str(&line).expect("each line is an envelope")
    };
    assert_eq!(next()["instance"], json!(a));
    assert_eq!(next()["instance"], json!(a));
    // It keeps following: a new event shows up without restarting tail.
    let (status, _) = s
        .post(
            &format!("/ingest/{a}"),
            &json!({"event": "chats.update", "data": {}}),
        )
        .await;
    assert_eq!(status, 202);
    let live = next();
    assert_eq!(live["event"], json!("chats.update"));
    assert_eq!(live["sequence"], json!(4));
    let _ = child.kill();
    let _ = child.wait();
}
