//! The embedded engine: segment files in a data directory (see the on-disk format below).
//!
//! TO BE WRITTEN: on-disk format doc, segments, sparse index, group-commit writer,
//! recovery, retention, cursors.

use std::path::PathBuf;
use std::time::Duration;

use super::FsyncPolicy;

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
}

impl EmbeddedOptions {
    /// Defaults for a log in `dir`: fsync always, 128 MiB segments, 8 MiB records, no
    /// retention limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            segment_bytes: 128 * 1024 * 1024,
            max_record_bytes: 8 * 1024 * 1024,
            retention_bytes: None,
            retention_age: None,
            hard_limit_bytes: None,
        }
    }
}
