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
//! - `sink`: [`SqsSink`], the [`crate::sinks::Sink`].
//!
//! # Guarantees and ordering
//! `MessageDeduplicationId` is the event id, so a re-send within SQS's 5-minute window is
//! stored once. A body over `max_payload_size` is `Permanent` (dead letters, with its size
//! in the reason) and never sent. Within a queue, once an entry of a message group fails,
//! later entries of that group are not sent (or, if already in the same batch call and
//! accepted, reported `Retry`), so the engine re-sends the group's tail in order.

mod batcher;
mod client;
mod entry;
mod error;
mod queues;
mod sink;

pub use error::SqsError;
pub use sink::SqsSink;
