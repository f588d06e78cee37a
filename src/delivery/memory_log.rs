//! An in-memory [`EventLog`], for engine tests, benches and the delivery-state log of
//! short-lived processes. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::log::{AppendReceipt, EventLog, LogError, LogStats, Record};

/// A log kept in a vector; sequences start at 1 like every engine's.
#[derive(Debug)]
pub struct MemoryLog {
    inner: Mutex<Inner>,
    next: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    records: Vec<Record>,
    cursors: BTreeMap<String, u64>,
    bytes: u64,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog::new()
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> MemoryLog {
        MemoryLog {
            inner: Mutex::new(Inner::default()),
            next: watch::channel(1).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation is a push or an insert: a poisoned lock still guards valid data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, payloads: Vec<Bytes>) -> Result<AppendReceipt, LogError> {
        let mut inner = self.lock();
        let first = inner.records.len() as u64 + 1;
        // Timestamps never go backwards, even if the wall clock does.
        let last_ts = inner.records.last().map_or(i64::MIN, |r| r.timestamp_ms);
        let timestamp_ms = now_ms().max(last_ts);
        for payload in payloads {
            inner.bytes += payload.len() as u64;
            let sequence = inner.records.len() as u64 + 1;
            inner.records.push(Record {
                sequence,
                timestamp_ms,
                payload,
            });
        }
        let next = inner.records.len() as u64 + 1;
        drop(inner);
        self.next.send_replace(next);
        Ok(AppendReceipt {
            first_sequence: first,
            last_sequence: next - 1,
            timestamp_ms,
        })
    }

    async fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        let inner = self.lock();
        let start = from.max(1) as usize - 1;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for record in inner.records.iter().skip(start).take(max_records) {
            if !out.is_empty() && bytes + record.payload.len() > max_bytes {
                break;
            }
            bytes += record.payload.len();
            out.push(record.clone());
        }
        Ok(out)
    }

    async fn sequence_at(&self, timestamp_ms: i64) -> Result<u64, LogError> {
        let inner = self.lock();
        let idx = inner
            .records
            .partition_point(|r| r.timestamp_ms < timestamp_ms);
        Ok(idx as u64 + 1)
    }

    fn next_sequence(&self) -> u64 {
        *self.next.borrow()
    }

    fn first_sequence(&self) -> u64 {
        1
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.next.subscribe()
    }

    async fn cursor(&self, name: &str) -> Result<Option<u64>, LogError> {
        Ok(self.lock().cursors.get(name).copied())
    }

    async fn commit_cursor(&self, name: &str, next_sequence: u64) -> Result<(), LogError> {
        self.lock().cursors.insert(name.to_owned(), next_sequence);
        Ok(())
    }

    async fn delete_cursor(&self, name: &str) -> Result<(), LogError> {
        self.lock().cursors.remove(name);
        Ok(())
    }

    async fn cursors(&self) -> Result<Vec<(String, u64)>, LogError> {
        Ok(self
            .lock()
            .cursors
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }

    fn stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            bytes: inner.bytes,
            segments: 1,
            first_sequence: 1,
            next_sequence: inner.records.len() as u64 + 1,
        }
    }
}
