//! Appends, reads, limits, rolls, indexes, group commit and tail following.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::log::LogError;

#[tokio::test]
async fn append_read_round_trip_and_empty_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(opts(dir.path())).unwrap();
    assert_eq!((log.first_sequence(), log.next_sequence()), (1, 1));
    let empty = log.append(vec![]).await.unwrap();
    assert_eq!((empty.first_sequence, empty.last_sequence), (1, 0));
    let r = log
        .append(vec![Bytes::from_static(b"a"), Bytes::from_static(b"")])
        .await
        .unwrap();
    assert_eq!((r.first_sequence, r.last_sequence), (1, 2));
    let r2 = log.append(vec![Bytes::from_static(b"c")]).await.unwrap();
    assert_eq!(r2.first_sequence, 3);
    assert!(r2.timestamp_ms >= r.timestamp_ms);
    let all = read_all(&log).await;
    let payloads: Vec<&[u8]> = all.iter().map(|r| r.payload.as_ref()).collect();
    assert_eq!(payloads, vec![&b"a"[..], b"", b"c"]);
    assert_eq!(all[0].timestamp_ms, r.timestamp_ms);
    assert!(log.read(4, 10, 100).await.unwrap().is_empty());
    assert_eq!(log.read(2, 10, 100).await.unwrap()[0].sequence, 2);
    assert!(log.read(1, 0, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn too_large_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_record_bytes = 100;
    let log = EmbeddedLog::open(o).unwrap();
    let err = log
        .append(vec![payload(1, 10), payload(2, 101)])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LogError::TooLarge {
            size: 101,
            limit: 100
        }
    ));
    assert_eq!(log.next_sequence(), 1);
    assert!(read_all(&log).await.is_empty());
    assert_eq!(
        log.append(vec![payload(1, 100)])
            .await
            .unwrap()
            .first_sequence,
        1
    );
}

#[tokio::test]
async fn read_honours_max_records_and_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(opts(dir.path())).unwrap();
    log.append((0..10).map(|i| payload(i, 100)).collect())
        .await
        .unwrap();
    assert_eq!(log.read(1, 3, usize::MAX).await.unwrap().len(), 3);
    assert_eq!(log.read(1, 100, 250).await.unwrap().len(), 2);
    // One record is always returned, even when it alone exceeds max_bytes.
    assert_eq!(log.read(5, 100, 1).await.unwrap().len(), 1);
    // A payload bigger than the read chunk.
    let big = payload(99, 200_000);
    let r = log.append(vec![big.clone()]).await.unwrap();
    assert_eq!(
        log.read(r.first_sequence, 1, usize::MAX).await.unwrap()[0].payload,
        big
    );
}

#[tokio::test]
async fn rolls_segments_by_size_and_persists_sealed_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.segment_bytes = 1000;
    o.index_interval_bytes = 200;
    let log = EmbeddedLog::open(o.clone()).unwrap();
    for i in 0..50 {
        log.append(vec![payload(i, 100)]).await.unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 5, "{files:?}");
    for f in &files[..files.len() - 1] {
        assert!(std::fs::metadata(f).unwrap().len() < 1000 + 124);
        assert!(f.with_extension("index").exists(), "{f:?} has no index");
    }
    assert_eq!(log.stats().segments as usize, files.len());
    drop(log);
    // Missing and damaged indexes are rebuilt by scanning.
    std::fs::remove_file(files[0].with_extension("index")).unwrap();
    std::fs::write(files[1].with_extension("index"), b"garbage").unwrap();
    let log = EmbeddedLog::open(o).unwrap();
    assert!(files[0].with_extension("index").exists());
    let all = read_all(&log).await;
    assert_eq!(all.len(), 50);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(
            (r.sequence, r.payload.clone()),
            (i as u64 + 1, payload(i as u64, 100))
        );
    }
    let ts = all[20].timestamp_ms;
    let expected = all.iter().find(|r| r.timestamp_ms >= ts).unwrap().sequence;
    assert_eq!(log.sequence_at(ts).await.unwrap(), expected);
}

#[test]
fn concurrent_appenders_get_contiguous_unique_sequences() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut o = EmbeddedOptions::new(dir.path());
        o.fsync = FsyncPolicy::Always;
        o.segment_bytes = 16 * 1024;
        let log = EmbeddedLog::open(o).unwrap();
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut receipts = Vec::new();
                for i in 0..8u64 {
                    let n = 1 + (t + i) % 3;
                    let batch = (0..n)
                        .map(|k| payload(t * 1000 + i * 10 + k, 40))
                        .collect::<Vec<_>>();
                    receipts.push((log.append(batch.clone()).await.unwrap(), batch));
                }
                receipts
            }));
        }
        let mut seen = HashSet::new();
        let mut total = 0u64;
        for task in tasks {
            for (receipt, batch) in task.await.unwrap() {
                assert_eq!(
                    receipt.last_sequence - receipt.first_sequence + 1,
                    batch.len() as u64
                );
                let got = log
                    .read(receipt.first_sequence, batch.len(), usize::MAX)
                    .await
                    .unwrap();
                let got: Vec<Bytes> = got.into_iter().map(|r| r.payload).collect();
                assert_eq!(got, batch, "receipt {receipt:?} reads back its own records");
                for s in receipt.first_sequence..=receipt.last_sequence {
                    assert!(seen.insert(s), "sequence {s} given twice");
                }
                total += batch.len() as u64;
            }
        }
        assert_eq!(seen, (1..=total).collect::<HashSet<_>>());
        assert_eq!(log.next_sequence(), total + 1);
        let stats = log.writer_stats();
        assert_eq!(stats.records, total);
        assert!(stats.fsyncs < 64 * 8, "no group commit happened: {stats:?}");
    });
}

#[tokio::test]
async fn tail_follower_wakes_when_an_append_lands() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(opts(dir.path())).unwrap();
    let mut rx = log.subscribe();
    assert_eq!(*rx.borrow_and_update(), 1);
    let follower = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .expect("woken")
                .unwrap();
            let end = *rx.borrow_and_update();
            (end, log.read(1, 10, usize::MAX).await.unwrap())
        })
    };
    tokio::task::yield_now().await;
    log.append(vec![payload(1, 10)]).await.unwrap();
    let (end, records) = follower.await.unwrap();
    assert_eq!(end, 2);
    assert_eq!(records.len(), 1);
}

#[tokio::test]
async fn interval_policy_appends_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.fsync = FsyncPolicy::Interval(Duration::from_millis(5));
    let log = EmbeddedLog::open(o.clone()).unwrap();
    for i in 0..20 {
        log.append(vec![payload(i, 30)]).await.unwrap();
    }
    drop(log);
    let log = EmbeddedLog::open(o).unwrap();
    assert_eq!(read_all(&log).await.len(), 20);
}
