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

/// The figures of a schemathesis run, read from its summary.
fn figure(output: &str, label: &str) -> String {
    output
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| format!("{label} (not in the output)"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_lists_every_route_and_schemathesis_finds_no_failure() {
    let python = common::test_python("schemathesis");
    let server = TestServer::start(&[("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true")]);

    // Served without a key, as JSON, OpenAPI 3.1.
    let r = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(r.status().as_u16(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let doc: Value = r.json().await.expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    check_refs(&doc, &doc, "#");
    for scheme in ["apikey", "x_api_key", "bearer", "query_apikey", "query_api_key", "query_token"] {
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
    assert_eq!((status, body["error"]["message"].clone()), (404, json!(FALLBACK_MESSAGE)));
    println!("operations in the document: {}", ops.len());

    // Something to find: an instance with a webhook and events, named as the document's
    // examples name it.
    server
        .create_instance(
            "my-instance",
            json!({"webhook": {"url": "http://127.0.0.1:9/hook", "enabled": true}}),
        )
        .await;
    server.ingest_numbered("my-instance", 0, 20).await;

    // schemathesis against the live server. Checks: no 5xx; only documented statuses;
    // bodies match their schemas; content types match. It runs every phase its document
    // allows (examples, coverage, fuzzing, stateful), at most 10 examples per operation.
    let schemathesis = Path::new(&python).with_file_name("schemathesis");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/schemathesis.toml");
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis");
    let started = Instant::now();
    let output = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &server.url("/openapi.json")])
        .args(["-H", &format!("apikey: {}", server.key)])
        .args(["-n", "10", "--seed", "20261205", "--workers", "2"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        ])
        .args(["--request-timeout", "20", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .args(["--report", "junit"])
        .output()
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    println!(
        "schemathesis: {} | {} | {} | {:.1} s",
        figure(&stdout, "API Operations"),
        figure(&stdout, "Test cases"),
        figure(&stdout, "Failures").replace('\n', " "),
        elapsed.as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (exit {:?}); see its output above and {}",
        output.status.code(),
        report.display()
    );
}
