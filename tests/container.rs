//! The container image, run for real with podman: the image `scripts/image.sh` builds from
//! the unchanged Dockerfile (`SWITCHYARD_TEST_IMAGE`, default `localhost/switchyard:local`),
//! and the `switchyard` service of docker-compose.yml started by podman-compose.
//!
//! podman runs with the project's settings (`scripts/podman/*.conf`: vfs storage, runc, no
//! default rlimits), which this file points podman at itself when the environment does not.
//! Containers use the host's network, so they reach a receiver on the host's loopback; each
//! run gets its own port, container and volume names. A missing podman or image fails with
//! the command that makes it; nothing skips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DEFAULT_IMAGE: &str = "localhost/switchyard:local";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image() -> String {
    std::env::var("SWITCHYARD_TEST_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_string())
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// A command with podman's project settings, unless the caller's environment has its own.
fn with_podman_env(mut cmd: Command) -> Command {
    for (var, file) in [
        ("CONTAINERS_CONF", "scripts/podman/containers.conf"),
        ("CONTAINERS_STORAGE_CONF", "scripts/podman/storage.conf"),
    ] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, root().join(file));
        }
    }
    cmd.current_dir(root());
    cmd
}

fn podman_output(args: &[&str]) -> Output {
    with_podman_env(Command::new("podman"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run podman ({e}): run `bash scripts/image.sh`, which installs it")
        })
}

/// Runs podman, failing with its output unless it succeeds; returns stdout.
fn podman(args: &[&str]) -> String {
    let out = podman_output(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails unless podman runs and the image exists.
fn require_image() -> String {
    let image = image();
    let version = podman(&["--version"]);
    eprintln!("{}", version.trim());
    let exists = podman_output(&["image", "exists", &image]);
    assert!(
        exists.status.success(),
        "image {image} does not exist: `bash scripts/image.sh` builds it from the Dockerfile \
         (scripts/test.sh runs it first; its output says why it failed)"
    );
    image
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Removes the containers and volumes a test made, however it ends.
struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman_output(&["rm", "-f", "-t", "0", c]);
        }
        for v in &self.volumes {
            let _ = podman_output(&["volume", "rm", "-f", v]);
        }
    }
}

/// A webhook receiver on the host's loopback: answers 200 and keeps every request body.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { port, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("lock").clone()
    }
}

/// One HTTP/1.1 connection: each request's body is kept, each answer is 200.
fn serve(mut stream: TcpStream, kept: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
        kept.lock().expect("lock").push(body);
        buf.drain(..end + 4 + length);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

async fn wait_until_ok(
    http: &reqwest::Client,
    url: &str,
    within: Duration,
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{url} did not answer 2xx within {within:?}; container logs:\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).header("apikey", key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `podman run -d` of the image on the host network, its data in `volume`.
fn run_container(image: &str, name: &str, volume: &str, port: u16) {
    podman(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-v",
        &format!("{volume}:/data"),
        "-e",
        &format!("SWITCHYARD_SERVER__LISTEN=127.0.0.1:{port}"),
        "-e",
        "SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS=true",
        "-e",
        "RUST_LOG=info",
        image,
    ]);
}

/// The uid of the container's main process, from /proc/1/status (the real, effective, ...
/// uids on the `Uid:` line).
fn process_uids(name: &str) -> String {
    podman(&["exec", name, "cat", "/proc/1/status"])
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|uids| uids.split_whitespace().collect::<Vec<_>>().join(" "))
        .expect("a Uid: line in /proc/1/status")
}

