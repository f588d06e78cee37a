//! The embedded engine: segment files in a data directory, a writer thread and a sync
//! thread doing pipelined group commit, lock-free positional reads, durable cursors and
//! retention.
//!
//! # Appends
//! `append` sends its payloads to the writer thread and waits for a reply. The writer
//! thread gathers whatever requests are queued into a group, assigns sequences, encodes and
//! writes them (one `write` per segment touched) and hands them to the sync thread. The sync
//! thread takes every hand-off queued by then, makes them durable with one fdatasync (per
//! the fsync policy), publishes them (segment description and log end under the state lock,
//! then the `watch`) and only then replies. So while one group's fsync is in flight the next
//! is already being gathered and written, and readers and callers only ever see durable
//! records. A group that finds the sync thread idle and no other request waiting is
//! completed by the writer thread itself: there is nothing to overlap, so the hop to the
//! sync thread would only cost. A segment roll is a barrier: the writer waits until the
//! sync thread has synced and published the old segment's tail before it seals it and
//! starts the next one.
//!
//! # Modules
//! - `format`: byte layout of headers and records, CRC, file names.
//! - `index`: the sparse per-segment index and its `.index` file.
//! - `segment`: a segment's shared description, creation, positional reads, validating scan.
//! - `writer`: the writer thread (grouping, sequences, encoding, writes, roll).
//! - `syncer`: the sync thread (fsync policy, publication, replies).
//! - `reader`: reads by sequence and by time.
//! - `recovery`: opening a directory, cutting a torn tail.
//! - `cursors`: the durable cursor table.
//! - `retention`: deleting old segments.
//! - `engine`: `EmbeddedLog` and its `EventLog` implementation.
//!
//! # On-disk format (version 1, all integers little-endian)
//!
//! A log directory holds:
//! - `{base:020}.log`: a segment; `base` is the sequence of its first record, zero-padded
//!   so that name order is sequence order. The last segment is the active one.
//! - `{base:020}.index`: the persisted sparse index of a sealed segment (optional; rebuilt
//!   by scanning the segment if missing or invalid).
//! - `cursors`: the cursor table (JSON `{"version":1,"cursors":{name: next_sequence}}`),
//!   replaced via `cursors.tmp` + fsync + rename + directory fsync.
//!
//! Segment header (24 bytes):
//!
//! | offset | size | field                               |
//! |-------:|-----:|-------------------------------------|
//! |      0 |    8 | magic `b"SWYDLOG\0"`                |
//! |      8 |    4 | format version (u32, = 1)           |
//! |     12 |    4 | reserved (0)                        |
//! |     16 |    8 | base sequence (u64, = file name)    |
//!
//! Then records back to back, each:
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    4 | payload length `n` (u32)                                |
//! |      4 |    4 | CRC32C (u32) over bytes 8..24+n (sequence, timestamp, payload) |
//! |      8 |    8 | sequence (u64)                                          |
//! |     16 |    8 | timestamp_ms (i64, UTC milliseconds)                    |
//! |     24 |    n | payload                                                 |
//!
//! Sequences start at 1 and are contiguous across segments (a segment's base is one past
//! the previous segment's last record). Timestamps never decrease. Records never span
//! segments: a segment is sealed once it has reached `segment_bytes`, so it may exceed it
//! by at most one record.
//!
//! Index file (`.index`): a 48-byte header, then `count` entries of 24 bytes, then a CRC32C
//! (u32) over everything before it:
//!
//! | offset | size | field                                            |
//! |-------:|-----:|--------------------------------------------------|
//! |      0 |    8 | magic `b"SWYDIDX\0"`                             |
//! |      8 |    4 | format version (u32, = 1)                        |
//! |     12 |    4 | reserved (0)                                     |
//! |     16 |    8 | length of the segment file it describes (u64)    |
//! |     24 |    8 | last sequence in the segment (u64)               |
//! |     32 |    8 | last timestamp_ms in the segment (i64)           |
//! |     40 |    8 | entry count (u64)                                |
//! |     48 | 24×k | entries: sequence u64, file position u64, timestamp_ms i64 |
//!
//! An entry is taken for a segment's first record and then for the first record at least
//! `index_interval_bytes` past the previous entry.
//!
//! # Recovery
//! At open the active segment is scanned; the first record with a short header or body, an
//! impossible length, a bad CRC, a sequence gap or a timestamp going backwards ends the log:
//! the file is truncated there and the cut is reported with `tracing::warn!`. Sealed
//! segments are trusted (only scanned to rebuild a missing index; damage found then is
//! `LogError::Corrupt`).

mod cursors;
mod engine;
mod format;
mod index;
mod reader;
mod recovery;
mod retention;
mod segment;
mod syncer;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::FsyncPolicy;

pub use engine::{EmbeddedLog, WriterStats};
pub use retention::RetentionReport;

/// Settings of the embedded engine.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory holding this log's segments, indexes and cursors (created if missing).
    pub dir: PathBuf,
    /// When the writer fsyncs.
    pub fsync: FsyncPolicy,
    /// A segment is sealed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// The largest single payload accepted.
    pub max_record_bytes: usize,
    /// Retention: delete sealed segments once the log is larger than this (never past a
    /// live cursor).
    pub retention_bytes: Option<u64>,
    /// Retention: delete sealed segments whose newest record is older than this (never past
    /// a live cursor).
    pub retention_age: Option<Duration>,
    /// Hard limit: past it, segments are deleted even if a cursor still needs them, and that
    /// cursor is reported as skipped.
    pub hard_limit_bytes: Option<u64>,
    /// Sparse index density: an index entry at least every this many bytes of a segment.
    pub index_interval_bytes: u64,
    /// Source of record timestamps and of "now" for age retention.
    pub clock: Clock,
}

impl EmbeddedOptions {
    /// Defaults for a log in `dir`: fsync always, 128 MiB segments, 8 MiB records, no
    /// retention limits, an index entry every 4 KiB, the system clock.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            segment_bytes: 128 * 1024 * 1024,
            max_record_bytes: 8 * 1024 * 1024,
            retention_bytes: None,
            retention_age: None,
            hard_limit_bytes: None,
            index_interval_bytes: 4096,
            clock: Clock::system(),
        }
    }
}

/// Where the log gets the current time (UTC milliseconds). A seam so tests can control
/// timestamps; production uses `Clock::system()`.
#[derive(Clone)]
pub struct Clock {
    pub(crate) now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self::from_fn(|| chrono::Utc::now().timestamp_millis())
    }

    /// A clock reading `now_ms` (for tests and simulations).
    pub fn from_fn(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self {
            now_ms: Arc::new(now_ms),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
