//! One segment file: its shared in-memory description, creation, positional reads and the
//! validating scan used by recovery and index rebuilds.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, RecordHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::index::{IndexEntry, SparseIndex};

/// What readers and retention know about a segment. Owned by the shared state; the writer
/// updates the active one when it publishes.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Sequence of the first record (or of the first record to come, if empty).
    pub base: u64,
    /// The segment file.
    pub path: PathBuf,
    /// A read-only handle for positional reads, separate from the writer's handle so that
    /// readers never contend with it for a file offset.
    pub reader: Arc<File>,
    /// Bytes of published records plus the header.
    pub len: u64,
    /// Sequence of the last published record, `base - 1` if none.
    pub last_sequence: u64,
    /// Timestamp of the last published record (meaningless while empty).
    pub last_timestamp_ms: i64,
    /// Sampled records for seeking.
    pub index: SparseIndex,
    /// Whether the writer has moved on to a newer segment.
    pub sealed: bool,
}

impl Segment {
    /// Whether the segment holds no published record.
    pub fn is_empty(&self) -> bool {
        self.last_sequence < self.base
    }
}

/// Creates a new segment file with its header and returns a handle for appending.
pub(crate) fn create_segment_file(path: &Path, base: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    file.write_all(&format::encode_segment_header(base))?;
    Ok(file)
}

/// Makes directory entries (new or renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Fills `buf` from `offset` without moving any shared file cursor.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// The result of validating a segment's records from the start.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// End of the last valid record (the header length if there is none).
    pub valid_len: u64,
    /// Sequence of the last valid record, `base - 1` if none.
    pub last_sequence: u64,
    /// Timestamp of the last valid record, if any.
    pub last_timestamp_ms: Option<i64>,
    /// Index built while scanning.
    pub index: SparseIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<&'static str>,
}

/// Reads every record of a segment, checking length, CRC, sequence continuity and timestamp
/// order, and stops at the first failure. `min_timestamp_ms` is the previous segment's last
/// timestamp, so ordering is checked across the boundary too.
pub(crate) fn scan_segment(
    file: &File,
    base: u64,
    file_len: u64,
    min_timestamp_ms: i64,
    index_interval: u64,
) -> io::Result<ScanOutcome> {
    let mut out = ScanOutcome {
        valid_len: SEGMENT_HEADER_LEN,
        last_sequence: base - 1,
        last_timestamp_ms: None,
        index: SparseIndex::new(index_interval),
        problem: None,
    };
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    if file_len < SEGMENT_HEADER_LEN {
        out.valid_len = 0;
        out.problem = Some("short segment header");
        return Ok(out);
    }
    read_exact_at(file, &mut header, 0)?;
    if format::decode_segment_header(&header) != Some(base) {
        out.valid_len = 0;
        out.problem = Some("bad segment header");
        return Ok(out);
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    // BufReader reads through the shared cursor of `file`; position it explicitly.
    io::Seek::seek(&mut reader, io::SeekFrom::Start(SEGMENT_HEADER_LEN))?;
    let mut payload = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut min_ts = min_timestamp_ms;
    while pos < file_len {
        let mut hbuf = [0u8; RECORD_HEADER_LEN];
        if file_len - pos < RECORD_HEADER_LEN as u64 {
            out.problem = Some("short record header");
            break;
        }
        reader.read_exact(&mut hbuf)?;
        let Some(h): Option<RecordHeader> = format::decode_record_header(&hbuf) else {
            out.problem = Some("bad record length");
            break;
        };
        if pos + h.total_len() > file_len {
            out.problem = Some("short record");
            break;
        }
        payload.resize(h.len as usize, 0);
        reader.read_exact(&mut payload)?;
        if !h.verify(&payload) {
            out.problem = Some("bad checksum");
            break;
        }
        if h.sequence != out.last_sequence + 1 {
            out.problem = Some("sequence gap");
            break;
        }
        if h.timestamp_ms < min_ts {
            out.problem = Some("timestamp went backwards");
            break;
        }
        out.index.observe(IndexEntry {
            sequence: h.sequence,
            position: pos,
            timestamp_ms: h.timestamp_ms,
        });
        out.last_sequence = h.sequence;
        out.last_timestamp_ms = Some(h.timestamp_ms);
        min_ts = h.timestamp_ms;
        pos += h.total_len();
        out.valid_len = pos;
    }
    Ok(out)
}
