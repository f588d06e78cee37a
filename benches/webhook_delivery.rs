//! Webhook delivery bench: engine throughput next to a plain reqwest load loop against the
//! same loopback receiver in the same run (as a ratio), and ingest -> receiver latency at
//! a steady 1,000 events/s. The load loop sends the very requests the engine sends (the
//! signed envelope and its headers, built before the clock starts), as `wrk` would replay
//! a captured request: the ratio is the engine's cost over the HTTP exchange itself.
//!
//! Run: `cargo bench --bench webhook_delivery` (add `--profile dev` to reuse debug deps).
//! Knobs (env): `BENCH_EVENTS` (default 20000), `BENCH_CONCURRENCY` (32),
//! `BENCH_LATENCY_SECONDS` (5), `BENCH_ROUNDS` (5; single rounds vary by ±0.1 on a
//! 2-core machine, so the median of several is the figure), `BENCH_ONLY=engine` or
//! `baseline` (run one side, to profile it alone; the ratio then reads NaN).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::Router;
use switchyard::delivery::{
    DeliveryEngine, EngineDeps, EngineOptions, RetryPolicy, Scope, SinkTarget, Subscription,
    SubscriptionSet,
};
use switchyard::envelope::{LoggedEvent, StoredEvent};
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};
use switchyard::sinks::webhook::{SigningKey, WebhookOptions, WebhookSink, WebhookTarget};
use switchyard::sinks::{SinkKind, SinkRegistry};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The subscription's signing secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Counts requests; in latency mode also notes when each sequence arrived.
struct Receiver {
    count: AtomicU64,
    arrivals: Mutex<HashMap<u64, Instant>>,
    track: std::sync::atomic::AtomicBool,
    notify: Notify,
}

