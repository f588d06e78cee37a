//! Shared harness of the delivery tests: a real HTTP receiver (axum on 127.0.0.1:0), an
//! engine over embedded logs in a temp dir, and the `standardwebhooks` verifier.
//!
//! Included by the delivery test files with `#[path]`; compiled alone it has no tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use switchyard::delivery::{
    DeliveryEngine, DisableRequest, EngineDeps, EngineOptions, RetryPolicy, Scope, SinkTarget,
    Subscription, SubscriptionSet, SubscriptionStatus,
};
use switchyard::envelope::StoredEvent;
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};
use switchyard::sinks::webhook::{WebhookOptions, WebhookSink, WebhookTarget};
use switchyard::sinks::{SinkKind, SinkRegistry};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered; 0 when it stalled past the sender's timeout.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
    pub fn instance(&self) -> String {
        self.json()["instance"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    pub fn sequence(&self) -> u64 {
        self.json()["sequence"].as_u64().unwrap_or_default()
    }
    /// The chat a message is about (`data.key.remoteJid`), empty when none.
    pub fn chat(&self) -> String {
        chat_of(&self.json())
    }
}

fn chat_of(envelope: &serde_json::Value) -> String {
    envelope["data"]["key"]["remoteJid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// How the receiver answers.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Fixed status to answer (0 = 200 unless chaos says otherwise).
    pub status: AtomicU16,
    /// Percent of requests answered 500 at random.
    pub fail_percent: AtomicU32,
    /// Percent of requests stalled for `stall_ms` before answering (past the timeout).
    pub stall_percent: AtomicU32,
    pub stall_ms: AtomicU32,
    /// Requests about this chat (`data.key.remoteJid`) are answered 503.
    pub failing_chat: Mutex<Option<String>>,
}

/// The receiver: every request is recorded in arrival order of its answer.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub behaviour: Arc<Behaviour>,
    pub log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(cancel: CancellationToken) -> Receiver {
        let behaviour = Arc::new(Behaviour::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (b, l) = (behaviour.clone(), log.clone());
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (b, l) = (b.clone(), l.clone());
            async move { answer(b, l, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
                .ok();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            behaviour,
            log,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    pub fn set_status(&self, status: u16) {
        self.behaviour.status.store(status, Ordering::SeqCst);
    }
}

async fn answer(
    b: Arc<Behaviour>,
    l: Arc<Mutex<Vec<Received>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let roll = rand::random_range(0..100u32);
    let stall = roll < b.stall_percent.load(Ordering::SeqCst);
    let fail = !stall && rand::random_range(0..100u32) < b.fail_percent.load(Ordering::SeqCst);
    let fixed = b.status.load(Ordering::SeqCst);
    let failing_chat = b.failing_chat.lock().unwrap().clone();
    let chat_fails = failing_chat.is_some_and(|chat| {
        serde_json::from_slice(&body).is_ok_and(|v: serde_json::Value| chat_of(&v) == chat)
    });
    let status = if chat_fails {
        503
    } else if fixed != 0 {
        fixed
    } else if fail {
        500
    } else {
        200
    };
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    // A stall is recorded before it starts: the sender times out and hyper drops this
    // handler, so nothing after the sleep would run. It is not a delivery (status 0).
    l.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        status: if stall { 0 } else { status },
        at: std::time::Instant::now(),
    });
    if stall {
        let ms = b.stall_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
    }
    StatusCode::from_u16(status).unwrap()
}

/// An engine over embedded logs, with the test acting as the registry.
pub struct Harness {
    pub dir: PathBuf,
    pub log: Arc<dyn EventLog>,
    pub engine: DeliveryEngine,
    pub set: watch::Sender<Arc<SubscriptionSet>>,
    pub disables: mpsc::UnboundedReceiver<DisableRequest>,
    pub metrics: prometheus::Registry,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

pub fn open_log(dir: &Path) -> Arc<dyn EventLog> {
    let mut options = EmbeddedOptions::new(dir);
    options.fsync = FsyncPolicy::Never;
    EmbeddedLog::open(options).expect("open log")
}

pub fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        jitter_factor: 0.2,
        disable_after_failures: 0,
        // The server's default: retries beyond the third go through parking.
        park_after_attempts: 3,
        delays: Vec::new(),
    }
}

pub fn webhook_options(timeout_ms: u64) -> WebhookOptions {
    WebhookOptions {
        request_timeout: Duration::from_millis(timeout_ms),
        allow_private_targets: true,
        ..WebhookOptions::default()
    }
}

impl Harness {
    pub async fn start(
        dir: &Path,
        policy: RetryPolicy,
        webhook: WebhookOptions,
        subscriptions: Vec<Subscription>,
    ) -> Harness {
        let log = open_log(&dir.join("events"));
        let state_log = open_log(&dir.join("delivery-state"));
        let (set, set_rx) = watch::channel(Arc::new(SubscriptionSet {
            subscriptions,
            instance_numbers: HashMap::new(),
            instance_tokens: HashMap::new(),
        }));
        let (disable_tx, disables) = mpsc::unbounded_channel();
        let sinks = SinkRegistry::new().with(
            SinkKind::Webhook,
            Arc::new(WebhookSink::new(webhook).unwrap()),
        );
        let metrics = prometheus::Registry::new();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let engine = DeliveryEngine::start(EngineDeps {
            log: log.clone(),
            state_log,
            subscriptions: set_rx,
            sinks,
            policy,
            options: EngineOptions {
                commit_interval: Duration::from_millis(20),
                ..EngineOptions::default()
            },
            disable_requests: disable_tx,
            metrics: switchyard::delivery::DeliveryMetrics::register(&metrics).unwrap(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            attempts: None,
            activity: None,
        })
        .await
        .unwrap();
        Harness {
            dir: dir.to_owned(),
            log,
            engine,
            set,
            disables,
            metrics,
            cancel,
            tracker,
        }
    }

    /// Shuts the engine down and waits for every task (cursors committed).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("engine stops within 10 s");
    }

    pub fn publish(&self, subscriptions: Vec<Subscription>) {
        self.set.send_replace(Arc::new(SubscriptionSet {
            subscriptions,
            instance_numbers: HashMap::new(),
            instance_tokens: HashMap::new(),
        }));
    }

    pub fn status(&self, id: &str) -> SubscriptionStatus {
        self.engine
            .subscription_status(id)
            .expect("known subscription")
    }
}

/// A webhook subscription over every instance.
pub fn webhook(id: &str, url: &str, secret: Option<&str>, start_sequence: u64) -> Subscription {
    Subscription {
        policy: Default::default(),
        filter: Default::default(),
        id: id.to_owned(),
        target: SinkTarget::Webhook(WebhookTarget {
            url: url.to_owned(),
            secret: secret.map(str::to_owned),
            ..WebhookTarget::default()
        }),
        scope: Scope::AllInstances,
        events: vec![],
        custom_events: vec![],
        phone_numbers: vec![],
        start_sequence,
        start_positions: Vec::new(),
        enabled: true,
    }
}

/// An event as ingest stores it: `data` is JSON text, `chat` the stored chat key.
pub fn stored_event(instance: &str, event: &str, data: String, chat: Option<&str>) -> StoredEvent {
    StoredEvent {
        id: uuid::Uuid::new_v4(),
        instance: instance.to_owned(),
        event: event.to_owned(),
        data: serde_json::value::RawValue::from_string(data).unwrap(),
        sender: Some("5511999990000@s.whatsapp.net".into()),
        source: None,
        raw: None,
        instance_id: None,
        key: None,
        request: None,
        chat: chat.map(str::to_owned),
    }
}

/// Appends `count` events per call, round-robin over `instances`.
pub async fn append(log: &Arc<dyn EventLog>, instances: &[String], event: &str, count: usize) {
    let mut batch = Vec::new();
    for i in 0..count {
        let instance = &instances[i % instances.len()];
        let stored = stored_event(instance, event, format!("{{\"n\":{i}}}"), None);
        batch.push(stored.to_bytes().unwrap());
        if batch.len() == 500 {
            log.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        log.append(batch).await.unwrap();
    }
}

/// Appends `messages.upsert` events of `instance`, one per chat per round in `rounds`:
/// data `{"key":{"remoteJid"},"n"}` and the stored chat, as ingest stores them.
pub async fn append_chats(
    log: &Arc<dyn EventLog>,
    instance: &str,
    chats: &[&str],
    rounds: std::ops::Range<u64>,
) {
    let mut batch = Vec::new();
    for n in rounds {
        for chat in chats {
            let data = format!(r#"{{"key":{{"remoteJid":"{chat}"}},"n":{n}}}"#);
            let stored = stored_event(instance, "messages.upsert", data, Some(chat));
            batch.push(stored.to_bytes().unwrap());
        }
    }
    log.append(batch).await.unwrap();
}

/// Random instance names, so parallel tests never share a name.
pub fn instances(n: usize) -> Vec<String> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    (0..n).map(|i| format!("inst-{}-{i}", &tag[..8])).collect()
}

/// Waits (bounded) until `cond` holds, checking every 5 ms.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Verifies every signed request with the PyPI `standardwebhooks` package in `.venv`.
/// Returns how many were verified; fails loudly if the verifier is missing.
pub fn verify_with_standardwebhooks(secret: &str, requests: &[Received]) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: create it with `python3 -m venv .venv && .venv/bin/pip install standardwebhooks` (the test script does)",
        python.display()
    );
    let messages: Vec<_> = requests
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.headers.get("webhook-id"),
                "ts": r.headers.get("webhook-timestamp"),
                "sig": r.headers.get("webhook-signature"),
                "body": String::from_utf8_lossy(&r.body),
            })
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        serde_json::to_vec(&serde_json::json!({"secret": secret, "messages": messages})).unwrap(),
    )
    .unwrap();
    let script = r#"
