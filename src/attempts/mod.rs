//! The attempt log: every delivery attempt of every subscription, successes included, in
//! its own embedded log (`{data_dir}/attempts`), for the delivery lookups (`GET
//! /deliveries`, `GET /subscriptions/{id}/undelivered`, `switchyard deliveries`).
//!
//! ```text
//!  worker ── record() ──► pending (a Vec under a mutex: no I/O, no encoding)
//!                              │ every `flush_ms`, or at 4,096 pending, or before a lookup
//!                              ▼
//!                 flusher: encode, one append per half segment ──► attempts log
//!                              │ (fsync at most once a second, never per attempt;
//!                              │  an append past the byte bound trims at once)
//!                              ▼
//!                 index (memory): event sequence -> attempts (log place, subscription,
//!                 outcome); event id -> sequence; WhatsApp message id -> sequences;
//!                 subscription -> failure run
//! ```
//!
//! A record is [`AttemptRecord`] (`record.rs`): JSON with a format version, pinned by
//! `tests/fixtures/stored/attempts/`. The index (`index.rs`) is rebuilt from the log at
//! start and cut back whenever retention deletes segments, so both are bounded by
//! `attempts.retention_bytes` and `attempts.retention_hours` (the log keeps at most one
//! segment, an eighth of the byte bound, past it). Lookups read the records of the page
//! they show, by their place in the log.
//!
//! What it does not promise: a crash loses the attempts of the last flush interval and
//! fsync interval (delivery itself loses nothing: the attempt log is a record of it, not
//! part of it); pending attempts past `MAX_PENDING` (a disk that cannot keep up) are
//! dropped and counted rather than slowing delivery. With the Kafka engine each process
//! records the attempts it made, in its own data dir.
//!
//! **Architecture Invariant:** the attempt log never holds delivery back: recording is a
//! push into memory, and a failing attempt log costs attempts, not events.

mod index;
mod record;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::log::embedded::{EmbeddedLog, EmbeddedOptions};
use crate::log::{EventLog, FsyncPolicy, LogError};

pub use index::Streak;
pub use record::{AttemptRecord, AttemptResult, FORMAT_VERSION};

/// Pending attempts that wake the flusher before its interval.
const FLUSH_AT: usize = 4096;
/// Pending attempts past which new ones are dropped (and counted).
const MAX_PENDING: usize = 200_000;
/// How often retention runs.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Settings of the attempt log.
#[derive(Debug, Clone)]
pub struct AttemptOptions {
    /// Its directory.
    pub dir: PathBuf,
    /// Keep at most about this many bytes; 0 = no limit.
    pub retention_bytes: u64,
    /// Keep attempts at most this long; `None` = no limit.
    pub retention_age: Option<Duration>,
    /// Pending attempts are written at least this often.
    pub flush_interval: Duration,
}

impl AttemptOptions {
    /// The log's options: segments an eighth of the byte bound (256 KiB..64 MiB), so the
    /// bound holds within one segment; fsync once a second at most.
    fn log_options(&self) -> EmbeddedOptions {
        let mut options = EmbeddedOptions::new(&self.dir);
        options.fsync = FsyncPolicy::Interval(Duration::from_secs(1));
        options.max_record_bytes = 64 * 1024;
        options.segment_bytes = if self.retention_bytes > 0 {
            (self.retention_bytes / 8).clamp(256 * 1024, 64 << 20)
        } else {
            64 << 20
        };
        options.retention_bytes = (self.retention_bytes > 0).then_some(self.retention_bytes);
        options.retention_age = self.retention_age;
        options
    }
}

/// Counters of the attempt log, for `/metrics`.
#[derive(Debug, Default)]
pub struct AttemptStats {
    /// Attempts written.
    pub written: AtomicU64,
    /// Attempts dropped (pending overflow, or a failed write).
    pub dropped: AtomicU64,
}

/// The attempt log of this process.
pub struct AttemptLog {
    log: Arc<EmbeddedLog>,
    pending: Mutex<Vec<AttemptRecord>>,
    wake: Notify,
    /// One flush at a time, so records reach the index in log order.
    flushing: tokio::sync::Mutex<()>,
    index: RwLock<index::Index>,
    flush_interval: Duration,
    /// The byte bound (0 = none): an append that passes it trims at once, so the bound
    /// holds between the periodic passes too (at 10,000 attempts/s, 30 s of writing is
    /// ~100 MB).
    retention_bytes: u64,
    /// Encoded bytes per append: half a segment, so that what is on disk passes the bound
    /// by less than a segment before the trim that follows the append.
    chunk_bytes: usize,
    /// Written and dropped counts.
    pub stats: AttemptStats,
}

