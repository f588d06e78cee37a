//! Hostile clients at the HTTP level, through the real binary: idle and slow connections,
//! the connection cap, keep-alive after error answers, wrong-key guessing, SSRF through an
//! outgoing proxy, overflowing sequence parameters, and instance enumeration.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `host:port` of the server.
fn authority(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(authority(s))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the server at {}: {e}", s.base))
}

/// Reads until the peer closes (`Ok(elapsed)`), or `limit` passes (`Err`).
async fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {limit:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one HTTP/1.1 response with a `content-length` body: (status, lowercased head, body).
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("content-length"))
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("status code");
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).to_string();
                return (status, head, body);
            }
        }
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("no complete response within 10 s")
            .expect("read the response");
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let s = TestServer::start(&[
        ("SWITCHYARD_SERVER__IDLE_TIMEOUT_SECONDS", "2"),
        ("SWITCHYARD_SERVER__HEADER_READ_TIMEOUT_SECONDS", "0.5"),
    ]);
    // A new connection that sends nothing.
    let mut silent = connect(&s).await;
    let waited = time_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("a silent connection must be closed by the idle timeout");
    println!("silent connection closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(1900),
        "closed too early: {waited:?}"
    );

    // A keep-alive connection idling after a request: the same timeout, from the response.
    let mut idle = connect(&s).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, head, _) = read_response(&mut idle).await;
    assert_eq!(status, 200, "{head}");
    let waited = time_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection must be closed by the idle timeout");
    println!("idle keep-alive connection closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(1900),
        "closed too early: {waited:?}"
    );

    // Headers started but never finished: the header timeout, well before the idle one.
    let mut slow = connect(&s).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let waited = time_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("a slow-header connection must be closed by the header timeout");
    println!("slow-header connection closed after {waited:?}");
    assert!(
        waited < Duration::from_millis(1500),
        "a slow head must not get the whole idle timeout: {waited:?}"
    );

    // The server still answers.
    let r = s
        .http
        .get(s.url("/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_connection_cap_answers_503_and_frees_up() {
    let s = TestServer::start(&[("SWITCHYARD_SERVER__MAX_CONNECTIONS", "8")]);
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = connect(&s).await;
        c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let (status, _, _) = read_response(&mut c).await;
        assert_eq!(status, 200);
        held.push(c);
    }
    let mut over = connect(&s).await;
    over.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, head, body) = read_response(&mut over).await;
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    let v: Value = serde_json::from_str(&body).expect("JSON envelope");
    assert_eq!(v["error"]["code"], 2010, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("server.max_connections"),
        "{v}"
    );
    time_until_closed(&mut over, Duration::from_secs(5))
        .await
        .expect("the refused connection must be closed");

    // Closing held connections frees their places.
    held.truncate(4);
    let mut ok = false;
    for _ in 0..100 {
        let r = reqwest::Client::new().get(s.url("/health")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "/health must answer once connections are closed");
}

#[tokio::test]
async fn error_answers_keep_keep_alive_connections_usable() {
    let s = TestServer::start(&[]);
    let instance = unique("ka");
    s.create_instance(&instance, json!({})).await;
    let body = json!({"events": [{"event": "messages.upsert", "data": {"pad": "x".repeat(2048)}}]})
        .to_string();

    // On one raw connection: the 401 leaves it open (the body was drained) and the next
    // request on it is answered.
    let mut raw = connect(&s).await;
    for i in 0..20 {
        let request = format!(
            "POST /ingest/{instance} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        raw.write_all(request.as_bytes()).await.expect("write");
        let (status, head, _) = read_response(&mut raw).await;
        assert_eq!(status, 401, "round {i}: {head}");
        assert!(!head.contains("connection: close"), "round {i}: {head}");
        raw.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("round {i}: the connection broke after a 401: {e}"));
        let (status, _, _) = read_response(&mut raw).await;
        assert_eq!(status, 200, "round {i}");
    }

    // A pooled client (one connection), 100 times: 401 to a POST, then a request that works.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for i in 0..100 {
        let r = client
            .post(s.url(&format!("/ingest/{instance}")))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {i}: POST failed: {e}"));
        assert_eq!(r.status(), 401, "round {i}");
        let _ = r.bytes().await;
        let r = client
            .get(s.url(&format!("/instance/fetchInstances?instanceName={instance}")))
            .header("apikey", &s.key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {i}: the request after a 401 failed: {e}"));
        assert_eq!(r.status(), 200, "round {i}");
    }

    // A body too large to drain: the answer says `Connection: close`, so the client knows.
    let big = "x".repeat(512 * 1024);
    let mut raw = connect(&s).await;
    let request = format!(
        "POST /ingest/{instance} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );
    raw.write_all(request.as_bytes()).await.expect("write");
    // Only part of the body: enough to overflow the drain, without the client blocking on a
    // server that stops reading.
    raw.write_all(&big.as_bytes()[..100 * 1024])
        .await
        .expect("write");
    let (status, head, _) = read_response(&mut raw).await;
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("connection: close"), "{head}");
}

