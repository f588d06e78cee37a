//! One topic partition as an `EventLog`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::{engine_error, reader_config, Clients, ADMIN_TIMEOUT};
use crate::log::{AppendReceipt, EventLog, LogError, LogStats, Record};

/// How long a read waits for records the high watermark says exist.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle readers kept per partition for the next sequential read.
const IDLE_READERS: usize = 4;
/// How long a new reader's first fetch may stay empty before it starts further back. A
/// fetch from an offset inside a record batch must return that whole batch; Tansu returns
/// the next batch, or nothing, instead. So a reader that sees nothing, or a gap, steps back
/// (64, 1024, ... offsets, then the start) and skips what it did not ask for. Against
/// Kafka the first fetch answers at once and without a gap.
const FIRST_FETCH_WAIT: Duration = Duration::from_millis(700);
/// How long the end probe waits for a further record before it takes the partition's end
/// as found (a caught-up fetch answers within `fetch.wait.max.ms`, 50 ms).
const END_QUIET: Duration = Duration::from_millis(250);

/// An assigned consumer and the sequence it will return next.
struct Reader {
    /// Always `Some` until the reader is dropped (see `Drop for Reader`).
    consumer: Option<StreamConsumer>,
    next: u64,
    /// Where its fetch started (below `next` after a step back).
    fetch_from: u64,
}

impl Drop for Reader {
    /// Destroys the consumer on the blocking pool. Dropping a consumer closes it and joins
    /// librdkafka's threads, which blocks: on a runtime worker that stalls every task of the
    /// process, and forever if a message it handed out is still alive (librdkafka waits for
    /// each one to be released).
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}

/// One partition of a topic: sequence = `base + offset + 1`.
pub struct KafkaPartitionLog {
    clients: Arc<Clients>,
    topic: String,
    partition: i32,
    base: u64,
    /// The sequence after the last record known to be committed.
    end: watch::Sender<u64>,
    first: AtomicU64,
    readers: Mutex<Vec<Reader>>,
}

impl KafkaPartitionLog {
    pub(super) async fn open(
        clients: Arc<Clients>,
        topic: String,
        partition: i32,
        base: u64,
    ) -> Result<KafkaPartitionLog, LogError> {
        let (low, high) = watermarks(&clients, &topic, partition).await?;
        let log = KafkaPartitionLog {
            clients,
            topic,
            partition,
            base,
            end: watch::channel(base + high as u64 + 1).0,
            first: AtomicU64::new(base + low as u64 + 1),
            readers: Mutex::new(Vec::new()),
        };
        log.probe_end().await?;
        Ok(log)
    }

    /// Moves the end past records the high watermark did not count. Tansu answers a
    /// partition's high watermark as its last record batch's base offset + 1, so a process
    /// that started after a batched append would neither serve that batch's later records
    /// nor follow the tail from the right offset (its follower starts at the end found
    /// here). So the last record by the watermark is fetched, and everything after it
    /// until the partition stays quiet: against Kafka that is one record and a short wait.
    async fn probe_end(&self) -> Result<(), LogError> {
        let first = self.first_sequence();
        let last = *self.end.borrow() - 1;
        if last < first {
            return Ok(()); // empty by the watermarks; appends to it are followed
        }
        let mut fetch_from = last;
        let mut step_back = 64u64;
        let next_offset = loop {
            let reader = self.new_reader(last, fetch_from)?;
            let Some(consumer) = reader.consumer.as_ref() else {
                return Err(LogError::Closed);
            };
            // A fetch from inside the last batch can come back empty (see `FIRST_FETCH_WAIT`).
            let message = match tokio::time::timeout(FIRST_FETCH_WAIT, consumer.recv()).await {
                Ok(Ok(message)) => message,
                Ok(Err(e)) => return Err(engine_error("probing the end", e)),
                Err(_) if fetch_from > first => {
                    fetch_from = fetch_from.saturating_sub(step_back).max(first);
                    step_back = step_back.saturating_mul(16);
                    continue;
                }
                Err(_) => {
                    return Err(LogError::Engine(format!(
                        "{}/{}: no record readable at the partition's end",
                        self.topic, self.partition
                    )))
                }
            };
            let mut next_offset = message.offset() + 1;
            drop(message);
            while let Ok(received) = tokio::time::timeout(END_QUIET, consumer.recv()).await {
                match received {
                    Ok(message) => next_offset = next_offset.max(message.offset() + 1),
                    Err(e) => return Err(engine_error("probing the end", e)),
                }
            }
            break next_offset;
        };
        self.advance_to_offset(next_offset);
        Ok(())
    }

    /// The partition number within its topic.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset the next record will get, as far as this process knows.
    pub(super) fn end_offset(&self) -> i64 {
        self.next_sequence().saturating_sub(self.base + 1) as i64
    }

    /// Records that the partition holds everything below `offset` (a committed record was
    /// seen there); the end only moves forward.
    pub(super) fn advance_to_offset(&self, next_offset: i64) {
        let next = self.base + next_offset.max(0) as u64 + 1;
        self.end.send_if_modified(|end| {
            let moved = next > *end;
            if moved {
                *end = next;
            }
            moved
        });
    }

