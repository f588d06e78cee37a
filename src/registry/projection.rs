//! The registry's state: the fold of control records, and the subscriptions it implies.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::records::{
    ControlRecord, InstanceCreated, NamedMeta, ProviderSettings, SinkKind, SinkSet,
};
use crate::delivery::subscription::{Filter, Policy, Scope, Subscription};

/// One instance as the registry knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// How it was created.
    pub created: InstanceCreated,
    /// Current provider settings.
    pub providers: ProviderSettings,
    /// The last `set` of each per-instance sink.
    pub sinks: BTreeMap<SinkKind, SinkSet>,
    /// Subscription ids the delivery engine disabled, with the reason.
    pub disabled: BTreeMap<String, Option<String>>,
}

/// A subscription created through a named-webhook API.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSubscription {
    /// The subscription.
    pub subscription: Subscription,
    /// What its API echoes.
    pub meta: NamedMeta,
}

/// The registry state.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Instances by name.
    pub instances: BTreeMap<String, Instance>,
    /// Named subscriptions by id.
    pub named: BTreeMap<String, NamedSubscription>,
    /// Instance name by token digest, for auth.
    tokens: HashMap<String, String>,
    /// The filter and policy users gave subscriptions the registry does not hold (the
    /// config-defined global ones), by id; laid over them by [`Projection::shape`].
    pub shaped: BTreeMap<String, Shape>,
}

/// A subscription's filter and policy as `PATCH /subscriptions/{id}` last set them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// The filter, if one was set.
    pub filter: Option<Filter>,
    /// The policy, if one was set.
    pub policy: Option<Policy>,
}

impl Projection {
    /// `subscription` (one the registry does not hold: a config-defined global one) with
    /// the filter and policy a user gave it.
    pub fn shape(&self, mut subscription: Subscription) -> Subscription {
        if let Some(shape) = self.shaped.get(&subscription.id) {
            if let Some(filter) = &shape.filter {
                subscription.filter = filter.clone();
            }
            if let Some(policy) = &shape.policy {
                subscription.policy = policy.clone();
            }
        }
        subscription
    }
}

/// The subscription id of a per-instance sink. Derived from the instance id, not its name,
/// so a deleted and re-created instance never resumes an old cursor.
pub fn instance_subscription_id(kind: SinkKind, instance: &InstanceCreated) -> String {
    format!("{}:{}", kind.as_str(), instance.id)
}

impl Projection {
    /// Applies one record. Records that refer to something that no longer exists are
    /// ignored: the log keeps history, the projection keeps what is current.
    pub fn apply(&mut self, record: &ControlRecord) {
        match record {
            ControlRecord::InstanceCreated(created) => {
                self.tokens
                    .insert(created.token_sha256.clone(), created.name.clone());
                self.instances.insert(
                    created.name.clone(),
                    Instance {
                        created: created.clone(),
                        providers: created.providers.clone(),
                        sinks: BTreeMap::new(),
                        disabled: BTreeMap::new(),
                    },
                );
            }
            ControlRecord::InstanceDeleted { name, .. } => {
                if let Some(instance) = self.instances.remove(name) {
                    self.tokens.remove(&instance.created.token_sha256);
                }
                // Named webhooks of the instance (CodeChat's) go with it, so a new instance
                // of the same name does not inherit them.
                let scope = Scope::Instance(name.clone());
                self.named.retain(|_, n| n.subscription.scope != scope);
            }
            ControlRecord::SinkSet(set) => {
                if let Some(instance) = self.instances.get_mut(&set.instance) {
                    let id = instance_subscription_id(set.kind, &instance.created);
                    // A user's `set` with enabled=true re-enables what the engine disabled.
                    if set.enabled {
                        instance.disabled.remove(&id);
                    }
                    instance.sinks.insert(set.kind, set.clone());
                }
            }
            ControlRecord::ProvidersSet {
                instance,
                providers,
            } => {
                if let Some(instance) = self.instances.get_mut(instance) {
                    instance.providers = providers.clone();
                }
            }
            ControlRecord::SubscriptionPut { subscription, meta } => {
                self.named.insert(
                    subscription.id.clone(),
                    NamedSubscription {
                        subscription: subscription.clone(),
                        meta: meta.clone(),
                    },
                );
            }
            ControlRecord::SubscriptionDeleted { id } => {
                self.named.remove(id);
            }
            ControlRecord::SubscriptionShaped {
                id, filter, policy, ..
            } => {
                if let Some(named) = self.named.get_mut(id) {
                    if let Some(filter) = filter {
                        named.subscription.filter = filter.clone();
                    }
                    if let Some(policy) = policy {
                        named.subscription.policy = policy.clone();
                    }
                    return;
                }
                for instance in self.instances.values_mut() {
                    for (kind, set) in instance.sinks.iter_mut() {
                        if instance_subscription_id(*kind, &instance.created) == *id {
                            if let Some(filter) = filter {
                                set.filter = filter.clone();
                            }
                            if let Some(policy) = policy {
                                set.policy = policy.clone();
                            }
                            return;
                        }
                    }
                }
                let shape = self.shaped.entry(id.clone()).or_default();
                if filter.is_some() {
                    shape.filter = filter.clone();
                }
                if policy.is_some() {
                    shape.policy = policy.clone();
                }
            }
            ControlRecord::SubscriptionEnabled {
                id,
                enabled,
                reason,
            } => {
                if let Some(named) = self.named.get_mut(id) {
                    named.subscription.enabled = *enabled;
                    return;
                }
                for instance in self.instances.values_mut() {
                    let owns = SinkKind::ALL
                        .iter()
                        .any(|k| instance_subscription_id(*k, &instance.created) == *id);
                    if owns {
                        if *enabled {
                            instance.disabled.remove(id);
                        } else {
                            instance.disabled.insert(id.clone(), reason.clone());
                        }
                    }
                }
            }
        }
    }

