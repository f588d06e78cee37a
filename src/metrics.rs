//! Prometheus metrics of ingest and the log; the delivery engine and sinks register theirs
//! in the same registry.

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

use crate::log::LogStats;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    /// Events accepted by ingest (after durability).
    pub ingest_events: IntCounter,
    /// Payload bytes accepted by ingest.
    pub ingest_bytes: IntCounter,
    /// Provider retries acknowledged but not stored again.
    pub ingest_deduplicated: IntCounter,
    /// WebSocket listeners connected now: the websocket module increments it when a
    /// listener joins and decrements it when it leaves.
    pub websocket_listeners: IntGauge,
    /// The log's size on disk; `None` when the engine does not know it (Kafka keeps the
    /// events, and its brokers report their own sizes).
    log_bytes: Option<IntGauge>,
    log_segments: Option<IntGauge>,
    log_first_sequence: IntGauge,
    log_next_sequence: IntGauge,
    unreadable_control_records: IntGauge,
    unreadable_event_reads: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics; the log's size gauges only when
    /// `log_size_known` (the embedded engine).
    pub fn new(log_size_known: bool) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Metrics {
            ingest_events: counter(
                "switchyard_ingest_events_total",
                "Events accepted by ingest.",
            )?,
            ingest_bytes: counter(
                "switchyard_ingest_bytes_total",
                "Payload bytes accepted by ingest.",
            )?,
            ingest_deduplicated: counter(
                "switchyard_ingest_deduplicated_total",
                "Provider retries acknowledged without storing them again.",
            )?,
            websocket_listeners: gauge(
                "switchyard_websocket_listeners",
                "WebSocket listeners connected now.",
            )?,
            log_bytes: log_size_known
                .then(|| gauge("switchyard_log_bytes", "Bytes in the event log."))
                .transpose()?,
            log_segments: log_size_known
                .then(|| gauge("switchyard_log_segments", "Segment files in the event log."))
                .transpose()?,
            log_first_sequence: gauge(
                "switchyard_log_first_sequence",
                "Oldest retained sequence.",
            )?,
            log_next_sequence: gauge(
                "switchyard_log_next_sequence",
                "Sequence the next event gets.",
            )?,
            unreadable_control_records: gauge(
                "switchyard_unreadable_control_records",
                "Control records skipped at replay because they do not decode (see /ready).",
            )?,
            unreadable_event_reads: counter(
                "switchyard_unreadable_event_reads_total",
                "Reads of event records that do not decode (skipped by every reader).",
            )?,
            registry,
        })
    }

    /// The registry, for other components' metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Refreshes the log gauges (called at scrape time: the log's own stats are cheap).
    pub fn observe_log(&self, stats: &LogStats) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        if let Some(g) = &self.log_bytes {
            g.set(clamp(stats.bytes));
        }
        if let Some(g) = &self.log_segments {
            g.set(clamp(stats.segments));
        }
        self.log_first_sequence.set(clamp(stats.first_sequence));
        self.log_next_sequence.set(clamp(stats.next_sequence));
    }

    /// Sets the unreadable-record figures (scraped, not pushed: the registry and the
    /// event decoder count them where they happen).
    pub fn observe_unreadable(&self, control_records: usize, event_reads: u64) {
        self.unreadable_control_records
            .set(i64::try_from(control_records).unwrap_or(i64::MAX));
        let seen = self.unreadable_event_reads.get();
        if event_reads > seen {
            self.unreadable_event_reads.inc_by(event_reads - seen);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The attempt log's figures (`src/attempts/`), read from it at scrape time.
pub struct AttemptMetrics {
    log: std::sync::Arc<crate::attempts::AttemptLog>,
    bytes: IntGauge,
    written: IntCounter,
    dropped: IntCounter,
}

impl AttemptMetrics {
    /// Registers the attempt log's series in `registry`.
    pub fn register(
        registry: &Registry,
        log: std::sync::Arc<crate::attempts::AttemptLog>,
    ) -> Result<(), prometheus::Error> {
        let metrics = AttemptMetrics {
            log,
            bytes: IntGauge::new(
                "switchyard_attempt_log_bytes",
                "Bytes in the attempt log (every delivery attempt, bounded by attempts.retention_*).",
            )?,
            written: IntCounter::new(
                "switchyard_attempt_log_written_total",
                "Delivery attempts written to the attempt log.",
            )?,
            dropped: IntCounter::new(
                "switchyard_attempt_log_dropped_total",
                "Delivery attempts the attempt log could not keep (a write failed, or too many were pending).",
            )?,
        };
        registry.register(Box::new(metrics))
    }
}

impl prometheus::core::Collector for AttemptMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [
            &self.bytes as &dyn prometheus::core::Collector,
            &self.written,
            &self.dropped,
        ]
        .into_iter()
        .flat_map(|c| c.desc())
        .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use std::sync::atomic::Ordering;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.bytes.set(clamp(self.log.bytes()));
        let catch_up = |counter: &IntCounter, value: u64| {
            let seen = counter.get();
            if value > seen {
                counter.inc_by(value - seen);
            }
        };
        catch_up(
            &self.written,
            self.log.stats.written.load(Ordering::Relaxed),
        );
        catch_up(
            &self.dropped,
            self.log.stats.dropped.load(Ordering::Relaxed),
        );
        let mut families = self.bytes.collect();
        families.extend(self.written.collect());
        families.extend(self.dropped.collect());
        families
    }
}

/// `switchyard_instance_silence_seconds{instance}`: seconds since each instance's last
/// event (its receive time), for instances the delivery tails have seen one of; computed
/// from the activity tracker (`delivery/activity.rs`) at scrape time.
pub struct SilenceMetrics {
    activity: std::sync::Arc<crate::delivery::activity::Activity>,
    seconds: prometheus::GaugeVec,
}

impl SilenceMetrics {
    /// Registers the silence gauge in `registry`.
    pub fn register(
        registry: &Registry,
        activity: std::sync::Arc<crate::delivery::activity::Activity>,
    ) -> Result<(), prometheus::Error> {
        let seconds = prometheus::GaugeVec::new(
            prometheus::Opts::new(
                "switchyard_instance_silence_seconds",
                "Seconds since the instance's last event (instances that have received one).",
            ),
            &["instance"],
        )?;
        registry.register(Box::new(SilenceMetrics { activity, seconds }))
    }
}

impl prometheus::core::Collector for SilenceMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.seconds.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let now = chrono::Utc::now().timestamp_millis();
        // Rebuilt at every scrape, so a forgotten (deleted) instance's series goes too.
        self.seconds.reset();
        for (instance, seen) in self.activity.snapshot() {
            let silent = (now - seen.last_event_ms).max(0) as f64 / 1000.0;
            self.seconds.with_label_values(&[&instance]).set(silent);
        }
        self.seconds.collect()
    }
}