async fn receiver(cancel: CancellationToken) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        count: AtomicU64::new(0),
        arrivals: Mutex::new(HashMap::new()),
        track: false.into(),
        notify: Notify::new(),
    });
    let s = state.clone();
    let app = Router::new().fallback(move |body: Bytes| {
        let s = s.clone();
        async move {
            if s.track.load(Ordering::Relaxed) {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(seq) = v["sequence"].as_u64() {
                        s.arrivals.lock().unwrap().insert(seq, now);
                    }
                }
            }
            s.count.fetch_add(1, Ordering::Relaxed);
            s.notify.notify_waiters();
            "ok"
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
    (format!("http://{addr}/hook"), state)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(instance: &str, n: usize) -> bytes::Bytes {
    StoredEvent {
        id: uuid::Uuid::new_v4(),
        instance: instance.to_owned(),
        event: "messages.upsert".into(),
        data: serde_json::value::RawValue::from_string(format!(
            r#"{{"key":{{"remoteJid":"5511999990000@s.whatsapp.net","fromMe":false,"id":"BAE5{n:012}"}},"message":{{"conversation":"hello {n}"}},"messageTimestamp":1758749877}}"#
        ))
        .unwrap(),
        sender: Some("5511888888888@s.whatsapp.net".into()),
        source: None,
        raw: None,
        instance_id: None,
        key: None,
        request: None,
        chat: None,
    }
    .to_bytes()
    .expect("a stored event of strings encodes")
}

async fn wait_count(r: &Receiver, target: u64) {
    loop {
        let notified = r.notify.notified();
        if r.count.load(Ordering::Relaxed) >= target {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> Arc<dyn EventLog> {
    let mut o = EmbeddedOptions::new(dir);
    o.fsync = fsync;
    EmbeddedLog::open(o).unwrap()
}

fn subscription(id: &str, url: &str, start: u64) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
        id: id.into(),
        target: SinkTarget::Webhook(WebhookTarget {
            url: url.into(),
            secret: Some(SECRET.into()),
            ..WebhookTarget::default()
        }),
        scope: Scope::AllInstances,
        events: vec![],
        custom_events: vec![],
        phone_numbers: vec![],
        start_sequence: start,
        start_positions: Vec::new(),
        enabled: true,
    }
}

async fn start_engine(
    log: Arc<dyn EventLog>,
    state: Arc<dyn EventLog>,
    sub: Subscription,
    concurrency: usize,
) -> (DeliveryEngine, CancellationToken, TaskTracker) {
    // The sender is dropped at once: the engine keeps delivering the last published set.
    let (_, set_rx) = watch::channel(Arc::new(SubscriptionSet {
        subscriptions: vec![sub],
        instance_numbers: HashMap::new(),
        instance_tokens: HashMap::new(),
    }));
    let sink = WebhookSink::new(WebhookOptions {
        allow_private_targets: true,
        max_concurrency_per_endpoint: concurrency,
        ..WebhookOptions::default()
    })
    .unwrap();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let engine = DeliveryEngine::start(EngineDeps {
        log,
        state_log: state,
        subscriptions: set_rx,
        sinks: SinkRegistry::new().with(SinkKind::Webhook, Arc::new(sink)),
        policy: RetryPolicy::default(),
        options: EngineOptions {
            max_parallel_instances: concurrency,
            ..EngineOptions::default()
        },
        disable_requests: mpsc::unbounded_channel().0,
        metrics: switchyard::delivery::DeliveryMetrics::register(&prometheus::Registry::new())
            .expect("delivery metrics"),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        attempts: None,
        activity: None,
    })
    .await
    .unwrap();
    (engine, cancel, tracker)
}

/// One request exactly as the engine sends it: the signed envelope and its headers.
struct PreparedRequest {
    body: bytes::Bytes,
    headers: reqwest::header::HeaderMap,
}

/// The requests the engine will send for `records`, built ahead (signature included), so the
/// load loop sends the same bytes and headers without doing the engine's work.
fn prepare(records: &[switchyard::log::Record], url: &str) -> Vec<PreparedRequest> {
    use reqwest::header::{HeaderMap, HeaderValue};
    let key = SigningKey::from_secret(SECRET).unwrap();
    let server_url = WebhookOptions::default().server_url;
    records
        .iter()
        .map(|record| {
            let event = LoggedEvent::decode(record).unwrap();
            let mut envelope = event.envelope(&server_url);
            envelope.destination = Some(url);
            let body = envelope.to_vec();
            let id = event.event.id.to_string();
            let timestamp = chrono::Utc::now().timestamp();
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert(
                "user-agent",
                HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION"))),
            );
            headers.insert(
                "webhook-signature",
                HeaderValue::from_str(&key.sign(&id, timestamp, &body)).unwrap(),
            );
            headers.insert("webhook-id", HeaderValue::from_str(&id).unwrap());
            headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
            PreparedRequest {
                body: body.into(),
                headers,
            }
        })
        .collect()
}

/// The prepared requests POSTed by `concurrency` plain reqwest loops; requests per second.
async fn baseline(
    client: &reqwest::Client,
    url: &str,
    requests: &Arc<Vec<PreparedRequest>>,
    concurrency: usize,
) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, requests) = (
            client.clone(),
            url.to_owned(),
            next.clone(),
            requests.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(request) = requests.get(i) else {
                    break;
                };
                let r = client
                    .post(&url)
                    .headers(request.headers.clone())
                    .body(request.body.clone())
                    .send()
                    .await
                    .unwrap();
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    requests.len() as f64 / started.elapsed().as_secs_f64()
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let events = env_or("BENCH_EVENTS", 20_000) as usize;
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    let latency_secs = env_or("BENCH_LATENCY_SECONDS", 5).max(1);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let (engine_only, baseline_only) = (only == "engine", only == "baseline");
    let stop = CancellationToken::new();
    let (url, recv) = receiver(stop.clone()).await;
    let instances: Vec<String> = (0..concurrency).map(|i| format!("bench-{i}")).collect();
    let bodies: Vec<bytes::Bytes> = (0..events)
        .map(|n| event(&instances[n % concurrency], n))
        .collect();

    // The events, in the log once, over `concurrency` instances.
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("events"), FsyncPolicy::Always);
    for chunk in bodies.chunks(1000) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    let records = log.read(1, events, usize::MAX).await.unwrap();
    assert_eq!(records.len(), events, "every event read back");
    let requests = Arc::new(prepare(&records, &url));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    // Alternate rounds so that background load hits both sides alike; report the median.
    let mut ratios = Vec::new();
    println!("webhook delivery throughput ({events} events, concurrency {concurrency}, signed):");
    for round in 0..env_or("BENCH_ROUNDS", 5) {
        let cpu_before = cpu_time();
        let baseline = if engine_only {
            f64::NAN
        } else {
            baseline(&client, &url, &requests, concurrency).await
        };
        let baseline_cpu = (cpu_time() - cpu_before).as_secs_f64() * 1e6 / events as f64;
        recv.count.store(0, Ordering::Relaxed);
        if baseline_only {
            println!("  round {round}: reqwest load loop {baseline:>7.0} req/s ({baseline_cpu:.0} µs CPU each)");
            continue;
        }
        let state = open(
            &dir.path().join(format!("state-{round}")),
            FsyncPolicy::Always,
        );
        let started = Instant::now();
        let cpu_before = cpu_time();
        let sub = subscription(&format!("bench-{round}"), &url, 0);
        let (_engine, cancel, tracker) = start_engine(log.clone(), state, sub, concurrency).await;
        wait_count(&recv, events as u64).await;
        let engine_rate = events as f64 / started.elapsed().as_secs_f64();
        let engine_cpu = (cpu_time() - cpu_before).as_secs_f64() * 1e6 / events as f64;
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        let ratio = engine_rate / baseline;
        ratios.push(ratio);
        println!(
            "  round {round}: reqwest load loop {baseline:>7.0} req/s ({baseline_cpu:.0} µs CPU each), engine {engine_rate:>7.0} deliveries/s ({engine_cpu:.0} µs CPU each), ratio {ratio:.2}x"
        );
    }
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        println!("  median ratio: {median:.2}x (target >= 0.7x)");
    }

    // Latency: a steady 1,000 events/s, one append per millisecond, fsync always.
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("events"), FsyncPolicy::Always);
    let state = open(&dir.path().join("state"), FsyncPolicy::Always);
    let start = log.next_sequence();
    let (_engine, cancel, tracker) = start_engine(
        log.clone(),
        state,
        subscription("latency", &url, start),
        concurrency,
    )
    .await;
    recv.track.store(true, Ordering::Relaxed);
    recv.count.store(0, Ordering::Relaxed);
    let total = (latency_secs * 1000) as usize;
    let mut sent: HashMap<u64, (Instant, Instant)> = HashMap::with_capacity(total);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        tick.tick().await;
        let before = Instant::now();
        let receipt = log
            .append(vec![event(&instances[n % concurrency], n)])
            .await
            .unwrap();
        sent.insert(receipt.first_sequence, (before, Instant::now()));
    }
    wait_count(&recv, total as u64).await;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    let arrivals = recv.arrivals.lock().unwrap();
    let mut from_ingest = Vec::new();
    let mut from_durable = Vec::new();
    for (seq, (before, durable)) in &sent {
        if let Some(at) = arrivals.get(seq) {
            from_ingest.push(at.duration_since(*before).as_secs_f64() * 1e3);
            from_durable.push(at.duration_since(*durable).as_secs_f64() * 1e3);
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "ingest -> receiver latency at 1,000 events/s ({} events, fsync always):",
        from_ingest.len()
    );
    println!(
        "  from append call  : p50 {:.2} ms, p99 {:.2} ms (target p99 < 10 ms)",
        pct(&mut from_ingest, 0.5),
        pct(&mut from_ingest, 0.99)
    );
    println!(
        "  from durable      : p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut from_durable, 0.5),
        pct(&mut from_durable, 0.99)
    );
    stop.cancel();
}
