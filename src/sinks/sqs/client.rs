//! Builds the aws-sdk-sqs client from [`SqsConfig`].

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;

use super::SqsConfig;

/// Bound on one SQS call, retries by the SDK included: a send never hangs past it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// A client for `cfg`: the endpoint override when set (any SQS-compatible server), static
/// credentials when both keys are set, otherwise the default AWS credential chain.
pub(crate) async fn build(cfg: &SqsConfig) -> aws_sdk_sqs::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if !cfg.region.is_empty() {
        loader = loader.region(Region::new(cfg.region.clone()));
    }
    if let (Some(key), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            key,
            secret,
            None,
            None,
            "switchyard-config",
        ));
    }
    if let Some(url) = cfg.endpoint_url.as_deref().filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}
