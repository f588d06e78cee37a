//! The delivery engine with the webhook sink against a real local HTTP receiver: chaos
//! acceptance (ordering, completeness, signatures), dead letters and redrive, replay,
//! 410 disable and resume, SSRF refusal, durable retry state across a restart.

#[path = "support/delivery.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use switchyard::delivery::{AttemptOutcome, Redrive, ReplayFrom, SinkTarget};
use switchyard::sinks::webhook::SigningKey;
use switchyard::sinks::webhook::WebhookTarget;
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

/// The `n` of each delivery of `chat`, first deliveries only, in arrival order.
fn first_ns(receiver: &Receiver, chat: &str) -> Vec<u64> {
    let mut seen = HashSet::new();
    receiver
        .delivered()
        .iter()
        .filter(|r| r.chat() == chat)
        .filter_map(|r| r.json()["data"]["n"].as_u64())
        .filter(|n| seen.insert(*n))
        .collect()
}

/// A chat that keeps failing is parked: the cursor moves past its events (the other chats
/// are not held back and a restart does not send them again), the parked events and the
/// retention hold survive a restart, and once the receiver recovers the chat's events
/// arrive complete and in order; then nothing is parked or held any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chat_is_parked_durably_and_drains_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    let (poisoned, a, b) = (
        "5511000000007@s.whatsapp.net",
        "5511000000001@s.whatsapp.net",
        "5511000000002@s.whatsapp.net",
    );
    *receiver.behaviour.failing_chat.lock().unwrap() = Some(poisoned.into());
    let policy = fast_policy(100_000);
    let sub = webhook("hook:park", &receiver.url, None, 0);
    let instance = &instances(1)[0];
    let h = Harness::start(
        dir.path(),
        policy.clone(),
        webhook_options(500),
        vec![sub.clone()],
    )
    .await;
    append_chats(&h.log, instance, &[poisoned, a, b], 0..10).await;
    wait_for(
        "the healthy chats delivered",
        Duration::from_secs(10),
        || first_ns(&receiver, a).len() == 10 && first_ns(&receiver, b).len() == 10,
    )
    .await;
    wait_for("the failing chat parked", Duration::from_secs(10), || {
        let s = h.status("hook:park");
        s.parked == 10 && s.position == h.log.next_sequence()
    })
    .await;
    assert_eq!(
        h.log.cursor("hook:park#parked").await.unwrap(),
        Some(1),
        "retention is held at the parked chat's first event"
    );
    assert!(first_ns(&receiver, poisoned).is_empty());
    let healthy_before = receiver
        .delivered()
        .iter()
        .filter(|r| r.chat() != poisoned)
        .count();
    h.stop().await;

    // Restart: the parked chat is restored from the delivery-state log and the event log.
    let h = Harness::start(dir.path(), policy, webhook_options(500), vec![sub]).await;
    append_chats(&h.log, instance, &[poisoned, a, b], 10..12).await;
    wait_for(
        "the restored chat parked with its new events",
        Duration::from_secs(10),
        || {
            let s = h.status("hook:park");
            s.parked == 12
                && first_ns(&receiver, a).len() == 12
                && first_ns(&receiver, b).len() == 12
        },
    )
    .await;
    let healthy_after = receiver
        .delivered()
        .iter()
        .filter(|r| r.chat() != poisoned)
        .count();
    assert_eq!(
        healthy_after - healthy_before,
        4,
        "the restart sent only the new healthy events (the cursor had moved on)"
    );

    *receiver.behaviour.failing_chat.lock().unwrap() = None;
    wait_for("the parked chat delivered", Duration::from_secs(10), || {
        first_ns(&receiver, poisoned).len() == 12
    })
    .await;
    assert_eq!(
        first_ns(&receiver, poisoned),
        (0..12).collect::<Vec<_>>(),
        "in order"
    );
    wait_for("nothing parked or held", Duration::from_secs(10), || {
        h.status("hook:park").parked == 0
    })
    .await;
    // The hold goes once the lane flows again (its record first).
    let mut held = h.log.cursor("hook:park#parked").await.unwrap();
    for _ in 0..200 {
        if held.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        held = h.log.cursor("hook:park#parked").await.unwrap();
    }
    assert_eq!(held, None, "the retention hold is removed");
    // The chat flows normally again.
    append_chats(&h.log, instance, &[poisoned], 12..13).await;
    wait_for("a new event of the chat", Duration::from_secs(10), || {
        first_ns(&receiver, poisoned).len() == 13
    })
    .await;
    assert_eq!(h.status("hook:park").dead_letters, 0);
    h.stop().await;
    stop.cancel();
}

/// A parked chat whose head runs out of attempts: the head is dead-lettered, the chat's
/// next events follow in order (dead-lettered too while the receiver still fails them),
/// the lane unparks, and the chat's later events are delivered once the receiver accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_head_out_of_attempts_is_dead_lettered_and_the_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let receiver = Receiver::start(stop.clone()).await;
    let poisoned = "5511000000007@s.whatsapp.net";
    *receiver.behaviour.failing_chat.lock().unwrap() = Some(poisoned.into());
    let sub = webhook("hook:park-dead", &receiver.url, None, 0);
    let instance = &instances(1)[0];
    // 3 attempts in memory, 2 more from the parked lane, then dead.
    let h = Harness::start(dir.path(), fast_policy(5), webhook_options(500), vec![sub]).await;
    append_chats(&h.log, instance, &[poisoned], 0..3).await;
    wait_for("three dead letters", Duration::from_secs(10), || {
        h.engine.dead_letters("hook:park-dead").len() == 3
    })
    .await;
    let dead = h.engine.dead_letters("hook:park-dead");
    assert_eq!(
        dead.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "dead-lettered in order"
    );
    assert!(dead.iter().all(|d| d.attempts.len() == 5), "{dead:?}");
    wait_for("the lane unparked", Duration::from_secs(10), || {
        h.status("hook:park-dead").parked == 0
    })
    .await;
    *receiver.behaviour.failing_chat.lock().unwrap() = None;
    append_chats(&h.log, instance, &[poisoned], 3..5).await;
    wait_for("the chat flows again", Duration::from_secs(10), || {
        first_ns(&receiver, poisoned) == vec![3, 4]
    })
    .await;
    h.stop().await;
    stop.cancel();
}
