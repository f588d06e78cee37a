//! The delivery engine every sink shares: one durable cursor per subscription over the
//! event log, ordering per lane (chat, instance or none), retries with backoff, dead
//! letters, replay.
//!
//! # Design
//!
//! ```text
//!  event log partition ──► tail (router.rs): reads each new record once, decodes it once
//!                            │  index: instance -> [subscription] + all-instance ones
//!                            ▼
//!  registry ──watch<SubscriptionSet>──> supervisor ──one per enabled subscription──> runner
//!                                           ^            inbox (attached) or its own   │
//!  DeliveryEngine (status, dead letters,    │ commands   log reads (behind the tail)   │
//!  redrive, replay) ────────────────────────┘                                           v
//!                                   window: a FIFO per lane (chat | instance | event) ──┤
//!                                                                                        v
//!                                             worker per busy lane, at most
//!                                             `max_parallel_instances` per subscription
//!                                                     │ Sink::send -> Outcome
//!  delivery-state log <── retry progress, parked lanes,│
//!                         dead letters                 │ still failing after
//!                                                      v `park_after_attempts`
//!                                   parked lanes (parking.rs): sequences only, cursor
//!                                   passes them; drained by a worker when the head is due
//! ```
//!
//! - **Tail and router** (`router.rs`): one tail per engine (one event-log partition) reads
//!   each new record once and hands it, decoded, to the subscriptions that want it, found
//!   through an index by instance. A runner that keeps up is *attached*: it takes events
//!   from its inbox and is not woken by appends; one that is behind (a replay, a new
//!   subscription with an old start, an inbox that overflowed) reads the log itself and
//!   attaches again when it reaches the tail. At start the tail begins at the lowest
//!   cursor and waits until the first runners attached, so a restart's backlog is read
//!   once for all subscriptions.
//! - **Supervisor** (`supervisor.rs`): follows the registry's set; starts a runner for each
//!   enabled subscription whose sink kind is registered, updates a running one in place
//!   when its definition changes (a changed ordering restarts it), stops it when disabled
//!   or removed. Replay and redrive go through it so they are ordered with starts and stops.
//! - **Runner** (`runner.rs`): from the subscription's cursor (or its `start_sequence`
//!   when it has none), keeps wanted events in per-lane FIFO queues (`window.rs`, at most
//!   `EngineOptions::window` unfinished events) and hands each lane's head batch to a
//!   worker, at most `max_parallel_instances` lanes at once. A lane is what the
//!   subscription's `policy.ordering` (default `delivery.ordering`) keeps in order: a chat
//!   of an instance (`StoredEvent::chat`, derived at ingest), a whole instance, or each
//!   event alone. Nothing sleep-polls.
//! - **Worker** (`worker.rs`): sends a batch, classifies each outcome, and retries on the
//!   [`RetryPolicy`] schedule (`policy.rs`) until delivered or dead-lettered. Only then
//!   does the lane's next batch start: within a subscription a lane's events are delivered
//!   in sequence order, while different lanes proceed in parallel. A sink that keeps order
//!   between outstanding sends (`Sink::pipelines`: Kafka) gets a lane's next batches
//!   while earlier ones wait for their answers (at most 8 out, new ones handed over as
//!   the runner queues them); once one of them fails,
//!   nothing more is handed over and the failed events of all of them are retried
//!   together, as one batch would be.
//! - **Parking** (`parking.rs`): an event still failing after `park_after_attempts` parks
//!   its lane instead of waiting in memory: a durable `Parked` record, then the lane's
//!   events (this one first, later ones as they are read) wait as sequences while the
//!   cursor moves past them. The runner hands the lane to a worker when its head is due;
//!   delivered or dead-lettered, the rest of the lane follows in order and the lane flows
//!   again. A second cursor, `{id}#parked`, holds retention at the lowest parked sequence;
//!   a restart finds each parked lane's events in the log between its start and the cursor.
//! - **Cursor**: committed at the lowest unfinished sequence that is not parked, coalesced
//!   to one commit per `commit_interval`. A crash redelivers at most the in-flight window
//!   (at-least-once; receivers deduplicate by the event id, the `webhook-id`).
//! - **Durable state** (`state.rs`): each failed attempt writes the event's attempt history
//!   and next due time to the delivery-state log; parked lanes and dead letters too. At start the log is
//!   replayed into memory, so retry counts and schedules survive restarts. An event that
//!   succeeds on its first try writes nothing.
//! - **Dead letters and redrive**: after `max_attempts` (first try included), or at once on
//!   `Outcome::Permanent`, the event goes to the subscription's dead-letter list with its
//!   attempt history. A redrive re-reads those events from the log and queues them behind
//!   their lane's current position, so a redriven event arrives after newer events of its
//!   lane; on success it leaves the list.
//! - **Disable**: `Outcome::Disable` (410 Gone) or `disable_after_failures` consecutive
//!   failed attempts stop the runner (the failing event stays unfinished) and send a
//!   [`DisableRequest`] to the registry. When the registry publishes the subscription
//!   again (re-enabled), delivery resumes from the cursor, that event first.
//! - **Replay**: [`DeliveryEngine::replay`] moves the cursor to a sequence or a time
//!   (`EventLog::sequence_at`) and restarts the runner there.
//! - **Visibility**: [`DeliveryEngine::status`] and Prometheus metrics (`metrics.rs`); every
//!   attempt goes to the attempt log (`src/attempts/`, when the engine has one), which the
//!   delivery lookups (`lookup.rs`) read with the engine's state.
//!
//! **Architecture Invariant:** the engine knows no HTTP and no registry module: it reads a
//! watch of [`SubscriptionSet`] and writes [`DisableRequest`]s to a channel.
//!
//! **Architecture Invariant:** within one subscription, events of the same lane are
//! delivered in sequence order, parked or not; different lanes never wait for each other,
//! except for the in-flight limits (`max_parallel_instances`, the sink's per-endpoint
//! limit).
//!
//! **Architecture Invariant:** the cursor passes an undelivered event only once it is
//! recorded durably as parked (its lane's `Parked` record) and held from retention.
//!
//! **Batch sinks** (`max_batch > 1`): outcomes are per event; delivered events of a batch
//! finish, failed ones are retried together, so within a batch a later event may succeed
//! before an earlier one. The batches a pipelining sink has out at once count as one
//! batch here.

pub mod activity;
mod cursors;
mod engine;
mod error;
pub mod lookup;
mod metrics;
mod parking;
mod partitioned;
mod policy;
mod router;
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
pub use subscription::{OrderBy, Policy, Scope, SinkTarget, Subscription, SubscriptionSet};
