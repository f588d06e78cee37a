//! The per-segment sparse index (sequence, file position, timestamp every few KiB) and its
//! persisted `.index` file for sealed segments.

use std::fs;
use std::io;
use std::path::Path;

/// One sampled record: where it starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Sequence of the sampled record.
    pub sequence: u64,
    /// Byte offset of the record in its segment file.
    pub position: u64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
}

/// Sampled records of one segment, in sequence (hence position and timestamp) order.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
    interval: u64,
}

impl SparseIndex {
    /// An empty index that samples a record whenever `interval` bytes passed since the last
    /// sample.
    pub fn new(interval: u64) -> Self {
        Self {
            entries: Vec::new(),
            interval: interval.max(1),
        }
    }

    /// Offers a record; it is kept if it is the segment's first or far enough from the
    /// previous sample.
    pub fn observe(&mut self, entry: IndexEntry) {
        let keep = match self.entries.last() {
            None => true,
            Some(last) => entry.position >= last.position + self.interval,
        };
        if keep {
            self.entries.push(entry);
        }
    }

    /// Appends the samples of `other`, which covers records after ours.
    pub fn extend(&mut self, other: &[IndexEntry]) {
        self.entries.extend_from_slice(other);
    }

    /// The samples.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The last sample at or before `sequence`: a safe place to start scanning for it.
    pub fn floor_by_sequence(&self, sequence: u64) -> Option<IndexEntry> {
        let n = self.entries.partition_point(|e| e.sequence <= sequence);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last sample strictly older than `timestamp_ms`. Records with an equal timestamp
    /// may precede a sample with that timestamp, so only a strictly older one is a safe
    /// start for finding the first record at or after the time.
    pub fn last_before_timestamp(&self, timestamp_ms: i64) -> Option<IndexEntry> {
        let n = self
            .entries
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        n.checked_sub(1).map(|i| self.entries[i])
    }
}

/// What a persisted index file holds besides the samples: enough to use a sealed segment
/// without scanning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedSummary {
    /// Length of the segment file the index describes; a mismatch invalidates the index.
    pub segment_len: u64,
    /// Sequence of the segment's last record (base - 1 if it has none).
    pub last_sequence: u64,
    /// Timestamp of the segment's last record.
    pub last_timestamp_ms: i64,
}

const INDEX_MAGIC: [u8; 8] = *b"SWYDIDX\0";
const INDEX_HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;

/// Encodes an index file: header, entries, then a CRC32C over all of it.
pub(crate) fn encode_index_file(summary: &SealedSummary, index: &SparseIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + index.entries.len() * ENTRY_LEN + 4);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&super::format::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&summary.segment_len.to_le_bytes());
    out.extend_from_slice(&summary.last_sequence.to_le_bytes());
    out.extend_from_slice(&summary.last_timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(index.entries.len() as u64).to_le_bytes());
    for e in &index.entries {
        out.extend_from_slice(&e.sequence.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes an index file; `None` if it is truncated, corrupt or of another version.
pub(crate) fn decode_index_file(
    bytes: &[u8],
    interval: u64,
) -> Option<(SealedSummary, SparseIndex)> {
    let body_len = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?)
        || body.get(0..8)? != INDEX_MAGIC
        || u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) != super::format::FORMAT_VERSION
    {
        return None;
    }
    let summary = SealedSummary {
        segment_len: u64_at(body, 16)?,
        last_sequence: u64_at(body, 24)?,
        last_timestamp_ms: u64_at(body, 32)? as i64,
    };
    let count = usize::try_from(u64_at(body, 40)?).ok()?;
    if body.len() != INDEX_HEADER_LEN.checked_add(count.checked_mul(ENTRY_LEN)?)? {
        return None;
    }
    let mut index = SparseIndex::new(interval);
    for chunk in body[INDEX_HEADER_LEN..].chunks_exact(ENTRY_LEN) {
        index.entries.push(IndexEntry {
            sequence: u64_at(chunk, 0)?,
            position: u64_at(chunk, 8)?,
            timestamp_ms: u64_at(chunk, 16)? as i64,
        });
    }
    Some((summary, index))
}

/// Writes an index file. Not fsynced: it is checksummed and rebuilt from the segment when
/// missing or bad, so losing it costs a scan, never data.
pub(crate) fn write_index_file(
    path: &Path,
    summary: &SealedSummary,
    index: &SparseIndex,
) -> io::Result<()> {
    let tmp = path.with_extension("index.tmp");
    fs::write(&tmp, encode_index_file(summary, index))?;
    fs::rename(&tmp, path)
}

/// Loads an index file if it exists and is valid.
pub(crate) fn read_index_file(
    path: &Path,
    interval: u64,
) -> io::Result<Option<(SealedSummary, SparseIndex)>> {
    match fs::read(path) {
        Ok(bytes) => Ok(decode_index_file(&bytes, interval)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64, position: u64, timestamp_ms: i64) -> IndexEntry {
        IndexEntry {
            sequence,
            position,
            timestamp_ms,
        }
    }

    #[test]
    fn samples_every_interval_and_looks_up() {
        let mut idx = SparseIndex::new(100);
        for i in 0..10u64 {
            idx.observe(entry(i + 1, 24 + i * 40, (i / 3) as i64));
        }
        let seqs: Vec<u64> = idx.entries().iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![1, 4, 7, 10]);
        assert_eq!(idx.floor_by_sequence(6).map(|e| e.sequence), Some(4));
        assert_eq!(idx.floor_by_sequence(0), None);
        assert_eq!(idx.last_before_timestamp(2).map(|e| e.sequence), Some(4));
        assert_eq!(idx.last_before_timestamp(0), None);
    }

    #[test]
    fn file_round_trip_and_rejects_damage() {
        let mut idx = SparseIndex::new(1);
        idx.observe(entry(5, 24, 10));
        idx.observe(entry(6, 64, 11));
        let summary = SealedSummary {
            segment_len: 100,
            last_sequence: 6,
            last_timestamp_ms: 11,
        };
        let bytes = encode_index_file(&summary, &idx);
        let (s, i) = decode_index_file(&bytes, 1).unwrap();
        assert_eq!(s, summary);
        assert_eq!(i.entries(), idx.entries());
        let mut bad = bytes.clone();
        bad[50] ^= 0x10;
        assert!(decode_index_file(&bad, 1).is_none());
        assert!(decode_index_file(&bytes[..bytes.len() - 1], 1).is_none());
    }
}
