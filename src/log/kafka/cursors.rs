//! Durable cursors in a compacted topic: key = cursor name, value = the next sequence as
//! decimal text, no value = deleted. Every process follows the whole topic into a map; a
//! read first waits until the map has caught up with the topic's end, so it sees every
//! commit made before it, by any process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tail::spawn_follower;
use super::{client_config, engine_error, reader_config, KafkaLogOptions, ADMIN_TIMEOUT};
use crate::log::LogError;

/// How long a cursor read waits for the follower to reach the topic's end.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the follower must stay quiet at open before the table counts as complete (a
/// caught-up fetch answers within `fetch.wait.max.ms`, 50 ms).
const END_QUIET: Duration = Duration::from_millis(250);
/// The longest the open waits for that quiet.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);

/// A cursor's value and the offset of the record that set it (a follower never applies
/// an older record over a newer local write).
type Entry = (Option<u64>, i64);

/// The cursor map of one process.
pub(super) struct CursorTable {
    topic: String,
    producer: FutureProducer,
    metadata: Arc<BaseConsumer>,
    map: Mutex<HashMap<String, Entry>>,
    /// The offset after the last record the follower applied.
    applied: watch::Sender<i64>,
}

impl CursorTable {
    /// Opens the table and starts following the topic from its beginning.
    pub(super) async fn open(
        options: &KafkaLogOptions,
        topic: String,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Arc<CursorTable>, LogError> {
        let mut producer_cfg = client_config(options);
        producer_cfg
            .set("linger.ms", "0")
            .set("enable.idempotence", "true")
            .set("acks", "all");
        let table = Arc::new(CursorTable {
            producer: producer_cfg
                .create()
                .map_err(|e| engine_error("creating the cursor producer", e))?,
            metadata: Arc::new(
                reader_config(options)
                    .create()
                    .map_err(|e| engine_error("creating the cursor metadata client", e))?,
            ),
            topic,
            map: Mutex::new(HashMap::new()),
            applied: watch::channel(0).0,
        });
        let follower = table.clone();
        spawn_follower(
            options,
            &table.topic,
            &[(0, Offset::Beginning)],
            "cursor follower",
            cancel,
            tasks,
            move |message| {
                let value = message
                    .payload()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let Some(key) = message.key() {
                    follower.apply(&String::from_utf8_lossy(key), value, message.offset());
                }
                follower.applied.send_replace(message.offset() + 1);
            },
        )?;
        table.catch_up().await?;
        table.settle().await;
        Ok(table)
    }

    /// Waits until the follower has applied nothing new for a moment. The watermark that
    /// `catch_up` waits for can stop short of the last record batch (Tansu answers it as
    /// the batch's base offset + 1, see `partition.rs`): a process starting right after
    /// another's batched commits would otherwise read cursors from before them and deliver
    /// those events again. Once, at open, and at most `SETTLE_AT_MOST` (other processes
    /// may be committing all the while); later reads rely on the watermark.
    async fn settle(&self) {
        let mut applied = self.applied.subscribe();
        applied.borrow_and_update();
        let give_up = tokio::time::Instant::now() + SETTLE_AT_MOST;
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(END_QUIET, applied.changed()).await {
                Ok(Ok(())) => continue,
                _ => return,
            }
        }
    }

    /// Records a cursor's value unless the map holds one set by a later record.
    fn apply(&self, name: &str, value: Option<u64>, offset: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(name).is_none_or(|(_, at)| *at < offset) {
            map.insert(name.to_owned(), (value, offset));
        }
    }

    /// Waits until every record committed to the topic before this call is in the map.
    async fn catch_up(&self) -> Result<(), LogError> {
        let (metadata, topic) = (self.metadata.clone(), self.topic.clone());
        let high = tokio::task::spawn_blocking(move || {
            metadata.fetch_watermarks(&topic, 0, ADMIN_TIMEOUT)
        })
        .await
        .map_err(|e| engine_error("cursor topic watermarks", e))?
        .map_err(|e| engine_error("cursor topic watermarks", e))?
        .1;
        let mut applied = self.applied.subscribe();
        let caught_up = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
            applied.wait_for(|at| *at >= high).await.is_ok()
        })
        .await;
        match caught_up {
            Ok(true) => Ok(()),
            Ok(false) => Err(LogError::Closed),
            Err(_) => Err(LogError::Engine(format!(
                "the cursor topic follower did not reach offset {high} in time"
            ))),
        }
    }

    /// A cursor's position.
    pub(super) async fn get(&self, name: &str) -> Result<Option<u64>, LogError> {
        self.catch_up().await?;
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(name).and_then(|(value, _)| *value))
    }

    /// Every live cursor.
    pub(super) async fn all(&self) -> Result<Vec<(String, u64)>, LogError> {
        self.catch_up().await?;
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .iter()
            .filter_map(|(k, (v, _))| v.map(|v| (k.clone(), v)))
            .collect())
    }

    /// Stores (or, with `None`, deletes) a cursor; returns once the broker has it.
    pub(super) async fn put(&self, name: &str, value: Option<u64>) -> Result<(), LogError> {
        let text = value.map(|v| v.to_string());
        let mut record = FutureRecord::<str, str>::to(&self.topic)
            .partition(0)
            .key(name);
        if let Some(text) = &text {
            record = record.payload(text.as_str());
        }
        let delivery = self
            .producer
            .send(record, ADMIN_TIMEOUT)
            .await
            .map_err(|(e, _)| engine_error("committing a cursor", e))?;
        self.apply(name, value, delivery.offset);
        Ok(())
    }
}
