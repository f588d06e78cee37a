//! The delivery engine every sink shares: one durable cursor per subscription over the
//! event log, per-instance ordering, retries with backoff, dead letters, replay.
//!
//! TO BE WRITTEN by the delivery engine work; `subscription` is the model the registry
//! hands to it.

pub mod subscription;
