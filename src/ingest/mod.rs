//! Ingest: turning what arrives over HTTP into stored events.
//!
//! Canonical ingest accepts our own shape; each provider module turns that provider's
//! webhook payload into the same [`IncomingEvent`]s. Nothing here touches HTTP types, so
//! adapters are plain functions that tests and fuzzers call directly.

pub mod canonical;
pub mod limits;
pub mod providers;
pub mod redact;

use serde_json::value::RawValue;

// The fuzz crate compiles this module tree on its own, without the log.
#[cfg(not(fuzzing))]
pub mod idempotency;
#[cfg(not(fuzzing))]
mod store;
#[cfg(not(fuzzing))]
pub use store::{store, Owner, StoreError};

/// One event on its way into the log, before it has an id or a sequence.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// Dotted Evolution event name (`messages.upsert`), or a provider's own dotted name for
    /// events with no Evolution counterpart (custom events).
    pub event: String,
    /// The body in Evolution's shape.
    pub data: Box<RawValue>,
    /// The instance owner's JID, when the payload says it.
    pub sender: Option<String>,
    /// Provider name (`evolution`, `whapi`, `meta`, `linq`); none for canonical ingest.
    pub source: Option<&'static str>,
    /// The provider's original payload for this event, verbatim.
    pub raw: Option<Box<RawValue>>,
    /// The event's idempotency key: a canonical event's `id` (`id:{id}`), or what
    /// identifies a provider retry of the same thing (provider message id + event +
    /// status). Two events with the same key inside the window are stored once
    /// (`idempotency`).
    pub dedupe_key: Option<String>,
}