impl AttemptLog {
    /// Opens (or creates) the log, applies retention once and rebuilds the index from what
    /// is left.
    pub async fn open(options: AttemptOptions) -> Result<Arc<AttemptLog>, LogError> {
        let log = EmbeddedLog::open(options.log_options())?;
        let trimmed = log.clone();
        tokio::task::spawn_blocking(move || trimmed.enforce_retention())
            .await
            .map_err(|e| LogError::Engine(format!("attempt-log retention: {e}")))??;
        let mut index = index::Index::default();
        let mut from = log.first_sequence();
        let mut skipped = 0u64;
        loop {
            let records = log.read(from, 4096, 16 << 20).await?;
            let Some(last) = records.last() else { break };
            from = last.sequence + 1;
            for stored in records {
                match AttemptRecord::decode(&stored.payload) {
                    Some(record) => index.add(stored.sequence, &record),
                    None => skipped += 1,
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "attempt log: skipped records this version cannot read"
            );
        }
        Ok(Arc::new(AttemptLog {
            log,
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
            index: RwLock::new(index),
            flush_interval: options.flush_interval.max(Duration::from_millis(1)),
            retention_bytes: options.retention_bytes,
            chunk_bytes: (options.log_options().segment_bytes / 2) as usize,
            stats: AttemptStats::default(),
        }))
    }

    /// Records an attempt: a push into memory, written by the next flush.
    pub fn record(&self, record: AttemptRecord) {
        let wake = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                drop(pending);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.push(record);
            pending.len() == FLUSH_AT
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// Writes every pending attempt (one append per half segment of records) and indexes
    /// them; trims after an append that passed the byte bound.
    pub async fn flush(&self) {
        let _turn = self.flushing.lock().await;
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut records = Vec::with_capacity(batch.len());
        let mut payloads = Vec::with_capacity(batch.len());
        let mut bytes = 0;
        for record in batch {
            match record.encode() {
                Ok(encoded) => {
                    bytes += encoded.len();
                    payloads.push(Bytes::from(encoded));
                    records.push(record);
                    if bytes >= self.chunk_bytes {
                        self.write(std::mem::take(&mut records), std::mem::take(&mut payloads))
                            .await;
                        bytes = 0;
                    }
                }
                Err(e) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "attempt record does not encode");
                }
            }
        }
        self.write(records, payloads).await;
    }

