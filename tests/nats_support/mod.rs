//! Helpers for the NATS sink's tests: the suite's NATS server, and nats-py (a third-party
//! client, `tests/nats/client.py`) as the consumer: core subscriptions and JetStream
//! streams. Test files include it with `#[path = "nats_support/mod.rs"]` next to `common`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The NATS server from `SWITCHYARD_TEST_NATS_URL`; fails the test when unset or
/// unreachable.
pub async fn nats_url() -> String {
    let url = std::env::var("SWITCHYARD_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_NATS_URL is not set: run `eval \"$(bash scripts/services.sh)\"` first"
        )
    });
    let addr = url.trim_start_matches("nats://").trim_end_matches('/');
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => url,
        _ => panic!("the NATS server at {url} is unreachable (run scripts/services.sh)"),
    }
}

/// `tests/nats/client.py` run by the test virtualenv's python (which must have nats-py).
fn client(args: &[&str]) -> Command {
    let python = crate::common::test_python("nats");
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats/client.py"))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// Runs a client command to its end (within 60 s) and returns its JSON lines.
async fn run(args: &[&str]) -> Vec<Value> {
    let out = tokio::time::timeout(Duration::from_secs(60), client(args).output())
        .await
        .unwrap_or_else(|_| panic!("nats-py {args:?} did not finish within 60 s"))
        .expect("run nats-py");
    assert!(out.status.success(), "nats-py {args:?} failed: {out:?}");
    parse_lines(&out.stdout)
}

fn parse_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("nats-py wrote `{l}`: {e}")))
        .collect()
}

/// One message as nats-py saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id` header.
    pub msg_id: String,
    /// Its `event_id` header.
    pub event_id: String,
    /// The envelope.
    pub body: Value,
}

impl Received {
    fn from_json(v: &Value) -> Received {
        Received {
            subject: v["subject"].as_str().unwrap_or_default().to_string(),
            msg_id: v["msg_id"].as_str().unwrap_or_default().to_string(),
            event_id: v["event_id"].as_str().unwrap_or_default().to_string(),
            body: v["body"].clone(),
        }
    }

    /// The envelope's `data.n`.
    pub fn n(&self) -> u64 {
        self.body["data"]["n"].as_u64().expect("data.n")
    }

    /// The lane the engine keeps in order: the instance and the chat of the envelope's
    /// data (`data.key.remoteJid`, none for events about no chat).
    pub fn chat(&self) -> String {
        format!(
            "{}/{}",
            self.body["instance"].as_str().unwrap_or_default(),
            self.body["data"]["key"]["remoteJid"]
                .as_str()
                .unwrap_or_default()
        )
    }
}

/// A nats-py process holding core subscriptions.
pub struct Subscriber {
    child: Child,
}

impl Subscriber {
    /// Subscribes to `subjects`; returns once nats-py is subscribed. It stops after `count`
    /// distinct messages (or `within`), plus `linger` for late copies.
    pub async fn start(
        url: &str,
        count: usize,
        within: Duration,
        linger: Duration,
        subjects: &[String],
    ) -> Subscriber {
        let count = count.to_string();
        let within = within.as_secs_f64().to_string();
        let linger = linger.as_secs_f64().to_string();
        let mut args = vec!["subscribe", url, &count, &within, &linger];
        args.extend(subjects.iter().map(String::as_str));
        let mut child = client(&args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nats-py");
        let stdout = child.stdout.as_mut().expect("stdout");
        let mut first = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("nats-py did not subscribe within 30 s")
        .expect("read nats-py");
        assert!(first.contains("ready"), "nats-py: {first}");
        Subscriber { child }
    }

    /// Waits for nats-py to finish and returns what it received, in arrival order.
    pub async fn finish(self) -> Vec<Received> {
        let out = self.child.wait_with_output().await.expect("nats-py");
        assert!(out.status.success(), "nats-py subscribe failed: {out:?}");
        parse_lines(&out.stdout)
            .iter()
            .map(Received::from_json)
            .collect()
    }
}

/// A JetStream stream on the suite's server, deleted when dropped.
pub struct Stream {
    url: String,
    /// Its name.
    pub name: String,
}

impl Stream {
    /// Creates stream `name` capturing `subjects`.
    pub async fn create(url: &str, name: &str, subjects: &[String]) -> Stream {
        let mut args = vec!["stream-create", url, name];
        args.extend(subjects.iter().map(String::as_str));
        run(&args).await;
        Stream {
            url: url.to_string(),
            name: name.to_string(),
        }
    }