    /// Asks the broker for the partition's end (the high watermark).
    async fn refresh_end(&self) -> Result<u64, LogError> {
        let (low, high) = watermarks(&self.clients, &self.topic, self.partition).await?;
        self.first
            .fetch_max(self.base + low as u64 + 1, Ordering::Relaxed);
        self.advance_to_offset(high);
        Ok(*self.end.borrow())
    }

    fn cursor_key(&self, name: &str) -> String {
        format!("{}:{}:{name}", self.topic, self.partition)
    }

    /// An idle reader positioned at `from`, if one is.
    fn idle_reader(&self, from: u64) -> Option<Reader> {
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter()
            .position(|r| r.next == from)
            .map(|i| idle.swap_remove(i))
    }

    /// A new reader that returns records from `from`, fetching from `fetch_from <= from`
    /// (records below `from` are skipped). A new consumer, not a re-assigned one: moving a
    /// used consumer back did not reliably restart its fetch.
    fn new_reader(&self, from: u64, fetch_from: u64) -> Result<Reader, LogError> {
        let consumer: StreamConsumer = reader_config(&self.clients.options)
            .create()
            .map_err(|e| engine_error("creating a reader", e))?;
        let mut tpl = TopicPartitionList::new();
        let offset = fetch_from.saturating_sub(self.base + 1) as i64;
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))
            .map_err(|e| engine_error("assigning a reader", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| engine_error("assigning a reader", e))?;
        Ok(Reader {
            consumer: Some(consumer),
            next: from,
            fetch_from,
        })
    }

    /// The broker's answer to "first offset at or after this time", as a sequence; `None`
    /// when it says there is none.
    async fn broker_offset_for_time(&self, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(timestamp_ms))
            .map_err(|e| engine_error("offsets for times", e))?;
        let metadata = self.clients.metadata.clone();
        let found =
            tokio::task::spawn_blocking(move || metadata.offsets_for_times(tpl, ADMIN_TIMEOUT))
                .await
                .map_err(|e| engine_error("offsets task", e))?
                .map_err(|e| engine_error("offsets for times", e))?;
        let offset = found
            .find_partition(&self.topic, self.partition)
            .map(|e| e.offset());
        Ok(match offset {
            Some(Offset::Offset(o)) if o >= 0 => Some(self.base + o as u64 + 1),
            _ => None,
        })
    }

    /// The receive time of the record at `sequence` (which must exist).
    async fn timestamp_of(&self, sequence: u64) -> Result<i64, LogError> {
        let records = self.read(sequence, 1, 1).await?;
        match records.first() {
            Some(record) if record.sequence == sequence => Ok(record.timestamp_ms),
            _ => Err(LogError::Engine(format!(
                "{}/{}: no record at sequence {sequence}",
                self.topic, self.partition
            ))),
        }
    }

    fn put_reader(&self, reader: Reader) {
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= IDLE_READERS {
            idle.remove(0); // the least recently returned
        }
        idle.push(reader);
    }
}

/// `(low, high)` watermarks of one partition.
async fn watermarks(
    clients: &Arc<Clients>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), LogError> {
    let metadata = clients.metadata.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || metadata.fetch_watermarks(&topic, partition, ADMIN_TIMEOUT))
        .await
        .map_err(|e| engine_error("watermark task", e))?
        .map_err(|e| engine_error("fetching watermarks", e))
}

