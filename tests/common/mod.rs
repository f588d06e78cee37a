//! Test harness: runs the real `switchyard` binary on a loopback port with its own data dir,
//! and gives tests an HTTP client bound to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// A running server process.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The global key.
    pub key: String,
    child: Child,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    /// Where the server's stderr (its log) goes; `None`: the test's own stderr.
    log: Option<PathBuf>,
    /// Keeps the temp dir alive (None when the caller owns the dir).
    _tmp: Option<tempfile::TempDir>,
    /// The HTTP client.
    pub http: reqwest::Client,
}

/// A random suffix so that names never collide between tests or runs.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn spawn(
    data_dir: &Path,
    key: &str,
    env: &[(String, String)],
    log: Option<&Path>,
) -> (Child, String) {
    // `SWITCHYARD_TEST_BIN` runs the same tests against another build (an older commit's
    // binary, to show a test fails without its fix).
    let binary = std::env::var("SWITCHYARD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
    let mut cmd = Command::new(binary);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTHENTICATION_API_KEY", key)
        // Tests poll freely; the rate-limit test sets its own limit.
        .env("SWITCHYARD_RATE_LIMIT__PER_MINUTE", "1000000")
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the server log file"),
            ),
            None => Stdio::inherit(),
        });
    for (k, v) in engine_env(data_dir) {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A test process that is killed (timeout, Ctrl-C) must not leave its servers running:
    // an orphan keeps delivering and slows every shared service for the next run.
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("switchyard listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.to_string());
                }
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("switchyard did not start listening within 30 s"));
    (child, base)
}

/// With `SWITCHYARD_TEST_ENGINE=kafka` every server of the suite runs on the Kafka engine
/// (the same behavioural tests, the other engine). Its topic prefix is kept in the data dir,
/// so a restart on the same dir reopens the same log, as with the embedded engine.
fn engine_env(data_dir: &Path) -> Vec<(String, String)> {
    if std::env::var("SWITCHYARD_TEST_ENGINE").as_deref() != Ok("kafka") {
        return Vec::new();
    }
    let brokers = kafka_brokers();
    std::fs::create_dir_all(data_dir).expect("data dir");
    let file = data_dir.join("kafka-topic-prefix");
    let prefix = match std::fs::read_to_string(&file) {
        Ok(prefix) => prefix,
        Err(_) => {
            let prefix = unique("sy");
            std::fs::write(&file, &prefix).expect("write the topic prefix");
            prefix
        }
    };
    vec![
        ("SWITCHYARD_LOG__ENGINE".into(), "kafka".into()),
        ("SWITCHYARD_KAFKA__BROKERS".into(), brokers),
        ("SWITCHYARD_LOG__KAFKA_TOPIC_PREFIX".into(), prefix),
        (
            "SWITCHYARD_LOG__KAFKA_PARTITIONS".into(),
            kafka_test_partitions(),
        ),
        (
            "SWITCHYARD_LOG__KAFKA_SESSION_TIMEOUT_SECONDS".into(),
            "6".into(),
        ),
    ]
}

/// The Kafka-protocol broker the suite uses (`scripts/services.sh` starts one).
pub fn kafka_brokers() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("SWITCHYARD_TEST_KAFKA_BROKERS is not set: run the suite through scripts/test.sh, which starts the broker")
    })
}

/// Options of a Kafka log on the suite's broker, as a test process opens it beside the
/// servers (the servers' own settings: session timeout 6 s, 1 MiB records).
pub fn kafka_log_options(prefix: &str, partitions: i32) -> switchyard::log::kafka::KafkaLogOptions {
    switchyard::log::kafka::KafkaLogOptions {
        brokers: kafka_brokers(),
        client_id: "switchyard-test".into(),
        properties: Default::default(),
        topic_prefix: prefix.into(),
        partitions,
        replication_factor: 1,
        session_timeout: Duration::from_secs(6),
        max_record_bytes: 1 << 20,
    }
}

