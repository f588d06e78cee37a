//! The Kafka engine (`log.engine = "kafka"`): the same `EventLog` trait over Kafka topics,
//! so that several Switchyard processes share one cluster's log. Kafka does the
//! replication, partitioning and membership; nothing here is home-made clustering.
//!
//! # Topics (names start with `log.kafka_topic_prefix`)
//!
//! ```text
//!  {prefix}.events    N partitions   events; an instance always maps to one partition
//!  {prefix}.delivery  N partitions   delivery state (retries, dead letters) of partition p
//!                                    of the events, in its partition p
//!  {prefix}.control   1 partition    registry control records, read by every process
//!  {prefix}.cursors   1 partition    compacted: cursor name -> next sequence
//! ```
//!
//! Each topic partition is one [`KafkaPartitionLog`], an ordinary `EventLog`: a record at
//! offset `o` of partition `p` has sequence `(p << 48) + o + 1`, so sequences stay unique
//! across partitions, contiguous within one, and partition 0 numbers like the embedded log.
//! An append is durable when every record's delivery report is in: the producer is
//! idempotent with `acks=all`, so a report means the in-sync replicas have it, in order.
//! Readers see only committed records (a Kafka consumer never reads past the high
//! watermark), so "readers never see a record before it is durable" holds as in the
//! embedded engine.
//!
//! Each process follows the end of every partition with one tail consumer per topic
//! (`tail.rs`), which feeds each partition's `subscribe()` watch, so followers wake on other
//! processes' appends without polling. Cursors live in a compacted topic (`cursors.rs`)
//! that every process follows; a cursor read first catches up with the topic's end, so a
//! process taking over a partition sees the last position its previous owner committed.
//! Which process delivers which partition is decided by a consumer group
//! (`membership.rs`): the group protocol shares the partitions and moves them when a
//! process dies.

mod cursors;
mod membership;
mod partition;
mod tail;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{partition_base, LogError};
use cursors::CursorTable;
pub use membership::Membership;
pub use partition::KafkaPartitionLog;

/// How long one admin or metadata request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the Kafka engine needs.
#[derive(Debug, Clone)]
pub struct KafkaLogOptions {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// `client.id` of every client.
    pub client_id: String,
    /// librdkafka properties passed through (SASL/SSL).
    pub properties: HashMap<String, String>,
    /// The first part of every topic name; processes with the same prefix share a log.
    pub topic_prefix: String,
    /// Partitions of the events and delivery topics (fixed once the topics exist).
    pub partitions: i32,
    /// Replication factor of the topics this engine creates.
    pub replication_factor: i32,
    /// Consumer-group session timeout: how soon a dead process's partitions move.
    pub session_timeout: Duration,
    /// Largest record accepted.
    pub max_record_bytes: usize,
}

/// The connection settings every client of the engine starts from: brokers, client id,
/// then the pass-through properties.
fn client_config(options: &KafkaLogOptions) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &options.brokers)
        .set("client.id", &options.client_id);
    for (key, value) in &options.properties {
        cfg.set(key, value);
    }
    cfg
}

/// Consumer settings for reading by assignment (never by group subscription).
fn reader_config(options: &KafkaLogOptions) -> ClientConfig {
    let mut cfg = client_config(options);
    cfg.set("group.id", format!("{}.readers", options.topic_prefix))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // A caught-up fetch returns at once when data arrives; this bounds the idle wait.
        .set("fetch.wait.max.ms", "50");
    cfg
}

fn engine_error(context: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Engine(format!("{context}: {e}"))
}

/// Clients shared by every partition log of one process.
pub(crate) struct Clients {
    options: KafkaLogOptions,
    producer: FutureProducer,
    /// Metadata look-ups (watermarks, offsets for times); thread-safe, used on the blocking pool.
    metadata: Arc<BaseConsumer>,
    cursors: Arc<CursorTable>,
}

/// The engine's topics opened in one process.
pub struct KafkaLog {
    /// The events topic, one log per partition.
    pub events: Vec<Arc<KafkaPartitionLog>>,
    /// The delivery-state topic, one log per partition (partition p serves events partition p).
    pub delivery: Vec<Arc<KafkaPartitionLog>>,
    /// The control topic's single partition.
    pub control: Arc<KafkaPartitionLog>,
    options: KafkaLogOptions,
}

