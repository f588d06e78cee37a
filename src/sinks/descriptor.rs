//! What the server knows about one sink: its [`SinkDescriptor`], provided by the sink's
//! folder (`SINK`) and listed in the registration table (`table.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::settings::{FieldError, InstanceSettings};
use super::{Sink, SinkTarget};
use crate::config::{Config, ConfigError};
use crate::delivery::subscription::Subscription;

/// One sink as the rest of the server sees it. Everything that differs between sinks and
/// is not sending lives behind these fields, so the API, the registry and the engine never
/// name a concrete sink.
pub struct SinkDescriptor {
    /// The name in routes (`/{name}/set/{instance}`), request bodies (`{"{name}":{...}}`),
    /// subscription ids (`{name}:{instance id}`, `global:{name}`), metrics labels and the
    /// config section (`[{name}]`). Stored in control records: never renamed.
    pub name: &'static str,
    /// Whether "all events" includes custom (provider-only) events. Sinks whose
    /// destinations are named after Evolution's events (queues) have no name for a custom
    /// event: sending one would only fill dead letters.
    pub carries_custom_events: bool,
    /// The target of an instance's subscription, from the settings stored with its
    /// `/{name}/set` (a webhook's endpoint; nothing for the brokers). `None`: the settings
    /// describe nowhere to deliver (a webhook without a URL), so there is no subscription.
    pub instance_target: fn(stored: Option<&SinkTarget>) -> Option<SinkTarget>,
    /// Reads the sink's own fields of a per-instance settings object; `prefix` is where the
    /// object sits in the body, for error paths.
    pub read_settings:
        fn(obj: &Map<String, Value>, prefix: &str) -> Result<InstanceSettings, FieldError>,
    /// Adds the stored settings to what `/{name}/find` shows (never a secret).
    pub show_settings: fn(stored: &SinkTarget, view: &mut Map<String, Value>),
    /// The create body's flat (Evolution v1) form, for a sink whose flat form is not
    /// `{name}_enabled` and `{name}_events`: the settings object it stands for, if the body
    /// has one.
    pub read_flat: Option<ReadFlat>,
    /// The create-body fields `read_flat` reads besides `{name}`, so they are not stored
    /// and echoed back as unknown extras.
    pub flat_fields: &'static [&'static str],
    /// The server-wide subscription the configuration asks for (the sink's global mode).
    pub global: fn(&Config) -> Option<GlobalTarget>,
    /// Its config section (`[{name}]`): env names, rules, and the source whose doc lines
    /// describe it.
    pub config: ConfigSection,
    /// Builds the sink, or nothing when the configuration leaves it off.
    pub build: for<'a> fn(&'a BuildContext<'a>) -> BuildFuture<'a>,
}

/// Reads a create body's flat (v1) form of a sink into the settings object it stands for.
pub type ReadFlat = fn(body: &Map<String, Value>) -> Result<Option<Map<String, Value>>, FieldError>;

/// A sink's config section as the configuration code knows it. The section's struct is a
/// field of [`Config`] named after the sink; everything else about it is here.
pub struct ConfigSection {
    /// The source of the file that defines the section's struct (`include_str!`): its
    /// fields' `///` lines are the README's config table descriptions.
    pub source: &'static str,
    /// Evolution's env names that set the section's keys, each with its dotted key.
    pub evolution_env: &'static [(&'static str, &'static str)],
    /// Evolution's `<PREFIX><EVENT>=true` entries: the prefix, and the list key they build.
    pub event_list: Option<(&'static str, &'static str)>,
    /// Keys whose `SWITCHYARD_<SECTION>__<KEY>` value is a comma-separated list.
    pub list_keys: &'static [&'static str],
    /// The section's rules that types cannot express.
    pub validate: fn(&Config) -> Result<(), ConfigError>,
}

impl std::fmt::Debug for SinkDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkDescriptor")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConfigSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSection")
            .field("evolution_env", &self.evolution_env)
            .field("event_list", &self.event_list)
            .field("list_keys", &self.list_keys)
            .finish_non_exhaustive()
    }
}

/// A sink's global mode as the configuration sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalTarget {
    /// Where the events go.
    pub target: SinkTarget,
    /// Which events, in any Evolution spelling; empty = all.
    pub events: Vec<String>,
}

/// What building a sink may use.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The whole configuration (a sink reads its own section and `server`).
    pub config: &'a Config,
    /// Cancelled at shutdown; background work of the sink stops with it.
    pub shutdown: &'a CancellationToken,
    /// Where the sink spawns background work, so shutdown waits for it.
    pub tasks: &'a TaskTracker,
}

/// The future [`SinkDescriptor::build`] returns.
pub type BuildFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<BuiltSink>, BuildError>> + Send + 'a>>;

/// A sink ready to serve subscriptions, with its preparation step if it has one.
#[derive(Clone)]
pub struct BuiltSink {
    /// What sends.
    pub sink: Arc<dyn Sink>,
    /// What prepares a subscription's destination before its events flow.
    pub prepare: Option<Arc<dyn Prepare>>,
}

impl std::fmt::Debug for BuiltSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltSink")
            .field("prepares", &self.prepare.is_some())
            .finish()
    }
}

/// A sink's settings are unusable (a bad URI, a client that cannot be built). Shown as the
/// sink's own error.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct BuildError {
    /// Which sink.
    pub sink: &'static str,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BuildError {
    /// The sink `sink` failed with `source`.
    pub fn new(sink: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        BuildError {
            sink,
            source: Box::new(source),
        }
    }
}

/// Gets a destination ready for a subscription's events (declares queues and bindings), so
/// consumers can attach before the first event and the first event never races the
/// declaration. The engine calls it when a subscription starts and when its settings
/// change, in the background: it never holds delivery back, and a destination that is
/// down is no error here, since every send declares what it needs anyway.
#[async_trait]
pub trait Prepare: Send + Sync + 'static {
    /// Prepares `subscription`'s destination; the error says what failed, for the log.
    async fn prepare(&self, subscription: &Subscription) -> Result<(), String>;
}
