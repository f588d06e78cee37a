//! The delivery engine every sink shares: one durable cursor per subscription over the
//! event log, per-instance ordering, retries with backoff, dead letters, replay.
//!
//! # Design
//!
//! ```text
//!  registry ──watch<SubscriptionSet>──> supervisor ──one per enabled subscription──> runner
//!                                           ^                                         │
//!  DeliveryEngine (status, dead letters,    │ commands                 per-instance   │
//!  redrive, replay) ────────────────────────┘                          queues (window)│
//!                                                                                     v
//!  event log ──read from cursor, filter with Subscription::wants──> worker per instance batch
//!                                                                     │ Sink::send -> Outcome
//!  delivery-state log <── retry progress, dead letters ───────────────┘
//! ```
//!
//! - **Supervisor** (`supervisor.rs`): follows the registry's set; starts a runner for each
//!   enabled subscription whose sink kind is registered, updates a running one in place
//!   when its definition changes, stops it when disabled or removed. Replay and redrive go
//!   through it so they are ordered with starts and stops.
//! - **Runner** (`runner.rs`): reads the log from the subscription's cursor (or its
//!   `start_sequence` when it has none), keeps wanted events in per-instance FIFO queues
//!   (`window.rs`, at most `EngineOptions::window` unfinished events), and hands each
//!   instance's head batch to a worker, at most `max_parallel_instances` at once. When
//!   caught up it waits on the log's `subscribe()` watch; nothing sleep-polls.
//! - **Worker** (`worker.rs`): sends a batch, classifies each outcome, and retries on the
//!   [`RetryPolicy`] schedule (`policy.rs`) until delivered or dead-lettered. Only then
//!   does the instance's next batch start: within a subscription an instance's events are
//!   delivered in sequence order, while different instances proceed in parallel.
//! - **Cursor**: committed at the lowest unfinished sequence, coalesced to one commit per
//!   `commit_interval`. A crash redelivers at most the in-flight window (at-least-once;
//!   receivers deduplicate by the event id, the `webhook-id`).
//! - **Durable state** (`state.rs`): each failed attempt writes the event's attempt history
//!   and next due time to the delivery-state log; dead letters too. At start the log is
//!   replayed into memory, so retry counts and schedules survive restarts. An event that
//!   succeeds on its first try writes nothing.
//! - **Dead letters and redrive**: after `max_attempts` (first try included), or at once on
//!   `Outcome::Permanent`, the event goes to the subscription's dead-letter list with its
//!   attempt history. A redrive re-reads those events from the log and queues them behind
//!   the instance's current position, so a redriven event arrives after newer events of
//!   its instance; on success it leaves the list.
//! - **Disable**: `Outcome::Disable` (410 Gone) or `disable_after_failures` consecutive
//!   failed attempts stop the runner (the failing event stays unfinished) and send a
//!   [`DisableRequest`] to the registry. When the registry publishes the subscription
//!   again (re-enabled), delivery resumes from the cursor, that event first.
//! - **Replay**: [`DeliveryEngine::replay`] moves the cursor to a sequence or a time
//!   (`EventLog::sequence_at`) and restarts the runner there.
//! - **Visibility**: [`DeliveryEngine::status`] and Prometheus metrics (`metrics.rs`).
//!
//! **Architecture Invariant:** the engine knows no HTTP and no registry module: it reads a
//! watch of [`SubscriptionSet`] and writes [`DisableRequest`]s to a channel.
//!
//! **Batch sinks** (`max_batch > 1`): outcomes are per event; delivered events of a batch
//! finish, failed ones are retried together, so within a batch a later event may succeed
//! before an earlier one.

mod engine;
mod error;
mod metrics;
mod partitioned;
mod policy;
mod runner;
mod state;
mod status;
pub mod subscription;
mod supervisor;
mod window;
mod worker;

pub use engine::{DeliveryEngine, DisableRequest, EngineDeps, EngineOptions, Redrive, ReplayFrom};
pub use error::DeliveryError;
pub use metrics::DeliveryMetrics;
pub use partitioned::PartitionedDelivery;
pub use policy::RetryPolicy;
pub use state::{Attempt, AttemptOutcome, DeadLetter, RetryState};
pub use status::SubscriptionStatus;
pub use subscription::{
    Scope, SigningScheme, SinkTarget, Subscription, SubscriptionSet, WebhookTarget,
};
