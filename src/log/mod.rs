//! The append-only log: the `EventLog` trait every engine implements, and the embedded engine.
//!
//! A log stores opaque payloads. Each append gets consecutive `u64` sequence numbers
//! (starting at 1; 0 means "before everything") and a receive timestamp in UTC milliseconds
//! that never goes backwards. Readers address records by sequence or by time and can follow
//! the tail. Durable cursors (name -> next sequence to read) live beside the records so that
//! retention can see what a live reader still needs.
//!
//! The log knows nothing about events, HTTP or sinks: it is used for the event stream, the
//! registry's control records and the delivery state alike.

pub mod embedded;
pub mod header;
pub mod kafka;
mod partitions;

pub use partitions::{partition_base, partition_of, EventPartitions, PARTITION_SHIFT};

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's position in the log; unique and contiguous.
    pub sequence: u64,
    /// When the log accepted the record, UTC milliseconds; non-decreasing with `sequence`.
    pub timestamp_ms: i64,
    /// The bytes given to `append`, unchanged.
    pub payload: Bytes,
}

/// What an append returns once its records are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Sequence of the first record of the append.
    pub first_sequence: u64,
    /// Sequence of the last record of the append.
    pub last_sequence: u64,
    /// The receive timestamp given to every record of the append.
    pub timestamp_ms: i64,
}

/// When the writer calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every append waits for the fsync that covers it; concurrent appends share one.
    Always,
    /// Never fsync; the OS decides. Appends return after the write.
    Never,
    /// Fsync at most this often; appends return after the write (the interval is the loss
    /// window on power failure).
    Interval(Duration),
}

/// Errors of any log engine.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The disk or file system failed; the log may be unusable until restart.
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A record failed its checksum where the log cannot cut it off (not the tail).
    #[error("corrupt record in {file} at byte {offset}")]
    Corrupt {
        /// The segment file.
        file: String,
        /// Byte offset of the bad record.
        offset: u64,
    },
    /// A single record is larger than the engine accepts.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The log is shutting down or its writer died.
    #[error("log is closed")]
    Closed,
    /// An engine-specific failure (for example the Kafka engine's broker errors).
    #[error("log engine error: {0}")]
    Engine(String),
}

/// The operations every log engine provides. Object-safe, so the server holds an
/// `Arc<dyn EventLog>` and does not know which engine runs.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `payloads` in order as one unit and returns once they are durable under the
    /// engine's fsync policy. An empty append returns the current end without writing.
    async fn append(&self, payloads: Vec<Bytes>) -> Result<AppendReceipt, LogError>;

    /// Reads records with `sequence >= from`, in order, at most `max_records` of them and
    /// stopping early once `max_bytes` of payload have been gathered (always at least one
    /// record when one exists). Reading below the first retained sequence starts at the first
    /// retained record; reading at the end returns an empty vector.
    async fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError>;

    /// The first sequence whose timestamp is `>= timestamp_ms` (the end if none is).
    async fn sequence_at(&self, timestamp_ms: i64) -> Result<u64, LogError>;

    /// The sequence the next append will get: one past the last durable record.
    fn next_sequence(&self) -> u64;

    /// The oldest sequence still retained (equal to `next_sequence` when the log is empty).
    fn first_sequence(&self) -> u64;

    /// A receiver of `next_sequence`, updated after each durable append, so that readers
    /// following the tail can wait with `changed()` instead of polling.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// The stored position of a durable cursor, if it exists.
    async fn cursor(&self, name: &str) -> Result<Option<u64>, LogError>;

    /// Stores a cursor's position (the next sequence its reader needs). Returns once durable.
    async fn commit_cursor(&self, name: &str, next_sequence: u64) -> Result<(), LogError>;

    /// Stores several cursors' positions; returns once all are durable. Engines that can
    /// make them durable together (the embedded cursor file) override this: a delivery
    /// engine with a thousand subscriptions commits them all in one write.
    async fn commit_cursors(&self, cursors: &[(String, u64)]) -> Result<(), LogError> {
        let commits = cursors
            .iter()
            .map(|(name, position)| self.commit_cursor(name, *position));
        futures::future::try_join_all(commits).await.map(|_| ())
    }

    /// Removes a cursor, so retention no longer keeps records for it.
    async fn delete_cursor(&self, name: &str) -> Result<(), LogError>;

    /// Every cursor with its position.
    async fn cursors(&self) -> Result<Vec<(String, u64)>, LogError>;

    /// Size and shape, for `/metrics` and the API.
    fn stats(&self) -> LogStats;
}

/// A snapshot of the log's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes on disk (or in the engine), all segments.
    pub bytes: u64,
    /// Number of segment files (or partitions).
    pub segments: u64,
    /// Oldest retained sequence.
    pub first_sequence: u64,
    /// Next sequence to be assigned.
    pub next_sequence: u64,
}
