//! A webhook subscription's settings: the endpoint, its headers and how requests are signed.
//! Stored in control records (inside `SinkTarget::Webhook` and `SinkSet::webhook`), so a field
//! is only ever added, optional.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::JWT_KEY_HEADER;

/// A webhook endpoint's settings. Its `Debug` hides the secret and a `jwt_key` header, so no
/// log line can carry them.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WebhookTarget {
    /// The endpoint URL.
    pub url: String,
    /// Append `/{kebab-event}` to the URL (Evolution's `byEvents`).
    #[serde(default)]
    pub by_events: bool,
    /// Evolution's `base64` flag (media as base64); stored and echoed.
    #[serde(default)]
    pub base64: bool,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Signing secret; unsigned when absent. `whsec_...` for Standard Webhooks, the secret
    /// string itself (its UTF-8 bytes are the key) for [`SigningScheme::Linq`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How `secret` signs a request. Absent in records written before the field existed,
    /// hence the default.
    #[serde(default, skip_serializing_if = "SigningScheme::is_default")]
    pub signing: SigningScheme,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The `jwt_key` header is a signing key too.
        let headers: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .map(|(name, value)| match name.as_str() {
                JWT_KEY_HEADER => (name.as_str(), "<redacted>"),
                _ => (name.as_str(), value.as_str()),
            })
            .collect();
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("by_events", &self.by_events)
            .field("base64", &self.base64)
            .field("headers", &headers)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("signing", &self.signing)
            .finish()
    }
}

/// How a webhook request is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningScheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
    /// `{id}.{timestamp}.{body}` (Svix's Standard Webhooks).
    #[default]
    StandardWebhooks,
    /// Linq's: `X-Webhook-Signature: <hex>` over `{timestamp}.{body}`, with
    /// `X-Webhook-Timestamp` and `X-Webhook-Event`, so Linq receivers verify unchanged.
    Linq,
}

impl SigningScheme {
    fn is_default(&self) -> bool {
        *self == SigningScheme::StandardWebhooks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secret() {
        let target = WebhookTarget {
            secret: Some("whsec_topsecret".into()),
            headers: [
                ("jwt_key".to_owned(), "jwtsecret".to_owned()),
                ("x-tenant".to_owned(), "acme".to_owned()),
            ]
            .into(),
            ..WebhookTarget::default()
        };
        let shown = format!("{target:?}");
        assert!(!shown.contains("topsecret") && shown.contains("redacted"));
        assert!(
            !shown.contains("jwtsecret") && shown.contains("acme"),
            "{shown}"
        );
    }
}