    /// One append of encoded `records`, then their index entries and, past the byte
    /// bound, a trim.
    async fn write(&self, records: Vec<AttemptRecord>, payloads: Vec<Bytes>) {
        if records.is_empty() {
            return;
        }
        match self.log.append(payloads).await {
            Ok(receipt) => {
                let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
                for (i, record) in records.iter().enumerate() {
                    index.add(receipt.first_sequence + i as u64, record);
                }
                self.stats
                    .written
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats
                    .dropped
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, lost = records.len(), "cannot write the attempt log");
            }
        }
        if self.retention_bytes > 0 && self.bytes() > self.retention_bytes {
            if let Err(e) = self.trim().await {
                tracing::error!(error = %e, "attempt-log retention failed");
            }
        }
    }

    /// Applies retention and cuts the index back to what is left.
    pub async fn trim(&self) -> Result<(), LogError> {
        let log = self.log.clone();
        let report = tokio::task::spawn_blocking(move || log.enforce_retention())
            .await
            .map_err(|e| LogError::Engine(format!("attempt-log retention: {e}")))??;
        if report.deleted_segments > 0 {
            let first = self.log.first_sequence();
            self.index
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .evict_below(first);
            tracing::debug!(?report, "attempt log trimmed");
        }
        Ok(())
    }

    /// Flushes every `flush_interval` (sooner when many are pending) and applies the age
    /// bound every 30 s (the byte bound is applied by the appends themselves), until
    /// `cancel`; then flushes once more. Call [`AttemptLog::flush`]
    /// again after the engines stopped, for what they recorded last.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut trim = tokio::time::interval(TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => self.flush().await,
                _ = self.wake.notified() => self.flush().await,
                _ = trim.tick() => {
                    if let Err(e) = self.trim().await {
                        tracing::error!(error = %e, "attempt-log retention failed");
                    }
                }
            }
        }
        self.flush().await;
    }

    /// The sequence of the event with this id, if it has attempts here.
    pub fn sequence_of(&self, event_id: &Uuid) -> Option<u64> {
        self.read_index().sequence_of(event_id)
    }

    /// The sequences of the events about this WhatsApp message that have attempts here.
    pub fn events_of_message(&self, message_id: &str) -> Vec<u64> {
        self.read_index().events_of_message(message_id)
    }

    /// The outcomes of one event's attempts to one subscription, oldest first.
    pub fn outcomes(&self, sequence: u64, subscription: &str) -> Vec<AttemptResult> {
        self.read_index()
            .refs(sequence, subscription)
            .into_iter()
            .map(|r| r.outcome)
            .collect()
    }

    /// The subscriptions that attempted the event.
    pub fn subscriptions_of(&self, sequence: u64) -> Vec<Arc<str>> {
        self.read_index().subscriptions_of(sequence)
    }

    /// One event's attempts to one subscription, oldest first, read from the log.
    pub async fn attempts(
        &self,
        sequence: u64,
        subscription: &str,
    ) -> Result<Vec<AttemptRecord>, LogError> {
        let refs = self.read_index().refs(sequence, subscription);
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let stored = self.log.read(r.at, 1, 64 * 1024).await?;
            if let Some(record) = stored
                .first()
                .filter(|s| s.sequence == r.at)
                .and_then(|s| AttemptRecord::decode(&s.payload))
            {
                out.push(record);
            }
        }
        out.sort_by_key(|r| (r.attempt, r.at_ms));
        Ok(out)
    }

    /// The subscription's failure run, from its flushed attempts (for a detector of failing
    /// and recovered subscriptions).
    pub fn streak(&self, subscription: &str) -> Streak {
        self.read_index().streak(subscription)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.log.stats().bytes
    }

    /// Attempts in the index (retained ones).
    pub fn indexed(&self) -> usize {
        self.read_index().attempts()
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, index::Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(sequence: u64, subscription: &str, outcome: AttemptResult) -> AttemptRecord {
        AttemptRecord {
            v: FORMAT_VERSION,
            subscription: subscription.into(),
            event_id: Uuid::from_u128(u128::from(sequence)),
            sequence,
            instance: "sales".into(),
            message_id: Some(format!("3EB0{sequence:08}")),
            attempt: 1,
            at_ms: 1_736_937_000_000 + sequence as i64,
            duration_ms: 3,
            outcome,
            http_status: Some(if outcome == AttemptResult::Delivered {
                200
            } else {
                500
            }),
            error: (outcome != AttemptResult::Delivered).then(|| "HTTP 500".into()),
            response: Some("x".repeat(200)),
        }
    }

    fn options(dir: &std::path::Path, retention_bytes: u64) -> AttemptOptions {
        AttemptOptions {
            dir: dir.join("attempts"),
            retention_bytes,
            retention_age: None,
            flush_interval: Duration::from_millis(10),
        }
    }

    #[tokio::test]
    async fn attempts_survive_a_restart_and_are_found_by_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = AttemptLog::open(options(dir.path(), 0)).await.unwrap();
        log.record(attempt(7, "a", AttemptResult::Retry));
        log.record(attempt(7, "b", AttemptResult::Delivered));
        log.record(attempt(8, "a", AttemptResult::Delivered));
        let mut second = attempt(7, "a", AttemptResult::Delivered);
        second.attempt = 2;
        log.record(second.clone());
        log.flush().await;
        assert_eq!(log.streak("a").consecutive_failures, 0);
        drop(log);

        let log = AttemptLog::open(options(dir.path(), 0)).await.unwrap();
        assert_eq!(log.sequence_of(&Uuid::from_u128(7)), Some(7));
        assert_eq!(log.events_of_message("3EB000000008"), vec![8]);
        assert_eq!(
            log.outcomes(7, "a"),
            vec![AttemptResult::Retry, AttemptResult::Delivered]
        );
        let read = log.attempts(7, "a").await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1], second);
        assert_eq!(log.subscriptions_of(7).len(), 2);
    }

    #[tokio::test]
    async fn retention_holds_the_byte_bound_and_the_index_follows() {
        let dir = tempfile::tempdir().unwrap();
        let bound = 2 << 20;
        let log = AttemptLog::open(options(dir.path(), bound)).await.unwrap();
        // 200,000 attempts of ~400 bytes: ~80 MiB written through a 2 MiB bound.
        for round in 0..20u64 {
            for i in 0..10_000u64 {
                let sequence = round * 10_000 + i + 1;
                log.record(attempt(sequence, "a", AttemptResult::Delivered));
            }
            // Flushes alone hold the bound: no periodic retention pass runs here.
            log.flush().await;
            let segment = (bound / 8).max(256 * 1024);
            assert!(
                log.bytes() <= bound + segment,
                "{} bytes on disk past a bound of {bound}",
                log.bytes()
            );
        }
        assert_eq!(log.stats.written.load(Ordering::Relaxed), 200_000);
        let kept = log.indexed();
        assert!(kept > 1000 && kept < 20_000, "{kept} attempts indexed");
        assert_eq!(log.sequence_of(&Uuid::from_u128(1)), None, "trimmed");
        assert_eq!(log.sequence_of(&Uuid::from_u128(200_000)), Some(200_000));
    }
}
