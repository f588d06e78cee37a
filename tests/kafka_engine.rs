//! The Kafka log engine (`log.engine = "kafka"`) against the suite's Kafka-protocol broker:
//! the `EventLog` contract of one topic partition seen from two processes' clients, and
//! three Switchyard processes sharing one log and its subscriptions while one of them is
//! SIGKILLed midway.

mod common;
#[path = "support/delivery.rs"]
mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{kafka_brokers, kafka_log_options, unique, TestServer};
use serde_json::json;
use switchyard::log::kafka::KafkaLog;
use switchyard::log::{partition_base, EventLog};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

async fn open(prefix: &str, partitions: i32, cancel: &CancellationToken) -> KafkaLog {
    let tasks = TaskTracker::new();
    let log = KafkaLog::open(
        kafka_log_options(prefix, partitions),
        cancel.clone(),
        &tasks,
    );
    tokio::time::timeout(Duration::from_secs(60), log)
        .await
        .expect("opening the Kafka log timed out: is the broker from scripts/services.sh running?")
        .expect("open the Kafka log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_an_event_log_shared_by_processes() {
    let cancel = CancellationToken::new();
    let prefix = unique("sylog");
    let a = open(&prefix, 3, &cancel).await;
    let b = open(&prefix, 3, &cancel).await;
    let (pa, pb) = (a.events[2].clone(), b.events[2].clone());
    let base = partition_base(2);
    assert_eq!(
        pa.next_sequence(),
        base + 1,
        "an empty partition 2 starts after its base"
    );

    // B follows the end; A appends: B's watch moves without B appending or polling.
    let mut b_end = pb.subscribe();
    let payloads: Vec<Bytes> = (0..50)
        .map(|i| Bytes::from(format!("record-{i}-{}", "x".repeat(i * 20))))
        .collect();
    let receipt = pa.append(payloads.clone()).await.expect("append");
    assert_eq!(receipt.first_sequence, base + 1);
    assert_eq!(receipt.last_sequence, base + 50);
    tokio::time::timeout(
        Duration::from_secs(20),
        b_end.wait_for(|end| *end > base + 50),
    )
    .await
    .expect("B saw A's append")
    .expect("watch open");

    // Reads from any sequence, in bounded pieces, return exactly what was appended.
    let mut read = Vec::new();
    let mut from = 0;
    loop {
        let records = pb.read(from, 7, 1 << 20).await.expect("read");
        let Some(last) = records.last() else { break };
        from = last.sequence + 1;
        read.extend(records);
    }
    assert_eq!(read.len(), 50);
    for (i, record) in read.iter().enumerate() {
        assert_eq!(record.sequence, base + 1 + i as u64);
        assert_eq!(record.payload, payloads[i]);
    }
    let head = pb.read(base + 1, 1, 1 << 20).await.expect("read head");
    assert_eq!(head[0].payload, payloads[0]);
    let middle = pb.read(base + 20, 1, 1 << 20).await.expect("read");
    assert_eq!(middle[0].payload, payloads[19]);
    assert!(pb
        .read(base + 51, 10, 1 << 20)
        .await
        .expect("read")
        .is_empty());

    // By time: everything was appended at or after `receipt.timestamp_ms`.
    assert_eq!(
        pb.sequence_at(receipt.timestamp_ms).await.expect("by time"),
        base + 1
    );
    assert_eq!(
        pb.sequence_at(receipt.timestamp_ms + 60_000)
            .await
            .expect("by time"),
        base + 51
    );

    // Cursors: a commit by A is what B reads next; partitions have separate cursors.
    pa.commit_cursor("sub-1", base + 30).await.expect("commit");
    assert_eq!(pb.cursor("sub-1").await.expect("cursor"), Some(base + 30));
    assert_eq!(b.events[1].cursor("sub-1").await.expect("cursor"), None);
    pb.commit_cursor("sub-1", base + 40).await.expect("commit");
    assert_eq!(pa.cursor("sub-1").await.expect("cursor"), Some(base + 40));
    let listed = pa.cursors().await.expect("cursors");
    assert!(
        listed.contains(&("sub-1".to_string(), base + 40)),
        "{listed:?}"
    );
    pa.delete_cursor("sub-1").await.expect("delete");
    assert_eq!(pb.cursor("sub-1").await.expect("cursor"), None);

    // A record over the limit is refused before it reaches the broker.
    let big = Bytes::from(vec![b'x'; (1 << 20) + 1]);
    assert!(matches!(
        pa.append(vec![big]).await,
        Err(switchyard::log::LogError::TooLarge { .. })
    ));
    cancel.cancel();
}

/// A process that starts after batched appends knows the partition's true end: it serves
/// the last batch's records and follows new appends from there. (Tansu answers the high
/// watermark as the last batch's base offset + 1; a restarted server then did not serve
/// the last ingest request's events, nor deliver them, until something new was appended.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_opened_after_batched_appends_sees_the_true_end() {
    let cancel = CancellationToken::new();
    let prefix = unique("syend");
    let a = open(&prefix, 1, &cancel).await;
    let pa = a.events[0].clone();
    for batch in 0..4 {
        let payloads: Vec<Bytes> = (0..50)
            .map(|i| Bytes::from(format!("b{batch}-r{i}")))
            .collect();
        pa.append(payloads).await.expect("append");
    }
    assert_eq!(pa.next_sequence(), 201, "the appending process's own end");

    let later = CancellationToken::new();
    let b = open(&prefix, 1, &later).await;
    let pb = b.events[0].clone();
    assert_eq!(
        pb.next_sequence(),
        201,
        "a process opened later sees the same end"
    );
    let last = pb
        .read(200, 10, 1 << 20)
        .await
        .expect("read the last record");
    assert_eq!(
        last.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        vec![Bytes::from("b3-r49")],
        "the last batch's last record is served"
    );
    // It follows the next append from the true end.
    let mut b_end = pb.subscribe();
    pa.append(vec![Bytes::from("after")]).await.expect("append");
    tokio::time::timeout(Duration::from_secs(20), b_end.wait_for(|end| *end == 202))
        .await
        .expect("the follower saw the next append")
        .expect("watch open");
    let next = pb
        .read(201, 10, 1 << 20)
        .await
        .expect("read the new record");
    assert_eq!(next[0].payload, Bytes::from("after"));
    later.cancel();
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_another_partition_count_is_refused() {
    let cancel = CancellationToken::new();
    let prefix = unique("sylog");
    let _first = open(&prefix, 2, &cancel).await;
    let again = KafkaLog::open(
        kafka_log_options(&prefix, 3),
        cancel.clone(),
        &TaskTracker::new(),
    )
    .await;
    let message = again.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("partitions"), "{message}");
    cancel.cancel();
}

