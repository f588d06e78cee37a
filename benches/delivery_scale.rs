//! Delivery where users live: many instances with a webhook each, and a slow receiver.
//!
//! **Scale.** 1, 100 and 1,000 instances, each with its own webhook subscription (as
//! `/webhook/set/{instance}` makes), receive the same 20,000 events (spread round-robin over
//! the instances, 50 chats each) against a loopback receiver. For each set-up the bench
//! prints delivered events/s, the server's CPU per delivered event (the whole process
//! minus the receiver's threads: ingest appends, the log, the engine, the sink), the ratio
//! of that CPU to the 1-instance figure of the same run, and RSS idle and after delivery.
//! Two phases per set-up: **live** (events appended while the engine runs, as ingest does)
//! and **catch-up** (the engine stopped, 20,000 more events appended, a new engine started
//! on the same cursors, as after a restart).
//!
//! **Slow receiver.** One instance, 50 chats, a receiver that answers each request after
//! 50 ms: events/s with the default ordering (`chat`) against `ordering = instance` (the
//! engine's old behaviour) in the same run, and a check that every chat's events arrived in
//! sequence order.
//!
//! **Filtered.** 1,000 instances (`BENCH_FILTER_INSTANCES`) as in the scale set-up, with
//! every subscription holding a filter (issue 19) that each event passes, so the same
//! events are delivered: the structured clauses alone (`from_me`, `chat_types`, a chats
//! deny list, read from the facts stored at ingest), and with a `match` expression too
//! (which parses each event's `data` once). Their CPU per event against the unfiltered
//! baseline of the same run, rounds interleaved (target: <= 1.2x).
//!
//! **Attempt log.** Each set-up runs with the attempt log off and on (`src/attempts/`: every
//! attempt recorded, batched into one append per 100 ms, in the same temp dir), rounds
//! interleaved, and prints the on/off ratio of events/s and of CPU per event, paired by round
//! (target: at most 10% lost). `BENCH_ATTEMPTS=off|on` runs one side only;
//! `BENCH_ATTEMPTS=control` runs the log off on both sides, whose ratios show the noise floor.
//!
//! Run: `cargo bench --bench delivery_scale` (or, reusing the test build's dependencies,
//! `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev --bench delivery_scale`).
//! Knobs (env): `BENCH_EVENTS` (20000), `BENCH_INSTANCES` (`1,100,1000`), `BENCH_ROUNDS` (3),
//! `BENCH_SLOW_EVENTS` (5000), `BENCH_SLOW_BASELINE_EVENTS` (200),
//! `BENCH_FILTER_INSTANCES` (1000), `BENCH_ONLY=scale|slow|filtered`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::Router;
use switchyard::attempts::{AttemptLog, AttemptOptions};
use switchyard::delivery::subscription::{OrderBy, Policy};
use switchyard::delivery::{
    DeliveryEngine, EngineDeps, EngineOptions, RetryPolicy, Scope, SinkTarget, Subscription,
    SubscriptionSet,
};
use switchyard::envelope::StoredEvent;
use switchyard::filter::Filter;
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};
use switchyard::sinks::webhook::{WebhookOptions, WebhookSink, WebhookTarget};
use switchyard::sinks::{SinkKind, SinkRegistry};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The allocator the `switchyard` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The receiver runtime's thread name: its CPU is not the server's.
const RECEIVER_THREAD: &str = "bench-receiver";

/// Chats per instance.
const CHATS: usize = 50;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    notify: Notify,
    /// In order mode: (instance, chat) -> sequences in arrival order.
    arrivals: Mutex<HashMap<(String, String), Vec<u64>>>,
    track: std::sync::atomic::AtomicBool,
}