    /// How many messages it holds.
    pub async fn count(&self) -> u64 {
        let lines = run(&["stream-count", &self.url, &self.name]).await;
        lines[0]["messages"].as_u64().expect("messages")
    }

    /// Waits until it holds `n` messages (panics after `within`), then a second more, and
    /// returns the count then (more than `n` would be duplicates stored).
    pub async fn wait_for(&self, n: u64, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let count = self.count().await;
            if count >= n {
                tokio::time::sleep(Duration::from_secs(1)).await;
                return self.count().await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream {} holds {count} of {n} messages after {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every message on `filter`, in stream order.
    pub async fn read(&self, filter: &str) -> Vec<Received> {
        run(&["stream-read", &self.url, &self.name, filter, "10"])
            .await
            .iter()
            .map(Received::from_json)
            .collect()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let python = crate::common::test_python("nats");
        let _ = std::process::Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats/client.py"))
            .args(["stream-delete", &self.url, &self.name])
            .output();
    }
}

/// Checks `got` (one subject's messages, in arrival or stream order): every id once unless
/// `duplicates_allowed`, each body's `id` is its `event_id` header and its `Nats-Msg-Id`
/// (`{id}:global` on a `global` subject), and within each chat the `data.n` rise. Returns
/// (distinct ids, duplicates).
pub fn check_order_per_chat(
    subject: &str,
    global: bool,
    got: &[Received],
    duplicates_allowed: bool,
) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut duplicates = 0;
    for m in got {
        assert_eq!(m.subject, subject, "a message of another subject");
        let id = m.body["id"].as_str().unwrap_or_default();
        assert_eq!(
            m.event_id, id,
            "{subject}: the event_id header is the event id"
        );
        let msg_id = if global {
            format!("{id}:global")
        } else {
            id.to_string()
        };
        assert_eq!(m.msg_id, msg_id, "{subject}: Nats-Msg-Id");
        if !seen.insert(m.msg_id.clone()) {
            duplicates += 1;
            continue;
        }
        let n = m.n();
        if let Some(prev) = last.insert(m.chat(), n) {
            assert!(
                prev < n,
                "{subject}: chat {} out of order ({prev} then {n})",
                m.chat()
            );
        }
    }
    assert!(
        duplicates_allowed || duplicates == 0,
        "{subject}: {duplicates} duplicate(s)"
    );
    (seen.len(), duplicates)
}

/// Starts the suite's nats-server again when dropped, so a failing outage test never
/// leaves it stopped.
pub struct StartNatsGuard;

impl Drop for StartNatsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/nats-server.sh"
            ))
            .arg("start")
            .status();
    }
}

/// Runs `scripts/nats-server.sh start|stop`, asserting it succeeded.
pub fn nats_server(action: &str) {
    let status = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/nats-server.sh"
        ))
        .arg(action)
        .status()
        .expect("run scripts/nats-server.sh");
    assert!(
        status.success(),
        "scripts/nats-server.sh {action}: {status}"
    );
}

/// `count` `messages.upsert` events for `chats` chats: `data.n` from `from` on, chat
/// `n % chats`, each with its own message id, as a WhatsApp gateway sends them.
pub fn chat_events(from: usize, count: usize, chats: usize) -> Vec<Value> {
    (from..from + count)
        .map(|n| {
            serde_json::json!({
                "event": "messages.upsert",
                "data": {
                    "key": {
                        "remoteJid": format!("55119{:08}@s.whatsapp.net", n % chats),
                        "fromMe": false,
                        "id": format!("M{n}"),
                    },
                    "message": {"conversation": format!("message {n}")},
                    "n": n,
                },
            })
        })
        .collect()
}