#[async_trait]
impl EventLog for KafkaPartitionLog {
    async fn append(&self, payloads: Vec<Bytes>) -> Result<AppendReceipt, LogError> {
        let timestamp_ms = chrono::Utc::now().timestamp_millis();
        if payloads.is_empty() {
            let end = *self.end.borrow();
            return Ok(AppendReceipt {
                first_sequence: end,
                last_sequence: end.saturating_sub(1),
                timestamp_ms,
            });
        }
        let limit = self.clients.options.max_record_bytes;
        if let Some(big) = payloads.iter().find(|p| p.len() > limit) {
            return Err(LogError::TooLarge {
                size: big.len(),
                limit,
            });
        }
        // Enqueue everything first, so the records share produce requests, then wait for
        // every report: the append is durable only when all are in.
        let mut reports = Vec::with_capacity(payloads.len());
        for payload in &payloads {
            loop {
                let record = FutureRecord::<(), [u8]>::to(&self.topic)
                    .partition(self.partition)
                    .payload(payload.as_ref())
                    .timestamp(timestamp_ms);
                match self.clients.producer.send_result(record) {
                    Ok(report) => {
                        reports.push(report);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(engine_error("producing", e)),
                }
            }
        }
        let mut first = u64::MAX;
        let mut last = 0;
        for report in reports {
            match report.await {
                Ok(Ok(delivery)) => {
                    let sequence = self.base + delivery.offset as u64 + 1;
                    first = first.min(sequence);
                    last = last.max(sequence);
                }
                Ok(Err((e, _))) => return Err(engine_error("producing", e)),
                Err(_) => return Err(LogError::Closed),
            }
        }
        self.advance_to_offset((last - self.base) as i64);
        Ok(AppendReceipt {
            first_sequence: first,
            last_sequence: last,
            timestamp_ms,
        })
    }

    async fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        let from = from.max(self.first_sequence());
        let mut end = *self.end.borrow();
        if from >= end {
            // The tail follower may lag: only the broker can say there is nothing more.
            end = self.refresh_end().await?;
            if from >= end {
                return Ok(Vec::new());
            }
        }
        let (mut reader, mut fresh) = match self.idle_reader(from) {
            Some(reader) => (reader, false),
            None => (self.new_reader(from, from)?, true),
        };
        let mut step_back = 64u64;
        let mut records: Vec<Record> = Vec::new();
        let mut bytes = 0;
        while records.len() < max_records.max(1) && bytes < max_bytes.max(1) && reader.next < end {
            let first = self.first_sequence();
            let may_step_back = fresh && records.is_empty() && reader.fetch_from > first;
            let wait = if may_step_back {
                FIRST_FETCH_WAIT
            } else {
                READ_TIMEOUT
            };
            let Some(consumer) = reader.consumer.as_ref() else {
                return Err(LogError::Closed);
            };
            let message = match tokio::time::timeout(wait, consumer.recv()).await {
                Ok(Ok(message)) => message,
                Ok(Err(e)) => return Err(engine_error("reading", e)),
                Err(_) if may_step_back => {
                    let fetch_from = reader.fetch_from.saturating_sub(step_back).max(first);
                    step_back = step_back.saturating_mul(16);
                    reader = self.new_reader(from, fetch_from)?;
                    continue;
                }
                Err(_) if !records.is_empty() => break,
                Err(_) => {
                    return Err(LogError::Engine(format!(
                        "reading {}/{} from sequence {from} timed out",
                        self.topic, self.partition
                    )))
                }
            };
            fresh = false;
            let sequence = self.base + message.offset() as u64 + 1;
            if sequence < reader.next {
                continue; // the head of a batch that started before `from`
            }
            if sequence > reader.next && reader.fetch_from > first {
                // A fetch from inside a record batch skipped to the next batch (Tansu does
                // that): start further back and skip what was not asked for. The message
                // goes first: it belongs to the consumer being replaced, whose destruction
                // waits until every message it handed out is released.
                drop(message);
                let fetch_from = reader.next.saturating_sub(step_back).max(first);
                step_back = step_back.saturating_mul(16);
                reader = self.new_reader(reader.next, fetch_from)?;
                continue;
            }
            if sequence > reader.next {
                tracing::warn!(
                    topic = %self.topic,
                    partition = self.partition,
                    expected = reader.next,
                    found = sequence,
                    "gap in a partition's offsets"
                );
            }
            let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
            bytes += payload.len();
            records.push(Record {
                sequence,
                timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
                payload,
            });
            reader.next = sequence + 1;
        }
        self.put_reader(reader);
        Ok(records)
    }

    async fn sequence_at(&self, timestamp_ms: i64) -> Result<u64, LogError> {
        let end = self.refresh_end().await?;
        let first = self.first_sequence();
        if first >= end {
            return Ok(end);
        }
        // The broker's index answers at once; its answer is then checked against the records'
        // own timestamps (Tansu answered the earliest offset whatever the time) and, if
        // wrong, narrowed by a binary search over reads. Invariant: the answer is in lo..=hi.
        let (mut lo, mut hi) = (first, end);
        match self.broker_offset_for_time(timestamp_ms).await? {
            Some(s) if (first..end).contains(&s) => {
                if self.timestamp_of(s).await? >= timestamp_ms {
                    if s == first || self.timestamp_of(s - 1).await? < timestamp_ms {
                        return Ok(s);
                    }
                    hi = s;
                } else {
                    lo = s + 1;
                }
            }
            _ => {
                if self.timestamp_of(end - 1).await? < timestamp_ms {
                    return Ok(end);
                }
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.timestamp_of(mid).await? >= timestamp_ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    fn next_sequence(&self) -> u64 {
        *self.end.borrow()
    }

    fn first_sequence(&self) -> u64 {
        self.first.load(Ordering::Relaxed)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    async fn cursor(&self, name: &str) -> Result<Option<u64>, LogError> {
        self.clients.cursors.get(&self.cursor_key(name)).await
    }

    async fn commit_cursor(&self, name: &str, next_sequence: u64) -> Result<(), LogError> {
        self.clients
            .cursors
            .put(&self.cursor_key(name), Some(next_sequence))
            .await
    }

    async fn delete_cursor(&self, name: &str) -> Result<(), LogError> {
        self.clients.cursors.put(&self.cursor_key(name), None).await
    }

    async fn cursors(&self) -> Result<Vec<(String, u64)>, LogError> {
        let prefix = self.cursor_key("");
        Ok(self
            .clients
            .cursors
            .all()
            .await?
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|name| (name.to_owned(), v)))
            .collect())
    }

    fn stats(&self) -> LogStats {
        LogStats {
            bytes: 0,
            segments: 1,
            first_sequence: self.first_sequence(),
            next_sequence: self.next_sequence(),
        }
    }
}