/// A receiver on its own runtime (threads named [`RECEIVER_THREAD`]) that answers 200 after
/// `delay`.
fn receiver(delay: Duration) -> (String, Arc<Seen>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(RECEIVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let app = Router::new().fallback(move |body: Bytes| {
        let s = s.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if s.track.load(Ordering::Relaxed) {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let chat = v["data"]["key"]["remoteJid"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let instance = v["instance"].as_str().unwrap_or("").to_owned();
                if let Some(sequence) = v["sequence"].as_u64() {
                    let mut arrivals = s.arrivals.lock().unwrap();
                    arrivals.entry((instance, chat)).or_default().push(sequence);
                }
            }
            s.count.fetch_add(1, Ordering::Relaxed);
            s.notify.notify_waiters();
            "ok"
        }
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (format!("http://{addr}"), seen, rt)
}

/// A message of `instance` in chat `n % CHATS`, as ingest stores it (chat derived).
fn event(instance: &str, n: usize) -> bytes::Bytes {
    let chat = format!("55119{:08}@s.whatsapp.net", n % CHATS);
    let data = serde_json::value::RawValue::from_string(format!(
        r#"{{"key":{{"remoteJid":"{chat}","fromMe":false,"id":"BAE5{n:012}"}},"message":{{"conversation":"hello {n}"}},"messageTimestamp":1758749877}}"#
    ))
    .unwrap();
    StoredEvent {
        id: uuid::Uuid::now_v7(),
        instance: instance.to_owned(),
        instance_id: None,
        event: "messages.upsert".into(),
        chat: switchyard::chat::chat_of("messages.upsert", &data),
        data,
        sender: Some("5511888888888@s.whatsapp.net".into()),
        source: None,
        raw: None,
        key: None,
        request: None,
    }
    .to_bytes()
    .expect("a stored event of strings encodes")
}

/// Appends `count` events round-robin over `instances`, 100 per append (a busy gateway's
/// request size).
async fn append(log: &Arc<dyn EventLog>, instances: &[String], count: usize, offset: usize) {
    let mut batch = Vec::with_capacity(100);
    for n in offset..offset + count {
        batch.push(event(&instances[n % instances.len()], n / instances.len()));
        if batch.len() == 100 {
            log.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        log.append(batch).await.unwrap();
    }
}

fn webhook(
    id: &str,
    url: String,
    instance: &str,
    start: u64,
    ordering: Option<OrderBy>,
    filter: Option<&Filter>,
) -> Subscription {
    Subscription {
        id: id.into(),
        target: SinkTarget::Webhook(WebhookTarget {
            url,
            ..WebhookTarget::default()
        }),
        scope: Scope::Instance(instance.into()),
        events: vec![],
        custom_events: vec![],
        phone_numbers: vec![],
        start_sequence: start,
        start_positions: Vec::new(),
        enabled: true,
        policy: Policy {
            ordering,
            ..Policy::default()
        },
        filter: filter.cloned().unwrap_or_default(),
    }
}

struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
    _engine: DeliveryEngine,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn start_engine(
    log: Arc<dyn EventLog>,
    state: Arc<dyn EventLog>,
    subscriptions: Vec<Subscription>,
    attempts: Option<Arc<AttemptLog>>,
) -> Running {
    let (_, set_rx) = watch::channel(Arc::new(SubscriptionSet {
        subscriptions,
        instance_numbers: HashMap::new(),
        instance_tokens: HashMap::new(),
    }));
    // The server's defaults, private targets allowed for the loopback receiver.
    let sink = WebhookSink::new(WebhookOptions {
        allow_private_targets: true,
        ..WebhookOptions::default()
    })
    .unwrap();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    if let Some(attempts) = &attempts {
        tracker.spawn(attempts.clone().run(cancel.clone()));
    }
    let engine = DeliveryEngine::start(EngineDeps {
        log,
        state_log: state,
        subscriptions: set_rx,
        sinks: SinkRegistry::new().with(SinkKind::Webhook, Arc::new(sink)),
        policy: RetryPolicy::default(),
        options: EngineOptions {
            commit_interval: Duration::from_millis(env_or("BENCH_COMMIT_MS", 100)),
            ..EngineOptions::default()
        },
        disable_requests: mpsc::unbounded_channel().0,
        metrics: switchyard::delivery::DeliveryMetrics::register(&prometheus::Registry::new())
            .expect("delivery metrics"),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        attempts,
        activity: None,
    })
    .await
    .unwrap();
    Running {
        cancel,
        tracker,
        _engine: engine,
    }
}

fn open(dir: &std::path::Path) -> Arc<dyn EventLog> {
    let mut o = EmbeddedOptions::new(dir);
    o.fsync = FsyncPolicy::Always;
    EmbeddedLog::open(o).unwrap()
}

/// CPU time of the receiver's threads, from `/proc/self/task/*/schedstat` (nanoseconds on
/// CPU).
fn receiver_cpu() -> Duration {
    let mut receiver = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // `comm` holds at most 15 bytes of the name.
        if RECEIVER_THREAD.starts_with(comm.trim()) && !comm.trim().is_empty() {
            receiver += ns;
        }
    }
    Duration::from_nanos(receiver)
}

/// The whole process's CPU time. Threads that ended are gone from `/proc/self/task`, so
/// the process total is the ground truth and the receiver's (long-lived) threads are
/// subtracted from it.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Server CPU so far: the process's CPU minus the receiver's threads.
fn server_cpu() -> Duration {
    process_cpu().saturating_sub(receiver_cpu())
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn wait_count(seen: &Seen, target: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let notified = seen.notify.notified();
        if seen.count.load(Ordering::Relaxed) >= target {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

/// One set-up's round: live and catch-up phases, RSS idle and after delivery.
type Round = (Phase, Phase, f64, f64);

/// One phase's figures.
struct Phase {
    rate: f64,
    cpu_us: f64,
}

impl Phase {
    /// Waits until `events` were delivered since `t0` (server CPU `c0` then) and measures.
    async fn measured(seen: &Seen, events: usize, t0: Instant, c0: Duration, what: &str) -> Phase {
        assert!(
            wait_count(seen, events as u64, Duration::from_secs(600)).await,
            "{what}: {} of {events} delivered",
            seen.count.load(Ordering::Relaxed)
        );
        Phase {
            rate: events as f64 / t0.elapsed().as_secs_f64(),
            cpu_us: (server_cpu() - c0).as_secs_f64() * 1e6 / events as f64,
        }
    }
}

/// The attempt log of a set-up, in its temp dir, as the server opens it by default.
async fn attempt_log(dir: &std::path::Path) -> Arc<AttemptLog> {
    AttemptLog::open(AttemptOptions {
        dir: dir.join("attempts"),
        retention_bytes: 128 << 20,
        retention_age: Some(Duration::from_secs(168 * 3600)),
        flush_interval: Duration::from_millis(100),
    })
    .await
    .unwrap()
}

async fn scale(
    url: &str,
    seen: &Arc<Seen>,
    instances: usize,
    events: usize,
    filter: Option<&Filter>,
    attempts: bool,
) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("events"));
    let state = open(&dir.path().join("state"));
    let attempts = if attempts {
        Some(attempt_log(dir.path()).await)
    } else {
        None
    };
    let names: Vec<String> = (0..instances).map(|i| format!("inst{i:05}")).collect();
    let start = log.next_sequence();
    let subs = || {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                webhook(
                    &format!("webhook:{name}"),
                    format!("{url}/hook/{i}"),
                    name,
                    start,
                    None,
                    filter,
                )
            })
            .collect::<Vec<_>>()
    };
    let running = start_engine(log.clone(), state.clone(), subs(), attempts.clone()).await;
    // Let every runner read its cursor and settle before measuring.
    tokio::time::sleep(Duration::from_millis(500 + instances as u64)).await;
    let idle_rss = rss_mib();

    seen.count.store(0, Ordering::Relaxed);
    let (t0, c0) = (Instant::now(), server_cpu());
    append(&log, &names, events, 0).await;
    let live = Phase::measured(seen, events, t0, c0, "live").await;
    let busy_rss = rss_mib();
    running.stop().await;

    // Catch-up: the backlog arrives while no engine runs, then one starts on the cursors.
    append(&log, &names, events, events).await;
    seen.count.store(0, Ordering::Relaxed);
    let (t0, c0) = (Instant::now(), server_cpu());
    let running = start_engine(log.clone(), state.clone(), subs(), attempts.clone()).await;
    let catch_up = Phase::measured(seen, events, t0, c0, "catch-up").await;
    running.stop().await;
    (live, catch_up, idle_rss, busy_rss)
}

/// One instance, 50 chats, `events` events against the slow receiver; events/s.
async fn slow(url: &str, seen: &Arc<Seen>, events: usize, ordering: OrderBy) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("events"));
    let state = open(&dir.path().join("state"));
    let names = vec!["slowinst".to_string()];
    let start = log.next_sequence();
    let sub = webhook(
        "webhook:slowinst",
        format!("{url}/slow"),
        "slowinst",
        start,
        Some(ordering),
        None,
    );
    seen.count.store(0, Ordering::Relaxed);
    seen.arrivals.lock().unwrap().clear();
    seen.track.store(true, Ordering::Relaxed);
    let running = start_engine(log.clone(), state, vec![sub], None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    append(&log, &names, events, 0).await;
    assert!(
        wait_count(seen, events as u64, Duration::from_secs(900)).await,
        "slow receiver: {} of {events} delivered",
        seen.count.load(Ordering::Relaxed)
    );
    let rate = events as f64 / t0.elapsed().as_secs_f64();
    running.stop().await;
    seen.track.store(false, Ordering::Relaxed);
    let arrivals = seen.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), CHATS, "every chat delivered");
    for ((_, chat), sequences) in arrivals.iter() {
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "chat {chat} out of order: {sequences:?}"
        );
    }
    rate
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let events = env_or("BENCH_EVENTS", 20_000) as usize;
    let counts: Vec<usize> = std::env::var("BENCH_INSTANCES")
        .unwrap_or_else(|_| "1,100,1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .unwrap();

    if only.is_empty() || only == "scale" {
        let (url, seen, _receiver_rt) = receiver(Duration::ZERO);
        let rounds = env_or("BENCH_ROUNDS", 3).max(1);
        // The sides compared: the attempt log off and on, or (`BENCH_ATTEMPTS=control`) off
        // against off, whose ratios are the measurement's own noise floor.
        let sides: Vec<bool> = match std::env::var("BENCH_ATTEMPTS").as_deref() {
            Ok("off") => vec![false],
            Ok("on") => vec![true],
            Ok("control") => vec![false, false],
            _ => vec![false, true],
        };
        let control = sides == [false, false];
        println!("delivery at scale: {events} events, one webhook subscription per instance, loopback receiver, fsync always; medians of {rounds} rounds");
        // Single rounds on 2 cores vary by a few tenths of the ratio: each set-up runs
        // `rounds` times and its medians are the figures (the rounds of the different
        // set-ups and of both attempt-log sides interleave, so that background load hits
        // them alike).
        let mut runs: Vec<Vec<Vec<Round>>> = sides
            .iter()
            .map(|_| counts.iter().map(|_| Vec::new()).collect())
            .collect();
        for round in 0..rounds {
            for (i, &n) in counts.iter().enumerate() {
                for k in 0..sides.len() {
                    // Alternate which side goes first.
                    let k = if round % 2 == 0 {
                        k
                    } else {
                        sides.len() - 1 - k
                    };
                    runs[k][i].push(server.block_on(scale(&url, &seen, n, events, None, sides[k])));
                }
            }
        }
        let mut figures: Vec<Vec<(Phase, Phase)>> = Vec::new();
        for (k, (side, side_runs)) in sides.iter().zip(&runs).enumerate() {
            let label = match (control, side) {
                (true, _) => format!("control side {}", k + 1),
                (false, true) => "attempt log on".into(),
                (false, false) => "attempt log off".into(),
            };
            println!("  {label}:");
            println!("  instances | live ev/s | live CPU/ev | ratio | catch-up ev/s | catch-up CPU/ev | ratio | RSS idle | RSS after");
            let mut first: Option<(f64, f64)> = None;
            let mut side_figures = Vec::new();
            for (&n, rounds) in counts.iter().zip(side_runs) {
                let pick = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
                let live = Phase {
                    rate: pick(&|r| r.0.rate),
                    cpu_us: pick(&|r| r.0.cpu_us),
                };
                let catch_up = Phase {
                    rate: pick(&|r| r.1.rate),
                    cpu_us: pick(&|r| r.1.cpu_us),
                };
                // RSS is the process's: only the first round (set-ups in increasing size,
                // none before) says what this set-up holds; later rounds inherit the
                // largest one's.
                let (idle, busy) = (rounds[0].2, rounds[0].3);
                let (l1, c1) = *first.get_or_insert((live.cpu_us, catch_up.cpu_us));
                println!(
                    "  {n:>9} | {:>9.0} | {:>8.0} µs | {:>4.2}x | {:>12.0} | {:>12.0} µs | {:>4.2}x | {idle:>5.0} MiB | {busy:>5.0} MiB",
                    live.rate,
                    live.cpu_us,
                    live.cpu_us / l1,
                    catch_up.rate,
                    catch_up.cpu_us,
                    catch_up.cpu_us / c1,
                );
                side_figures.push((live, catch_up));
            }
            figures.push(side_figures);
        }
        println!("  (target: the 1,000-instance CPU per event <= 1.5x the 1-instance figure)");
        if let [off, on] = &runs[..] {
            paired_ratios(&counts, off, on, control);
        }
    }

    if only.is_empty() || only == "filtered" {
        filtered(&server, events);
    }

    if only.is_empty() || only == "slow" {
        let (url, seen, _receiver_rt) = receiver(Duration::from_millis(50));
        let chat_events = env_or("BENCH_SLOW_EVENTS", 5_000) as usize;
        let base_events = env_or("BENCH_SLOW_BASELINE_EVENTS", 200) as usize;
        println!("one instance, {CHATS} chats, a receiver answering after 50 ms:");
        let base = server.block_on(slow(&url, &seen, base_events, OrderBy::Instance));
        println!("  ordering = instance: {base:>7.1} events/s ({base_events} events, in order per instance)");
        let chat = server.block_on(slow(&url, &seen, chat_events, OrderBy::Chat));
        println!(
            "  ordering = chat    : {chat:>7.1} events/s ({chat_events} events, every chat in sequence order), {:.1}x (target >= 500 events/s)",
            chat / base
        );
    }
}