    /// Whether a `SubscriptionEnabled` record can switch `id` on or off: a named webhook's or
    /// an instance's sink subscription. The global ones config defines are switched in the
    /// config, not here.
    pub fn can_switch(&self, id: &str) -> bool {
        self.named.contains_key(id)
            || self.instances.values().any(|instance| {
                SinkKind::ALL
                    .iter()
                    .any(|k| instance_subscription_id(*k, &instance.created) == id)
            })
    }

    /// The instance a token digest belongs to.
    pub fn instance_for_token(&self, token_sha256: &str) -> Option<&str> {
        self.tokens.get(token_sha256).map(String::as_str)
    }

    /// Every cursor-driven subscription: per-instance sinks (websocket excluded: listeners
    /// read the log themselves) and named ones.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let mut out = Vec::new();
        for instance in self.instances.values() {
            for (kind, set) in &instance.sinks {
                // Listeners (no descriptor) read the log themselves.
                let Some(sink) = kind.descriptor() else {
                    continue;
                };
                let Some(target) = (sink.instance_target)(set.settings().as_ref()) else {
                    continue;
                };
                let id = instance_subscription_id(*kind, &instance.created);
                out.push(Subscription {
                    enabled: set.enabled && !instance.disabled.contains_key(&id),
                    id,
                    target,
                    scope: Scope::Instance(instance.created.name.clone()),
                    events: set.events.clone(),
                    custom_events: Vec::new(),
                    phone_numbers: Vec::new(),
                    start_sequence: set.start_sequence,
                    start_positions: set.start_positions.clone(),
                    policy: set.policy.clone(),
                    filter: set.filter.clone(),
                });
            }
        }
        out.extend(self.named.values().map(|n| n.subscription.clone()));
        out
    }

    /// Instance name -> its own number, for phone-number filters.
    pub fn instance_numbers(&self) -> HashMap<String, String> {
        self.instances
            .values()
            .filter_map(|i| Some((i.created.name.clone(), i.created.number.clone()?)))
            .collect()
    }

    /// Instance name -> its token, for envelopes that carry it (`auth.expose_in_envelope`).
    pub fn instance_tokens(&self) -> HashMap<String, std::sync::Arc<str>> {
        self.instances
            .values()
            .map(|i| (i.created.name.clone(), i.created.token.as_str().into()))
            .collect()
    }

    /// When the instance was created, for listings.
    pub fn created_at(&self, name: &str) -> Option<DateTime<Utc>> {
        self.instances.get(name).map(|i| i.created.created_at)
    }
}
