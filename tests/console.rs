//! The operator's console (`/ui`), in a real headless Chromium driven by Playwright
//! (`tests/console/drive.js`): sign in, create an instance with a webhook, see the lag go up
//! while the receiver is down and back to 0 after, edit the subscription (a bad filter shows
//! the server's message, a policy saves), redrive a dead letter, find a message by its
//! WhatsApp id with every attempt, read a live event in the tail, render the API page; then
//! an instance token sees only its own instance. Screenshots of each page go to
//! `target/console-screenshots/`. The key must appear in no URL the browser requested and
//! nowhere in the server's log.
//!
//! Also, without a browser: the assets are served without a key under a strict
//! Content-Security-Policy, `/ws` takes the key as a subprotocol (how the console's tail
//! keeps it out of the URL), and `POST /subscriptions/{id}/disable` and `/enable`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use common::{unique, ws, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Fast retries, loopback targets allowed, and attempts enough that the receiver's outage
/// never dead-letters: only the 422 the editor makes permanent does.
const ENV: &[(&str, &str)] = &[
    ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOK_REQUEST_TIMEOUT_MS", "2000"),
    ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000"),
    ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.3"),
    // The log the key must not appear in: everything Switchyard logs, at debug.
    ("RUST_LOG", "debug"),
];

/// The receiver's switches, set by the browser script through `/control/...`.
#[derive(Default)]
struct Switches {
    down: AtomicBool,
    rejected: Mutex<HashSet<String>>,
}

