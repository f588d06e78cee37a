//! Config loading: layering, Evolution names, and errors that name the key.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_load_with_nothing_set() {
    let cfg = Config::load(None, env(&[])).unwrap();
    assert_eq!(cfg.server.listen, "127.0.0.1:8080");
    assert_eq!(cfg.log.fsync, FsyncSetting::Always);
    assert_eq!(cfg.delivery.max_attempts, 10);
    assert_eq!(cfg.rabbitmq.exchange_name, "evolution_exchange");
}

#[test]
fn switchyard_env_sets_nested_keys() {
    let cfg = Config::load(
        None,
        env(&[
            ("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS", "true"),
            ("SWITCHYARD_LOG__FSYNC", "250"),
            ("SWITCHYARD_DELIVERY__INITIAL_DELAY_SECONDS", "0.05"),
        ]),
    )
    .unwrap();
    assert!(cfg.webhook.allow_private_targets);
    assert_eq!(cfg.log.fsync, FsyncSetting::IntervalMs(250));
    assert_eq!(cfg.delivery.initial_delay_seconds, 0.05);
}

#[test]
fn evolution_names_are_accepted_and_switchyard_wins() {
    let cfg = Config::load(
        None,
        env(&[
            ("AUTHENTICATION_API_KEY", "k1"),
            ("SERVER_URL", "https://bridge.example.com"),
            ("WEBHOOK_RETRY_MAX_ATTEMPTS", "3"),
            ("WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES", "400,401"),
            ("WEBHOOK_EVENTS_MESSAGES_UPSERT", "true"),
            ("WEBHOOK_EVENTS_QRCODE_UPDATED", "true"),
            ("WEBHOOK_EVENTS_CALL", "false"),
            ("RABBITMQ_URI", "amqp://u:p@h:5672/v"),
            ("SWITCHYARD_DELIVERY__MAX_ATTEMPTS", "4"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.auth.api_key.as_deref(), Some("k1"));
    assert_eq!(cfg.server.url, "https://bridge.example.com");
    assert_eq!(cfg.delivery.max_attempts, 4);
    assert_eq!(cfg.webhook.non_retryable_status_codes, vec![400, 401]);
    assert_eq!(
        cfg.webhook.global_events,
        vec!["QRCODE_UPDATED".to_string(), "MESSAGES_UPSERT".to_string()]
    );
    assert_eq!(cfg.rabbitmq.uri, "amqp://u:p@h:5672/v");
}

#[test]
fn a_bad_value_names_its_key() {
    let err = Config::load(None, env(&[("SWITCHYARD_LOG__FSYNC", "sometimes")])).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    let err = Config::load(None, env(&[("WEBHOOK_RETRY_MAX_ATTEMPTS", "many")])).unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
    let err = Config::load(None, env(&[("SWITCHYARD_DELIVERY__JITTER_FACTOR", "2")])).unwrap_err();
    assert!(err.to_string().contains("delivery.jitter_factor"), "{err}");
    let err = Config::load(None, env(&[("WEBHOOK_EVENTS_NOT_AN_EVENT", "true")])).unwrap_err();
    assert!(err.to_string().contains("webhook.global_events"), "{err}");
}

#[test]
fn file_is_read_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(
        &path,
        "[log]\nfsync = \"never\"\n[server]\nlisten = \"0.0.0.0:9000\"\n",
    )
    .unwrap();
    let cfg = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(cfg.log.fsync, FsyncSetting::Never);
    assert_eq!(cfg.server.listen, "0.0.0.0:9000");

    std::fs::write(&path, "[log]\nfsynk = \"never\"\n").unwrap();
    let err = Config::load(Some(&path), env(&[])).unwrap_err();
    assert!(err.to_string().contains("fsynk"), "{err}");
}

#[test]
fn switchyard_variables_that_are_not_keys_are_ignored() {
    let cfg = Config::load(
        None,
        env(&[
            ("SWITCHYARD_LOG_FORMAT", "json"),
            ("SWITCHYARD_TEST_AMQP_URI", "amqp://x"),
            ("SWITCHYARD_LOG__FSYNC", "never"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.log.fsync, FsyncSetting::Never);
    let err = Config::load(None, env(&[("SWITCHYARD_LOG__FSYNK", "never")])).unwrap_err();
    assert!(err.to_string().contains("fsynk"), "{err}");
}

#[test]
fn kafka_properties_with_dotted_names_pass_through_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(
        &path,
        "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n",
    )
    .unwrap();
    let cfg = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(
        cfg.kafka
            .properties
            .get("security.protocol")
            .map(String::as_str),
        Some("SASL_SSL"),
        "{:?}",
        cfg.kafka.properties
    );
    assert_eq!(
        cfg.kafka
            .properties
            .get("sasl.mechanism")
            .map(String::as_str),
        Some("SCRAM-SHA-512")
    );
}

#[test]
fn evolutions_s3_names_make_the_endpoint_url() {
    let cfg = Config::load(
        None,
        env(&[
            ("S3_ENABLED", "true"),
            ("S3_BUCKET", "evolution"),
            ("S3_ENDPOINT", "minio.internal"),
            ("S3_PORT", "9001"),
            ("S3_USE_SSL", "true"),
            ("S3_ACCESS_KEY", "ak"),
            ("S3_SECRET_KEY", "very-secret-s3-key"),
            ("S3_REGION", "sa-east-1"),
        ]),
    )
    .unwrap();
    assert!(cfg.s3.enabled);
    assert_eq!(cfg.s3.bucket, "evolution");
    assert_eq!(
        cfg.s3.endpoint_url().as_deref(),
        Some("https://minio.internal:9001")
    );
    assert_eq!(cfg.s3.region, "sa-east-1");
    assert_eq!(cfg.s3.access_key.as_deref(), Some("ak"));
    assert_eq!(cfg.s3.secret_key.as_deref(), Some("very-secret-s3-key"));
    assert!(
        !format!("{:?}", cfg.s3).contains("very-secret-s3-key"),
        "the secret key is never printed"
    );
    assert_eq!(Config::default().s3.endpoint_url(), None, "AWS S3");
    let missing_bucket = Config::load(None, env(&[("S3_ENABLED", "true")]));
    assert!(missing_bucket
        .unwrap_err()
        .to_string()
        .contains("s3.bucket"));
}
