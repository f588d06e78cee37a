//! [`SqsSink`]: group a batch by queue, send each queue's entries with `SendMessageBatch`
//! (at most 10 entries and `max_payload_size` bytes per call), classify every entry. An
//! event over `max_payload_size` goes to S3 first when `[s3]` is on (`s3.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::batcher::{retry, Batcher, BATCH_ENTRIES};
use super::client;
use super::entry::{self, Entry, GroupBy, Oversize};
use super::error::SqsError;
use super::queues::{Naming, Queues};
use super::s3::{self, Offload};
use super::SqsConfig;
use super::SqsTarget;
use crate::catalog::EventKind;
use crate::config::S3Config;
use crate::delivery::subscription::{SinkTarget, Subscription};
use crate::envelope::LoggedEvent;
use crate::sinks::{Outcome, Sink};

/// Sends events to Evolution's SQS FIFO queues. One value serves every SQS subscription.
pub struct SqsSink {
    client: aws_sdk_sqs::Client,
    queues: Arc<Queues>,
    /// Sends every request; concurrent calls to one queue share them.
    batcher: Arc<Batcher>,
    global: Naming,
    server_url: String,
    server_name: String,
    group_by: GroupBy,
    max_payload: usize,
    /// Where messages over `max_payload` go (`[s3]`); without it they are dead-lettered.
    s3: Option<Offload>,
}

impl SqsSink {
    /// Builds the client from `cfg` (endpoint override, region, credentials). `server_url`
    /// and `server_name` go in every envelope (`server_url`, `server`).
    pub async fn new(
        cfg: &SqsConfig,
        server_url: String,
        server_name: String,
    ) -> Result<SqsSink, SqsError> {
        let group_by = GroupBy::parse(&cfg.group_by).ok_or_else(|| SqsError::Config {
            key: "sqs.group_by",
            message: format!("`{}`: expected `instance` or `chat`", cfg.group_by),
        })?;
        if cfg.max_payload_size == 0 {
            return Err(SqsError::Config {
                key: "sqs.max_payload_size",
                message: "must be greater than 0".into(),
            });
        }
        let client = client::build(cfg).await;
        let queues = Arc::new(Queues::new(client.clone(), cfg.account_id.clone()));
        Ok(SqsSink {
            batcher: Arc::new(Batcher::new(
                client.clone(),
                queues.clone(),
                cfg.max_payload_size,
            )),
            queues,
            client,
            global: Naming::global(cfg),
            server_url,
            server_name,
            group_by,
            max_payload: cfg.max_payload_size,
            s3: None,
        })
    }

    /// Stores messages over `sqs.max_payload_size` in S3 as `cfg` says (when it is on)
    /// and sends Evolution's `dataType: "s3"` message in their place.
    pub async fn with_s3(mut self, cfg: &S3Config) -> SqsSink {
        self.s3 = Offload::new(cfg).await;
        self
    }

    /// An event over the size limit as an entry: its envelope stored in S3 (the object
    /// named after the queue and the event id, so a re-send overwrites it) and the pointer
    /// entry in its place. Without S3 it is permanent, with its size; a failed upload is a
    /// retry.
    async fn offload(
        &self,
        index: usize,
        event: &LoggedEvent,
        queue: &str,
        oversize: Oversize,
    ) -> Result<Entry, Outcome> {
        let Some(store) = &self.s3 else {
            let reason = format!(
                "payload is {} bytes, over the SQS limit of {} bytes (sqs.max_payload_size), \
                 and S3 is off (S3_ENABLED)",
                oversize.size, self.max_payload
            );
            return Err(Outcome::Permanent { reason });
        };
        let key = s3::object_key(queue, &event.event.id.to_string());
        let file_url = store
            .upload(&key, oversize.body.into_bytes())
            .await
            .map_err(|reason| retry(&reason))?;
        entry::pointer(
            index,
            event,
            &self.server_url,
            &self.server_name,
            self.group_by,
            self.max_payload,
            &file_url,
        )
        .map_err(|reason| Outcome::Permanent { reason })
    }

    /// The underlying client (same endpoint and credentials), for tools and tests.
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// Creates `instance`'s FIFO queues for `events` (empty = every catalog event) now, as
    /// Evolution's `/sqs/set` does; returns their names.
    pub async fn ensure_instance_queues(
        &self,
        instance: &str,
        events: &[EventKind],
    ) -> Result<Vec<String>, SqsError> {
        self.ensure(&Naming::PerInstance, instance, events).await
    }

    /// Creates the global queues for `events` (empty = all), or the single queue, now.
    pub async fn ensure_global_queues(
        &self,
        events: &[EventKind],
    ) -> Result<Vec<String>, SqsError> {
        self.ensure(&self.global, "", events).await
    }

