//! SQS sink: Evolution's FIFO queues, `SendMessageBatch` of up to 10, per-entry outcomes.
//!
//! # Layout
//! - `client`: the aws-sdk-sqs client: endpoint override for SQS-compatible servers
//!   (moto, ElasticMQ, LocalStack), region and static credentials from Evolution's `SQS_*`
//!   names, else the usual AWS chain; bounded timeouts.
//! - `queues`: queue names (only from [`crate::catalog`]) and the URL cache; a missing queue
//!   is created as FIFO on first use, so the name created is the name sent to.
//! - `entry`: one event as a batch entry: body (envelope with `dataType` and `server`), size
//!   check, `MessageGroupId` and `MessageDeduplicationId`.
//! - `batcher`: every `SendMessageBatch`: calls of different lanes bound for one queue
//!   share requests (up to 10 entries), with at most 16 requests per queue in flight.
//! - `s3`: Evolution's large messages: an envelope over `max_payload_size` stored in S3
//!   (`[s3]`, Evolution's `S3_*` names), its presigned URL sent instead.
//! - `sink`: [`SqsSink`], the [`crate::sinks::Sink`].
//! - `config`: the `[sqs]` section ([`SqsConfig`]) and its Evolution env names.
//! - `registration`: [`SINK`], the sink in the registration table, and its `Prepare`: a
//!   subscription's queues are created when it starts or changes.
//!
//! # Guarantees and ordering
//! `MessageDeduplicationId` is the event id, so a re-send within SQS's 5-minute window is
//! stored once. A body over `max_payload_size` is stored in S3 when `[s3]` is on (object
//! `evolution-api/messages/{queue}_{event id}.json`, overwritten by a re-send) and the
//! queue gets `{"dataType": "s3", "data": {"fileUrl": ...}, ...}`; a failed upload is a
//! `Retry` that holds the rest of its message group. Without S3 it is `Permanent` (dead
//! letters, with its size in the reason) and never sent. Within a queue, once an entry of a message group fails,
//! later entries of that group are not sent (or, if already in the same batch call and
//! accepted, reported `Retry`), so the engine re-sends the group's tail in order.

mod batcher;
mod client;
mod config;
mod entry;
mod error;
mod queues;
mod registration;
mod s3;
mod sink;

pub use config::SqsConfig;
pub use error::SqsError;
pub use registration::SINK;
pub use sink::SqsSink;

use serde::{Deserialize, Serialize};

/// An SQS subscription's settings. Stored in control records (`{"sink":"sqs","global":...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsTarget {
    /// True for the global (prefixed) queues; false for the instance's own queues.
    pub global: bool,
}