#[tokio::test]
async fn wrong_keys_are_rate_limited_per_address_before_the_key_is_checked() {
    let s = TestServer::start(&[]);
    let guesser = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().expect("ip")))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let honest = reqwest::Client::builder()
        .local_address(Some("127.0.0.1".parse().expect("ip")))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..60u32 {
        // Every guess with its own prefix: the address's budget is what runs out.
        let key = format!("{:08x}-guess-{i}", i.wrapping_mul(2_654_435_761));
        let r = guesser
            .get(s.url("/instance/fetchInstances"))
            .header("apikey", key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the server at {} is unreachable: {e}", s.base));
        statuses.push(r.status().as_u16());
        if r.status() == 429 && limited.is_none() {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let v: Value = r.json().await.unwrap_or(Value::Null);
            limited = Some((i, retry_after, v));
        }
        // The right key from another address keeps working throughout.
        let r = honest
            .get(s.url("/instance/fetchInstances"))
            .header("apikey", &s.key)
            .send()
            .await
            .expect("honest request");
        assert_eq!(
            r.status(),
            200,
            "the right key from 127.0.0.1 after {i} guesses"
        );
    }
    let (first, retry_after, v) = limited.expect("60 wrong keys from one address must hit 429");
    println!("first 429 at guess {first}; statuses {statuses:?}");
    assert_eq!(
        first, 30,
        "the default burst is 30 wrong keys: {statuses:?}"
    );
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(
        retry_after.is_some_and(|r| r >= 1),
        "Retry-After: {retry_after:?}"
    );
    assert_eq!(v["error"]["code"], 2009, "{v}");
    assert_eq!(v["error"]["status"], 429, "{v}");

    // Over budget, the address does not learn whether a key is right.
    let r = guesser
        .get(s.url("/instance/fetchInstances"))
        .header("apikey", &s.key)
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        429,
        "a right key from a blocked address must not be checked"
    );
}

/// An HTTP proxy that records the request line of everything it is sent and answers 200.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&data[..end]).to_string();
                    let length: usize = head
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if data.len() < end + 4 + length {
                        continue;
                    }
                    let line = head.lines().next().unwrap_or_default().to_string();
                    record.lock().expect("lock").push(line);
                    data.drain(..end + 4 + length);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

async fn set_webhook(s: &TestServer, instance: &str, url: &str) {
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": url, "events": []}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

/// The subscription of `instance`'s webhook.
async fn subscription_of(s: &TestServer, instance: &str) -> String {
    let (_, subs) = s.get("/subscriptions").await;
    subs["subscriptions"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|sub| sub.to_string().contains(instance))
                .and_then(|sub| sub["id"].as_str())
        })
        .unwrap_or_else(|| panic!("no subscription for {instance}: {subs}"))
        .to_string()
}