/// A webhook receiver: `POST /hook` answers 503 while down, 422 for a rejected WhatsApp
/// message id, else 200; `POST /control/{down,up,accept}` and `/control/reject/{id}` switch it.
async fn receiver(cancel: CancellationToken) -> String {
    let switches = Arc::new(Switches::default());
    let (hook, control, reject) = (switches.clone(), switches.clone(), switches);
    let app = Router::new()
        .route(
            "/hook",
            post(move |body: Bytes| {
                let s = hook.clone();
                async move {
                    let envelope: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let id = envelope["data"]["key"]["id"].as_str().unwrap_or_default();
                    if s.down.load(Ordering::SeqCst) {
                        (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance")
                    } else if s.rejected.lock().unwrap().contains(id) {
                        (StatusCode::UNPROCESSABLE_ENTITY, "unknown customer")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }),
        )
        .route(
            "/control/{what}",
            post(move |UrlPath(what): UrlPath<String>| {
                let s = control.clone();
                async move {
                    match what.as_str() {
                        "down" => s.down.store(true, Ordering::SeqCst),
                        "up" => s.down.store(false, Ordering::SeqCst),
                        "accept" => s.rejected.lock().unwrap().clear(),
                        _ => return StatusCode::NOT_FOUND,
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .route(
            "/control/reject/{id}",
            post(move |UrlPath(id): UrlPath<String>| {
                let s = reject.clone();
                async move {
                    s.rejected.lock().unwrap().insert(id);
                    StatusCode::NO_CONTENT
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .ok();
    });
    format!("http://{addr}")
}

/// Fails, never skips, when what the browser test needs is missing.
fn require_browser(dir: &Path) {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: install Debian's chromium (scripts/services.sh does: apt-get install chromium)"
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists(),
        "playwright-core is missing in tests/console: run scripts/services.sh (npm install --prefix tests/console)"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js (scripts/services.sh does: apt-get install nodejs npm)"
    );
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

fn base64url(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_day_from_the_console_in_a_real_browser() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    require_browser(&script_dir);
    let cancel = CancellationToken::new();
    let receiver = receiver(cancel.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let s = TestServer::start_logging(&data.path().join("data"), ENV, Some(&log));
    let shots = screenshots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let instance = unique("console");
    let other = unique("other");

    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("node")
            .arg(script_dir.join("drive.js"))
            .current_dir(&script_dir)
            .env("CONSOLE_URL", &s.base)
            .env("CONSOLE_KEY", &s.key)
            .env("RECEIVER_URL", format!("{receiver}/hook"))
            .env("RECEIVER_CONTROL", format!("{receiver}/control"))
            .env("INSTANCE", &instance)
            .env("OTHER", &other)
            .env("SCREENSHOTS", &shots)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser script did not finish within 5 minutes")
    .expect("run node tests/console/drive.js");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("the browser script printed no JSON report ({e}):\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    assert!(
        report["failed"].is_null(),
        "the browser script failed: {}\nsteps so far: {:#}\npage errors: {}\nconsole errors: {}\nscreenshot: {}",
        report["failed"].as_str().unwrap_or_default(),
        report["steps"],
        report["page_errors"],
        report["console_errors"],
        shots.join("failure.png").display()
    );
    let steps = &report["steps"];
    assert_eq!(
        report["page_errors"],
        json!([]),
        "no script error in the page"
    );

    // The page is served under a strict policy; a wrong key is refused with the server's word.
    let csp = steps["csp"]
        .as_str()
        .expect("a Content-Security-Policy header");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        steps["wrong_key"]
            .as_str()
            .unwrap()
            .contains("invalid API key"),
        "{steps:#}"
    );
    assert!(steps["signed_in_as"]
        .as_str()
        .unwrap()
        .contains("global key"));

    // Created from the page, with the webhook shown.
    let rows = strings(&steps["instances"]["rows"]);
    assert!(
        rows.contains(&instance) && rows.contains(&other),
        "{rows:?}"
    );
    let webhook = steps["instances"]["webhook"].as_str().unwrap();
    assert!(webhook.contains(&format!("{receiver}/hook")), "{webhook}");
    assert_eq!(steps["instances"]["token_shown"], json!(true));
    let doomed = format!("{instance}-gone");
    assert!(!rows.contains(&doomed), "{rows:?}");
    assert_eq!(
        steps["instances"]["deleted"],
        json!(format!("Deleted {doomed}."))
    );
    let (_, gone) = s
        .get(&format!("/instance/fetchInstances?instanceName={doomed}"))
        .await;
    assert_eq!(gone, json!([]), "deleted from the console: {gone}");
    assert_eq!(
        steps["instances"]["events_field_after_create"],
        json!("MESSAGES_UPSERT")
    );

    // The lag went up while the receiver was down, with its error, and back to 0 after.
    let subs = &steps["subscriptions"];
    let subscription = subs["subscription"].as_str().unwrap().to_string();
    assert!(subs["lag_while_down"].as_u64().unwrap() > 0, "{subs:#}");
    assert!(
        subs["last_error_while_down"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{subs:#}"
    );
    assert_eq!(subs["lag_after"], json!(0), "{subs:#}");
    assert_eq!(subs["in_flight_after"], json!(0), "{subs:#}");
    assert!(subs["delivered_after"].as_u64().unwrap() >= 5, "{subs:#}");
    assert_eq!(subs["state_after"], json!("ok"));
    assert_eq!(steps["toggled"], json!(true));

    // The editor showed the server's 400 naming the path, then saved the policy.
    let refused = steps["editor"]["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("400") && refused.contains("filter.chats.allow[0]"),
        "the editor must show the server's message naming the path: {refused}"
    );
    assert_eq!(
        steps["editor"]["saved_policy"]["non_retryable_status_codes"],
        json!([422])
    );
    let (_, sub_now) = s.get(&format!("/subscriptions/{subscription}")).await;
    assert_eq!(
        sub_now["policy"]["non_retryable_status_codes"],
        json!([422]),
        "{sub_now}"
    );

    // The dead letter showed its 422 attempt, and the redrive delivered it.
    let dead = &steps["dead_letters"];
    let attempts = strings(&dead["attempts"]);
    assert!(
        attempts.len() == 1 && attempts[0].contains("422"),
        "{attempts:?}"
    );
    assert!(
        dead["redriven"].as_str().unwrap().contains("1 event"),
        "{dead:#}"
    );
    let (_, letters) = s
        .get(&format!("/subscriptions/{subscription}/dead-letters"))
        .await;
    assert_eq!(letters["dead_letters"], json!([]), "{letters}");

    // The lookup by WhatsApp id showed every attempt: the outage's 503s, then the 200.
    let first = &steps["deliveries"]["first"];
    assert_eq!(first["status"], json!("delivered"), "{first:#}");
    let http = strings(&first["http"]);
    assert!(
        http.len() >= 2
            && http.last().unwrap() == "200"
            && http[..http.len() - 1].iter().all(|h| h == "503"),
        "attempts of a message sent while the receiver was down: {http:?}"
    );
    let redriven = &steps["deliveries"]["dead"];
    assert_eq!(redriven["status"], json!("delivered"));
    assert_eq!(
        strings(&redriven["http"]),
        vec!["422", "200"],
        "{redriven:#}"
    );

    // The tail showed the instance's messages.upsert only.
    let tail = &steps["tail"];
    assert!(tail["row"]
        .as_str()
        .unwrap()
        .contains(&format!("TAIL-{instance}")));
    for row in tail["rows"].as_array().unwrap() {
        assert_eq!(row["instance"], json!(instance), "{tail:#}");
        assert_eq!(row["event"], json!("messages.upsert"), "{tail:#}");
    }

    // The API page rendered /openapi.json's operations, or said the route is absent.
    let api = &steps["api"];
    let (openapi_status, _) = s.get("/openapi.json").await;
    if openapi_status == 200 {
        assert!(api["operations"].as_u64().unwrap() > 10, "{api:#}");
    } else {
        assert_eq!(api["absent"], json!(true), "{api:#}");
    }

    // Replayed by the time picker and from sequence 0: delivered again.
    let replay = &steps["replay"];
    let by_time = replay["by_time"].as_str().unwrap();
    assert!(
        by_time.starts_with(&format!("Replaying {subscription} since ")),
        "{replay:#}"
    );
    assert!(
        replay["delivered_after"].as_u64() > replay["delivered_before"].as_u64(),
        "{replay:#}"
    );
    let by_sequence = replay["by_sequence"].as_str().unwrap();
    assert!(
        by_sequence.starts_with(&format!(
            "Replaying {subscription} from sequence 0: its cursor is now "
        )),
        "{replay:#}"
    );

    // An instance token sees only its own instance and subscriptions.
    let token_view = &steps["as_token"];
    assert!(token_view["who"].as_str().unwrap().contains(&instance));
    assert_eq!(strings(&token_view["instances"]), vec![instance.clone()]);
    let token_subs = token_view["subscriptions"].as_array().unwrap();
    assert!(!token_subs.is_empty());
    for sub in token_subs {
        assert_eq!(sub["instance"], json!(instance), "{token_view:#}");
    }
    assert_eq!(
        strings(&token_view["tail_choices"]),
        vec![String::new(), instance.clone()]
    );

    // Neither the key nor the token was in any URL the browser asked for, or in the log.
    let (_, listed) = s
        .get(&format!("/instance/fetchInstances?instanceName={instance}"))
        .await;
    let token = listed[0]["token"]
        .as_str()
        .expect("the instance token")
        .to_string();
    let requests = strings(&report["requests"]);
    assert!(
        requests.iter().any(|u| u.contains("/ws")),
        "the tail used /ws: {requests:?}"
    );
    for secret in [&s.key, &token] {
        for form in [secret.clone(), base64url(secret)] {
            for url in &requests {
                assert!(
                    !url.contains(&form),
                    "a secret in a URL the browser requested: {url}"
                );
            }
        }
    }
    let key = s.key.clone();
    drop(s);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.is_empty(),
        "the server logged nothing at debug: is RUST_LOG honoured?"
    );
    for secret in [&key, &token] {
        assert!(
            !logged.contains(secret.as_str()) && !logged.contains(&base64url(secret)),
            "a secret in the server's log"
        );
    }

    // A screenshot of every page.
    for name in [
        "01-sign-in",
        "02-instances",
        "03-subscriptions-lagging",
        "06-editor",
        "07-dead-letters",
        "09-deliveries",
        "14-replay",
        "10-tail",
        "11-api",
        "12-instances-as-token",
    ] {
        let file = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", file.display());
    }
    cancel.cancel();
}

#[tokio::test]
async fn console_files_are_served_without_a_key_under_a_strict_policy() {
    let s = TestServer::start(&[]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(s.url("/ui")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/ui/");

    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let headers = r.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!r.text().await.unwrap().is_empty());
    }
    // Nothing outside the compiled-in set, not even by a path trick.
    for path in [
        "/ui/nope.js",
        "/ui/..%2FCargo.toml",
        "/ui/%2e%2e/Cargo.toml",
    ] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    // The data behind the pages still needs the key.
    let r = http.get(s.url("/subscriptions")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// A `/ws` upgrade offering `protocols`.
async fn ws_with_protocols(
    s: &TestServer,
    query: &str,
    protocols: &str,
) -> Result<(ws::Ws, Option<String>), u16> {
    let mut request = ws::ws_url(s, &format!("/ws{query}"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => Ok((
            socket,
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string()),
        )),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connect: {e}"),
    }
}

#[tokio::test]
async fn the_websocket_takes_the_key_as_a_subprotocol() {
    let s = TestServer::start(&[]);
    let instance = unique("wsproto");
    let token = s.create_instance(&instance, json!({})).await;
    let other = unique("wsother");
    s.create_instance(&other, json!({})).await;
    let offer = |key: &str| format!("switchyard, switchyard.apikey.{}", base64url(key));

    // The global key: the server selects `switchyard` (never echoes the key) and streams.
    let (mut socket, selected) =
        ws_with_protocols(&s, &format!("?instance={instance}"), &offer(&s.key))
            .await
            .expect("the global key as a subprotocol is accepted");
    assert_eq!(selected.as_deref(), Some("switchyard"));
    s.ingest_numbered(&instance, 0, 1).await;
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an event within 10 s")
        .expect("open")
        .expect("a frame");
    let Message::Text(text) = frame else {
        panic!("expected an envelope, got {frame:?}")
    };
    let envelope: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(envelope["instance"], json!(instance));
    assert_eq!(envelope["data"]["n"], json!(0));
    socket.close(None).await.ok();

    // A wrong key is a 401; an instance token is scoped to its instance.
    assert_eq!(
        ws_with_protocols(&s, "", &offer("wrong-key-0123456789"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        ws_with_protocols(&s, &format!("?instance={other}"), &offer(&token))
            .await
            .err(),
        Some(403)
    );
    let (mut own, _) = ws_with_protocols(&s, "", &offer(&token))
        .await
        .expect("an instance token on its own instance");
    s.ingest_numbered(&other, 0, 1).await;
    s.ingest_numbered(&instance, 1, 1).await;
    let frame = tokio::time::timeout(Duration::from_secs(10), own.next())
        .await
        .expect("an event within 10 s")
        .expect("open")
        .expect("a frame");
    let envelope: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(
        envelope["instance"],
        json!(instance),
        "only its own instance"
    );
    assert_eq!(envelope["data"]["n"], json!(1));
    // Not base64url: no key, so the usual 401.
    assert_eq!(
        ws_with_protocols(&s, "", "switchyard, switchyard.apikey.***")
            .await
            .err(),
        Some(401)
    );
}

#[tokio::test]
async fn an_operator_disables_and_enables_a_subscription() {
    let cancel = CancellationToken::new();
    let receiver = receiver(cancel.clone()).await;
    let hook = format!("{receiver}/hook");
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("WEBHOOK_GLOBAL_URL", hook.as_str()),
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
    ]);
    let instance = unique("switch");
    let token = s
        .create_instance(
            &instance,
            json!({"webhook": {"enabled": true, "url": hook, "events": ["MESSAGES_UPSERT"]}}),
        )
        .await;
    let other = unique("switchother");
    let other_token = s.create_instance(&other, json!({})).await;
    let (_, list) = s.get("/subscriptions").await;
    let id = list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["instance"] == json!(instance))
        .expect("the instance's webhook subscription")["id"]
        .as_str()
        .unwrap()
        .to_string();

    let call = |path: String, key: String| {
        let http = s.http.clone();
        let url = s.url(&path);
        async move {
            let r = http.post(url).header("apikey", key).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Another instance's token may not touch it.
    let (status, v) = call(format!("/subscriptions/{id}/disable"), other_token).await;
    assert_eq!(status, 403, "{v}");
    // Its own token may; the subscription stops and says so.
    let (status, v) = call(format!("/subscriptions/{id}/disable"), token.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], json!(false), "{v}");
    let (_, v) = s.get(&format!("/subscriptions/{id}")).await;
    assert_eq!(v["enabled"], json!(false), "{v}");
    let (status, v) = call(format!("/subscriptions/{id}/enable"), token).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], json!(true), "{v}");
    // A subscription the config defines is switched in the config.
    let (status, v) = call(
        "/subscriptions/global:webhook/disable".into(),
        s.key.clone(),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("config"),
        "{v}"
    );
    let (status, _) = call("/subscriptions/nope/disable".into(), s.key.clone()).await;
    assert_eq!(status, 404);
    cancel.cancel();
}
