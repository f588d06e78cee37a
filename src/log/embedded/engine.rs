//! `EmbeddedLog`: the shared state, the handle callers hold and its `EventLog` implementation.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::cursors::CursorStore;
use super::format::MAX_PAYLOAD_LEN;
use super::reader::{self, TimeLookup};
use super::retention::{self, RetentionReport};
use super::segment::Segment;
use super::syncer::Completion;
use super::writer::{AppendRequest, Writer};
use super::{recovery, EmbeddedOptions};
use crate::log::{AppendReceipt, EventLog, LogError, LogStats, Record};

/// Segments and the published end, guarded together so a reader's snapshot is consistent.
#[derive(Debug)]
pub(crate) struct State {
    /// Oldest first; the last one is the active segment. Never empty.
    pub segments: VecDeque<Segment>,
    /// One past the last published record; readers never go past it.
    pub next_sequence: u64,
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub groups: AtomicU64,
    pub records: AtomicU64,
    pub fsyncs: AtomicU64,
}

/// What the writer thread, readers and retention share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub opts: EmbeddedOptions,
    pub state: RwLock<State>,
    /// Mirrors `State::next_sequence` for tail followers.
    pub published: watch::Sender<u64>,
    pub stats: Counters,
}

impl Shared {
    /// Locks the state for reading. A panic elsewhere never leaves the state half-updated
    /// in a way that matters to readers, so a poisoned lock is used as is.
    pub fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the state for writing (see `read_state` on poisoning).
    pub fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Totals of the writer since open: how well group commit is grouping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Groups written (one write per segment touched, at most one fsync each).
    pub groups: u64,
    /// Records written.
    pub records: u64,
    /// fsync calls made on segment files.
    pub fsyncs: u64,
}

/// The embedded log engine: segment files in one directory, one writer thread doing group
/// commit, positional reads from any task, durable cursors and retention.
#[derive(Debug)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    cursors: CursorStore,
    tx: Option<mpsc::Sender<AppendRequest>>,
    /// The writer thread, then the sync thread (joined in that order).
    threads: Vec<JoinHandle<()>>,
    retention_lock: Mutex<()>,
    max_payload: usize,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `options.dir`, recovering a torn tail, and
    /// starts its writer thread. Synchronous and does not need (nor block) a runtime.
    pub fn open(options: EmbeddedOptions) -> Result<Arc<EmbeddedLog>, LogError> {
        let recovered = recovery::recover(&options)?;
        let cursors = CursorStore::open(&options.dir)?;
        let next_sequence = recovered.next_sequence;
        let (published, _) = watch::channel(next_sequence);
        let shared = Arc::new(Shared {
            dir: options.dir.clone(),
            opts: options,
            state: RwLock::new(State {
                segments: recovered.segments,
                next_sequence,
            }),
            published,
            stats: Counters::default(),
        });
        let (to_sync, written) = mpsc::channel();
        let completion = Completion::new(shared.clone());
        let writer = Writer::new(
            shared.clone(),
            Arc::new(recovered.active_file),
            recovered.last_timestamp_ms,
            to_sync,
            completion.clone(),
        );
        let syncer = std::thread::Builder::new()
            .name("switchyard-log-sync".into())
            .spawn(move || completion.run(written))?;
        let (tx, rx) = mpsc::channel();
        // If this spawn fails, the writer (and its end of the channel) is dropped with the
        // closure, so the sync thread exits on its own.
        let writer = std::thread::Builder::new()
            .name("switchyard-log-writer".into())
            .spawn(move || writer.run(rx))?;
        let max_payload = shared.opts.max_record_bytes.min(MAX_PAYLOAD_LEN);
        Ok(Arc::new(EmbeddedLog {
            shared,
            cursors,
            tx: Some(tx),
            threads: vec![writer, syncer],
            retention_lock: Mutex::new(()),
            max_payload,
        }))
    }

    /// Deletes old sealed segments per the retention options (see `RetentionReport`).
    /// Blocking file I/O: call it from a blocking context or accept a short stall.
    pub fn enforce_retention(&self) -> Result<RetentionReport, LogError> {
        let _one_at_a_time = self
            .retention_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        retention::enforce(&self.shared, &self.cursors)
    }

    /// How many groups, records and fsyncs the writer has done since open.
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.shared.stats;
        WriterStats {
            groups: c.groups.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &std::path::Path {
        &self.shared.dir
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its group and exit, which closes the
        // sync thread's channel: it syncs and answers what it was handed, does its final
        // fsync and exits. Joining makes a following `open` of the same directory safe.
        drop(self.tx.take());
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!("log writer or sync thread panicked");
            }
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> LogError {
    LogError::Engine(format!("log I/O task failed: {e}"))
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, payloads: Vec<Bytes>) -> Result<AppendReceipt, LogError> {
        if payloads.is_empty() {
            let (next, ts) = {
                let st = self.shared.read_state();
                let ts = st
                    .segments
                    .iter()
                    .rev()
                    .find(|s| !s.is_empty())
                    .map_or(0, |s| s.last_timestamp_ms);
                (st.next_sequence, ts)
            };
            // An empty range: first is the current end, last is one before it.
            return Ok(AppendReceipt {
                first_sequence: next,
                last_sequence: next - 1,
                timestamp_ms: ts,
            });
        }
        if let Some(p) = payloads.iter().find(|p| p.len() > self.max_payload) {
            return Err(LogError::TooLarge {
                size: p.len(),
                limit: self.max_payload,
            });
        }
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(LogError::Closed)?;
        tx.send(AppendRequest { payloads, reply })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        let Some(plan) = reader::plan_read(&self.shared, from) else {
            return Ok(Vec::new());
        };
        if max_records == 0 {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || plan.execute(max_records, max_bytes))
            .await
            .map_err(join_error)?
    }

    async fn sequence_at(&self, timestamp_ms: i64) -> Result<u64, LogError> {
        match reader::plan_time_lookup(&self.shared, timestamp_ms) {
            TimeLookup::Done(sequence) => Ok(sequence),
            TimeLookup::Scan(plan) => tokio::task::spawn_blocking(move || plan.execute())
                .await
                .map_err(join_error)?,
        }
    }

    fn next_sequence(&self) -> u64 {
        self.shared.read_state().next_sequence
    }

    fn first_sequence(&self) -> u64 {
        let st = self.shared.read_state();
        st.segments.front().map_or(st.next_sequence, |s| s.base)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.published.subscribe()
    }

    async fn cursor(&self, name: &str) -> Result<Option<u64>, LogError> {
        Ok(self.cursors.get(name))
    }

    async fn commit_cursor(&self, name: &str, next_sequence: u64) -> Result<(), LogError> {
        self.cursors.set(name, Some(next_sequence)).await
    }

    async fn commit_cursors(&self, cursors: &[(String, u64)]) -> Result<(), LogError> {
        self.cursors.set_many(cursors).await
    }

    async fn delete_cursor(&self, name: &str) -> Result<(), LogError> {
        self.cursors.set(name, None).await
    }

    async fn cursors(&self) -> Result<Vec<(String, u64)>, LogError> {
        Ok(self.cursors.all())
    }

    fn stats(&self) -> LogStats {
        let st = self.shared.read_state();
        LogStats {
            bytes: st.segments.iter().map(|s| s.len).sum(),
            segments: st.segments.len() as u64,
            first_sequence: st.segments.front().map_or(st.next_sequence, |s| s.base),
            next_sequence: st.next_sequence,
        }
    }
}