/// The median of `values` (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The second side against the first, round by round: each round ran both sides back to
/// back (alternating which went first), so a pair shares the machine's state at that
/// moment (another tenant's load, the disk's write-back) and its ratio cancels what
/// drifts between rounds, which the ratio of two medians taken minutes apart does not.
/// Prints each cell's median pair ratio, the spread of the pairs, and the geometric mean
/// over every cell and pair.
fn paired_ratios(counts: &[usize], first: &[Vec<Round>], second: &[Vec<Round>], control: bool) {
    let title = if control {
        "control: the attempt log off on both sides (the measurement's noise floor)"
    } else {
        "attempt log on / off, paired by round (target: events/s >= 0.90x, CPU per event <= 1.11x)"
    };
    println!("  {title}:");
    println!("  instances | live ev/s            | live CPU/ev          | catch-up ev/s        | catch-up CPU/ev");
    let mut logs = [Vec::new(), Vec::new()];
    for ((&n, a), b) in counts.iter().zip(first).zip(second) {
        let cell = |f: &dyn Fn(&Round) -> f64| {
            let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| f(b) / f(a)).collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            (median(ratios.clone()), lo, hi, ratios)
        };
        let mut row = format!("  {n:>9}");
        for (j, f) in [
            &(|r: &Round| r.0.rate) as &dyn Fn(&Round) -> f64,
            &|r: &Round| r.0.cpu_us,
            &|r: &Round| r.1.rate,
            &|r: &Round| r.1.cpu_us,
        ]
        .into_iter()
        .enumerate()
        {
            let (mid, lo, hi, ratios) = cell(f);
            logs[j % 2].extend(ratios.iter().map(|r| r.ln()));
            row.push_str(&format!(" | {mid:>5.2}x ({lo:.2}-{hi:.2})"));
        }
        println!("{row}");
    }
    // Over every cell and pair: the geometric mean and its 95% confidence interval (a
    // normal approximation on the log ratios), which single cells, a few pairs each, are
    // too noisy to give (the control shows single pairs from 0.7x to 2.5x).
    let summary = |v: &[f64]| {
        let n = v.len().max(2) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let half = 1.96 * sd / n.sqrt();
        (
            mean.exp(),
            (mean - half).exp(),
            (mean + half).exp(),
            v.len(),
        )
    };
    let (rate, rate_lo, rate_hi, pairs) = summary(&logs[0]);
    let (cpu, cpu_lo, cpu_hi, _) = summary(&logs[1]);
    println!(
        "  every cell and pair ({pairs} each), geometric mean [95% CI]: events/s {rate:.3}x \
         [{rate_lo:.3}-{rate_hi:.3}], CPU per event {cpu:.3}x [{cpu_lo:.3}-{cpu_hi:.3}]"
    );
}