    async fn ensure(
        &self,
        naming: &Naming,
        instance: &str,
        events: &[EventKind],
    ) -> Result<Vec<String>, SqsError> {
        let kinds: Vec<EventKind> = if events.is_empty() {
            EventKind::all().collect()
        } else {
            events.to_vec()
        };
        let mut names: Vec<String> = kinds
            .into_iter()
            .map(|k| naming.queue_of_kind(instance, k))
            .collect();
        names.dedup();
        for name in &names {
            if !super::queues::valid_name(name) {
                return Err(SqsError::InvalidQueueName(name.clone()));
            }
            self.queues.url(name).await?;
        }
        Ok(names)
    }

    /// Sends one queue's entries, in order; returns (batch index, outcome) for each.
    async fn send_queue(&self, name: &str, entries: Vec<Entry>) -> Vec<(usize, Outcome)> {
        let url = match self.queues.url(name).await {
            Ok(url) => url,
            Err(e) => {
                let reason = e.to_string();
                return entries.iter().map(|e| (e.index, retry(&reason))).collect();
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        // Groups with a failed entry: their later entries wait, so FIFO order holds.
        let mut failed: HashSet<String> = HashSet::new();
        let mut rest = entries.into_iter().peekable();
        while rest.peek().is_some() {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            while let Some(next) = rest.peek() {
                if failed.contains(&next.group) {
                    let reason = format!(
                        "not sent: an earlier event of message group `{}` failed",
                        next.group
                    );
                    out.push((next.index, retry(&reason)));
                    rest.next();
                    continue;
                }
                // The whole request is bounded by the same limit as one message.
                if chunk.len() == BATCH_ENTRIES
                    || (!chunk.is_empty() && bytes + next.body.len() > self.max_payload)
                {
                    break;
                }
                bytes += next.body.len();
                chunk.extend(rest.next());
            }
            if chunk.is_empty() {
                continue;
            }
            let groups: Vec<String> = chunk.iter().map(|e| e.group.clone()).collect();
            let results = self.batcher.send(name, &url, chunk).await;
            if results.len() < groups.len() {
                // The request's task ended without outcomes: these entries stay unset
                // (`Retry`), and their groups' later entries must wait for them.
                failed.extend(groups);
            }
            for (entry, outcome) in results {
                let outcome = match outcome {
                    Outcome::Delivered if failed.contains(&entry.group) => retry(&format!(
                        "re-sent after an earlier event of message group `{}` failed, to keep order",
                        entry.group
                    )),
                    other => other,
                };
                if matches!(outcome, Outcome::Retry { .. }) {
                    failed.insert(entry.group.clone());
                }
                out.push((entry.index, outcome));
            }
        }
        out
    }
}

#[async_trait]
impl Sink for SqsSink {
    fn max_batch(&self) -> usize {
        BATCH_ENTRIES
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        let naming = match subscription.target {
            SinkTarget::Sqs(SqsTarget { global: true }) => &self.global,
            SinkTarget::Sqs(SqsTarget { global: false }) => &Naming::PerInstance,
            _ => {
                let reason = format!("subscription `{}` is not an SQS one", subscription.id);
                return vec![Outcome::Permanent { reason }; events.len()];
            }
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        // (queue name, its entries in batch order), queues in order of first appearance.
        let mut by_queue: Vec<(String, Vec<Entry>)> = Vec::new();
        // (queue, group) whose S3 upload failed: their later events wait, to keep order.
        let mut held: HashSet<(String, String)> = HashSet::new();
        for (i, event) in events.iter().enumerate() {
            let queue = match naming.queue(&event.event.instance, &event.event.event) {
                Ok(queue) => queue,
                Err(e) => {
                    outcomes[i] = Some(Outcome::Permanent {
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let built = entry::build(
                i,
                event,
                &self.server_url,
                &self.server_name,
                self.group_by,
                self.max_payload,
            );
            let group = match &built {
                Ok(entry) => entry.group.clone(),
                Err(oversize) => oversize.group.clone(),
            };
            if held.contains(&(queue.clone(), group.clone())) {
                let reason =
                    format!("not sent: an earlier event of message group `{group}` failed");
                outcomes[i] = Some(retry(&reason));
                continue;
            }
            let entry = match built {
                Ok(entry) => entry,
                Err(oversize) => match self.offload(i, event, &queue, oversize).await {
                    Ok(entry) => entry,
                    Err(outcome) => {
                        if matches!(outcome, Outcome::Retry { .. }) {
                            held.insert((queue.clone(), group));
                        }
                        outcomes[i] = Some(outcome);
                        continue;
                    }
                },
            };
            match by_queue.iter_mut().find(|(name, _)| *name == queue) {
                Some((_, entries)) => entries.push(entry),
                None => by_queue.push((queue, vec![entry])),
            }
        }
        // Different queues are independent streams: send them concurrently.
        let sent = futures::future::join_all(
            by_queue
                .into_iter()
                .map(|(name, entries)| async move { self.send_queue(&name, entries).await }),
        )
        .await;
        for (i, outcome) in sent.into_iter().flatten() {
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| retry("not sent")))
            .collect()
    }
}
