//! The webhook sink: Evolution's envelope POSTed to HTTP endpoints, with Standard Webhooks
//! signatures, an SSRF guard, a pooled client and per-endpoint concurrency limits.
//!
//! A subscription's endpoint is a [`WebhookTarget`] (`target.rs`), read from request bodies
//! by `settings.rs`; `config.rs` is the `[webhook]` section and `registration.rs` is
//! [`SINK`], the sink in the registration table.

mod config;
mod jwt;
mod registration;
mod retry_after;
mod settings;
mod signing;
mod sink;
mod ssrf;
mod target;

use std::time::Duration;

use crate::config::Config;

pub use config::WebhookConfig;
pub use jwt::{JWT_KEY_HEADER, JWT_LIFETIME_SECONDS};
pub use registration::SINK;
pub use retry_after::parse_retry_after;
pub use signing::{InvalidSecret, SigningKey, SECRET_PREFIX};
pub use sink::{destination_url, WebhookSink, WebhookSinkError};
pub use ssrf::{is_public, RefusedTarget};
// The SSRF policy, shared with the other sinks that reach a URL an instance chose.
pub(crate) use sink::{drain, root_cause};
pub(crate) use ssrf::{
    check_literal, screen_proxied, GuardedResolver, ProxiedTargetError, Proxies,
};
pub use target::{SigningScheme, WebhookTarget};

/// Settings of the webhook sink (from `[webhook]` and `server.url`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookOptions {
    /// This server's public URL, sent as `server_url`.
    pub server_url: String,
    /// Whole-request timeout (`WEBHOOK_REQUEST_TIMEOUT_MS`); a timeout is retried.
    pub request_timeout: Duration,
    /// Status codes that go to dead letters at once
    /// (`WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES`).
    pub non_retryable_status_codes: Vec<u16>,
    /// Reach private, loopback and link-local addresses (refused by default: SSRF).
    pub allow_private_targets: bool,
    /// Concurrent requests per `host:port`.
    pub max_concurrency_per_endpoint: usize,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions::from_webhook_config(&WebhookConfig::default(), "http://localhost:8080")
    }
}

impl WebhookOptions {
    /// The options a configuration describes.
    pub fn from_config(cfg: &Config) -> WebhookOptions {
        WebhookOptions::from_webhook_config(&cfg.webhook, &cfg.server.url)
    }

    /// The options from the `[webhook]` section and the server's public URL.
    pub fn from_webhook_config(cfg: &WebhookConfig, server_url: &str) -> WebhookOptions {
        WebhookOptions {
            server_url: server_url.to_owned(),
            request_timeout: Duration::from_millis(cfg.request_timeout_ms.max(1)),
            non_retryable_status_codes: cfg.non_retryable_status_codes.clone(),
            allow_private_targets: cfg.allow_private_targets,
            max_concurrency_per_endpoint: cfg.max_concurrency_per_endpoint.max(1),
        }
    }
}
