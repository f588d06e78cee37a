//! Followers: consumers assigned (never subscribed) to partitions from given offsets, each
//! handing every message to a callback until shutdown. One follows the end of every
//! partition of a topic, so each partition log's `subscribe()` watch moves when any process
//! appends; the cursor table follows its topic the same way (`cursors.rs`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{engine_error, reader_config, Clients, KafkaLogOptions, KafkaPartitionLog};
use crate::log::LogError;

/// Starts a follower of `topic` reading each `(partition, offset)` of `starts`; `what`
/// names it in errors and logs.
pub(super) fn spawn_follower(
    options: &KafkaLogOptions,
    topic: &str,
    starts: &[(i32, Offset)],
    what: &'static str,
    cancel: CancellationToken,
    tasks: &TaskTracker,
    mut on_message: impl FnMut(&BorrowedMessage<'_>) + Send + 'static,
) -> Result<(), LogError> {
    let consumer: StreamConsumer = reader_config(options)
        .create()
        .map_err(|e| engine_error(&format!("creating the {what}"), e))?;
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in starts {
        tpl.add_partition_offset(topic, *partition, *offset)
            .map_err(|e| engine_error(&format!("assigning the {what}"), e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| engine_error(&format!("assigning the {what}"), e))?;
    tasks.spawn(async move {
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => return,
                m = consumer.recv() => m,
            };
            match message {
                Ok(message) => on_message(&message),
                Err(e) => {
                    tracing::warn!(error = %e, follower = what, "Kafka follower");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    Ok(())
}

/// Starts the end follower of `topic`, whose partitions are `logs` (index = partition).
pub(super) fn follow(
    clients: &Arc<Clients>,
    topic: &str,
    logs: &[Arc<KafkaPartitionLog>],
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), LogError> {
    // Start where `open` measured each end, so no record between the two is missed.
    let starts: Vec<(i32, Offset)> = logs
        .iter()
        .map(|log| (log.partition(), Offset::Offset(log.end_offset())))
        .collect();
    let logs = logs.to_vec();
    spawn_follower(
        &clients.options,
        topic,
        &starts,
        "tail follower",
        cancel,
        tasks,
        move |message| {
            if let Some(log) = logs.get(message.partition() as usize) {
                log.advance_to_offset(message.offset() + 1);
            }
        },
    )
}
