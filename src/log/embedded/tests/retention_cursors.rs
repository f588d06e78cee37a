//! Durable cursors and retention by size, age and hard limit.

use std::time::Duration;

use super::*;

/// A log of `n` records of 100 bytes in segments of about 5 records, clock at `now`.
async fn filled(dir: &Path, n: u64, clock: Clock) -> (Arc<EmbeddedLog>, EmbeddedOptions) {
    let mut o = opts(dir);
    o.segment_bytes = 600;
    o.clock = clock;
    let log = EmbeddedLog::open(o.clone()).unwrap();
    for i in 0..n {
        log.append(vec![payload(i, 100)]).await.unwrap();
    }
    (log, o)
}

#[tokio::test]
async fn cursors_survive_reopen_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let log = EmbeddedLog::open(o.clone()).unwrap();
    assert_eq!(log.cursor("a").await.unwrap(), None);
    log.commit_cursor("a", 5).await.unwrap();
    log.commit_cursor("b/ü \"q\"", 7).await.unwrap();
    log.commit_cursor("gone", 1).await.unwrap();
    log.commit_cursor("a", 6).await.unwrap();
    log.commit_cursor("a", 6).await.unwrap();
    log.delete_cursor("gone").await.unwrap();
    log.delete_cursor("never-existed").await.unwrap();
    drop(log);
    let log = EmbeddedLog::open(o).unwrap();
    assert_eq!(log.cursor("a").await.unwrap(), Some(6));
    assert_eq!(
        log.cursors().await.unwrap(),
        vec![("a".to_string(), 6), ("b/ü \"q\"".to_string(), 7)]
    );
    assert_eq!(log.cursor("gone").await.unwrap(), None);
}

#[test]
fn concurrent_cursor_commits_are_all_durable() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    runtime.block_on(async {
        let log = EmbeddedLog::open(o.clone()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 1..=10 {
                    log.commit_cursor(&format!("c{t}"), t * 100 + i)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    runtime.block_on(async {
        let log = EmbeddedLog::open(o).unwrap();
        let all = log.cursors().await.unwrap();
        assert_eq!(all.len(), 32);
        for (name, pos) in all {
            let t: u64 = name[1..].parse().unwrap();
            assert_eq!(pos, t * 100 + 10);
        }
    });
}

#[tokio::test]
async fn size_retention_stops_at_the_slowest_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path(), 40, Clock::system()).await;
    let segments_before = log.stats().segments;
    assert!(segments_before >= 6);
    log.commit_cursor("slow", 12).await.unwrap();
    log.commit_cursor("fast", 40).await.unwrap();
    let mut o = opts(dir.path());
    o.retention_bytes = Some(1);
    drop(log);
    o.segment_bytes = 600;
    let log = EmbeddedLog::open(o).unwrap();
    let report = log.enforce_retention().unwrap();
    assert!(report.deleted_segments >= 1);
    assert!(report.skipped_cursors.is_empty());
    let first = log.first_sequence();
    assert!(first <= 12 && first > 1, "first {first}");
    // The segment holding 12 stays, and reads below `first` start at it.
    assert_eq!(log.read(0, 1, usize::MAX).await.unwrap()[0].sequence, first);
    assert_eq!(log.sequence_at(i64::MIN).await.unwrap(), first);
    // Once the cursor moves on, retention continues (never touching the active segment).
    log.commit_cursor("slow", 41).await.unwrap();
    log.enforce_retention().unwrap();
    assert_eq!(log.stats().segments, 1);
    assert_eq!(
        read_all_from(&log, 0).await.first().map(|r| r.sequence),
        Some(log.first_sequence())
    );
    assert!(log.first_sequence() <= 40);
}

#[tokio::test]
async fn hard_limit_deletes_past_a_cursor_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut o) = filled(dir.path(), 40, Clock::system()).await;
    log.commit_cursor("stuck", 3).await.unwrap();
    log.commit_cursor("current", 41).await.unwrap();
    let bytes = log.stats().bytes;
    drop(log);
    o.retention_bytes = Some(1);
    o.hard_limit_bytes = Some(bytes / 2);
    let log = EmbeddedLog::open(o).unwrap();
    let report = log.enforce_retention().unwrap();
    assert!(report.deleted_segments >= 1);
    assert!(log.stats().bytes <= bytes / 2);
    assert!(report.deleted_bytes >= bytes / 2 - 600);
    assert_eq!(report.skipped_cursors, vec![("stuck".to_string(), 3)]);
    assert!(log.first_sequence() > 3);
    assert_eq!(
        log.read(3, 1, usize::MAX).await.unwrap()[0].sequence,
        log.first_sequence()
    );
    // Nothing more to delete for now: a second pass is empty.
    assert_eq!(log.enforce_retention().unwrap().deleted_segments, 0);
}

#[tokio::test]
async fn age_retention_deletes_old_segments_but_not_past_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = manual_clock(1_000_000);
    let (log, mut o) = filled(dir.path(), 20, clock.clone()).await;
    now.store(2_000_000, Ordering::SeqCst);
    for i in 20..40 {
        log.append(vec![payload(i, 100)]).await.unwrap();
    }
    log.commit_cursor("reader", 30).await.unwrap();
    drop(log);
    o.retention_age = Some(Duration::from_secs(600));
    let log = EmbeddedLog::open(o).unwrap();
    now.store(2_000_000 + 300_000, Ordering::SeqCst);
    let report = log.enforce_retention().unwrap();
    assert!(report.deleted_segments >= 1);
    // Records 1..=20 are old; the segment holding 21 (and newer) is not.
    let first = log.first_sequence();
    assert!((16..=21).contains(&first), "first {first}");
    let first_ts = log.read(first, 1, usize::MAX).await.unwrap()[0].timestamp_ms;
    assert!(first_ts <= 2_000_000);
    // Much later everything sealed is old, but the cursor at 30 keeps its segment.
    now.store(10_000_000, Ordering::SeqCst);
    log.enforce_retention().unwrap();
    assert!(log.first_sequence() <= 30 && log.first_sequence() > 21);
    assert_eq!(log.read(30, 1, usize::MAX).await.unwrap()[0].sequence, 30);
}
