//! Ingest throughput through `POST /ingest/{instance}` in batches of 100 events of ~1 KiB,
//! with `log.fsync = always`, next to a baseline taken in the same run: the same client load
//! against an axum route that reads the body and answers 202 without parsing or storing.
//! The ratio says what parsing, id assignment and the durable append cost on top of HTTP.
//!
//! A third measurement, in the same run, sends the same number of ~1 KiB messages as Whapi
//! webhooks (`POST /ingest/{instance}/whapi`): the adapter's cost as a ratio of canonical
//! ingest. Every Whapi request carries message ids no request had before (the body is a
//! template whose request number is written in per request), so with the default dedupe
//! window the idempotency index does the work it does in production: each event is new,
//! stored with its retry key, read back and indexed. (Before, every request repeated the
//! same ids, so all but the first were acknowledged as retries and nothing was stored.)
//!
//! Run: `cargo bench --bench ingest_http` (env `BENCH_SECONDS`, `BENCH_CLIENTS` to change).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use serde_json::json;
use switchyard::config::Config;
use tokio_util::sync::CancellationToken;

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 100;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn batch_body() -> bytes::Bytes {
    let events: Vec<_> = (0..BATCH)
        .map(|i| {
            json!({"event": "messages.upsert", "data": {
                "key": {"remoteJid": "5511888888888@s.whatsapp.net", "fromMe": false, "id": format!("3EB0{i:016}")},
                "pushName": "Bench", "messageType": "conversation",
                "message": {"conversation": "x".repeat(820)}, "messageTimestamp": 1_758_749_877
            }})
        })
        .collect();
    serde_json::to_vec(&json!({"events": events}))
        .unwrap_or_default()
        .into()
}

fn whapi_body() -> bytes::Bytes {
    let messages: Vec<_> = (0..BATCH)
        .map(|i| {
            json!({"id": format!("Jx4PWGLb-{REQUEST_MARK}-{i:010}"), "from_me": false, "type": "text",
                   "chat_id": "919984351847@s.whatsapp.net", "timestamp": 1_747_661_100,
                   "source": "mobile", "text": {"body": "x".repeat(820)},
                   "from": "919984351847", "from_name": "Bench"})
        })
        .collect();
    let body = json!({"messages": messages, "event": {"type": "messages", "event": "post"}, "channel_id": "BENCH"});
    serde_json::to_vec(&body).unwrap_or_default().into()
}

/// Where a Whapi body's request number goes: as many digits as the mark has bytes.
const REQUEST_MARK: &str = "RRRRRRRRRRRR";

/// Request numbers, unique across every load of the run.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// `template` with a fresh request number written over every [`REQUEST_MARK`] (at `marks`).
fn stamped(template: &[u8], marks: &[usize]) -> bytes::Bytes {
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let digits = format!("{n:0width$}", width = REQUEST_MARK.len());
    let mut body = template.to_vec();
    for &at in marks {
        body[at..at + digits.len()].copy_from_slice(digits.as_bytes());
    }
    body.into()
}

/// Drives `clients` concurrent posters against `url` for `seconds`; returns events/s.
async fn load(url: String, key: String, clients: u64, seconds: u64) -> f64 {
    let body = if url.ends_with("/whapi") {
        whapi_body()
    } else {
        batch_body()
    };
    let marks: Arc<Vec<usize>> =
        Arc::new(memchr::memmem::find_iter(&body, REQUEST_MARK.as_bytes()).collect());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients as usize)
        .build()
        .unwrap_or_default();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, key, body) = (http.clone(), url.clone(), key.clone(), body.clone());
        let marks = marks.clone();
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = http
                    .post(&url)
                    .header("apikey", &key)
                    .header("content-type", "application/json")
                    .body(if marks.is_empty() {
                        body.clone()
                    } else {
                        stamped(&body, &marks)
                    })
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => {
                        done.fetch_add(BATCH as u64, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        eprintln!("warning: {failures} requests failed");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn baseline_server() -> String {
    let app = Router::new().route(
        "/ingest/{instance}",
        post(|body: bytes::Bytes| async move {
            (axum::http::StatusCode::ACCEPTED, body.len().to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/ingest/bench")
}

async fn switchyard_server(dir: &std::path::Path) -> (String, String, CancellationToken) {
    let env = vec![
        (
            "AUTHENTICATION_API_KEY".to_string(),
            "bench-key".to_string(),
        ),
        (
            "SWITCHYARD_SERVER__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "SWITCHYARD_SERVER__DATA_DIR".to_string(),
            dir.display().to_string(),
        ),
        (
            "SWITCHYARD_RATE_LIMIT__INGEST_PER_MINUTE".to_string(),
            "0".to_string(),
        ),
    ];
    let config = Config::load(None, env).expect("config");
    let token = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stop = token.clone();
    tokio::spawn(async move {
        let _ = switchyard::app::serve(config, stop, move |addr| {
            let _ = tx.send(addr);
        })
        .await;
    });
    let addr = rx.await.expect("server start");
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/instance/create"))
        .header("apikey", "bench-key")
        .json(&json!({"instanceName": "bench"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    (
        format!("{base}/ingest/bench"),
        "bench-key".to_string(),
        token,
    )
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 5);
    let clients = env_or("BENCH_CLIENTS", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let baseline_url = baseline_server().await;
        let (url, key, token) = switchyard_server(dir.path()).await;
        // Warm both up, then alternate so that machine noise hits both alike.
        load(baseline_url.clone(), key.clone(), clients, 1).await;
        load(url.clone(), key.clone(), clients, 1).await;
        let whapi_url = format!("{url}/whapi");
        load(whapi_url.clone(), key.clone(), clients, 1).await;
        let mut base_total = 0.0;
        let mut ours_total = 0.0;
        let mut whapi_total = 0.0;
        for _ in 0..2 {
            base_total += load(baseline_url.clone(), key.clone(), clients, seconds).await;
            ours_total += load(url.clone(), key.clone(), clients, seconds).await;
            whapi_total += load(whapi_url.clone(), key.clone(), clients, seconds).await;
        }
        let (base, ours, whapi) = (base_total / 2.0, ours_total / 2.0, whapi_total / 2.0);
        println!("ingest_http: batches of {BATCH} x ~1 KiB, {clients} clients, fsync=always");
        println!("  baseline (axum, body read, no parse/store): {base:>10.0} events/s");
        println!("  switchyard POST /ingest:                    {ours:>10.0} events/s");
        println!(
            "  ratio switchyard/baseline:                  {:>10.2}x",
            ours / base
        );
        println!("  Whapi adapter POST /ingest/{{i}}/whapi:       {whapi:>10.0} events/s");
        println!(
            "  ratio adapter/canonical:                    {:>10.2}x",
            whapi / ours
        );
        token.cancel();
    });
}
