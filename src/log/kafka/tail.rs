//! Follows the end of every partition of a topic, so each partition log's `subscribe()`
//! watch moves when any process appends: one consumer per topic, assigned (not
//! subscribed) from each partition's end at open.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{engine_error, reader_config, Clients, KafkaPartitionLog};
use crate::log::LogError;

/// Starts the follower of `topic`, whose partitions are `logs` (index = partition).
pub(super) fn follow(
    clients: &Arc<Clients>,
    topic: &str,
    logs: &[Arc<KafkaPartitionLog>],
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), LogError> {
    let consumer: StreamConsumer = reader_config(&clients.options)
        .create()
        .map_err(|e| engine_error("creating a tail follower", e))?;
    let mut tpl = TopicPartitionList::new();
    for log in logs {
        // Start where `open` measured the end, so no record between the two is missed.
        tpl.add_partition_offset(topic, log.partition(), Offset::Offset(log.end_offset()))
            .map_err(|e| engine_error("assigning a tail follower", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| engine_error("assigning a tail follower", e))?;
    let logs = logs.to_vec();
    tasks.spawn(async move {
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => return,
                m = consumer.recv() => m,
            };
            match message {
                Ok(message) => {
                    if let Some(log) = logs.get(message.partition() as usize) {
                        log.advance_to_offset(message.offset() + 1);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "log tail follower");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    Ok(())
}
