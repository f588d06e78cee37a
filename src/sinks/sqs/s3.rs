//! Messages over `sqs.max_payload_size` go to S3, as Evolution's do: the whole envelope is
//! stored as an object, and the queue gets a small message with `dataType: "s3"` and
//! `data: {"fileUrl": <presigned GET URL of the object>}`.
//!
//! Evolution's storage settings (`S3_ENABLED`, `S3_ENDPOINT`, `S3_PORT`, `S3_USE_SSL`,
//! `S3_BUCKET`, ...: the `[s3]` section) are read as Evolution reads them: the endpoint is a
//! host name, its URL made with the port and the TLS flag. The object key is stable per
//! event (`evolution-api/messages/{queue}_{event id}.json`, Evolution's folder), so a
//! redelivery overwrites the object instead of adding one.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::config::S3Config;

/// Where a large message's envelope is stored, and how its URL is made.
pub(crate) struct Offload {
    client: aws_sdk_s3::Client,
    bucket: String,
    url_expiry: Duration,
}

impl Offload {
    /// The store `cfg` describes, or nothing when `S3_ENABLED` is off.
    pub(crate) async fn new(cfg: &S3Config) -> Option<Offload> {
        if !cfg.enabled {
            return None;
        }
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .region(Region::new(cfg.region.clone()));
        if let (Some(key), Some(secret)) = (&cfg.access_key, &cfg.secret_key) {
            loader = loader.credentials_provider(Credentials::new(
                key,
                secret,
                None,
                None,
                "switchyard-config",
            ));
        }
        let endpoint = cfg.endpoint_url();
        if let Some(url) = &endpoint {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            // MinIO and the other S3-compatible stores Evolution users run serve buckets as
            // paths; AWS's own endpoint (no override) takes virtual hosts.
            .force_path_style(endpoint.is_some())
            // Checksums only where S3 requires them: stores other than AWS may not know the
            // newer default trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Some(Offload {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: cfg.bucket.clone(),
            url_expiry: Duration::from_secs(cfg.url_expiry_seconds.max(1)),
        })
    }

    /// Stores `body` (an envelope, JSON) under `key` and returns its presigned GET URL, or
    /// why it could not (a retry: the store or the bucket may come back).
    pub(crate) async fn upload(&self, key: &str, body: Vec<u8>) -> Result<String, String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .cache_control("no-store")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot store the message in S3 bucket `{}`: {}",
                    self.bucket,
                    DisplayErrorContext(&e)
                )
            })?;
        let presigning = PresigningConfig::expires_in(self.url_expiry)
            .map_err(|e| format!("invalid S3 URL expiry: {e}"))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| {
                format!(
                    "cannot presign the S3 object URL: {}",
                    DisplayErrorContext(&e)
                )
            })?;
        Ok(presigned.uri().to_owned())
    }
}

/// The object key of an event's envelope: Evolution's `evolution-api/messages/` folder and
/// `{queue}_` name, then the event id where Evolution puts the time, so a redelivery
/// overwrites the same object.
pub(crate) fn object_key(queue: &str, event_id: &str) -> String {
    let stem = queue.strip_suffix(".fifo").unwrap_or(queue);
    format!("evolution-api/messages/{stem}_{event_id}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_follow_evolutions_folder_and_are_stable_per_event() {
        assert_eq!(
            object_key("inst_messages_upsert.fifo", "0190-ab"),
            "evolution-api/messages/inst_messages_upsert_0190-ab.json"
        );
        assert_eq!(
            object_key("inst_call.fifo", "x"),
            object_key("inst_call.fifo", "x")
        );
    }
}
