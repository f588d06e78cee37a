//! Which running sink serves each kind of subscription target, and what prepares its
//! destinations.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::descriptor::{BuildContext, BuildError, BuiltSink, Prepare};
use super::{Sink, SinkKind};

/// Which sink serves each kind: the sinks the configuration enables. Subscriptions of a kind
/// with no sink registered stay idle (their cursor does not move) and show it in their
/// status.
#[derive(Clone, Default)]
pub struct SinkRegistry {
    sinks: HashMap<SinkKind, Arc<dyn Sink>>,
    preparers: HashMap<SinkKind, Arc<dyn Prepare>>,
}

impl SinkRegistry {
    /// An empty registry.
    pub fn new() -> SinkRegistry {
        SinkRegistry::default()
    }

    /// Builds every sink of the registration table that the configuration enables.
    pub async fn build(context: &BuildContext<'_>) -> Result<SinkRegistry, BuildError> {
        let mut registry = SinkRegistry::new();
        for kind in SinkKind::ALL.iter().copied() {
            let Some(descriptor) = kind.descriptor() else {
                continue;
            };
            if let Some(built) = (descriptor.build)(context).await? {
                registry = registry.register(kind, built);
            }
        }
        Ok(registry)
    }

    /// Registers (or replaces) the sink serving `kind`.
    pub fn with(mut self, kind: SinkKind, sink: Arc<dyn Sink>) -> SinkRegistry {
        self.sinks.insert(kind, sink);
        self
    }

    /// Registers (or replaces) the sink serving `kind`, with its preparation step.
    pub fn register(mut self, kind: SinkKind, built: BuiltSink) -> SinkRegistry {
        if let Some(prepare) = built.prepare {
            self.preparers.insert(kind, prepare);
        } else {
            self.preparers.remove(&kind);
        }
        self.with(kind, built.sink)
    }

    /// The sink serving `kind`, if one is registered.
    pub fn get(&self, kind: SinkKind) -> Option<Arc<dyn Sink>> {
        self.sinks.get(&kind).cloned()
    }

    /// What prepares the destinations of `kind`, if that sink has a preparation step.
    pub fn preparer(&self, kind: SinkKind) -> Option<Arc<dyn Prepare>> {
        self.preparers.get(&kind).cloned()
    }
}

impl fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.sinks.keys().collect();
        kinds.sort();
        f.debug_struct("SinkRegistry")
            .field("kinds", &kinds)
            .finish()
    }
}