import json, sys
from standardwebhooks import Webhook
d = json.load(open(sys.argv[1]))
wh = Webhook(d["secret"])
n = 0
for m in d["messages"]:
    wh.verify(m["body"], {"webhook-id": m["id"], "webhook-timestamp": m["ts"], "webhook-signature": m["sig"]})
    n += 1
print(n)
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(file.path())
        .output()
        .expect("run the verifier");
    assert!(
        out.status.success(),
        "standardwebhooks rejected a signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Each instance's sequences in the order of their first successful delivery, and how many
/// deliveries repeated one already delivered.
pub fn first_successes(delivered: &[Received]) -> (HashMap<String, Vec<u64>>, usize) {
    let mut first: HashMap<String, Vec<u64>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    for r in delivered {
        let key = (r.instance(), r.sequence());
        if seen.insert(key.clone()) {
            first.entry(key.0).or_default().push(key.1);
        } else {
            duplicates += 1;
        }
    }
    (first, duplicates)
}

/// Asserts that each instance's first successful deliveries cover `per_instance` sequences,
/// in increasing sequence order.
pub fn assert_first_successes_in_order(first: &HashMap<String, Vec<u64>>, per_instance: usize) {
    for (instance, seqs) in first {
        assert_eq!(
            seqs.len(),
            per_instance,
            "{instance}: every event once at least"
        );
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{instance}: first successes out of order"
        );
    }
}
