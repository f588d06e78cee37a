//! Property tests: append/read equivalence across many segment rolls, reopen, and
//! `sequence_at` against a linear scan.

use proptest::prelude::*;

use super::*;

fn small_opts(dir: &Path, segment_bytes: u64, clock: Clock) -> EmbeddedOptions {
    let mut o = opts(dir);
    o.segment_bytes = segment_bytes;
    o.index_interval_bytes = 64;
    o.clock = clock;
    o
}

/// Batches of payloads (sizes 0..300, with the occasional empty batch).
fn batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
        1..25,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn appended_batches_read_back_identically_before_and_after_reopen(
        batches in batches(),
        segment_bytes in 100u64..800,
        read_size in 1usize..20,
        start in 0u64..40,
    ) {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (clock, now) = manual_clock(1_000);
            let o = small_opts(dir.path(), segment_bytes, clock);
            let log = EmbeddedLog::open(o.clone()).unwrap();
            let mut expected: Vec<Bytes> = Vec::new();
            for (i, batch) in batches.iter().enumerate() {
                now.store(1_000 + i as i64, Ordering::SeqCst);
                let payloads: Vec<Bytes> = batch.iter().map(|p| Bytes::from(p.clone())).collect();
                let r = log.append(payloads.clone()).await.unwrap();
                prop_assert_eq!(r.first_sequence, expected.len() as u64 + 1);
                prop_assert_eq!(r.last_sequence, expected.len() as u64 + payloads.len() as u64);
                expected.extend(payloads);
            }
            prop_assert_eq!(log.next_sequence(), expected.len() as u64 + 1);

            let check = |records: Vec<Record>, from: u64| -> Result<(), TestCaseError> {
                let from = from.max(1);
                let want = expected.len().saturating_sub(from as usize - 1);
                prop_assert_eq!(records.len(), want);
                for (k, r) in records.iter().enumerate() {
                    prop_assert_eq!(r.sequence, from + k as u64);
                    prop_assert_eq!(&r.payload, &expected[(r.sequence - 1) as usize]);
                }
                Ok(())
            };
            // Reads of a random size from a random start.
            let mut got = Vec::new();
            let mut next = start;
            loop {
                let batch = log.read(next, read_size, usize::MAX).await.unwrap();
                prop_assert!(batch.len() <= read_size);
                let Some(last) = batch.last() else { break };
                next = last.sequence + 1;
                got.extend(batch);
            }
            check(got, start)?;

            let before = read_all(&log).await;
            drop(log);
            let log = EmbeddedLog::open(o).unwrap();
            prop_assert_eq!(log.next_sequence(), expected.len() as u64 + 1);
            let after = read_all(&log).await;
            prop_assert_eq!(&before, &after);
            check(after, 1)?;
            let r = log.append(vec![Bytes::from_static(b"more")]).await.unwrap();
            prop_assert_eq!(r.first_sequence, expected.len() as u64 + 1);
            Ok(())
        })?;
    }

    #[test]
    fn sequence_at_agrees_with_a_linear_scan(
        steps in prop::collection::vec((-5i64..20, 1usize..5), 1..40),
        queries in prop::collection::vec(-10i64..400, 1..30),
        segment_bytes in 100u64..600,
    ) {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (clock, now) = manual_clock(0);
            let log = EmbeddedLog::open(small_opts(dir.path(), segment_bytes, clock)).unwrap();
            let mut t = 0i64;
            for (i, (dt, n)) in steps.iter().enumerate() {
                // Steps back in time too: the log must keep timestamps non-decreasing.
                t += dt;
                now.store(t, Ordering::SeqCst);
                log.append((0..*n).map(|k| payload(i as u64 * 10 + k as u64, 30)).collect()).await.unwrap();
            }
            let all = read_all(&log).await;
            for w in all.windows(2) {
                prop_assert!(w[0].timestamp_ms <= w[1].timestamp_ms);
            }
            for q in queries {
                let linear = all.iter().find(|r| r.timestamp_ms >= q).map_or(log.next_sequence(), |r| r.sequence);
                prop_assert_eq!(log.sequence_at(q).await.unwrap(), linear, "query {}", q);
            }
            Ok(())
        })?;
    }
}