/// The filtered set-up (see the module doc): unfiltered, structured clauses, and with an
/// expression, interleaved round by round; medians and their ratios to the unfiltered.
fn filtered(server: &tokio::runtime::Runtime, events: usize) {
    let (url, seen, _receiver_rt) = receiver(Duration::ZERO);
    let instances = env_or("BENCH_FILTER_INSTANCES", 1000) as usize;
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let parse = |v: serde_json::Value| Filter::from_value(&v).expect("a valid filter");
    // Every event of the bench passes both: the same events are delivered as unfiltered,
    // and every clause is evaluated for each (none short-circuits on a miss).
    let structured = parse(serde_json::json!({
        "from_me": false,
        "chat_types": ["direct", "group"],
        "chats": {"deny": ["status@broadcast", "120363000000000001@g.us"]},
    }));
    let with_match = parse(serde_json::json!({
        "from_me": false,
        "chat_types": ["direct", "group"],
        "chats": {"deny": ["status@broadcast", "120363000000000001@g.us"]},
        "match": {"data.messageTimestamp": {"$gte": 1700000000}},
    }));
    let variants: [(&str, Option<&Filter>); 3] = [
        ("no filter", None),
        ("structured clauses", Some(&structured)),
        ("clauses + match", Some(&with_match)),
    ];
    println!("filters at scale: {instances} instances, {events} events, every subscription holding the filter; medians of {rounds} rounds");
    println!("  filter             | live ev/s | live CPU/ev | ratio | catch-up ev/s | catch-up CPU/ev | ratio");
    let mut runs: Vec<Vec<Round>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, filter)) in variants.iter().enumerate() {
            runs[i].push(server.block_on(scale(&url, &seen, instances, events, *filter, false)));
        }
    }
    let mut base: Option<(f64, f64)> = None;
    for ((name, _), rounds) in variants.iter().zip(runs) {
        let pick = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        let (live_rate, live_cpu) = (pick(&|r| r.0.rate), pick(&|r| r.0.cpu_us));
        let (up_rate, up_cpu) = (pick(&|r| r.1.rate), pick(&|r| r.1.cpu_us));
        let (l0, c0) = *base.get_or_insert((live_cpu, up_cpu));
        println!(
            "  {name:<18} | {live_rate:>9.0} | {live_cpu:>8.0} µs | {:>4.2}x | {up_rate:>12.0} | {up_cpu:>12.0} µs | {:>4.2}x",
            live_cpu / l0,
            up_cpu / c0,
        );
    }
    println!("  (target: every filtered CPU per event <= 1.2x the unfiltered figure)");
}