/// `podman stop` (SIGTERM) and the exit code; fails when the stop takes the whole `grace`
/// (podman would have SIGKILLed it).
fn stop(name: &str, grace: Duration) -> (i64, Duration) {
    let started = Instant::now();
    podman(&["stop", "-t", &grace.as_secs().to_string(), name]);
    let took = started.elapsed();
    let code: i64 = podman(&["inspect", "--format", "{{.State.ExitCode}}", name])
        .trim()
        .parse()
        .expect("exit code");
    (code, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_serves_delivers_keeps_its_volume_and_stops_on_sigterm() {
    let image = require_image();
    let name = unique("sy-test");
    let volume = unique("sy-test-data");
    let mut cleanup = Cleanup {
        containers: vec![name.clone()],
        volumes: vec![volume.clone()],
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let receiver = Receiver::start();

    // What the image declares: the user, the probe, the stop signal, the volume.
    let inspect: Value =
        serde_json::from_str(&podman(&["image", "inspect", &image])).expect("image inspect JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(
        config["User"],
        json!("10001:10001"),
        "image config: {config}"
    );
    assert_eq!(
        config["StopSignal"],
        json!("SIGTERM"),
        "image config: {config}"
    );
    assert_eq!(
        inspect[0]["Healthcheck"]["Test"],
        json!(["CMD", "switchyard", "health"]),
        "the image keeps the Dockerfile's HEALTHCHECK (podman build --format docker): {inspect}"
    );
    assert!(
        config["Volumes"].get("/data").is_some(),
        "no /data volume: {config}"
    );

    run_container(&image, &name, &volume, port);
    let logs = || podman(&["logs", &name]);
    wait_until_ok(
        &http,
        &format!("{base}/health"),
        Duration::from_secs(60),
        &logs,
    )
    .await;
    wait_until_ok(
        &http,
        &format!("{base}/ready"),
        Duration::from_secs(30),
        &logs,
    )
    .await;

    // Not root: the server process runs as 10001.
    let uids = process_uids(&name);
    assert_eq!(
        uids, "10001 10001 10001 10001",
        "the server's uids (real, effective, saved, fs)"
    );

    // The generated key: stored in the volume, printed once in the log.
    let key = podman(&["exec", &name, "cat", "/data/api-key"])
        .trim()
        .to_string();
    assert!(key.len() >= 16, "generated key too short: {key:?}");
    assert!(
        logs().contains(&key),
        "the first start prints the generated key"
    );
    let (status, _) = send(
        &http,
        reqwest::Method::GET,
        &format!("{base}/instance/fetchInstances"),
        "wrong-key",
        None,
    )
    .await;
    assert_eq!(status, 401, "a wrong key is refused");

    // An instance with a webhook to the host, then one event in.
    let instance = unique("shop");
    let hook = format!("http://127.0.0.1:{}/hook", receiver.port);
    let (status, created) = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/instance/create"),
        &key,
        Some(json!({"instanceName": instance, "number": "5511999990000",
                    "webhook": {"enabled": true, "url": hook, "events": ["MESSAGES_UPSERT"]}})),
    )
    .await;
    assert_eq!(status, 201, "create: {created}");
    let message_id = unique("MSG");
    let event = json!({"event": "messages.upsert",
        "data": {"key": {"remoteJid": "5511888888888@s.whatsapp.net", "id": message_id}}});
    let (status, accepted) = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/ingest/{instance}"),
        &key,
        Some(event),
    )
    .await;
    assert_eq!(status, 202, "ingest: {accepted}");
    let first_sequence = accepted["last_sequence"].as_u64().expect("last_sequence");

    // The webhook reaches the receiver on the host.
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let found = receiver
            .bodies()
            .into_iter()
            .find(|b| b.contains(&message_id));
        if let Some(body) = found {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook within 30 s; logs:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivered: Value = serde_json::from_str(&delivered).expect("webhook body is JSON");
    assert_eq!(delivered["event"], json!("messages.upsert"), "{delivered}");
    assert_eq!(delivered["instance"], json!(instance), "{delivered}");
    assert_eq!(
        delivered["sequence"], accepted["last_sequence"],
        "{delivered}"
    );

    // The image's HEALTHCHECK command, as the engine runs it, and the command itself.
    podman(&["healthcheck", "run", &name]);
    podman(&["exec", &name, "switchyard", "health"]);

    // SIGTERM: exit 0 well inside the grace period (server.shutdown_grace_seconds is 10).
    let (code, took) = stop(&name, Duration::from_secs(30));
    assert_eq!(code, 0, "exit code after SIGTERM; logs:\n{}", logs());
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    eprintln!("container stopped on SIGTERM in {took:?}, exit 0");

    // A new container on the same volume: same key, the event still in the log, ingest goes
    // on after it.
    podman(&["rm", &name]);
    let second = unique("sy-test");
    cleanup.containers.push(second.clone());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    run_container(&image, &second, &volume, port);
    let logs = || podman(&["logs", &second]);
    wait_until_ok(
        &http,
        &format!("{base}/ready"),
        Duration::from_secs(60),
        &logs,
    )
    .await;
    let kept = podman(&["exec", &second, "cat", "/data/api-key"])
        .trim()
        .to_string();
    assert_eq!(kept, key, "the generated key survives in the volume");
    assert!(
        !logs().contains(&key),
        "a restart does not print the key again"
    );
    let (status, page) = send(
        &http,
        reqwest::Method::GET,
        &format!("{base}/events?instance={instance}&from_sequence=0&limit=10"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["data"]["key"]["id"], json!(message_id), "{page}");
    let (status, accepted) = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/ingest/{instance}"),
        &key,
        Some(json!({"event": "messages.upsert", "data": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 202, "ingest after the restart: {accepted}");
    assert_eq!(
        accepted["first_sequence"].as_u64(),
        Some(first_sequence + 1),
        "{accepted}"
    );
    let (code, took) = stop(&second, Duration::from_secs(30));
    assert_eq!(code, 0, "exit code after SIGTERM; logs:\n{}", logs());
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    drop(cleanup);
}

/// The images docker-compose.yml names besides Switchyard's, none of which can be pulled or
/// is made here.
const NOT_MADE_HERE: &str = "rabbitmq (rabbitmq:4.1-management), elasticmq \
    (softwaremill/elasticmq-native:1.6.11), kafka (confluentinc/cp-kafka:7.7.1) and consumer \
    (built FROM python:3.12-slim)";

fn podman_compose() -> String {
    std::env::var("SWITCHYARD_TEST_PODMAN_COMPOSE").unwrap_or_else(|_| {
        root()
            .join(".venv/bin/podman-compose")
            .display()
            .to_string()
    })
}

fn compose(args: &[&str]) -> String {
    let program = podman_compose();
    let out = with_podman_env(Command::new(&program))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): `bash scripts/image.sh` installs podman-compose into .venv")
        });
    assert!(
        out.status.success(),
        "podman-compose {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tears the compose project down, however the test ends.
struct ComposeDown {
    args: Vec<String>,
}

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["down", "-v", "-t", "5"]);
        let _ = with_podman_env(Command::new(podman_compose()))
            .args(&args)
            .output();
    }
}

#[test]
fn compose_file_passes_podman_compose_config() {
    let config = compose(&["-f", "docker-compose.yml", "config"]);
    for service in [
        "switchyard:",
        "rabbitmq:",
        "elasticmq:",
        "kafka:",
        "consumer:",
    ] {
        assert!(
            config.lines().any(|l| l.trim_start() == service),
            "podman-compose config lacks {service}:\n{config}"
        );
    }
    assert!(config.contains("image: switchyard:local"), "{config}");
}

/// The `switchyard` service as docker-compose.yml defines it (image, environment, volume,
/// health check), started by podman-compose without its dependencies, whose images cannot
/// be made here. An override file puts it on the host's network and points its brokers at
/// the suite's own RabbitMQ, SQS (moto) and Kafka-protocol broker (Tansu).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_switchyard_service_starts_with_podman_compose() {
    require_image();
    let _ = writeln!(
        std::io::stderr(),
        "compose: {NOT_MADE_HERE} are not started: their images cannot be pulled here and \
         are not made locally; the switchyard service runs with --no-deps against the suite's \
         RabbitMQ, moto (SQS) and Tansu (Kafka) on the host's loopback"
    );
    let port = free_port();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let dir = tempfile::tempdir().expect("tempdir");
    let override_file = dir.path().join("compose.override.yml");
    let key = unique("compose-key-0123456789");
    std::fs::write(
        &override_file,
        format!(
            "services:\n  switchyard:\n    network_mode: host\n    environment:\n      \
             AUTHENTICATION_API_KEY: \"{key}\"\n      \
             SWITCHYARD_SERVER__LISTEN: \"127.0.0.1:{port}\"\n      \
             RABBITMQ_URI: \"{}\"\n      SWITCHYARD_SQS__ENDPOINT_URL: \"{}\"\n      \
             KAFKA_BROKERS: \"{}\"\n",
            env(
                "SWITCHYARD_TEST_AMQP_URI",
                "amqp://guest:guest@127.0.0.1:5672/%2f"
            ),
            env("SWITCHYARD_TEST_SQS_ENDPOINT", "http://127.0.0.1:4576"),
            env("SWITCHYARD_TEST_KAFKA_BROKERS", "127.0.0.1:19092"),
        ),
    )
    .expect("write the override file");
    let project = unique("sycompose");
    let base_args = vec![
        "-p".to_string(),
        project.clone(),
        "-f".to_string(),
        "docker-compose.yml".to_string(),
        "-f".to_string(),
        override_file.display().to_string(),
    ];
    let _down = ComposeDown {
        args: base_args.clone(),
    };
    let mut args: Vec<&str> = base_args.iter().map(String::as_str).collect();
    args.extend(["up", "-d", "--no-deps", "--no-build", "switchyard"]);
    compose(&args);

    let container = podman(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.podman.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    let container = container
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no container for {project}"))
        .to_string();
    let logs = || podman(&["logs", &container]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    wait_until_ok(
        &http,
        &format!("{base}/ready"),
        Duration::from_secs(60),
        &logs,
    )
    .await;
    podman(&["healthcheck", "run", &container]);
    assert_eq!(process_uids(&container), "10001 10001 10001 10001");

    // An event in; the compose file's global RabbitMQ, SQS and Kafka sinks deliver it.
    let instance = unique("shop");
    let (status, created) = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/instance/create"),
        &key,
        Some(json!({"instanceName": instance, "number": "5511999990000"})),
    )
    .await;
    assert_eq!(status, 201, "create: {created}");
    let (status, accepted) = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/ingest/{instance}"),
        &key,
        Some(json!({"event": "messages.upsert", "data": {"key": {"id": "C1"}}})),
    )
    .await;
    assert_eq!(status, 202, "ingest: {accepted}");
    let sequence = accepted["last_sequence"].as_u64().expect("last_sequence");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, page) = send(
            &http,
            reqwest::Method::GET,
            &format!("{base}/subscriptions"),
            &key,
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let subscriptions = page["subscriptions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let delivered = |sink: &str| {
            subscriptions.iter().any(|s| {
                s["sink"] == json!(sink)
                    && s["status"]["cursor"].as_u64().is_some_and(|c| c > sequence)
                    && s["status"]["dead_letters"] == json!(0)
            })
        };
        if ["rabbitmq", "sqs", "kafka"]
            .iter()
            .all(|sink| delivered(sink))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the compose service's sinks did not deliver sequence {sequence} within 60 s \
             (expected rabbitmq, sqs and kafka global subscriptions): {page}\nlogs:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
