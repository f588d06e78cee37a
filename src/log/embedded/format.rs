//! Byte layout of segment headers, records and file names: encoding, decoding and CRC.
//!
//! Everything here is pure (no I/O) so that the layout is tested in one place and the
//! other modules never compute offsets by hand.

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SWYDLOG\0";
/// Version of the segment and index layout; bumped on any incompatible change.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes before the first record of a segment: magic, version, reserved, base sequence.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 24;
/// Bytes before a record's payload: length, CRC, sequence, timestamp.
pub(crate) const RECORD_HEADER_LEN: usize = 24;
/// Largest payload length the format accepts, whatever the configured limit. Recovery uses
/// it instead of `max_record_bytes` so that lowering the option never makes old records
/// look corrupt, while a garbage length still cannot make us allocate gigabytes.
pub(crate) const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// The decoded fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// CRC32C over sequence, timestamp and payload.
    pub crc: u32,
    /// The record's sequence.
    pub sequence: u64,
    /// The record's timestamp, UTC milliseconds.
    pub timestamp_ms: i64,
}

impl RecordHeader {
    /// Bytes the whole record occupies on disk.
    pub fn total_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Whether `payload` matches the stored checksum.
    pub fn verify(&self, payload: &[u8]) -> bool {
        record_crc(self.sequence, self.timestamp_ms, payload) == self.crc
    }
}

/// CRC32C over the fields a record's checksum covers.
pub(crate) fn record_crc(sequence: u64, timestamp_ms: i64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&sequence.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &timestamp_ms.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Appends one encoded record to `buf`. The caller guarantees `payload.len() <= MAX_PAYLOAD_LEN`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, sequence: u64, timestamp_ms: i64, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(sequence, timestamp_ms, payload).to_le_bytes());
    buf.extend_from_slice(&sequence.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Decodes a record header; `None` if `bytes` is too short or the length is impossible.
pub(crate) fn decode_record_header(bytes: &[u8]) -> Option<RecordHeader> {
    let b = bytes.get(..RECORD_HEADER_LEN)?;
    let header = RecordHeader {
        len: u32::from_le_bytes(b[0..4].try_into().ok()?),
        crc: u32::from_le_bytes(b[4..8].try_into().ok()?),
        sequence: u64::from_le_bytes(b[8..16].try_into().ok()?),
        timestamp_ms: i64::from_le_bytes(b[16..24].try_into().ok()?),
    };
    (header.len as usize <= MAX_PAYLOAD_LEN).then_some(header)
}

/// The header written at the start of a segment whose first record is `base`.
pub(crate) fn encode_segment_header(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&base.to_le_bytes());
    out
}

/// The base sequence stored in a segment header, or `None` if the header is not ours.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Option<u64> {
    let b = bytes.get(..SEGMENT_HEADER_LEN as usize)?;
    if b[0..8] != SEGMENT_MAGIC || u32::from_le_bytes(b[8..12].try_into().ok()?) != FORMAT_VERSION {
        return None;
    }
    Some(u64::from_le_bytes(b[16..24].try_into().ok()?))
}

/// Name of the segment file whose first sequence is `base`; zero-padded so that name order
/// is sequence order.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// Name of the persisted sparse index of the segment starting at `base`.
pub(crate) fn index_file_name(base: u64) -> String {
    format!("{base:020}.index")
}

/// What a directory entry is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A segment file.
    Segment(u64),
    /// A persisted sparse index.
    Index(u64),
}

/// Classifies a file name of the log directory; `None` for anything that is not ours.
pub(crate) fn parse_file_name(name: &str) -> Option<FileKind> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse().ok()?;
    match ext {
        "log" => Some(FileKind::Segment(base)),
        "index" => Some(FileKind::Index(base)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_crc() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, -3, b"hello");
        assert_eq!(buf.len(), RECORD_HEADER_LEN + 5);
        let h = decode_record_header(&buf).unwrap();
        assert_eq!((h.len, h.sequence, h.timestamp_ms), (5, 7, -3));
        assert!(h.verify(&buf[RECORD_HEADER_LEN..]));
        buf[RECORD_HEADER_LEN] ^= 1;
        assert!(!h.verify(&buf[RECORD_HEADER_LEN..]));
        assert!(decode_record_header(&buf[..10]).is_none());
    }

    #[test]
    fn names_sort_by_sequence_and_parse_back() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(
            parse_file_name(&segment_file_name(42)),
            Some(FileKind::Segment(42))
        );
        assert_eq!(
            parse_file_name(&index_file_name(42)),
            Some(FileKind::Index(42))
        );
        assert_eq!(parse_file_name("cursors"), None);
        assert_eq!(parse_file_name("42.log"), None);
    }

    #[test]
    fn segment_header_round_trip() {
        let h = encode_segment_header(99);
        assert_eq!(decode_segment_header(&h), Some(99));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_segment_header(&bad), None);
    }
}
