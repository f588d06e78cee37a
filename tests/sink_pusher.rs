//! The Pusher sink: its request signing against the official `pusher` PyPI library, and
//! delivery through the real server binary to a local checker of Pusher's HTTP API
//! (`support/pusher.rs`) that verifies what Pusher verifies and rejects what Pusher rejects.
//!
//! Pusher itself cannot run here; the library's signatures and a checker written from
//! Pusher's documentation are the two independent references.

mod common;
#[path = "support/pusher.rs"]
mod pusher_checker;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{test_python, unique, TestServer};
use pusher_checker::Checker;
use serde_json::{json, Value};
use switchyard::sinks::pusher::{sign, valid_channel, PusherApp, MAX_DATA_BYTES};
use tokio_util::sync::CancellationToken;

/// Runs `script` with the test virtualenv's python (which must have the official `pusher`
/// library), giving it `input` as a JSON file; returns its JSON output.
fn run_python(script: &str, input: &Value) -> Value {
    let python = test_python("pusher");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(file.path())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the pusher library script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// The official library builds each case's request (`trigger` or `trigger_batch`, its own
/// body) at the case's timestamp, without sending it (`make_request`: what its HTTP
/// backends are given); its query parameters and URL come back.
const LIBRARY_REQUESTS: &str = r#"
import json, sys, types
import pusher.http, pusher.util
from pusher.pusher_client import PusherClient
cases = json.load(open(sys.argv[1]))
out = {"requests": [], "channels": {}}
for c in cases["requests"]:
    pusher.http.time = types.SimpleNamespace(time=lambda ts=c["timestamp"]: ts)
    client = PusherClient(app_id=c["app_id"], key=c["key"], secret=c["secret"],
                          cluster=c["cluster"], ssl=c["use_tls"])
    if c.get("batch") is not None:
        req = client.trigger_batch.make_request(c["batch"], already_encoded=True)
    else:
        req = client.trigger.make_request(c["channel"], c["name"], c["data"])
    out["requests"].append({"path": req.path, "body": req.body.decode("utf8"),
                            "query": req.query_params, "url": req.url})
for name in cases["channels"]:
    try:
        pusher.util.validate_channel(name)
        out["channels"][name] = True
    except ValueError:
        out["channels"][name] = False
print(json.dumps(out))
"#;

/// The library's own signing pieces (`pusher.signature.sign`, `make_query_string`) over
/// requests as they arrived: their `body_md5` and `auth_signature`.
const LIBRARY_SIGNATURES: &str = r#"
import hashlib, json, sys
from pusher.signature import sign
from pusher.http import make_query_string
d = json.load(open(sys.argv[1]))
out = []
for r in d["requests"]:
    params = {k: v for k, v in r["query"].items() if k != "auth_signature"}
    out.append({
        "body_md5": hashlib.md5(r["body"].encode("utf8")).hexdigest(),
        "auth_signature": sign(d["secret"], "\n".join(["POST", r["path"], make_query_string(params)])),
    })
print(json.dumps(out))
"#;

#[test]
fn signatures_equal_the_official_librarys() {
    let envelope = |n: u32, text: &str| {
        json!({"event": "messages.upsert", "instance": "inst-1", "data": {"n": n, "text": text}})
            .to_string()
    };
    let cases = json!({
        "requests": [
            {"app_id": "1001", "key": "278d425bdf160c739803", "secret": "7ad3773142a6692b25b8",
             "cluster": "mt1", "use_tls": true, "timestamp": 1353088179,
             "channel": "inst-1", "name": "messages.upsert", "data": envelope(1, "olá")},
            {"app_id": "42", "key": "k3y", "secret": "sécret with spaces & symbols=",
             "cluster": "eu", "use_tls": false, "timestamp": 1_780_000_000,
             "batch": [
                {"channel": "inst-1", "name": "messages.upsert", "data": envelope(1, "a \"quoted\" 🚀")},
                {"channel": "inst-1", "name": "messages.update", "data": envelope(2, "ação\n")},
                {"channel": "inst-1", "name": "qrcode.updated", "data": envelope(3, "")},
             ]},
            {"app_id": "7", "key": "abc", "secret": "s", "cluster": "ap2", "use_tls": true,
             "timestamp": 1_999_999_999,
             "batch": (0..10).map(|n| json!({"channel": "c", "name": "call", "data": envelope(n, "x")})).collect::<Vec<_>>()},
        ],
        "channels": ["inst", "my-inst_1", "a=b@c,d.e;f", "has space", "ação", "a/b", "x".repeat(200), "x".repeat(201), "#chan"],
    });
    let out = run_python(LIBRARY_REQUESTS, &cases);
    let requests = out["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3);
    for (case, lib) in cases["requests"].as_array().unwrap().iter().zip(requests) {
        let path = lib["path"].as_str().unwrap();
        let batch = case.get("batch").is_some();
        let endpoint = if batch { "batch_events" } else { "events" };
        assert_eq!(
            path,
            format!("/apps/{}/{endpoint}", case["app_id"].as_str().unwrap())
        );
        // Our signer over the library's exact body, at the same time: the same parameters.
        let ours = sign(
            path,
            lib["body"].as_str().unwrap().as_bytes(),
            case["key"].as_str().unwrap(),
            case["secret"].as_str().unwrap(),
            case["timestamp"].as_i64().unwrap(),
        );
        let ours: BTreeMap<String, String> = ours
            .params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let theirs: BTreeMap<String, String> =
            serde_json::from_value(lib["query"].clone()).expect("string parameters");
        assert_eq!(ours, theirs, "case {case}");
        // The same host: `api-{cluster}.pusher.com` over the case's scheme.
        let app = PusherApp {
            cluster: case["cluster"].as_str().unwrap().into(),
            use_tls: case["use_tls"].as_bool().unwrap(),
            ..PusherApp::default()
        };
        let lib_url = url::Url::parse(lib["url"].as_str().unwrap()).unwrap();
        let our_url = url::Url::parse(&app.base_url()).unwrap();
        assert_eq!(
            (lib_url.scheme(), lib_url.host_str()),
            (our_url.scheme(), our_url.host_str())
        );
    }
    // Channel names: we refuse before sending what the library refuses (its `#server-to-
    // user-` channels aside, which an instance name never is).
    for (name, accepted) in out["channels"].as_object().unwrap() {
        if name.starts_with('#') {
            continue;
        }
        assert_eq!(valid_channel(name), accepted.as_bool().unwrap(), "`{name}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_rejects_what_pusher_rejects() {
    let stop = CancellationToken::new();
    let checker = Checker::start(stop.clone()).await;
    let http = reqwest::Client::new();
    let body = json!({"batch": [{"channel": "inst", "name": "call", "data": "{}"}]}).to_string();
    let path = format!("/apps/{}/batch_events", checker.app_id);
    let now = chrono::Utc::now().timestamp();
    let send = |path: String, params: Vec<(&'static str, String)>, body: String| {
        let http = http.clone();
        let url = format!("{}{path}", checker.url);
        async move {
            let r = http
                .post(url)
                .query(&params)
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let signed = |path: &str, body: &str, key: &str, secret: &str, ts: i64| {
        sign(path, body.as_bytes(), key, secret, ts)
            .params()
            .to_vec()
    };
    let good = signed(&path, &body, &checker.key, &checker.secret, now);
    assert_eq!(send(path.clone(), good.clone(), body.clone()).await, 200);

    let mut wrong_signature = good.clone();
    wrong_signature[1].1 = signed(&path, &body, &checker.key, "not-the-secret", now)[1]
        .1
        .clone();
    assert_eq!(send(path.clone(), wrong_signature, body.clone()).await, 401);
    let tampered = body.replace("call", "CALL");
    assert_eq!(
        send(path.clone(), good.clone(), tampered).await,
        401,
        "body_md5"
    );
    let stale = signed(&path, &body, &checker.key, &checker.secret, now - 601);
    assert_eq!(
        send(path.clone(), stale, body.clone()).await,
        401,
        "timestamp"
    );
    let other_key = signed(&path, &body, "other-key", &checker.secret, now);
    assert_eq!(
        send(path.clone(), other_key, body.clone()).await,
        401,
        "key"
    );
    let other_app = "/apps/1/batch_events".to_string();
    let for_other_app = signed(&other_app, &body, &checker.key, &checker.secret, now);
    assert_eq!(
        send(other_app, for_other_app, body.clone()).await,
        404,
        "app id"
    );
    let big =
        json!({"batch": [{"channel": "c", "name": "n", "data": "x".repeat(MAX_DATA_BYTES + 1)}]})
            .to_string();
    let big_signed = signed(&path, &big, &checker.key, &checker.secret, now);
    assert_eq!(send(path.clone(), big_signed, big).await, 413, "10 KiB");
    assert_eq!(
        checker.triggered().len(),
        1,
        "only the good request was accepted"
    );
    stop.cancel();
}

/// The server with the global Pusher app pointed at `checker`, and fast retries.
fn server_env(checker: &Checker, max_batch: usize) -> Vec<(&'static str, String)> {
    vec![
        ("PUSHER_ENABLED", "true".into()),
        ("PUSHER_GLOBAL_ENABLED", "true".into()),
        ("PUSHER_GLOBAL_APP_ID", checker.app_id.clone()),
        ("PUSHER_GLOBAL_KEY", checker.key.clone()),
        ("PUSHER_GLOBAL_SECRET", checker.secret.clone()),
        ("PUSHER_GLOBAL_CLUSTER", "mt1".into()),
        ("PUSHER_GLOBAL_USE_TLS", "false".into()),
        ("SWITCHYARD_PUSHER__GLOBAL_ENDPOINT", checker.url.clone()),
        ("SWITCHYARD_PUSHER__MAX_BATCH", max_batch.to_string()),
        ("SWITCHYARD_PUSHER__REQUEST_TIMEOUT_MS", "2000".into()),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "1000".into()),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01".into()),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.05".into()),
    ]
}

fn start(env: &[(&'static str, String)]) -> TestServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start(&env)
}

fn chat(c: usize) -> String {
    format!("55119{c:08}@s.whatsapp.net")
}

/// A `messages.upsert` of chat `c`, numbered `n`, with `text`.
fn message(c: usize, n: usize, text: &str) -> Value {
    json!({"event": "messages.upsert",
           "data": {"key": {"remoteJid": chat(c), "id": format!("M{c}-{n}")}, "n": n, "text": text}})
}

async fn ingest(s: &TestServer, instance: &str, events: Vec<Value>) {
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "ingest: {v}");
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The global subscription's dead letters, once there are `count`.
async fn dead_letters(s: &TestServer, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = s.get("/subscriptions/global:pusher/dead-letters").await;
        assert_eq!(status, 200, "{v}");
        let letters = v["dead_letters"].as_array().cloned().unwrap_or_default();
        if letters.len() >= count {
            assert_eq!(letters.len(), count, "{v}");
            return letters;
        }
        assert!(Instant::now() < deadline, "{count} dead letters: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn last_reason(letter: &Value) -> String {
    letter["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_checker_in_order_per_chat_and_oversize_ones_are_dead_lettered() {
    let stop = CancellationToken::new();
    let checker = Checker::start(stop.clone()).await;
    let s = start(&server_env(&checker, 10));
    let inst = unique("pusher");
    s.create_instance(&inst, json!({})).await;

    // Pusher is busy at first: 503 is retried, nothing is lost or reordered.
    checker.fail_next(3, 503, r#"{"error":"busy"}"#);
    let (chats, per_chat) = (6, 40);
    let oversize = "x".repeat(MAX_DATA_BYTES);
    for round in 0..4 {
        let mut events = Vec::new();
        for n in round * 10..(round + 1) * 10 {
            for c in 0..chats {
                // One message of chat 0 is over Pusher's limit: dead-lettered, the chat goes on.
                let text = if c == 0 && n == 17 {
                    oversize.as_str()
                } else {
                    "hi"
                };
                events.push(message(c, n, text));
            }
        }
        ingest(&s, &inst, events).await;
    }
    // A QR code whose image alone is over the limit: Evolution strips the image, so do we.
    let image = format!("data:image/png;base64,{}", "A".repeat(2 * MAX_DATA_BYTES));
    ingest(
        &s,
        &inst,
        vec![json!({"event": "qrcode.updated", "data": {"qrcode": {"instance": inst, "code": "2@qr", "base64": image}}})],
    )
    .await;

    // Every message but the oversize one, and the QR code.
    let expected = chats * per_chat;
    wait_until(
        "every event at the checker",
        Duration::from_secs(60),
        || checker.triggered().len() >= expected,
    )
    .await;
    let triggered = checker.triggered();
    assert_eq!(triggered.len(), expected, "each event once");
    let mut per_chat_seen: HashMap<String, Vec<u64>> = HashMap::new();
    for t in &triggered {
        assert_eq!(t.channel, inst, "the channel is the instance name");
        assert_eq!(t.data["instance"], json!(inst));
        assert_eq!(
            t.data["destination"],
            json!(checker.app_id),
            "destination is the app id"
        );
        assert_eq!(t.data["event"], json!(t.name));
        if t.name == "qrcode.updated" {
            assert_eq!(t.data["data"]["qrcode"]["code"], "2@qr");
            assert!(
                t.data["data"]["qrcode"].get("base64").is_none(),
                "image stripped"
            );
            continue;
        }
        assert_eq!(t.name, "messages.upsert");
        let jid = t.data["data"]["key"]["remoteJid"]
            .as_str()
            .unwrap()
            .to_owned();
        per_chat_seen
            .entry(jid)
            .or_default()
            .push(t.data["data"]["n"].as_u64().unwrap());
    }
    for c in 0..chats {
        let expected: Vec<u64> = (0..per_chat as u64)
            .filter(|n| !(c == 0 && *n == 17))
            .collect();
        assert_eq!(per_chat_seen[&chat(c)], expected, "chat {c} in order");
    }
    let requests = checker.requests();
    let accepted = requests.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        requests.iter().filter(|r| r.status == 503).count(),
        3,
        "the busy answers were retried"
    );
    assert!(requests.iter().all(|r| r.status == 200 || r.status == 503));
    println!(
        "{} events in {accepted} accepted requests ({:.1} per request)",
        expected,
        expected as f64 / accepted as f64
    );

    // The oversize event: dead-lettered with its reason, visible through the API.
    let letters = dead_letters(&s, 1).await;
    let reason = last_reason(&letters[0]);
    assert!(
        reason.contains("over Pusher's limit of 10240 bytes"),
        "{reason}"
    );
    assert_eq!(letters[0]["instance"], json!(inst));

    // Every request the server sent is signed as the official library signs it.
    let captured: Vec<Value> = requests
        .iter()
        .map(|r| json!({"path": r.path, "query": r.query, "body": String::from_utf8(r.body.clone()).unwrap()}))
        .collect();
    let library = run_python(
        LIBRARY_SIGNATURES,
        &json!({"secret": checker.secret, "requests": captured}),
    );
    for (request, lib) in requests.iter().zip(library.as_array().unwrap()) {
        assert_eq!(request.query["body_md5"], lib["body_md5"].as_str().unwrap());
        assert_eq!(
            request.query["auth_signature"],
            lib["auth_signature"].as_str().unwrap()
        );
    }
    // The secret is never in what the server sends or shows.
    let (_, subs) = s.get("/subscriptions").await;
    assert!(!subs.to_string().contains(&checker.secret), "{subs}");

    // A 4xx other than 429 is permanent, with Pusher's answer in the reason.
    checker.fail_next(1, 400, r#"{"error":"Invalid channel name"}"#);
    ingest(&s, &inst, vec![message(chats, 0, "rejected")]).await;
    let letters = dead_letters(&s, 2).await;
    let rejected = letters
        .iter()
        .find(|l| last_reason(l).contains("HTTP 400"))
        .unwrap_or_else(|| panic!("a dead letter for the 400: {letters:?}"));
    assert!(
        last_reason(rejected).contains("Invalid channel name"),
        "{rejected}"
    );
    assert_eq!(rejected["attempts"].as_array().map(Vec::len), Some(1));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_set_and_find_over_http() {
    let s = TestServer::start(&[]);
    let inst = unique("pset");
    s.create_instance(&inst, json!({})).await;
    let set = format!("/pusher/set/{inst}");
    let cases = [
        (json!({"pusher": {"enabled": "yes"}}), "pusher.enabled"),
        (
            json!({"pusher": {"enabled": true, "key": "k", "secret": "s", "cluster": "mt1"}}),
            "pusher.appId",
        ),
        (
            json!({"pusher": {"enabled": true, "appId": "1", "key": "k", "secret": "s", "cluster": "eu.evil/x"}}),
            "pusher.cluster",
        ),
        (
            json!({"pusher": {"enabled": true, "appId": "1", "key": "k", "secret": "s", "endpoint": "http://x.test/p"}}),
            "pusher.endpoint",
        ),
        (
            json!({"pusher": {"enabled": false, "events": ["NOPE"]}}),
            "events",
        ),
    ];
    for (body, field) in cases {
        let (status, v) = s.post(&set, &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {v}");
    }
    let (status, v) = s
        .post(&set, &json!({"pusher": {"enabled": false, "events": []}}))
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, found) = s.get(&format!("/pusher/find/{inst}")).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["enabled"], json!(false), "{found}");
    assert!(found.get("secret").is_none(), "{found}");
}

/// One chat's backlog of 100 events with a 20 ms round trip to Pusher: one request per
/// event (`max_batch` 1) against batches of up to 10. Prints both times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_cut_the_round_trips_of_a_backlog() {
    let mut timings = Vec::new();
    for max_batch in [1, 10] {
        let stop = CancellationToken::new();
        let checker = Checker::start(stop.clone()).await;
        checker
            .delay_ms
            .store(20, std::sync::atomic::Ordering::SeqCst);
        let s = start(&server_env(&checker, max_batch));
        let inst = unique("pbatch");
        s.create_instance(&inst, json!({})).await;
        let started = Instant::now();
        ingest(&s, &inst, (0..100).map(|n| message(0, n, "hi")).collect()).await;
        wait_until("100 events", Duration::from_secs(60), || {
            checker.triggered().len() >= 100
        })
        .await;
        let took = started.elapsed();
        let order: Vec<u64> = checker
            .triggered()
            .iter()
            .map(|t| t.data["data"]["n"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (0..100).collect::<Vec<u64>>());
        let requests = checker.requests().len();
        println!("max_batch {max_batch}: 100 events in {requests} requests, {took:?}");
        timings.push((requests, took));
        stop.cancel();
    }
    assert_eq!(timings[0].0, 100);
    assert!(timings[1].0 <= 20, "batches of up to 10: {timings:?}");
    assert!(timings[1].1 < timings[0].1, "{timings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instances_own_app_set_over_http_gets_its_events_in_order() {
    let stop = CancellationToken::new();
    let checker = Checker::start(stop.clone()).await;
    let s = TestServer::start(&[
        ("PUSHER_ENABLED", "true"),
        ("SWITCHYARD_PUSHER__ALLOW_PRIVATE_TARGETS", "true"),
    ]);
    let inst = unique("pown");
    s.create_instance(&inst, json!({})).await;
    let body = json!({"pusher": {"enabled": true, "appId": checker.app_id, "key": checker.key,
        "secret": checker.secret, "cluster": "mt1", "useTLS": false, "endpoint": checker.url,
        "events": ["MESSAGES_UPSERT"]}});
    let (status, set) = s.post(&format!("/pusher/set/{inst}"), &body).await;
    assert_eq!(status, 201, "{set}");
    let (_, found) = s.get(&format!("/pusher/find/{inst}")).await;
    for shown in [&set, &found] {
        assert_eq!(shown["appId"], json!(checker.app_id), "{shown}");
        assert!(!shown.to_string().contains(&checker.secret), "{shown}");
    }
    let mut events = Vec::new();
    for n in 0..20 {
        for c in 0..3 {
            events.push(message(c, n, "hi"));
        }
    }
    ingest(&s, &inst, events).await;
    wait_until("60 events", Duration::from_secs(30), || {
        checker.triggered().len() >= 60
    })
    .await;
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for t in checker.triggered() {
        assert_eq!(t.channel, inst);
        let jid = t.data["data"]["key"]["remoteJid"]
            .as_str()
            .unwrap()
            .to_owned();
        seen.entry(jid)
            .or_default()
            .push(t.data["data"]["n"].as_u64().unwrap());
    }
    for c in 0..3 {
        assert_eq!(seen[&chat(c)], (0..20).collect::<Vec<u64>>(), "chat {c}");
    }
    let (_, subs) = s.get("/subscriptions").await;
    assert!(!subs.to_string().contains(&checker.secret), "{subs}");
    stop.cancel();
}
