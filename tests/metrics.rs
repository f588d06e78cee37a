//! `/metrics` as Prometheus reads it: scraped from the real binary and parsed by the
//! `prometheus-client` package's text parser (PyPI), not by our own code. The global
//! webhook points at a receiver that answers 503: the subscription's lag rises with every
//! event ingested; once the receiver answers 200 the lag falls back to 0.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The global webhook's subscription id.
const SUB: &str = "global:webhook";

/// Parses Prometheus text with prometheus-client and prints the families as JSON.
const PARSER: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    samples = [{"name": s.name, "labels": s.labels,
                "value": s.value if math.isfinite(s.value) else str(s.value)}
               for s in family.samples]
    out.append({"name": family.name, "type": family.type, "help": family.documentation,
                "samples": samples})
print(json.dumps(out))
"#;

/// One parsed scrape.
struct Scrape {
    families: Vec<Value>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .flat_map(|f| f["samples"].as_array().cloned().unwrap_or_default())
            .find(|s| {
                s["name"] == json!(name)
                    && labels
                        .iter()
                        .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
            })
            .and_then(|s| s["value"].as_f64())
    }

    fn family(&self, name: &str) -> Option<&Value> {
        self.families.iter().find(|f| f["name"] == json!(name))
    }

    fn lag(&self) -> f64 {
        self.value("switchyard_delivery_lag", &[("subscription", SUB)])
            .unwrap_or(-1.0)
    }

    fn in_flight(&self) -> f64 {
        self.value("switchyard_delivery_in_flight", &[("subscription", SUB)])
            .unwrap_or(-1.0)
    }
}

async fn scrape(s: &TestServer, python: &str) -> Scrape {
    let response = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&s.key)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    let mut child = Command::new(python)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "prometheus-client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser JSON");
    Scrape { families }
}

