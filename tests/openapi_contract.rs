//! The OpenAPI contract: `/openapi.json` is served without a key, is OpenAPI 3.1, lists every
//! route the router serves (and nothing it does not), and schemathesis, fuzzing the live
//! server from that document, finds no 5xx, no undocumented status, no body that breaks its
//! schema and no wrong content type.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::TestServer;
use serde_json::{json, Value};

/// What a request with an unknown path answers (the router's fallback).
const FALLBACK_MESSAGE: &str = "no such route";

/// The `(METHOD, path)` operations a document lists.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

/// Every `$ref` in `value` resolves within `doc`.
fn check_refs(doc: &Value, value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let pointer = target.strip_prefix('#').expect("local $ref");
                assert!(
                    doc.pointer(pointer).is_some(),
                    "{at}: $ref {target} resolves to nothing"
                );
            }
            for (k, v) in map {
                check_refs(doc, v, &format!("{at}/{k}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs(doc, v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

/// Every route is registered through `utoipa_axum`'s `routes!` (or, for the per-kind sink
/// routes, the same `(schemas, paths, method router)` triple), which documents it in the
/// same call. A plain axum `.route(` would serve an undocumented route: none may appear in
/// `src/api`.
#[test]
fn no_route_bypasses_the_document() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut offenders = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/api") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                    if code.contains(call) {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes must be registered with `.routes(routes!(handler))` so they are documented:\n{}",
        offenders.join("\n")
    );
}

/// The value of a `Label: value` line.
fn output_line(output: &str, label: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or("?")
        .trim()
        .to_string()
}

/// A figure of a schemathesis run's summary: the line after `label` (`Tested: 56`,
/// `4768 generated, 4768 passed`), or the line itself when the figure is on it.
fn figure(output: &str, label: &str) -> String {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    lines
        .iter()
        .position(|l| l.starts_with(label))
        .map(|i| {
            let rest = lines[i].trim_start_matches(label).trim();
            if rest.is_empty() {
                lines.get(i + 1).copied().unwrap_or("").to_string()
            } else {
                rest.to_string()
            }
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_lists_every_route_and_schemathesis_finds_no_failure() {
    let python = common::test_python("schemathesis");
    // schemathesis fills the documented `apikey` query parameter of `/socket.io` with
    // generated keys: under the wrong-key budget, 127.0.0.1 would soon get 429 on every
    // route (documented, but the fuzzing would stop reaching the handlers). No limits here.
    let server = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("SWITCHYARD_RATE_LIMIT__AUTH_FAILURES_BURST", "0"),
        ("SWITCHYARD_RATE_LIMIT__INGEST_PER_MINUTE", "0"),
    ]);

    // Served without a key, as JSON, OpenAPI 3.1.
    let r = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(r.status().as_u16(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = r.json().await.expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    check_refs(&doc, &doc, "#");
    for scheme in [
        "apikey",
        "x_api_key",
        "bearer",
        "query_apikey",
        "query_api_key",
        "query_token",
    ] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "auth scheme {scheme} missing"
        );
    }
    let envelope = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
    assert_eq!(envelope.as_array().map(Vec::len), Some(13), "{envelope}");

    let ops = operations(&doc);
    let open: BTreeSet<&str> = [
        "/health",
        "/ready",
        "/openapi.json",
        "/ingest/{instance}/meta",
        "/socket.io",
        "/socket.io/",
    ]
    .into();
    for (method, path, op) in &ops {
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s == "101"),
            "{method} {path}: no success answer documented"
        );
        let security = op["security"].as_array().expect("security");
        assert_eq!(
            security.is_empty(),
            open.contains(path.as_str()),
            "{method} {path}: security {security:?}"
        );
        if !security.is_empty() {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert!(
                    schema
                        .as_str()
                        .is_some_and(|s| s.ends_with("ErrorEnvelope")),
                    "{method} {path} {status}: not the error envelope: {response}"
                );
            }
        }
    }

    // Nothing documented that the router does not serve: every operation, asked without a
    // key, gets something other than the fallback's 404 or a 405.
    for (method, path, _) in &ops {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "probe" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let r = server
            .http
            .request(method.parse().unwrap(), server.url(&concrete))
            .send()
            .await
            .expect("probe");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status != 405 && !(status == 404 && body["error"]["message"] == FALLBACK_MESSAGE),
            "{method} {path} is documented but not routed: {status} {body}"
        );
    }
    let (status, body) = server.get("/not-a-route").await;
    assert_eq!(
        (status, body["error"]["message"].clone()),
        (404, json!(FALLBACK_MESSAGE))
    );
    println!("operations in the document: {}", ops.len());

    // Something to find (tests/openapi/schemathesis.toml points the operations at it): an
    // instance with a webhook and events, one to delete, a CodeChat webhook, a Linq
    // subscription and a Ventia webhook.
    let instance = common::unique("contract");
    let doomed = common::unique("doomed");
    server
        .create_instance(
            &instance,
            json!({"webhook": {"url": "http://127.0.0.1:9/hook", "enabled": true}}),
        )
        .await;
    server.create_instance(&doomed, json!({})).await;
    server.ingest_numbered(&instance, 0, 20).await;
    let (status, subs) = server.get("/subscriptions").await;
    assert_eq!(status, 200, "{subs}");
    let subscription = subs["subscriptions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["instance"] == json!(instance)))
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("the instance's webhook subscription: {subs}"))
        .to_string();
    let (status, codechat) = server
        .post(
            &format!("/api/v2/instance/{instance}/webhook"),
            &json!({"name": "contract", "url": "http://127.0.0.1:9/codechat"}),
        )
        .await;
    assert_eq!(status, 201, "{codechat}");
    let (status, linq) = server
        .post(
            "/v3/webhook-subscriptions",
            &json!({"target_url": "http://127.0.0.1:9/linq", "subscribed_events": ["message.received"]}),
        )
        .await;
    assert_eq!(status, 201, "{linq}");
    let (status, ventia) = server
        .post(
            "/webhooks",
            &json!({"active": true, "name": "contract", "callbackUrl": "http://127.0.0.1:9/ventia", "topics": ["messages.upsert"]}),
        )
        .await;
    assert_eq!(status, 200, "{ventia}");
    let ids = [
        ("SWITCHYARD_CONTRACT_INSTANCE", instance.clone()),
        ("SWITCHYARD_CONTRACT_DOOMED", doomed),
        ("SWITCHYARD_CONTRACT_SUBSCRIPTION", subscription),
        (
            "SWITCHYARD_CONTRACT_CODECHAT",
            codechat["webhookId"].as_str().expect("webhookId").into(),
        ),
        (
            "SWITCHYARD_CONTRACT_LINQ",
            linq["id"].as_str().expect("linq id").into(),
        ),
        (
            "SWITCHYARD_CONTRACT_VENTIA",
            ventia["id"].as_str().expect("ventia id").into(),
        ),
    ];

    // schemathesis against the live server. Checks: no 5xx; only documented statuses;
    // bodies match their schemas; content types match. It runs every phase its document
    // allows (examples, coverage, fuzzing, stateful), at most 60 examples per operation
    // (about 7,800 requests, 70 to 80 s here), with a fixed seed so a failure reproduces.
    let schemathesis = Path::new(&python).with_file_name("schemathesis");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/schemathesis.toml");
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis");
    let started = Instant::now();
    // Run from the report directory: schemathesis keeps its cache (`.schemathesis/`) in the
    // working directory.
    std::fs::create_dir_all(&report).expect("target/schemathesis");
    let output = Command::new(&schemathesis)
        .current_dir(&report)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &server.url("/openapi.json")])
        .args(["-H", &format!("apikey: {}", server.key)])
        .args(["-n", "60", "--seed", "20261205", "--workers", "2"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        ])
        .args(["--request-timeout", "20", "--no-color"])
        .envs(ids)
        .arg("--report-dir")
        .arg(&report)
        .args(["--report", "junit"])
        .output()
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    let tested = output_line(&stdout, "Tested:");
    println!(
        "schemathesis: operations {tested}; test cases {}; {}; {:.1} s",
        figure(&stdout, "Test cases:"),
        stdout
            .lines()
            .rev()
            .find(|l| l.contains("====") && l.contains(" in "))
            .unwrap_or("?")
            .trim_matches(|c: char| c == '=' || c.is_whitespace()),
        elapsed.as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (exit {:?}); see its output above and {}",
        output.status.code(),
        report.display()
    );
}