impl KafkaLog {
    /// Creates the topics if needed (checking that an existing events topic has the
    /// configured partitions), then opens every partition and starts following their ends.
    pub async fn open(
        options: KafkaLogOptions,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<KafkaLog, LogError> {
        if options.partitions < 1 || options.partitions as u64 >= 1 << 15 {
            return Err(LogError::Engine(
                "log.kafka_partitions must be between 1 and 32767".into(),
            ));
        }
        let prefix = &options.topic_prefix;
        let events_topic = format!("{prefix}.events");
        let delivery_topic = format!("{prefix}.delivery");
        let control_topic = format!("{prefix}.control");
        let cursors_topic = format!("{prefix}.cursors");
        create_topics(
            &options,
            &[
                (&events_topic, options.partitions, false),
                (&delivery_topic, options.partitions, false),
                (&control_topic, 1, false),
                (&cursors_topic, 1, true),
            ],
        )
        .await?;

        let mut producer_cfg = client_config(&options);
        producer_cfg
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .set(
                "message.max.bytes",
                (options.max_record_bytes + 4096).to_string(),
            )
            .set("enable.idempotence", "true")
            .set("acks", "all");
        let producer: FutureProducer = producer_cfg
            .create()
            .map_err(|e| engine_error("creating the producer", e))?;
        let metadata: Arc<BaseConsumer> = Arc::new(
            reader_config(&options)
                .create()
                .map_err(|e| engine_error("creating the metadata client", e))?,
        );
        for (topic, expected) in [
            (&events_topic, options.partitions),
            (&delivery_topic, options.partitions),
        ] {
            let found = partition_count(&metadata, topic).await?;
            if found != expected {
                return Err(LogError::Engine(format!(
                    "topic {topic} has {found} partitions but log.kafka_partitions is {expected}; \
                     instances map to partitions by count, so it must not change"
                )));
            }
        }
        let cursors = CursorTable::open(&options, cursors_topic, cancel.clone(), tasks).await?;
        let clients = Arc::new(Clients {
            options: options.clone(),
            producer,
            metadata,
            cursors,
        });
        // The three at once: opening a partition probes its end (see `KafkaPartitionLog`).
        let (events, delivery, mut control) = tokio::try_join!(
            open_topic(
                &clients,
                &events_topic,
                options.partitions,
                true,
                &cancel,
                tasks,
            ),
            open_topic(
                &clients,
                &delivery_topic,
                options.partitions,
                true,
                &cancel,
                tasks,
            ),
            open_topic(&clients, &control_topic, 1, false, &cancel, tasks),
        )?;
        let control = control
            .pop()
            .ok_or_else(|| LogError::Engine("control topic has no partition".into()))?;
        Ok(KafkaLog {
            events,
            delivery,
            control,
            options,
        })
    }

    /// Joins the delivery consumer group: its assignment says which event partitions this
    /// process delivers.
    pub fn join_delivery_group(&self, cancel: CancellationToken) -> Result<Membership, LogError> {
        Membership::join(&self.options, cancel)
    }
}

/// Opens every partition of a topic and starts its tail follower.
async fn open_topic(
    clients: &Arc<Clients>,
    topic: &str,
    partitions: i32,
    numbered: bool,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Vec<Arc<KafkaPartitionLog>>, LogError> {
    // Concurrently: each open probes its partition's end (a short quiet wait).
    let opens = (0..partitions).map(|p| {
        let base = if numbered {
            partition_base(p as usize)
        } else {
            0
        };
        KafkaPartitionLog::open(clients.clone(), topic.to_owned(), p, base)
    });
    let logs: Vec<Arc<KafkaPartitionLog>> = futures::future::try_join_all(opens)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    tail::follow(clients, topic, &logs, cancel.clone(), tasks)?;
    Ok(logs)
}

/// Creates topics that do not exist yet; an existing one is fine.
async fn create_topics(
    options: &KafkaLogOptions,
    topics: &[(&String, i32, bool)],
) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = client_config(options)
        .create()
        .map_err(|e| engine_error("creating the admin client", e))?;
    let compact = [("cleanup.policy", "compact")];
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions, compacted)| {
            let topic = NewTopic::new(
                name,
                *partitions,
                TopicReplication::Fixed(options.replication_factor),
            );
            if *compacted {
                compact
                    .iter()
                    .fold(topic, |topic, (key, value)| topic.set(key, value))
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)),
        )
        .await
        .map_err(|e| engine_error("creating the log topics", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(LogError::Engine(format!("creating topic {topic}: {code}")))
            }
        }
    }
    Ok(())
}

/// The partition count of a topic, waiting briefly for a just-created topic to appear.
async fn partition_count(metadata: &Arc<BaseConsumer>, topic: &str) -> Result<i32, LogError> {
    let deadline = tokio::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let client = metadata.clone();
        let name = topic.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(Some(&name), ADMIN_TIMEOUT).map(|m| {
                m.topics()
                    .first()
                    .map_or(0, |t| t.partitions().len() as i32)
            })
        })
        .await
        .map_err(|e| engine_error("metadata task", e))?
        .map_err(|e| engine_error(&format!("metadata of {topic}"), e))?;
        if found > 0 || tokio::time::Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
