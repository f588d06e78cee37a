//! Prometheus metrics of the delivery engine, per subscription and per sink kind.

use prometheus::{
    exponential_buckets, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// One subscription's hot-path series, looked up once per runner.
#[derive(Clone)]
pub(crate) struct Meters {
    pub attempts: IntCounter,
    pub failures: IntCounter,
    pub delivered: IntCounter,
    pub send_seconds: Histogram,
    pub end_to_end_seconds: Histogram,
    pub in_flight: IntGauge,
    pub lag: IntGauge,
    pub parked: IntGauge,
}

/// The engine's metric families, registered once per Prometheus registry and shared by
/// every engine of the process (the Kafka engine runs one per event partition).
#[derive(Clone)]
pub struct DeliveryMetrics(pub(crate) Metrics);

impl DeliveryMetrics {
    /// Creates the families and registers them in `registry` (served at `/metrics`).
    pub fn register(registry: &Registry) -> Result<DeliveryMetrics, prometheus::Error> {
        Metrics::register(registry).map(DeliveryMetrics)
    }
}

#[derive(Clone)]
pub(crate) struct Metrics {
    /// Sequences between the subscription's oldest undelivered event and the log's end.
    pub lag: IntGaugeVec,
    /// Events read and not yet finished.
    pub in_flight: IntGaugeVec,
    /// Attempts made (first tries and retries).
    pub attempts: IntCounterVec,
    /// Attempts that failed.
    pub failures: IntCounterVec,
    /// Events delivered.
    pub delivered: IntCounterVec,
    /// Events currently in the dead-letter list.
    pub dead_letters: IntGaugeVec,
    /// Events waiting in parked lanes, per subscription.
    pub parked: IntGaugeVec,
    /// Age of the subscription's oldest undelivered event (set at scrape time).
    pub oldest_undelivered: GaugeVec,
    /// Duration of one send call, per sink kind.
    pub send_seconds: HistogramVec,
    /// From the log's receive time to the successful delivery, per sink kind.
    pub end_to_end_seconds: HistogramVec,
}

impl Metrics {
    /// Creates and registers the families.
    pub(crate) fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let sub = &["subscription"];
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), sub);
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), sub);
        // 0.25 ms .. ~66 s: loopback deliveries and slow endpoints both land in a bucket.
        let buckets = exponential_buckets(0.000_25, 2.0, 19)?;
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.clone()),
                &["sink"],
            )
        };
        let metrics = Metrics {
            lag: gauge(
                "switchyard_delivery_lag",
                "Log sequences from the subscription's oldest undelivered event (parked ones included) to the log's end",
            )?,
            in_flight: gauge(
                "switchyard_delivery_in_flight",
                "Events read by the subscription and not yet finished",
            )?,
            attempts: counter(
                "switchyard_delivery_attempts_total",
                "Delivery attempts, first tries and retries",
            )?,
            failures: counter(
                "switchyard_delivery_failures_total",
                "Delivery attempts that failed",
            )?,
            delivered: counter("switchyard_delivery_delivered_total", "Events delivered")?,
            dead_letters: gauge(
                "switchyard_delivery_dead_letters",
                "Events in the subscription's dead-letter list",
            )?,
            parked: gauge(
                "switchyard_delivery_parked",
                "Events waiting behind a parked (failing) lane of the subscription",
            )?,
            oldest_undelivered: GaugeVec::new(
                Opts::new(
                    "switchyard_delivery_oldest_undelivered_age_seconds",
                    "Seconds since the subscription's oldest undelivered event (in flight or parked; not dead letters) was received; 0 when none",
                ),
                sub,
            )?,
            send_seconds: histogram(
                "switchyard_delivery_send_seconds",
                "Duration of one send to the destination",
            )?,
            end_to_end_seconds: histogram(
                "switchyard_delivery_latency_seconds",
                "From ingest (log receive time) to successful delivery",
            )?,
        };
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.in_flight.clone()))?;
        registry.register(Box::new(metrics.attempts.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.delivered.clone()))?;
        registry.register(Box::new(metrics.dead_letters.clone()))?;
        registry.register(Box::new(metrics.parked.clone()))?;
        registry.register(Box::new(metrics.oldest_undelivered.clone()))?;
        registry.register(Box::new(metrics.send_seconds.clone()))?;
        registry.register(Box::new(metrics.end_to_end_seconds.clone()))?;
        Ok(metrics)
    }

    /// The series of one subscription delivering through `sink`.
    pub(crate) fn meters(&self, subscription: &str, sink: &str) -> Meters {
        Meters {
            attempts: self.attempts.with_label_values(&[subscription]),
            failures: self.failures.with_label_values(&[subscription]),
            delivered: self.delivered.with_label_values(&[subscription]),
            send_seconds: self.send_seconds.with_label_values(&[sink]),
            end_to_end_seconds: self.end_to_end_seconds.with_label_values(&[sink]),
            in_flight: self.in_flight.with_label_values(&[subscription]),
            lag: self.lag.with_label_values(&[subscription]),
            parked: self.parked.with_label_values(&[subscription]),
        }
    }

    /// Drops a removed subscription's series so `/metrics` does not grow forever.
    pub(crate) fn forget(&self, subscription: &str) {
        let labels = &[subscription];
        let _ = self.lag.remove_label_values(labels);
        let _ = self.in_flight.remove_label_values(labels);
        let _ = self.attempts.remove_label_values(labels);
        let _ = self.failures.remove_label_values(labels);
        let _ = self.delivered.remove_label_values(labels);
        let _ = self.dead_letters.remove_label_values(labels);
        let _ = self.parked.remove_label_values(labels);
        let _ = self.oldest_undelivered.remove_label_values(labels);
    }
}
