//! API conventions shared with the Ventia seed: per-account rate limits and pagination.

mod common;

use common::{unique, TestServer};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_per_account_and_ingest_is_separate() {
    let s = TestServer::start(&[("SWITCHYARD_RATE_LIMIT__PER_MINUTE", "200")]);
    let inst = unique("rl");
    let token = s.create_instance(&inst, json!({})).await;
    let fetch = |key: &str| {
        s.http
            .get(s.url("/instance/fetchInstances"))
            .header("apikey", key.to_string())
            .send()
    };
    let mut statuses = Vec::new();
    let mut retry_afters = Vec::new();
    for _ in 0..250 {
        let r = fetch(&token).await.expect("request");
        let headers = r.headers();
        assert!(headers.contains_key("x-ratelimit-limit"), "{headers:?}");
        assert!(headers.contains_key("x-ratelimit-remaining"));
        assert!(headers.contains_key("x-ratelimit-reset"));
        let status = r.status().as_u16();
        statuses.push(status);
        if status == 429 {
            retry_afters.push(headers.get("retry-after").cloned());
            let v: serde_json::Value = r.json().await.expect("json");
            assert_eq!(v["error"]["code"], json!(2009));
        }
    }
    assert!(
        statuses[..200].iter().all(|s| *s == 200),
        "the first 200 succeed: {statuses:?}"
    );
    let refused = statuses[200..].iter().filter(|s| **s == 429).count();
    // The allowance refills at 200/min (one per 300 ms): a fast burst gets at most a couple back.
    assert!(refused >= 45, "only {refused} of the last 50 were refused");
    assert!(retry_afters
        .iter()
        .all(|h| h.as_ref().is_some_and(|v| v.to_str().unwrap_or("0") != "0")));

    // Another account (the global key) is not affected.
    assert_eq!(fetch(&s.key).await.expect("request").status(), 200);
    // Ingest through the throttled instance token has its own, higher limit.
    for _ in 0..20 {
        let r = s
            .http
            .post(s.url(&format!("/ingest/{inst}")))
            .header("apikey", &token)
            .json(&json!({"event": "call", "data": {}}))
            .send()
            .await
            .expect("ingest");
        assert_eq!(r.status(), 202);
    }
}

#[tokio::test]
async fn list_routes_paginate() {
    let s = TestServer::start(&[]);
    let tag = unique("pg");
    for i in 0..120 {
        s.create_instance(
            &format!("{tag}-{i:03}"),
            json!({"rabbitmq": {"enabled": true}}),
        )
        .await;
    }
    let mut sizes = Vec::new();
    for page in 1..=3 {
        let (status, v) = s
            .get(&format!("/instance/fetchInstances?page={page}&limit=50"))
            .await;
        assert_eq!(status, 200, "{v}");
        sizes.push(v["instances"].as_array().map(Vec::len).unwrap_or(0));
        assert_eq!(
            v["pagination"],
            json!({"totalItems": 120, "totalPages": 3, "currentPage": page})
        );
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    for bad in ["0", "101"] {
        let (status, v) = s
            .get(&format!("/instance/fetchInstances?limit={bad}"))
            .await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"));
    }
    // Without page/limit, Evolution's plain array.
    let (_, all) = s.get("/instance/fetchInstances").await;
    assert_eq!(all.as_array().map(Vec::len), Some(120));
    let (_, subs) = s.get("/subscriptions?limit=100&page=2").await;
    assert_eq!(
        subs["subscriptions"].as_array().map(Vec::len),
        Some(20),
        "{subs}"
    );
    assert_eq!(subs["pagination"]["totalItems"], json!(120));
    let r = s
        .req(Method::GET, "/subscriptions?limit=101")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
}