/// Partitions of the events topic in Kafka-engine runs (`SWITCHYARD_TEST_KAFKA_PARTITIONS`,
/// default 1, which keeps WebSocket listeners available).
pub fn kafka_test_partitions() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA_PARTITIONS").unwrap_or_else(|_| "1".into())
}

impl TestServer {
    /// Starts a server with a fresh data dir and extra env.
    pub fn start(env: &[(&str, &str)]) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = Self::start_in(&dir, env);
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on an existing data dir (the caller keeps the dir).
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> TestServer {
        Self::start_logging(dir, env, None)
    }

    /// Starts a server on `dir` whose stderr (its log) is appended to `log`, for tests that
    /// read what the server logged.
    pub fn start_logging(dir: &Path, env: &[(&str, &str)], log: Option<&Path>) -> TestServer {
        let key = "test-global-key-0123456789".to_string();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, base) = spawn(dir, &key, &env, log);
        TestServer {
            base,
            key,
            child,
            data_dir: dir.to_path_buf(),
            env,
            log: log.map(Path::to_path_buf),
            _tmp: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// SIGKILLs the process: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills (if running) and starts again on the same data dir (a new port).
    pub fn restart(&mut self) {
        self.kill();
        let (child, base) = spawn(&self.data_dir, &self.key, &self.env, self.log.as_deref());
        self.child = child;
        self.base = base;
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The Kafka engine's topic prefix when the suite runs on the Kafka engine
    /// (`SWITCHYARD_TEST_ENGINE=kafka`); `None` on the embedded engine.
    pub fn kafka_topic_prefix(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join("kafka-topic-prefix")).ok()
    }

    /// `url` under the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the global key.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("apikey", &self.key)
    }

    /// GET with the global key, returning (status, JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST JSON with the global key, returning (status, JSON).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_string(body).expect("JSON"))
            .await
    }

    /// POST a body as it is (JSON that `serde_json` would not write, such as `1e999`), with
    /// the global key and a JSON content type; (status, JSON).
    pub async fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates an instance and returns its token.
    pub async fn create_instance(&self, name: &str, extra: Value) -> String {
        let mut body = json!({"instanceName": name, "number": "5511999990000"});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        let (status, v) = self.post("/instance/create", &body).await;
        assert_eq!(status, 201, "create {name}: {v}");
        v["hash"]["apikey"].as_str().expect("token").to_string()
    }

    /// Ingests `count` `messages.upsert` events whose `data.n` counts up from `from`.
    pub async fn ingest_numbered(&self, instance: &str, from: usize, count: usize) {
        let events: Vec<Value> = (from..from + count)
            .map(|n| json!({"event": "messages.upsert", "data": {"n": n}}))
            .collect();
        let (status, v) = self
            .post(&format!("/ingest/{instance}"), &json!({"events": events}))
            .await;
        assert_eq!(status, 202, "ingest must answer 202: {v}");
    }

    /// Reads every event from the log (all pages).
    pub async fn all_events(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let (status, v) = self
                .get(&format!("/events?from_sequence={from}&limit=1000{query}"))
                .await;
            assert_eq!(status, 200, "{v}");
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let next = v["next_sequence"].as_u64().expect("next_sequence");
            if events.is_empty() && next == from {
                return out;
            }
            out.extend(events);
            from = next;
        }
    }

    /// The `/metrics` page, authenticated.
    pub async fn metrics_text(&self) -> String {
        self.req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics body")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test virtualenv's python (`SWITCHYARD_TEST_PYTHON`, else `.venv/bin/python`), checked
/// to import `module`: a missing tool fails the test with the command that installs it,
/// never skips it.
pub fn test_python(module: &str) -> String {
    let python = std::env::var("SWITCHYARD_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{python} cannot import {module}: run `bash scripts/services.sh` (it installs the \
         test tools into .venv) or set SWITCHYARD_TEST_PYTHON"
    );
    python
}
pub mod socketio;
pub mod ws;