const PROCESSES: usize = 3;
const INSTANCES: usize = 5;
const PER_INSTANCE: usize = 2_000;
const BATCH: usize = 100;

/// Three processes on one log: the group gives each some partitions, ingest goes through
/// all three, and the webhook receiver gets every event, in order per instance. Against
/// Tansu 0.6 (which answers a fetch from inside a record batch with the next batch) the
/// partition readers step back often, replacing their consumers, so this run also covers
/// that path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_work() {
    three_processes(Kill::None).await;
}

/// The same with the busiest process SIGKILLed midway and not replaced: the group expires
/// it at the session timeout and the two survivors take over its partitions from the
/// committed cursors, while ingest goes on through them. Against the published Tansu 0.6
/// this stalled whenever another group was busy on the broker (its coordinator expired the
/// member without a new generation, so the survivors were not told to rejoin); the suite's
/// broker carries the patch in `scripts/tansu/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_a_sigkill() {
    three_processes(Kill::Midway).await;
}

/// The same with the SIGKILLed process replaced at once, as an orchestrator restarts a
/// replica: the replacement joins while the dead member still holds its partitions, and
/// the group must still take them from it at the session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_a_sigkill_and_a_replacement() {
    three_processes(Kill::MidwayAndReplace).await;
}

/// What happens to one of the processes halfway through the ingest.
#[derive(PartialEq)]
enum Kill {
    None,
    /// SIGKILL, nothing replaces it.
    Midway,
    /// SIGKILL, then a new process on the same data dir.
    MidwayAndReplace,
}