/// Waits (up to 10 s) for the first dead letter's reason.
async fn dead_letter_reason(s: &TestServer, id: &str) -> String {
    for _ in 0..400 {
        let (_, v) = s.get(&format!("/subscriptions/{id}/dead-letters")).await;
        if let Some(reason) = v["dead_letters"][0]["attempts"][0]["reason"].as_str() {
            return reason.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no dead letter for {id} within 10 s");
}

#[tokio::test]
async fn proxied_webhooks_to_internal_targets_never_reach_the_proxy() {
    let (proxy, seen) = recording_proxy().await;
    let retries = [
        ("HTTP_PROXY", proxy.as_str()),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.02"),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "2"),
    ];
    let s = TestServer::start(&retries);
    for target in [
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/hook",
    ] {
        let instance = unique("ssrf");
        s.create_instance(&instance, json!({})).await;
        set_webhook(&s, &instance, target).await;
        s.ingest_numbered(&instance, 0, 1).await;
        let id = subscription_of(&s, &instance).await;
        let reason = dead_letter_reason(&s, &id).await;
        assert!(
            reason.contains("refusing") && reason.contains("allow_private_targets"),
            "{target}: {reason}"
        );
    }
    assert!(
        seen.lock().expect("lock").is_empty(),
        "internal targets reached the proxy: {:?}",
        seen.lock().expect("lock")
    );
    drop(s);

    // Allowed private targets go through the proxy.
    let mut allowed = retries.to_vec();
    allowed.push(("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"));
    let s = TestServer::start(&allowed);
    let instance = unique("proxied");
    s.create_instance(&instance, json!({})).await;
    set_webhook(&s, &instance, "http://localhost:9/hook").await;
    s.ingest_numbered(&instance, 0, 1).await;
    let mut lines = Vec::new();
    for _ in 0..400 {
        lines = seen.lock().expect("lock").clone();
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        lines,
        vec!["POST http://localhost:9/hook HTTP/1.1".to_string()],
        "with private targets allowed the proxy must receive the webhook"
    );
}

#[tokio::test]
async fn an_overflowing_last_sequence_is_refused_not_wrapped() {
    let s = TestServer::start(&[]);
    let instance = unique("seq");
    s.create_instance(&instance, json!({})).await;
    s.ingest_numbered(&instance, 0, 3).await;
    let key = &s.key;
    for path in [
        format!("/ws?apikey={key}&last_sequence=18446744073709551615"),
        format!("/ws?apikey={key}&last_sequence=18446744073709551616"),
        format!("/ws?apikey={key}&from_sequence=99999999999999999999999"),
        format!(
            "/socket.io/?EIO=4&transport=websocket&apikey={key}&last_sequence=18446744073709551615"
        ),
    ] {
        match common::ws::try_connect(&s, &path).await {
            Ok(_) => panic!("{path}: connected; it must be refused, not replay from 0"),
            Err((status, v)) => {
                assert_eq!(status, 400, "{path}: {v}");
                assert_eq!(v["error"]["code"], 2001, "{path}: {v}");
            }
        }
    }
    // The largest valid value still connects (and waits for the future).
    let ok = common::ws::try_connect(
        &s,
        &format!("/ws?apikey={key}&last_sequence=18446744073709551614"),
    )
    .await;
    assert!(
        ok.is_ok(),
        "last_sequence=u64::MAX-1 must connect: {:?}",
        ok.err()
    );
}

#[tokio::test]
async fn provider_routes_do_not_reveal_which_instances_exist() {
    let s = TestServer::start(&[]);
    let with_meta = unique("meta");
    s.create_instance(
        &with_meta,
        json!({"providers": {"meta": {"appSecret": "app-secret-1", "verifyToken": "vt-1"}}}),
    )
    .await;
    let without_meta = unique("plain");
    s.create_instance(&without_meta, json!({})).await;
    let missing = unique("missing");
    let anonymous = reqwest::Client::new();

    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    };
    let mut handshakes = Vec::new();
    let mut posts = Vec::new();
    let mut evolution = Vec::new();
    for instance in [&with_meta, &without_meta, &missing] {
        let r = anonymous
            .get(s.url(&format!(
                "/ingest/{instance}/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=123"
            )))
            .send()
            .await
            .expect("GET meta");
        handshakes.push(answer(r).await);
        let r = anonymous
            .post(s.url(&format!("/ingest/{instance}/meta")))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", format!("sha256={}", "00".repeat(32)))
            .body(r#"{"object":"whatsapp_business_account","entry":[]}"#)
            .send()
            .await
            .expect("POST meta");
        posts.push(answer(r).await);
        let r = anonymous
            .post(s.url(&format!("/ingest/{instance}/evolution")))
            .json(&json!({"event": "messages.upsert", "instance": instance, "data": {}}))
            .send()
            .await
            .expect("POST evolution");
        evolution.push(answer(r).await);
    }
    println!("handshakes {handshakes:?}\nposts {posts:?}\nevolution {evolution:?}");
    for answers in [&handshakes, &posts, &evolution] {
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "the answers must not depend on whether the instance exists: {answers:?}"
        );
    }
    assert_eq!(handshakes[0].0, 403);
    assert_eq!(posts[0].0, 401);
    assert_eq!(evolution[0].0, 401);

    // The handshake itself still works, and the operator's key still gets the precise 404.
    let r = anonymous
        .get(s.url(&format!(
            "/ingest/{with_meta}/meta?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=123"
        )))
        .send()
        .await
        .expect("GET meta");
    assert_eq!(answer(r).await, (200, "123".to_string()));
    let (status, v) = s
        .get(&format!(
            "/ingest/{missing}/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"
        ))
        .await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test]
async fn websockets_upgrade_and_sigterm_still_drains_cleanly() {
    let mut s = TestServer::start(&[]);
    let instance = unique("wsup");
    s.create_instance(&instance, json!({})).await;
    let ws = common::ws::try_connect(&s, &format!("/ws?apikey={}", s.key)).await;
    assert!(ws.is_ok(), "the /ws upgrade must work: {:?}", ws.err());
    // An idle keep-alive connection must not hold shutdown up.
    let mut idle = connect(&s).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, _, _) = read_response(&mut idle).await;
    assert_eq!(status, 200);
    let start = Instant::now();
    let exit = s.terminate();
    println!("SIGTERM to exit: {:?}", start.elapsed());
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}
