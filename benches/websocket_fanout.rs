//! WebSocket listeners under load, against the release binary: server RSS with 1,000 idle
//! listeners connected, then fan-out latency (ingest request sent -> envelope received) at
//! 1,000 events/s to active listeners while the idle ones stay connected.
//!
//! Run: `cargo bench --bench websocket_fanout`. `BENCH_IDLE`, `BENCH_ACTIVE`, `BENCH_RATE`
//! and `BENCH_SECONDS` change the shape (defaults 1000, 50, 1000, 5).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-global-key-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("AUTHENTICATION_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("server exited").expect("stdout");
        if let Some(addr) = line.strip_prefix("switchyard listening on ") {
            break addr.to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        base,
        _dir: dir,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn create(http: &reqwest::Client, base: &str, name: &str) {
    let r = http
        .post(format!("{base}/instance/create"))
        .header("apikey", KEY)
        .json(&json!({"instanceName": name}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::main]
async fn main() {
    let idle = env_usize("BENCH_IDLE", 1000);
    let active = env_usize("BENCH_ACTIVE", 50);
    let rate = env_usize("BENCH_RATE", 1000);
    let seconds = env_usize("BENCH_SECONDS", 5);
    let server = start();
    let http = reqwest::Client::new();
    create(&http, &server.base, "idle").await;
    create(&http, &server.base, "hot").await;
    let ws_base = server.base.replacen("http://", "ws://", 1);
    let pid = server.child.id();
    let before = rss_kib(pid);

    // Idle listeners: connected, subscribed to an instance that gets no events, and read
    // (so that they answer pings) without expecting anything.
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        let url = format!("{ws_base}/ws?apikey={KEY}&instance=idle");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        idle_conns.push(tokio::spawn(async move {
            let mut ws = ws;
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    // Let the server settle its per-connection allocations before reading RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = rss_kib(pid);
    println!(
        "RSS: {before} KiB before, {with_idle} KiB with {idle} idle listeners \
         ({:.1} KiB per listener)",
        (with_idle.saturating_sub(before)) as f64 / idle.max(1) as f64
    );

    let latencies = Arc::new(Mutex::new(Vec::with_capacity(active * rate * seconds)));
    let total = rate * seconds;
    let mut readers = Vec::new();
    for _ in 0..active {
        let url = format!("{ws_base}/ws?apikey={KEY}&instance=hot");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let latencies = latencies.clone();
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(total);
            while mine.len() < total {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: Value = serde_json::from_str(&t).expect("envelope");
                        let sent = v["data"]["t"].as_u64().unwrap_or(0);
                        mine.push(now_us().saturating_sub(sent));
                    }
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("listener stopped early: {other:?}"),
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }

    // One single-event POST per tick, each on its own task: a fixed arrival rate, whatever
    // the response time (group commit batches concurrent appends).
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(total);
    for _ in 0..total {
        tick.tick().await;
        let http = http.clone();
        let url = format!("{}/ingest/hot", server.base);
        posts.push(tokio::spawn(async move {
            let body = json!({"event": "messages.upsert", "data": {"t": now_us()}});
            let r = http
                .post(url)
                .header("apikey", KEY)
                .json(&body)
                .send()
                .await;
            assert_eq!(r.expect("ingest").status().as_u16(), 202);
        }));
    }
    for p in posts {
        p.await.expect("post");
    }
    for r in readers {
        r.await.expect("reader");
    }
    let peak = rss_kib(pid);
    let mut all = latencies.lock().await.clone();
    all.sort_unstable();
    println!(
        "fan-out at {rate} events/s for {seconds} s to {active} listeners (+{idle} idle): \
         {} deliveries, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; RSS after {peak} KiB",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
    for c in idle_conns {
        c.abort();
    }
}
