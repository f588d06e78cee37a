//! Fault tests: torn and corrupt tails are cut at reopen; damage elsewhere is refused.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};

use super::*;
use crate::log::embedded::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::log::LogError;

const PAYLOAD: usize = 50;
const RECORD: u64 = (RECORD_HEADER_LEN + PAYLOAD) as u64;

/// A closed log of `n` records of `PAYLOAD` bytes in one segment, or several if
/// `segment_bytes` is small.
async fn closed_log(dir: &Path, n: u64, segment_bytes: u64) -> EmbeddedOptions {
    let mut o = opts(dir);
    o.segment_bytes = segment_bytes;
    let log = EmbeddedLog::open(o.clone()).unwrap();
    for i in 0..n {
        log.append(vec![payload(i, PAYLOAD)]).await.unwrap();
    }
    o
}

fn flip_bit(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x04]).unwrap();
}

/// Reopens and checks the log holds exactly records 1..=`intact`, then appends one more.
async fn assert_recovered(o: EmbeddedOptions, intact: u64) {
    let log = EmbeddedLog::open(o.clone()).unwrap();
    assert_eq!(log.next_sequence(), intact + 1);
    let all = read_all(&log).await;
    assert_eq!(all.len() as u64, intact);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(
            (r.sequence, &r.payload),
            (i as u64 + 1, &payload(i as u64, PAYLOAD))
        );
    }
    let r = log.append(vec![payload(intact, PAYLOAD)]).await.unwrap();
    assert_eq!(r.first_sequence, intact + 1);
    drop(log);
    // The repair itself is durable and clean: a second open changes nothing.
    let log = EmbeddedLog::open(o).unwrap();
    assert_eq!(log.next_sequence(), intact + 2);
    assert_eq!(read_all(&log).await.len() as u64, intact + 1);
}

#[tokio::test]
async fn truncated_tail_mid_record_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 10, 1 << 20).await;
    let seg = &segment_files(dir.path())[0];
    let len = std::fs::metadata(seg).unwrap().len();
    assert_eq!(len, SEGMENT_HEADER_LEN + 10 * RECORD);
    OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len - RECORD / 2)
        .unwrap();
    assert_recovered(o, 9).await;
}

#[tokio::test]
async fn truncated_tail_inside_a_header_across_segments_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 30, 300).await;
    let files = segment_files(dir.path());
    assert!(files.len() > 3);
    let last = files.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let in_last = (len - SEGMENT_HEADER_LEN) / RECORD;
    assert!(in_last >= 1);
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - RECORD + 5)
        .unwrap();
    assert_recovered(o, 29).await;
}

#[tokio::test]
async fn bit_flip_in_last_payload_cuts_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 10, 1 << 20).await;
    let seg = &segment_files(dir.path())[0];
    flip_bit(
        seg,
        SEGMENT_HEADER_LEN + 9 * RECORD + RECORD_HEADER_LEN as u64 + 7,
    );
    assert_recovered(o, 9).await;
}

#[tokio::test]
async fn bit_flip_in_a_middle_record_of_the_active_segment_cuts_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 10, 1 << 20).await;
    let seg = &segment_files(dir.path())[0];
    // Record 4's sequence field: a CRC failure (the sequence is covered by it).
    flip_bit(seg, SEGMENT_HEADER_LEN + 3 * RECORD + 9);
    assert_recovered(o, 3).await;
}

#[tokio::test]
async fn garbage_length_and_zero_fill_at_the_tail_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 5, 1 << 20).await;
    let seg = &segment_files(dir.path())[0];
    let mut f = OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(&[0xff; 4]).unwrap();
    f.write_all(&[0u8; 100]).unwrap();
    drop(f);
    assert_recovered(o.clone(), 5).await;
    // Zero fill (a preallocated but unwritten tail) fails on the sequence check.
    let seg = &segment_files(dir.path())[0];
    let mut f = OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(&[0u8; 200]).unwrap();
    drop(f);
    assert_recovered(o, 6).await;
}

#[tokio::test]
async fn damaged_sealed_segment_without_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 30, 300).await;
    let files = segment_files(dir.path());
    std::fs::remove_file(files[0].with_extension("index")).unwrap();
    flip_bit(&files[0], SEGMENT_HEADER_LEN + RECORD_HEADER_LEN as u64 + 1);
    match EmbeddedLog::open(o) {
        Err(LogError::Corrupt { file, offset }) => {
            assert!(file.ends_with("00000000000000000001.log"));
            assert_eq!(offset, SEGMENT_HEADER_LEN);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn damaged_published_record_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let o = closed_log(dir.path(), 30, 300).await;
    let log = EmbeddedLog::open(o).unwrap();
    let files = segment_files(dir.path());
    flip_bit(&files[0], SEGMENT_HEADER_LEN + RECORD_HEADER_LEN as u64 + 1);
    assert!(matches!(
        log.read(1, 10, usize::MAX).await,
        Err(LogError::Corrupt { .. })
    ));
}
