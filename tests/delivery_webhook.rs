//! The delivery engine with the webhook sink against a real local HTTP receiver: chaos
//! acceptance (ordering, completeness, signatures), dead letters and redrive, replay,
//! 410 disable and resume, SSRF refusal, durable retry state across a restart.

#[path = "support/delivery.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use switchyard::delivery::{AttemptOutcome, Redrive, ReplayFrom, SinkTarget, WebhookTarget};
use switchyard::sinks::webhook::SigningKey;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_event_arrives_in_order_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    receiver.behaviour.fail_percent.store(50, Ordering::SeqCst);
    receiver.behaviour.stall_percent.store(1, Ordering::SeqCst);
    receiver.behaviour.stall_ms.store(200, Ordering::SeqCst);
    let secret = SigningKey::generate_secret();
    let sub = webhook("hook:chaos", &receiver.url, Some(&secret), 0);
    let h = Harness::start(dir.path(), fast_policy(60), webhook_options(100), vec![sub]).await;
    let names = instances(5);
    append(&h.log, &names, "messages.upsert", 5_000).await;

    wait_for("5,000 deliveries", Duration::from_secs(90), || {
        let delivered: HashSet<u64> = receiver.delivered().iter().map(|r| r.sequence()).collect();
        delivered.len() == 5_000
    })
    .await;

    let all = receiver.received();
    // Per instance, the first successful delivery of each event follows sequence order.
    let mut seen = HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in all.iter().filter(|r| r.status == 200) {
        let seq = r.sequence();
        if !seen.insert(seq) {
            continue;
        }
        let prev = last.insert(r.instance(), seq).unwrap_or(0);
        assert!(
            prev < seq,
            "instance {} got {seq} after {prev}",
            r.instance()
        );
    }
    assert_eq!(seen.len(), 5_000);
    assert!(
        all.iter().any(|r| r.status == 500),
        "the chaos answered 500s"
    );
    assert!(
        all.iter().any(|r| r.status == 0),
        "the chaos stalled some requests"
    );
    let verified = verify_with_standardwebhooks(&secret, &all);
    assert_eq!(verified, all.len());
    let ids: HashSet<&String> = all
        .iter()
        .filter_map(|r| r.headers.get("webhook-id"))
        .collect();
    assert_eq!(
        ids.len(),
        5_000,
        "webhook-id is the event id, stable across retries"
    );

    let end = h.log.next_sequence();
    wait_for(
        "the cursor to reach the end",
        Duration::from_secs(5),
        || h.status("hook:chaos").cursor == end,
    )
    .await;
    let status = h.status("hook:chaos");
    assert_eq!(
        (status.lag, status.in_flight, status.dead_letters),
        (0, 0, 0)
    );
    assert!(status.failures > 0 && status.attempts > 5_000);
    assert!(status.last_error.is_some());
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_dead_letters_then_redrive_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    receiver.set_status(503);
    let sub = webhook("hook:dead", &receiver.url, None, 0);
    let h = Harness::start(dir.path(), fast_policy(3), webhook_options(500), vec![sub]).await;
    append(&h.log, &instances(2), "messages.upsert", 10).await;

    wait_for("10 dead letters", Duration::from_secs(10), || {
        h.engine.dead_letters("hook:dead").len() == 10
    })
    .await;
    for dl in h.engine.dead_letters("hook:dead") {
        assert_eq!(dl.attempts.len(), 3, "max_attempts includes the first try");
        assert!(dl
            .attempts
            .iter()
            .all(|a| a.outcome == AttemptOutcome::Retry));
        assert_eq!(dl.attempts[0].reason, "HTTP 503");
        assert_eq!(dl.event, "messages.upsert");
    }
    assert_eq!(receiver.received().len(), 30);
    let end = h.log.next_sequence();
    wait_for(
        "the cursor to pass dead letters",
        Duration::from_secs(5),
        || h.status("hook:dead").cursor == end,
    )
    .await;
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&h.metrics.gather())
        .unwrap();
    assert!(text.contains("switchyard_delivery_dead_letters{subscription=\"hook:dead\"} 10"));

    receiver.set_status(0);
    let first = h.engine.dead_letters("hook:dead")[0].sequence;
    let queued = h
        .engine
        .redrive("hook:dead", Redrive::Sequences(vec![first]))
        .await
        .unwrap();
    assert_eq!(queued, 1);
    wait_for("one redriven", Duration::from_secs(5), || {
        h.engine.dead_letters("hook:dead").len() == 9
    })
    .await;
    assert_eq!(
        h.engine.redrive("hook:dead", Redrive::All).await.unwrap(),
        9
    );
    wait_for("all redriven", Duration::from_secs(5), || {
        h.engine.dead_letters("hook:dead").is_empty()
    })
    .await;
    let delivered: HashSet<u64> = receiver.delivered().iter().map(|r| r.sequence()).collect();
    assert_eq!(delivered.len(), 10);
    h.stop().await;

    // Dead letters are durable: gone after redrive, also after a restart.
    let h = Harness::start(dir.path(), fast_policy(3), webhook_options(500), vec![]).await;
    assert!(h.engine.dead_letters("hook:dead").is_empty());
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_zero_delivers_the_whole_history_to_a_new_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    let h = Harness::start(dir.path(), fast_policy(3), webhook_options(500), vec![]).await;
    append(&h.log, &instances(3), "call", 300).await;

    // A new subscription starts at the log's end: it gets nothing old.
    let end = h.log.next_sequence();
    h.publish(vec![webhook("hook:new", &receiver.url, None, end)]);
    append(&h.log, &instances(1), "call", 1).await;
    wait_for("the new event", Duration::from_secs(5), || {
        receiver.delivered().len() == 1
    })
    .await;
    assert_eq!(receiver.delivered()[0].sequence(), end);

    let from = h
        .engine
        .replay("hook:new", ReplayFrom::Sequence(0))
        .await
        .unwrap();
    assert_eq!(from, 1);
    wait_for("the whole history", Duration::from_secs(10), || {
        receiver.delivered().len() == 302
    })
    .await;
    let replayed: HashSet<u64> = receiver.delivered()[1..]
        .iter()
        .map(|r| r.sequence())
        .collect();
    assert_eq!(replayed, (1..=301).collect());

    // Replay by time: everything received at or after the first event's time.
    let again = h
        .engine
        .replay("hook:new", ReplayFrom::Time(0))
        .await
        .unwrap();
    assert_eq!(again, 1);
    wait_for("the history again", Duration::from_secs(10), || {
        receiver.delivered().len() == 603
    })
    .await;
    assert!(h
        .engine
        .replay("nope", ReplayFrom::Sequence(0))
        .await
        .is_err());
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_and_reenabling_resumes_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    receiver.set_status(410);
    let sub = webhook("hook:gone", &receiver.url, None, 0);
    let mut h = Harness::start(
        dir.path(),
        fast_policy(5),
        webhook_options(500),
        vec![sub.clone()],
    )
    .await;
    append(&h.log, &instances(1), "messages.update", 3).await;

    let request = tokio::time::timeout(Duration::from_secs(5), h.disables.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.subscription, "hook:gone");
    assert!(request.reason.contains("410"));
    wait_for("stopped", Duration::from_secs(5), || {
        !h.status("hook:gone").running
    })
    .await;
    assert!(h
        .status("hook:gone")
        .stopped_reason
        .unwrap()
        .contains("410"));
    assert_eq!(receiver.received().len(), 1, "nothing more after 410");
    assert_eq!(
        h.status("hook:gone").cursor,
        1,
        "the refused event is not skipped"
    );

    // The registry disables, the user fixes the endpoint and re-enables.
    let mut disabled = sub.clone();
    disabled.enabled = false;
    h.publish(vec![disabled]);
    receiver.set_status(0);
    h.publish(vec![sub]);
    wait_for("resumed delivery", Duration::from_secs(5), || {
        receiver.delivered().len() == 3
    })
    .await;
    let seqs: Vec<u64> = receiver.delivered().iter().map(|r| r.sequence()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_failure_run_disables_the_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    receiver.set_status(500);
    let mut policy = fast_policy(100);
    policy.disable_after_failures = 4;
    let sub = webhook("hook:flaky", &receiver.url, None, 0);
    let mut h = Harness::start(dir.path(), policy, webhook_options(500), vec![sub]).await;
    append(&h.log, &instances(1), "call", 1).await;
    let request = tokio::time::timeout(Duration::from_secs(5), h.disables.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        request.reason.contains("4 consecutive failed attempts"),
        "{}",
        request.reason
    );
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let subs = vec![
        webhook("hook:ip", &receiver.url, None, 0),
        webhook("hook:name", &by_name, None, 0),
    ];
    let mut options = webhook_options(500);
    options.allow_private_targets = false;
    let h = Harness::start(dir.path(), fast_policy(3), options, subs).await;
    append(&h.log, &instances(1), "call", 1).await;
    wait_for("both refused", Duration::from_secs(5), || {
        h.engine.dead_letters("hook:ip").len() == 1 && h.engine.dead_letters("hook:name").len() == 1
    })
    .await;
    for id in ["hook:ip", "hook:name"] {
        let dl = &h.engine.dead_letters(id)[0];
        assert_eq!(dl.attempts.len(), 1, "a refused target is permanent");
        assert_eq!(dl.attempts[0].outcome, AttemptOutcome::Permanent);
        assert!(
            dl.attempts[0].reason.contains("allow_private_targets"),
            "{}",
            dl.attempts[0].reason
        );
    }
    assert!(receiver.received().is_empty());
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    receiver.set_status(500);
    let mut policy = fast_policy(3);
    policy.initial_delay = Duration::from_millis(300);
    policy.max_delay = Duration::from_millis(300);
    let sub = webhook("hook:durable", &receiver.url, None, 0);
    let h = Harness::start(
        dir.path(),
        policy.clone(),
        webhook_options(500),
        vec![sub.clone()],
    )
    .await;
    append(&h.log, &instances(1), "call", 1).await;
    wait_for("a first failure", Duration::from_secs(5), || {
        receiver.received().len() == 1
    })
    .await;
    h.stop().await;

    let h = Harness::start(dir.path(), policy, webhook_options(500), vec![sub]).await;
    wait_for("a dead letter", Duration::from_secs(5), || {
        h.engine.dead_letters("hook:durable").len() == 1
    })
    .await;
    assert_eq!(
        receiver.received().len(),
        3,
        "the attempt count continued across the restart"
    );
    assert_eq!(h.engine.dead_letters("hook:durable")[0].attempts.len(), 3);
    h.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_events_headers_destination_and_event_filter() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    let mut sub = webhook("hook:evo", &receiver.url, None, 0);
    sub.events = vec![switchyard::catalog::EventKind::GroupParticipantsUpdate];
    sub.target = SinkTarget::Webhook(WebhookTarget {
        url: receiver.url.clone(),
        by_events: true,
        headers: [("x-tenant".to_owned(), "acme".to_owned())].into(),
        ..WebhookTarget::default()
    });
    let h = Harness::start(dir.path(), fast_policy(3), webhook_options(500), vec![sub]).await;
    let names = instances(1);
    append(&h.log, &names, "messages.upsert", 2).await;
    append(&h.log, &names, "group-participants.update", 1).await;
    wait_for("the wanted event", Duration::from_secs(5), || {
        receiver.delivered().len() == 1
    })
    .await;
    let end = h.log.next_sequence();
    wait_for("the cursor past the rest", Duration::from_secs(5), || {
        h.status("hook:evo").cursor == end
    })
    .await;
    let got = &receiver.delivered()[0];
    assert_eq!(got.path, "/hook/group-participants-update");
    assert_eq!(
        got.headers.get("x-tenant").map(String::as_str),
        Some("acme")
    );
    assert!(
        !got.headers.contains_key("webhook-signature"),
        "unsigned without a secret"
    );
    let body = got.json();
    assert_eq!(body["event"], "group-participants.update");
    assert_eq!(body["instance"], names[0].as_str());
    assert_eq!(
        body["destination"],
        format!("{}/group-participants-update", receiver.url)
    );
    assert_eq!(body["server_url"], "http://localhost:8080");
    assert_eq!(body["sequence"], 3);
    assert!(body["apikey"].is_null());
    assert_eq!(receiver.received().len(), 1);
    h.stop().await;
    stop.cancel();
}
