//! The operator CLI (`switchyard instances`, `subscriptions`, `replay`, `redrive`) run as a
//! separate process against a real server and a real webhook receiver: the lag of a failing
//! endpoint, dead letters redriven, history replayed from a sequence and from a time,
//! `--wait` returning only once the backlog is delivered, an instance token's view, and the
//! errors a wrong key or a wrong option gives.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{unique, TestServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Fast retries, loopback targets allowed; the tests add their `WEBHOOK_RETRY_MAX_ATTEMPTS`.
const FAST_RETRIES: &[(&str, &str)] = &[
    ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOK_REQUEST_TIMEOUT_MS", "300"),
    ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.05"),
    ("WEBHOOK_RETRY_JITTER_FACTOR", "0.2"),
];

fn server(max_attempts: &str) -> TestServer {
    let mut env = FAST_RETRIES.to_vec();
    env.push(("WEBHOOK_RETRY_MAX_ATTEMPTS", max_attempts));
    TestServer::start(&env)
}

/// One finished CLI run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "the command failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn failed(self) -> Run {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "the command should fail (exit {:?}):\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs the binary with `args`, only `env` set (besides PATH), in `dir`.
async fn run_in(args: &[&str], env: &[(&str, &str)], dir: Option<&Path>) -> Run {
    let binary = std::env::var("SWITCHYARD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("switchyard {args:?} did not finish within 120 s"))
        .expect("run the switchyard binary");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a command against `s` with `key`.
async fn cli(s: &TestServer, key: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--url", &s.base, "--apikey", key]);
    run_in(&all, &[], None).await
}

async fn set_webhook(s: &TestServer, instance: &str, url: &str) {
    let (status, v) = s
        .post(
            &format!("/webhook/set/{instance}"),
            &json!({"webhook": {"enabled": true, "url": url, "events": []}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

/// Ingests `count` events numbered from `from`; returns their first and last sequence.
async fn ingest(s: &TestServer, instance: &str, from: usize, count: usize) -> (u64, u64) {
    let events: Vec<Value> = (from..from + count)
        .map(|n| json!({"event": "messages.upsert", "data": {"n": n}}))
        .collect();
    let (status, v) = s
        .post(&format!("/ingest/{instance}"), &json!({"events": events}))
        .await;
    assert_eq!(status, 202, "{v}");
    let first = v["first_sequence"].as_u64().expect("first_sequence");
    let last = v["last_sequence"].as_u64().expect("last_sequence");
    (first, last)
}

/// The instance's subscription as `switchyard subscriptions --json` shows it.
async fn subscription_of(s: &TestServer, instance: &str) -> Value {
    let run = cli(s, &s.key, &["subscriptions", "--json"]).await.ok();
    run.json()["subscriptions"]
        .as_array()
        .and_then(|subs| subs.iter().find(|x| x["instance"] == json!(instance)))
        .cloned()
        .unwrap_or_else(|| panic!("no subscription of {instance} in {}", run.stdout))
}

/// Polls `switchyard subscriptions --json` until the instance's subscription satisfies
/// `cond`; returns it.
async fn wait_for_subscription(
    s: &TestServer,
    instance: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sub = subscription_of(s, instance).await;
        if cond(&sub) {
            return sub;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {sub}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many 2xx deliveries the receiver answered per sequence.
fn deliveries(receiver: &support::Receiver) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for r in receiver.delivered() {
        *counts.entry(r.sequence()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_show_the_lag_and_replay_wait_returns_once_caught_up() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    receiver.set_status(503);
    // Retries go on (parked) while the endpoint is down: the lag stays up.
    let s = server("1000");
    let inst = unique("lag");
    s.create_instance(&inst, json!({})).await;
    set_webhook(&s, &inst, &receiver.url).await;
    let (first, last) = ingest(&s, &inst, 0, 5).await;

    let sub = wait_for_subscription(&s, &inst, "a lag of 5 with a 503", |sub| {
        sub["status"]["lag"].as_u64().is_some_and(|lag| lag >= 5)
            && sub["status"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("503"))
    })
    .await;
    let id = sub["id"].as_str().expect("id").to_string();
    assert_eq!(sub["sink"], json!("webhook"), "{sub}");
    assert!(
        ["parked", "lagging"].contains(&sub["state"].as_str().unwrap_or_default()),
        "{sub}"
    );
    assert!(receiver.delivered().is_empty());

    // The table a person reads: a header, then the subscription's row with its state and lag.
    let table = cli(&s, &s.key, &["subscriptions", "--instance", &inst])
        .await
        .ok()
        .stdout;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["ID", "INSTANCE", "STATE", "LAG", "DEAD", "LAST ERROR"] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with(&id), "{table}");
    assert!(row.contains(&inst) && row.contains("webhook"), "{table}");
    assert!(row.contains("parked") || row.contains("lagging"), "{table}");
    assert!(row.contains("503"), "the last error: {table}");
    assert_eq!(lines.next(), None, "only this instance's row: {table}");

    // The endpoint recovers; replay from the first event and wait: when the command
    // returns, every event has been delivered and the lag is 0.
    receiver.set_status(0);
    let run = cli(
        &s,
        &s.key,
        &[
            "replay",
            &id,
            "--from-sequence",
            &first.to_string(),
            "--wait",
            "--timeout",
            "60",
            "--json",
        ],
    )
    .await
    .ok();
    let result = run.json();
    assert_eq!(result["subscription"], json!(id), "{result}");
    assert_eq!(result["cursor"], json!(first), "{result}");
    assert_eq!(result["status"]["lag"], json!(0), "{result}");
    assert_eq!(result["status"]["in_flight"], json!(0), "{result}");
    let delivered = deliveries(&receiver);
    for sequence in first..=last {
        assert!(
            delivered.contains_key(&sequence),
            "sequence {sequence} not delivered when replay --wait returned: {delivered:?}"
        );
    }
    let sub = subscription_of(&s, &inst).await;
    assert_eq!(sub["state"], json!("ok"), "{sub}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_and_replay_from_a_sequence_and_a_time() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    receiver.set_status(503);
    // Three attempts, then a dead letter.
    let s = server("3");
    let inst = unique("dead");
    s.create_instance(&inst, json!({})).await;
    set_webhook(&s, &inst, &receiver.url).await;
    let (first, last) = ingest(&s, &inst, 0, 5).await;

    let sub = wait_for_subscription(&s, &inst, "5 dead letters", |sub| {
        sub["status"]["dead_letters"] == json!(5)
    })
    .await;
    let id = sub["id"].as_str().expect("id").to_string();
    assert!(
        sub["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{sub}"
    );

    // Redriven while the endpoint is still down: each fails again, and the command says so.
    let run = cli(
        &s,
        &s.key,
        &["redrive", &id, "--wait", "--timeout", "60", "--json"],
    )
    .await
    .failed();
    let result = run.json();
    assert_eq!(result["redriven"], json!(5), "{result}");
    assert_eq!(result["failed_again"], json!(5), "{result}");
    assert_eq!(result["delivered"], json!(0), "{result}");
    assert!(run.stderr.contains("failed again"), "{}", run.stderr);

    // The endpoint recovers: one dead letter by its sequence, then the rest.
    receiver.set_status(0);
    let result = cli(
        &s,
        &s.key,
        &[
            "redrive",
            &id,
            "--sequence",
            &first.to_string(),
            "--wait",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(result["redriven"], json!(1), "{result}");
    assert_eq!(result["delivered"], json!(1), "{result}");
    assert_eq!(
        deliveries(&receiver),
        HashMap::from([(first, 1)]),
        "only the chosen dead letter"
    );
    let human = cli(&s, &s.key, &["redrive", &id, "--wait"])
        .await
        .ok()
        .stdout;
    assert!(human.contains("4 dead letters redriven"), "{human}");
    assert!(human.contains("4 delivered, 0 failed again"), "{human}");
    let expected: HashMap<u64, usize> = (first..=last).map(|s| (s, 1)).collect();
    assert_eq!(deliveries(&receiver), expected);
    let sub = subscription_of(&s, &inst).await;
    assert_eq!(sub["status"]["dead_letters"], json!(0), "{sub}");

    // Replay from the third event: the last three are delivered again, the first two not.
    let from = first + 2;
    let result = cli(
        &s,
        &s.key,
        &[
            "replay",
            &id,
            "--from-sequence",
            &from.to_string(),
            "--wait",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(result["cursor"], json!(from), "{result}");
    let expected: HashMap<u64, usize> = (first..=last)
        .map(|s| (s, if s >= from { 2 } else { 1 }))
        .collect();
    assert_eq!(deliveries(&receiver), expected);

    // Replay since a time between two batches: only the second batch is delivered again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (first2, last2) = ingest(&s, &inst, 5, 3).await;
    support::wait_for("the second batch", Duration::from_secs(30), || {
        let d = deliveries(&receiver);
        (first2..=last2).all(|s| d.contains_key(&s))
    })
    .await;
    let human = cli(&s, &s.key, &["replay", &id, "--since", &since, "--wait"])
        .await
        .ok()
        .stdout;
    assert!(
        human.contains(&format!("delivering again from sequence {first2}")),
        "{human}"
    );
    assert!(human.contains("caught up"), "{human}");
    let mut expected = expected;
    expected.extend((first2..=last2).map(|s| (s, 2)));
    assert_eq!(deliveries(&receiver), expected);

    // A time the server cannot read: its validation error, spelled out, exit non-zero.
    let run = cli(&s, &s.key, &["replay", &id, "--since", "yesterday"])
        .await
        .failed();
    assert!(
        run.stderr.contains("400") && run.stderr.contains("2001") && run.stderr.contains("since"),
        "{}",
        run.stderr
    );
    // Neither --since nor --from-sequence: clap refuses before any request.
    let run = cli(&s, &s.key, &["replay", &id]).await.failed();
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
    // No such subscription.
    let run = cli(&s, &s.key, &["redrive", "nope", "--json"])
        .await
        .failed();
    assert_eq!(run.json()["error"]["code"], json!(2006), "{}", run.stdout);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_resolve_like_tail_and_an_instance_token_sees_its_own() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = server("3");
    let (a, b) = (unique("own"), unique("other"));
    let token_a = s.create_instance(&a, json!({})).await;
    s.create_instance(&b, json!({})).await;
    set_webhook(&s, &a, &receiver.url).await;
    set_webhook(&s, &b, &receiver.url).await;

    // The global key sees both instances, in the table too (without tokens).
    let all = cli(&s, &s.key, &["instances", "--json"]).await.ok().json();
    let names: Vec<&str> = all["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&a.as_str()) && names.contains(&b.as_str()),
        "{all}"
    );
    let table = cli(&s, &s.key, &["instances"]).await.ok().stdout;
    assert!(table.starts_with("NAME"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&a))
        .unwrap_or_else(|| panic!("no row for {a}: {table}"));
    assert!(
        row.contains("webhook") && row.contains("5511999990000"),
        "{row}"
    );
    assert!(
        !table.contains(&token_a),
        "a table never shows tokens: {table}"
    );

    // An instance token: its own instance and subscription only.
    let own = cli(&s, &token_a, &["instances", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(own["instances"].as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(own["instances"][0]["name"], json!(a), "{own}");
    let subs = cli(&s, &token_a, &["subscriptions", "--json"])
        .await
        .ok()
        .json();
    let subs = subs["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["instance"], json!(a));
    let other = subscription_of(&s, &b).await;
    let other_id = other["id"].as_str().expect("id");
    let run = cli(&s, &token_a, &["redrive", other_id]).await.failed();
    assert!(
        run.stderr.contains("403") && run.stderr.contains("2005"),
        "{}",
        run.stderr
    );
    let run = cli(
        &s,
        &token_a,
        &["replay", other_id, "--from-sequence", "0", "--json"],
    )
    .await
    .failed();
    assert_eq!(run.json()["error"]["code"], json!(2005), "{}", run.stdout);

    // A wrong key: the server's envelope, spelled out, and a non-zero exit.
    let run = cli(&s, "wrong-key-0123456789", &["subscriptions"])
        .await
        .failed();
    assert!(
        run.stderr.contains("401")
            && run.stderr.contains("2004")
            && run.stderr.contains("invalid API key"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);

    // The key from AUTHENTICATION_API_KEY, then from ./data/api-key, as `tail` finds it.
    let url = s.base.clone();
    let run = run_in(
        &["instances", "--json", "--url", &url],
        &[("AUTHENTICATION_API_KEY", &s.key)],
        None,
    )
    .await
    .ok();
    assert_eq!(run.json()["instances"].as_array().map(Vec::len), Some(2));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("data")).expect("data dir");
    std::fs::write(dir.path().join("data/api-key"), format!("{}\n", s.key)).expect("key file");
    let run = run_in(
        &["subscriptions", "--json", "--url", &url],
        &[],
        Some(dir.path()),
    )
    .await
    .ok();
    assert_eq!(
        run.json()["subscriptions"].as_array().map(Vec::len),
        Some(2)
    );
    // No key anywhere.
    let empty = tempfile::tempdir().expect("tempdir");
    let run = run_in(&["instances", "--url", &url], &[], Some(empty.path()))
        .await
        .failed();
    assert!(run.stderr.contains("no API key"), "{}", run.stderr);
    // No server there.
    let run = run_in(
        &[
            "instances",
            "--url",
            "http://127.0.0.1:9",
            "--apikey",
            &s.key,
        ],
        &[],
        None,
    )
    .await
    .failed();
    assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);
    cancel.cancel();
}

/// `switchyard deliveries --message-id`: every attempt of the message's event with the
/// receiver's statuses (a 503, then a 200), as a table and as JSON; `--event-id` finds the
/// same; an instance token sees its own instance's deliveries; an unknown id finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_by_message_id_show_every_attempt() {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    let s = server("10");
    let inst = unique("lookup");
    let token = s.create_instance(&inst, json!({})).await;
    set_webhook(&s, &inst, &receiver.url).await;
    let chat = format!("{}@s.whatsapp.net", unique("5511"));
    *receiver.behaviour.failing_chat.lock().unwrap() = Some(chat.clone());
    let message = unique("3EB0");
    let event = json!({"event": "messages.upsert",
        "data": {"key": {"remoteJid": chat, "fromMe": false, "id": message}}});
    let (status, v) = s
        .post(&format!("/ingest/{inst}"), &json!({"events": [event]}))
        .await;
    assert_eq!(status, 202, "{v}");
    support::wait_for("a 503", Duration::from_secs(30), || {
        receiver.received().iter().any(|r| r.status == 503)
    })
    .await;
    *receiver.behaviour.failing_chat.lock().unwrap() = None;
    support::wait_for("the delivery", Duration::from_secs(30), || {
        !receiver.delivered().is_empty()
    })
    .await;
    let statuses: Vec<u64> = receiver
        .received()
        .iter()
        .map(|r| u64::from(r.status))
        .collect();

    let run = cli(
        &s,
        &s.key,
        &["deliveries", "--message-id", &message, "--json"],
    )
    .await
    .ok();
    let found = run.json();
    let list = found["deliveries"].as_array().expect("deliveries");
    assert_eq!(list.len(), 1, "{found}");
    let d = &list[0];
    assert_eq!(d["message_id"], json!(message), "{d}");
    assert_eq!(d["status"], json!("delivered"), "{d}");
    let attempts = d["attempts"].as_array().expect("attempts");
    let seen: Vec<u64> = attempts
        .iter()
        .map(|a| a["http_status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        seen, statuses,
        "every attempt with the receiver's status: {d}"
    );
    assert_eq!(attempts[0]["outcome"], json!("retry"), "{d}");
    assert_eq!(attempts[0]["error"], json!("HTTP 503"), "{d}");
    assert_eq!(
        attempts.last().unwrap()["outcome"],
        json!("delivered"),
        "{d}"
    );
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], json!(n + 1), "{d}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap_or("")).is_ok(),
            "{a}"
        );
    }

    let event_id = d["event_id"].as_str().expect("event_id").to_string();
    let by_id = cli(
        &s,
        &token,
        &["deliveries", "--event-id", &event_id, "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(by_id["deliveries"], found["deliveries"], "{by_id}");

    let table = cli(&s, &s.key, &["deliveries", "--message-id", &message])
        .await
        .ok()
        .stdout;
    assert!(table.starts_with("EVENT"), "{table}");
    assert!(
        table.contains(&event_id) && table.contains("delivered"),
        "{table}"
    );
    assert!(table.contains("HTTP 503"), "{table}");

    let none = cli(
        &s,
        &s.key,
        &["deliveries", "--message-id", "NO-SUCH-ID", "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(none["deliveries"], json!([]), "{none}");
    let usage = cli(&s, &s.key, &["deliveries"]).await.failed();
    assert!(usage.stderr.contains("--message-id"), "{}", usage.stderr);
    cancel.cancel();
}