async fn three_processes(kill: Kill) {
    let cancel = CancellationToken::new();
    let receiver = support::Receiver::start(cancel.clone()).await;
    receiver.behaviour.fail_percent.store(10, Ordering::SeqCst);
    let prefix = unique("sy3");
    let brokers = kafka_brokers();
    let env = [
        ("SWITCHYARD_LOG__ENGINE", "kafka"),
        ("SWITCHYARD_KAFKA__BROKERS", brokers.as_str()),
        ("SWITCHYARD_LOG__KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SWITCHYARD_LOG__KAFKA_PARTITIONS", "6"),
        ("SWITCHYARD_LOG__KAFKA_SESSION_TIMEOUT_SECONDS", "6"),
        ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
        ("WEBHOOK_REQUEST_TIMEOUT_MS", "2000"),
        ("WEBHOOK_RETRY_MAX_ATTEMPTS", "1000"),
        ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "0.01"),
        ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "0.05"),
    ];
    let mut servers: Vec<TestServer> = (0..PROCESSES).map(|_| TestServer::start(&env)).collect();
    let instances: Vec<String> = (0..INSTANCES).map(|i| unique(&format!("k{i}"))).collect();
    for i in &instances {
        servers[0].create_instance(i, json!({})).await;
        let (status, v) = servers[0]
            .post(
                &format!("/webhook/set/{i}"),
                &json!({"webhook": {"enabled": true, "url": receiver.url, "events": []}}),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    // Every process rebuilds the registry from the control topic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for s in &servers {
        for i in &instances {
            let path = format!("/webhook/find/{i}");
            while s.get(&path).await.1["url"] != json!(receiver.url) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{path} did not reach {} within 30 s",
                    s.base
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let batches = PER_INSTANCE / BATCH;
    let mut request = 0usize;
    let mut alive: Vec<usize> = (0..PROCESSES).collect();
    for b in 0..batches {
        if kill != Kill::None && b == batches / 2 {
            support::wait_for(
                "deliveries flowing before the kill",
                Duration::from_secs(120),
                || receiver.delivered().len() >= 1_000,
            )
            .await;
            // SIGKILL the busiest process (so its partitions hold instances whose events
            // must move): no LeaveGroup, no final cursor commit. Its partitions move when
            // the group expires it, whether or not a replacement has joined meanwhile.
            let mut busiest = (0, 0);
            for (p, server) in servers.iter().enumerate() {
                let delivered = delivered_here(server).await;
                if delivered > busiest.1 {
                    busiest = (p, delivered);
                }
            }
            assert!(busiest.1 > 0, "no process reports deliveries");
            servers[busiest.0].kill();
            if kill == Kill::MidwayAndReplace {
                servers[busiest.0].restart();
            } else {
                alive.retain(|&p| p != busiest.0);
            }
        }
        for i in &instances {
            // Round-robin over the processes: ingest works on every one.
            servers[alive[request % alive.len()]]
                .ingest_numbered(i, b * BATCH, BATCH)
                .await;
            request += 1;
        }
    }

    let total = INSTANCES * PER_INSTANCE;
    support::wait_for("every event delivered", Duration::from_secs(300), || {
        let seen: HashSet<(String, u64)> = receiver
            .delivered()
            .iter()
            .map(|r| {
                (
                    r.instance(),
                    r.json()["data"]["n"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect();
        seen.len() >= total
    })
    .await;
    cancel.cancel();

    let (first_success, _) = support::first_successes(&receiver.delivered());
    assert_eq!(first_success.len(), INSTANCES);
    support::assert_first_successes_in_order(&first_success, PER_INSTANCE);
    let partitions: HashSet<usize> = first_success
        .values()
        .map(|seqs| switchyard::log::partition_of(seqs[0]))
        .collect();
    assert!(
        partitions.len() > 1,
        "the instances should spread over partitions: {partitions:?}"
    );
}

/// Events this process has delivered (`switchyard_delivery_delivered_total`, summed).
async fn delivered_here(server: &TestServer) -> u64 {
    server
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("switchyard_delivery_delivered_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
