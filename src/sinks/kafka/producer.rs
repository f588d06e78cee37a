//! The librdkafka settings of the Kafka sink, and the idempotent producer built from them.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use super::KafkaOptions;

/// The producer or admin client could not be created (a bad `properties` entry, an unknown
/// SASL mechanism, ...). Raised at start-up, so a misconfiguration stops the server at once.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the Kafka client: {0}")]
pub struct KafkaSinkError(#[from] pub KafkaError);

/// The client settings every Kafka client of the sink uses (producer and admin alike):
/// our defaults, then the config's `properties` (SASL/SSL and tuning pass through as is),
/// then the guarantees delivery depends on, which a property cannot turn off:
///
/// - `enable.idempotence=true`: librdkafka's own retries never duplicate or reorder a
///   message within a partition, so a delivery report is the broker's word on exactly one
///   copy in order (it also caps `max.in.flight.requests.per.connection` at 5).
/// - `acks=all`: the report comes only after every in-sync replica has the message, which is
///   what "delivered" means to the engine (the cursor moves past it).
pub fn client_config(options: &KafkaOptions) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &options.brokers)
        .set("client.id", &options.client_id)
        // The engine pipelines many small batches (one per chat lane) into one producer.
        // With a 1 ms linger librdkafka's broker thread woke for nearly every batch and
        // spent most of the process's CPU in poll and clock_gettime; 5 ms lets it fill
        // produce requests: in `benches/broker_engine.rs` the engine went from 46,800 to
        // 65,200 events/s and from 20.7 to 10.4 µs of CPU per event (one instance, 50
        // chats, window 1024), for at most 5 ms more latency per event.
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            options.message_timeout.as_millis().max(1).to_string(),
        )
        .set("max.in.flight.requests.per.connection", "5");
    for (key, value) in &options.properties {
        cfg.set(key, value);
    }
    cfg.set("enable.idempotence", "true").set("acks", "all");
    cfg
}

/// The sink's producer.
pub(super) fn producer(options: &KafkaOptions) -> Result<FutureProducer, KafkaSinkError> {
    Ok(client_config(options).create()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_pass_through_but_cannot_weaken_delivery() {
        let mut options = KafkaOptions {
            brokers: "b1:9092,b2:9092".into(),
            ..KafkaOptions::default()
        };
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("linger.ms", "20"),
            ("enable.idempotence", "false"),
            ("acks", "1"),
        ] {
            options.properties.insert(k.into(), v.into());
        }
        let cfg = client_config(&options);
        assert_eq!(cfg.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(cfg.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(cfg.get("linger.ms"), Some("20"));
        assert_eq!(cfg.get("enable.idempotence"), Some("true"));
        assert_eq!(cfg.get("acks"), Some("all"));
    }
}