/// Scrapes until `done` holds, or fails after `limit`.
async fn scrape_until(
    s: &TestServer,
    python: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let start = Instant::now();
    loop {
        let scrape = scrape(s, python).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not reached within {limit:?} (lag {}, in flight {})",
            scrape.lag(),
            scrape.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ingest(s: &TestServer, instance: &str, count: usize) {
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"event": "messages.upsert", "data": {"n": n}}))
        .collect();
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_while_the_webhook_is_down_and_falls_after_it_recovers() {
    let python = common::test_python("prometheus_client");
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    receiver.set_status(503);
    let s = TestServer::start(&[
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("WEBHOOK_GLOBAL_ENABLED", "true"),
        ("WEBHOOK_GLOBAL_URL", &receiver.url),
        ("WEBHOOK_REQUEST_TIMEOUT_MS", "2000"),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "100000"),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.05"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.2"),
    ]);
    let instance = unique("metrics");
    s.create_instance(&instance, json!({})).await;

    ingest(&s, &instance, 20).await;
    let down = scrape_until(
        &s,
        &python,
        "lag >= 20 while down",
        Duration::from_secs(20),
        |m| {
            m.lag() >= 20.0
                && m.value(
                    "switchyard_delivery_failures_total",
                    &[("subscription", SUB)],
                )
                .unwrap_or(0.0)
                    > 0.0
        },
    )
    .await;
    let first_lag = down.lag();
    ingest(&s, &instance, 30).await;
    let more = scrape_until(&s, &python, "lag rising", Duration::from_secs(20), |m| {
        m.lag() >= first_lag + 30.0
    })
    .await;
    assert!(
        receiver.delivered().is_empty(),
        "nothing is delivered while down"
    );

    // The log's size is the embedded engine's to report; on the Kafka engine the brokers
    // report theirs, and a gauge stuck at 0 would mislead.
    let embedded = s.kafka_topic_prefix().is_none();
    let size_gauges = [
        ("switchyard_log_bytes", "gauge"),
        ("switchyard_log_segments", "gauge"),
    ];
    if !embedded {
        for (name, _) in size_gauges {
            assert!(more.family(name).is_none(), "{name} on the Kafka engine");
        }
    }
    // Everything the issue asks /metrics to show is there, with Prometheus' types.
    for (name, kind) in size_gauges.into_iter().filter(|_| embedded).chain([
        ("switchyard_ingest_events", "counter"),
        ("switchyard_ingest_bytes", "counter"),
        ("switchyard_delivery_lag", "gauge"),
        ("switchyard_delivery_in_flight", "gauge"),
        ("switchyard_delivery_attempts", "counter"),
        ("switchyard_delivery_failures", "counter"),
        ("switchyard_delivery_dead_letters", "gauge"),
        ("switchyard_delivery_parked", "gauge"),
        ("switchyard_delivery_send_seconds", "histogram"),
        ("switchyard_websocket_listeners", "gauge"),
    ]) {
        let family = more
            .family(name)
            .unwrap_or_else(|| panic!("/metrics has no {name}"));
        assert_eq!(family["type"], json!(kind), "{name}");
        assert!(
            !family["help"].as_str().unwrap_or_default().is_empty(),
            "{name} has no HELP"
        );
    }
    // Conventions: snake_case under one prefix; counters' samples end in `_total`.
    for family in &more.families {
        let name = family["name"].as_str().unwrap_or_default();
        assert!(name.starts_with("switchyard_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        if family["type"] == json!("counter") {
            for sample in family["samples"].as_array().into_iter().flatten() {
                let sample = sample["name"].as_str().unwrap_or_default();
                assert!(
                    sample.ends_with("_total") || sample.ends_with("_created"),
                    "counter sample {sample}"
                );
            }
        }
    }
    assert_eq!(
        more.value("switchyard_ingest_events_total", &[]),
        Some(50.0),
        "ingest counter"
    );
    assert!(
        more.value("switchyard_ingest_bytes_total", &[])
            .unwrap_or(0.0)
            > 0.0
    );
    if embedded {
        assert!(more.value("switchyard_log_bytes", &[]).unwrap_or(0.0) > 0.0);
        assert!(more.value("switchyard_log_segments", &[]).unwrap_or(0.0) >= 1.0);
    }
    // The failing events wait in memory for their first attempts, then parked.
    let parked = more
        .value("switchyard_delivery_parked", &[("subscription", SUB)])
        .unwrap_or(0.0);
    assert!(
        more.in_flight() + parked >= 1.0,
        "the failing events are in flight or parked"
    );
    assert_eq!(
        more.value("switchyard_delivery_dead_letters", &[("subscription", SUB)]),
        Some(0.0)
    );
    assert_eq!(more.value("switchyard_websocket_listeners", &[]), Some(0.0));

    // The endpoint recovers: the lag drains to 0 and every event arrives.
    receiver.set_status(200);
    let recovered = scrape_until(&s, &python, "lag back to 0", Duration::from_secs(30), |m| {
        m.lag() == 0.0
            && m.in_flight() == 0.0
            && m.value("switchyard_delivery_parked", &[("subscription", SUB)]) == Some(0.0)
    })
    .await;
    let delivered: HashMap<u64, usize> =
        receiver
            .delivered()
            .iter()
            .fold(HashMap::new(), |mut seen, r| {
                *seen.entry(r.sequence()).or_default() += 1;
                seen
            });
    assert!(
        delivered.len() >= 50,
        "{} sequences delivered",
        delivered.len()
    );
    assert!(
        recovered
            .value(
                "switchyard_delivery_send_seconds_count",
                &[("sink", "webhook")]
            )
            .unwrap_or(0.0)
            > 0.0,
        "per-sink send latency histogram"
    );
    assert!(
        recovered
            .value(
                "switchyard_delivery_latency_seconds_count",
                &[("sink", "webhook")]
            )
            .unwrap_or(0.0)
            >= 50.0,
        "per-sink end-to-end latency histogram"
    );
    let attempts = recovered
        .value(
            "switchyard_delivery_attempts_total",
            &[("subscription", SUB)],
        )
        .unwrap_or(0.0);
    let failures = recovered
        .value(
            "switchyard_delivery_failures_total",
            &[("subscription", SUB)],
        )
        .unwrap_or(0.0);
    assert!(
        attempts > failures && failures > 0.0,
        "{attempts} {failures}"
    );
    cancel.cancel();
}
