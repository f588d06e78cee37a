//! Errors the delivery engine returns to its callers (the API and `main`).

use crate::log::LogError;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The event log or the delivery-state log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The metrics could not be registered (a name clash in the given registry).
    #[error("cannot register delivery metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// No subscription has this id.
    #[error("no subscription `{0}`")]
    UnknownSubscription(String),
    /// The subscription is disabled or stopped, so it cannot deliver a redrive now.
    #[error(
        "subscription `{0}` is not running (disabled, stopped or without a sink); enable it first"
    )]
    NotRunning(String),
    /// The engine is shutting down.
    #[error("the delivery engine is shutting down")]
    ShuttingDown,
}
