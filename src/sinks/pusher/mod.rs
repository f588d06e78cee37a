//! The Pusher sink: Evolution's envelope (plus `destination`, the app id) triggered on
//! Pusher Channels through its HTTP events API, as Evolution's Pusher integration does:
//! channel = the instance name, event = the dotted event name, data = the envelope.
//!
//! # Layout
//! - `signing.rs`: Pusher's request signing (`auth_key`, `auth_timestamp`, `auth_version`,
//!   `body_md5`, `auth_signature`) and its channel and event name rules.
//! - `message.rs`: one event as a batch entry: the envelope with `qrcode.base64` stripped
//!   (Evolution strips it), and the 10 KiB limit Pusher puts on an event's data.
//! - `sink.rs`: [`PusherSink`], the [`crate::sinks::Sink`]: one signed
//!   `POST /apps/{app_id}/batch_events` per engine batch (up to 10 events), classified.
//! - `settings.rs`: the per-instance `/pusher/set` object and what `/pusher/find` shows.
//! - `config.rs`: the `[pusher]` section ([`PusherConfig`]) and its Evolution env names.
//! - `registration.rs`: [`SINK`], the sink in the registration table.
//!
//! # Guarantees and ordering
//! The engine hands over consecutive events of one lane; they go out in one batch request,
//! in that order, and the request succeeds or fails as a whole, so a lane never has a gap.
//! Pusher itself has no idempotency key: a request that timed out after Pusher took it is
//! retried and its events reach subscribers twice (each carries its `id` to deduplicate).
//! An event whose data is over 10 KiB is never sent: Evolution drops it silently, we
//! dead-letter it with its size in the reason. HTTP 4xx other than 429 is permanent (the
//! answer's body is in the reason); 429, 5xx and network errors are retried.

mod config;
mod message;
mod registration;
mod settings;
mod signing;
mod sink;

use serde::{Deserialize, Serialize};

pub use config::PusherConfig;
pub use message::MAX_DATA_BYTES;
pub use registration::SINK;
pub use signing::{sign, valid_channel, valid_event_name, SignedQuery};
pub use sink::{PusherSink, PusherSinkError};

/// A Pusher subscription's settings. Stored in control records
/// (`{"sink":"pusher"}` for the global app, `{"sink":"pusher","app":{...}}` for an
/// instance's own), so a field is only ever added, optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PusherTarget {
    /// The instance's own Pusher app; `None` for the global subscription, which uses the app
    /// the `[pusher]` section configures (so the global secret is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<PusherApp>,
}

/// A Pusher Channels app: where events go and the credentials that sign them. Its `Debug`
/// hides the secret, so no log line can carry it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PusherApp {
    /// The app id (`/apps/{app_id}/...`); also the envelope's `destination`, as Evolution
    /// sends it.
    pub app_id: String,
    /// The app key (`auth_key`).
    pub key: String,
    /// The app secret that signs requests.
    pub secret: String,
    /// The cluster: requests go to `api-{cluster}.pusher.com`.
    pub cluster: String,
    /// HTTPS (true) or HTTP to the cluster's host.
    #[serde(rename = "useTLS")]
    pub use_tls: bool,
    /// A base URL used instead of the cluster's host (`http://127.0.0.1:6001`): tests and
    /// self-hosted Pusher-protocol servers such as soketi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl PusherApp {
    /// The base URL requests go to: the endpoint override, else the cluster's API host.
    pub fn base_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.use_tls { "https" } else { "http" };
                format!("{scheme}://api-{}.pusher.com", self.cluster)
            }
        }
    }
}

impl std::fmt::Debug for PusherApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherApp")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("use_tls", &self.use_tls)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secret() {
        let app = PusherApp {
            secret: "topsecret".into(),
            ..PusherApp::default()
        };
        let shown = format!("{:?}", PusherTarget { app: Some(app) });
        assert!(!shown.contains("topsecret") && shown.contains("redacted"));
    }

    #[test]
    fn requests_go_to_the_clusters_host_unless_overridden() {
        let mut app = PusherApp {
            cluster: "eu".into(),
            use_tls: true,
            ..PusherApp::default()
        };
        assert_eq!(app.base_url(), "https://api-eu.pusher.com");
        app.use_tls = false;
        assert_eq!(app.base_url(), "http://api-eu.pusher.com");
        app.endpoint = Some("http://127.0.0.1:6001/".into());
        assert_eq!(app.base_url(), "http://127.0.0.1:6001");
    }

    #[test]
    fn a_global_target_stores_no_app() {
        let stored = serde_json::to_value(PusherTarget::default()).unwrap();
        assert_eq!(stored, serde_json::json!({}));
    }
}
