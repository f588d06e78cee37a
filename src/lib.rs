//! Switchyard: durable, ordered delivery of WhatsApp gateway events.
//!
//! # Layout
//! An event enters once, is stored once, and leaves once per subscription:
//! `api` / `ingest` -> `log` -> `delivery` -> `sinks`, with `registry` beside them.
//!
//! - [`catalog`]: the Evolution event kinds and every spelling of them.
//! - [`log`]: the `EventLog` trait and the embedded segment-file engine.
//! - [`console`]: the operator's web console at `/ui`, compiled in.
//! - [`websocket`]: `/ws` and socket.io listeners fed from the log by one shared tail.
//! - [`alerts`]: the server's own `switchyard.*` events, appended to the log.
pub mod alerts;
pub mod api;
pub mod app;
pub mod attempts;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod console;
pub mod delivery;
pub mod envelope;
pub mod filter;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod registry;
pub mod sinks;
pub mod websocket;
