//! Every delivery can be looked up (issue 20): 1,000 messages to two subscriptions (an
//! instance's webhook and the global webhook) whose receiver fails 30% of requests at
//! random. For every WhatsApp message id, `GET /deliveries?message_id=` gives each
//! subscription's final status (delivered, or dead after the last attempt) and every
//! attempt with the HTTP status and body the receiver answered; each subscription's
//! undelivered list is exactly what the receiver never acknowledged; `/metrics` shows the
//! dead counts; an instance token sees only its own subscription; and after a restart the
//! answers are the same.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::Router;
use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 1000;
const FAIL_PERCENT: u32 = 30;

/// What the receiver answered, per (path, event id): (status, body) in order.
type Answers = Arc<Mutex<HashMap<(String, String), Vec<(u16, String)>>>>;

/// A receiver failing `FAIL_PERCENT` of requests with a 500, answering a body either way.
async fn receiver(cancel: CancellationToken) -> (String, Answers) {
    let answers: Answers = Arc::default();
    let seen = answers.clone();
    let app = Router::new().fallback(move |uri: Uri, body: Bytes| {
        let seen = seen.clone();
        async move {
            let envelope: Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = envelope["id"].as_str().unwrap_or_default().to_owned();
            let fail = rand::random_range(0..100u32) < FAIL_PERCENT;
            let (status, text) = if fail {
                (500, format!("failed {id}"))
            } else {
                (200, format!("ok {id}"))
            };
            seen.lock()
                .unwrap()
                .entry((uri.path().to_owned(), id))
                .or_default()
                .push((status, text.clone()));
            (StatusCode::from_u16(status).unwrap(), text)
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
    (format!("http://{addr}"), answers)
}

/// GET with `key` (an instance token) instead of the global key.
async fn get_json(s: &TestServer, path: &str, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(s.url(path))
        .header("apikey", key)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A lookup's answer. A 503 means the process delivers no partition at that moment (the
/// Kafka engine's delivery group assigns them after a start, and may move them again): it
/// is retried for up to a minute.
async fn lookup(s: &TestServer, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = s.get(path).await;
        if status != 503 {
            assert_eq!(status, 200, "{path}: {v}");
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: still 503: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every page of a lookup.
async fn all_pages(s: &TestServer, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = 1;
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let v = lookup(s, &format!("{path}{sep}page={page}&limit=100")).await;
        out.extend(v["deliveries"].as_array().cloned().unwrap_or_default());
        if page >= v["pagination"]["totalPages"].as_u64().unwrap_or(1) {
            return out;
        }
        page += 1;
    }
}

/// Waits until both subscriptions finished every event (nothing in flight, parked or
/// lagging).
async fn wait_until_finished(s: &TestServer, subs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut done = true;
        let mut last = Value::Null;
        for id in subs {
            let (_, v) = s.get(&format!("/subscriptions/{id}")).await;
            let st = &v["status"];
            done &=
                st["lag"] == json!(0) && st["parked"] == json!(0) && st["in_flight"] == json!(0);
            last = v;
        }
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "delivery did not finish: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The lookups of every message, by message id, with the check against the receiver.
async fn check_every_message(
    s: &TestServer,
    subs: &[(String, String)],
    answers: &HashMap<(String, String), Vec<(u16, String)>>,
    messages: &[String],
) -> (HashMap<String, Value>, HashMap<String, BTreeSet<String>>) {
    let mut found = HashMap::new();
    let mut never_acked: HashMap<String, BTreeSet<String>> = HashMap::new();
    for message in messages {
        let v = lookup(s, &format!("/deliveries?message_id={message}")).await;
        let list = v["deliveries"].as_array().expect("deliveries");
        assert_eq!(list.len(), subs.len(), "one per subscription: {v}");
        assert_eq!(v["pagination"]["totalItems"], json!(subs.len()), "{v}");
        for (sub, path) in subs {
            let d = list
                .iter()
                .find(|d| d["subscription"] == json!(sub))
                .unwrap_or_else(|| panic!("{sub} missing: {v}"));
            assert_eq!(d["message_id"], json!(message), "{d}");
            let event_id = d["event_id"].as_str().expect("event_id").to_owned();
            let got = &answers[&(path.clone(), event_id.clone())];
            let acked = got.iter().any(|(status, _)| *status == 200);
            let want = if acked { "delivered" } else { "dead" };
            assert_eq!(d["status"], json!(want), "{d} after {got:?}");
            if !acked {
                never_acked
                    .entry(sub.clone())
                    .or_default()
                    .insert(event_id.clone());
            }
            let attempts = d["attempts"].as_array().expect("attempts");
            let shown: Vec<(u16, String)> = attempts
                .iter()
                .map(|a| {
                    (
                        a["http_status"].as_u64().unwrap_or(0) as u16,
                        a["response"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            assert_eq!(&shown, got, "every attempt, as the receiver answered: {d}");
            for (n, a) in attempts.iter().enumerate() {
                assert_eq!(a["attempt"], json!(n + 1), "{d}");
                let last = n + 1 == attempts.len();
                let outcome = match (a["http_status"].as_u64(), last) {
                    (Some(200), _) => "delivered",
                    (_, true) => "permanent",
                    _ => "retry",
                };
                assert_eq!(a["outcome"], json!(outcome), "{d}");
                let error = if outcome == "delivered" {
                    json!(null)
                } else {
                    json!("HTTP 500")
                };
                assert_eq!(a["error"], error, "{d}");
                assert!(a["duration_ms"].is_u64(), "{a}");
                assert!(
                    chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap_or("")).is_ok(),
                    "{a}"
                );
            }
            found.insert(format!("{sub} {message}"), d.clone());
        }
    }
    (found, never_acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_every_message_can_be_looked_up_and_survives_a_restart() {
    let cancel = CancellationToken::new();
    let (url, answers) = receiver(cancel.clone()).await;
    let global = format!("{url}/global");
    let env = [
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "4"),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.05"),
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
        ("WEBHOOK_GLOBAL_URL", global.as_str()),
    ];
    let mut s = TestServer::start(&env);
    let instance = unique("lookup");
    let token = s.create_instance(&instance, json!({})).await;
    let other = unique("other");
    let other_token = s.create_instance(&other, json!({})).await;
    let own = format!("{url}/own");
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": own, "events": []}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (_, list) = s.get("/subscriptions").await;
    let own_sub = list["subscriptions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["instance"] == json!(instance)))
        .and_then(|x| x["id"].as_str())
        .expect("the instance's webhook")
        .to_owned();
    let subs = vec![
        (own_sub.clone(), "/own".to_owned()),
        ("global:webhook".to_owned(), "/global".to_owned()),
    ];
    let sub_ids: Vec<String> = subs.iter().map(|(id, _)| id.clone()).collect();

    let run = unique("3EB0");
    let messages: Vec<String> = (0..EVENTS).map(|n| format!("{run}{n:04}")).collect();
    let started = Instant::now();
    for chunk in messages.chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(n, id)| {
                json!({"event": "messages.upsert", "data": {
                    "key": {"remoteJid": format!("55119{:04}@s.whatsapp.net", n % 20), "fromMe": false, "id": id},
                    "message": {"conversation": "hello"}}})
            })
            .collect();
        let (status, v) = s
            .post(&format!("/ingest/{instance}"), &json!({"events": events}))
            .await;
        assert_eq!(status, 202, "{v}");
    }
    wait_until_finished(&s, &sub_ids).await;
    let delivered_in = started.elapsed();
    let answers_now = answers.lock().unwrap().clone();
    let requests: usize = answers_now.values().map(Vec::len).sum();

    let t = Instant::now();
    let (found, never_acked) = check_every_message(&s, &subs, &answers_now, &messages).await;
    let lookup_time = t.elapsed();

    // The undelivered lists: exactly what the receiver never acknowledged (all dead).
    for (sub, _) in &subs {
        let listed = all_pages(&s, &format!("/subscriptions/{sub}/undelivered")).await;
        let ids: BTreeSet<String> = listed
            .iter()
            .map(|d| d["event_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let expected = never_acked.get(sub).cloned().unwrap_or_default();
        assert_eq!(ids, expected, "{sub}: undelivered = never acknowledged");
        assert!(
            listed.iter().all(|d| d["status"] == json!("dead")),
            "{listed:?}"
        );
        let dead = all_pages(
            &s,
            &format!("/deliveries?instance={instance}&status=dead&subscription={sub}"),
        )
        .await;
        assert_eq!(dead.len(), expected.len(), "{sub}: status=dead by instance");
    }
    let metrics = s.metrics_text().await;
    for (sub, _) in &subs {
        let dead = never_acked.get(sub).map_or(0, BTreeSet::len);
        let line = format!("switchyard_delivery_dead_letters{{subscription=\"{sub}\"}} {dead}");
        // A subscription that never dead-lettered has no series (0.3^4 per event: rare).
        assert!(dead == 0 || metrics.contains(&line), "{line} in\n{metrics}");
        let age = format!(
            "switchyard_delivery_oldest_undelivered_age_seconds{{subscription=\"{sub}\"}} 0"
        );
        assert!(metrics.contains(&age), "{age} in\n{metrics}");
    }
    assert!(
        metrics.contains("switchyard_attempt_log_written_total"),
        "{metrics}"
    );

    // Scope: an instance token sees its own subscription only; another's gets nothing of it.
    let message = &messages[0];
    let (status, mine) = get_json(&s, &format!("/deliveries?message_id={message}"), &token).await;
    assert_eq!(status, 200, "{mine}");
    let visible: Vec<&Value> = mine["deliveries"].as_array().unwrap().iter().collect();
    assert_eq!(visible.len(), 1, "{mine}");
    assert_eq!(visible[0]["subscription"], json!(own_sub), "{mine}");
    let (status, theirs) = get_json(
        &s,
        &format!("/deliveries?message_id={message}"),
        &other_token,
    )
    .await;
    assert_eq!(
        (status, &theirs["deliveries"]),
        (200, &json!([])),
        "{theirs}"
    );
    let (status, refused) = get_json(
        &s,
        &format!("/deliveries?instance={instance}"),
        &other_token,
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["success"],
        json!(false),
        "the error envelope: {refused}"
    );
    let (status, hidden) = get_json(
        &s,
        &format!("/subscriptions/{own_sub}/undelivered"),
        &other_token,
    )
    .await;
    assert_eq!(status, 404, "{hidden}");
    let (status, bad) = s.get("/deliveries?status=lost").await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("status"),
        "{bad}"
    );

    // Attempts survive a restart: the same answers, attempt for attempt.
    let exit = s.terminate();
    assert!(exit.success(), "SIGTERM exits 0: {exit:?}");
    s.restart();
    let t = Instant::now();
    for message in &messages {
        let v = lookup(&s, &format!("/deliveries?message_id={message}")).await;
        let deliveries = v["deliveries"].as_array().unwrap();
        assert_eq!(
            deliveries.len(),
            subs.len(),
            "message {message} after the restart: {v}"
        );
        for d in deliveries {
            let key = format!("{} {message}", d["subscription"].as_str().unwrap());
            assert_eq!(Some(d), found.get(&key), "after the restart");
        }
    }
    eprintln!(
        "{EVENTS} events x {} subscriptions, {requests} requests: delivered in {:.1} s; {} lookups in {:.1} s, again after restart in {:.1} s; dead: {:?}",
        subs.len(),
        delivered_in.as_secs_f64(),
        EVENTS,
        lookup_time.as_secs_f64(),
        t.elapsed().as_secs_f64(),
        never_acked.iter().map(|(k, v)| (k.clone(), v.len())).collect::<Vec<_>>(),
    );
    cancel.cancel();
}
