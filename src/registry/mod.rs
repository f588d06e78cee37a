//! The instance registry, event-sourced: every change is a control record appended to the
//! control log first, then applied to the in-memory projection. At start the projection is
//! rebuilt by replaying the control log, so sink settings survive restarts by construction
//! (Evolution's #2694: config wiped on restart).
//!
//! The projection is always the fold of the log in log order: a change applies by reading
//! the log up to its own records, and [`Registry::follow`] applies records other processes
//! appended (the Kafka engine's shared control topic).

pub mod projection;
pub mod records;

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Mutex};

use crate::delivery::subscription::{Subscription, SubscriptionSet};
use crate::log::{EventLog, LogError};
pub use projection::{Instance, NamedSubscription, Projection};
pub use records::ControlRecord;

/// Errors of the registry itself (a change's own validation errors are the caller's type).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The control log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A stored control record does not decode: the control log is not ours or is damaged.
    #[error("control record {sequence} is unreadable")]
    Decode {
        /// Its sequence.
        sequence: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A control record could not be encoded into something that reads back; nothing was
    /// written.
    #[error("control record cannot be stored: {0}")]
    Encode(String),
}

/// A control record the registry skipped because it does not decode: reported at start
/// (log, `/ready`, `/metrics`) instead of refusing to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    /// Its sequence in the control log.
    pub sequence: u64,
    /// Why it does not decode.
    pub error: String,
}

/// The result of [`Registry::change`]: the caller's rejection, or a registry failure.
#[derive(Debug)]
pub enum ChangeError<E> {
    /// The change was refused by its own validation; nothing was written.
    Rejected(E),
    /// The control log failed; nothing was applied.
    Registry(RegistryError),
}

/// Instances and subscriptions, backed by a control log.
pub struct Registry {
    log: Arc<dyn EventLog>,
    state: RwLock<Projection>,
    /// The next control-log sequence to apply.
    applied: std::sync::atomic::AtomicU64,
    /// Serializes changes so validation and append see the same state.
    writer: Mutex<()>,
    /// Subscriptions that come from config (global sinks), not from control records.
    global: Vec<Subscription>,
    /// Whether published sets carry the instances' tokens (`auth.expose_in_envelope`).
    expose_tokens: bool,
    published: watch::Sender<Arc<SubscriptionSet>>,
    /// Control records skipped because they do not decode, in log order.
    unreadable: std::sync::Mutex<Vec<UnreadableRecord>>,
}

/// SHA-256 hex of a token: tokens are looked up by digest, so the lookup's timing says
/// nothing about the token.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Registry {
    /// Replays `log` into a projection. `global` are the config-defined subscriptions;
    /// with `expose_tokens` the published sets carry each instance's token for envelopes.
    pub async fn open(
        log: Arc<dyn EventLog>,
        global: Vec<Subscription>,
        expose_tokens: bool,
    ) -> Result<Arc<Registry>, RegistryError> {
        let state = Projection::default();
        let set = Arc::new(Self::subscription_set(&state, &global, expose_tokens));
        let (published, _) = watch::channel(set);
        let registry = Arc::new(Registry {
            log,
            state: RwLock::new(state),
            applied: std::sync::atomic::AtomicU64::new(0),
            writer: Mutex::new(()),
            global,
            expose_tokens,
            published,
            unreadable: std::sync::Mutex::new(Vec::new()),
        });
        let end = registry.log.next_sequence();
        registry.catch_up(end).await?;
        Ok(registry)
    }

    /// Applies every control record below `until` not applied yet, then publishes the new
    /// set if anything changed. Callers hold `writer`, so records apply once and in order.
    async fn catch_up(&self, until: u64) -> Result<(), RegistryError> {
        use std::sync::atomic::Ordering;
        let mut from = self.applied.load(Ordering::Acquire);
        let start = from;
        while from < until {
            let records = self.log.read(from, 1024, 8 * 1024 * 1024).await?;
            let Some(last) = records.last() else { break };
            let next = last.sequence + 1;
            let mut decoded = Vec::with_capacity(records.len());
            for record in &records {
                match serde_json::from_slice::<ControlRecord>(&record.payload) {
                    Ok(control) => decoded.push(control),
                    // One bad record must not keep the server from starting, nor hide every
                    // record after it: skip it, and say so where an operator looks.
                    Err(source) => {
                        let e = RegistryError::Decode {
                            sequence: record.sequence,
                            source,
                        };
                        tracing::error!(
                            sequence = record.sequence,
                            error = %e,
                            source = %std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default(),
                            "skipping an unreadable control record"
                        );
                        self.unreadable
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(UnreadableRecord {
                                sequence: record.sequence,
                                error: std::error::Error::source(&e)
                                    .map(ToString::to_string)
                                    .unwrap_or_default(),
                            });
                    }
                }
            }
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            for record in &decoded {
                state.apply(record);
            }
            from = next;
            self.applied.store(from, Ordering::Release);
        }
        if from != start {
            let set =
                self.read(|state| Self::subscription_set(state, &self.global, self.expose_tokens));
            self.published.send_replace(Arc::new(set));
        }
        Ok(())
    }

    /// Applies the records other processes append to a shared control log, as they arrive
    /// (woken by the log's watch), until `cancel`.
    pub async fn follow(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let mut changes = self.log.subscribe();
        loop {
            let end = *changes.borrow_and_update();
            {
                let _writer = self.writer.lock().await;
                if let Err(e) = self.catch_up(end).await {
                    tracing::error!(error = %e, "applying control records failed");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    fn subscription_set(
        state: &Projection,
        global: &[Subscription],
        expose_tokens: bool,
    ) -> SubscriptionSet {
        let mut subscriptions: Vec<Subscription> =
            global.iter().map(|g| state.shape(g.clone())).collect();
        subscriptions.extend(state.subscriptions());
        SubscriptionSet {
            subscriptions,
            instance_numbers: state.instance_numbers(),
            instance_tokens: if expose_tokens {
                state.instance_tokens()
            } else {
                Default::default()
            },
        }
    }

    /// Reads the current state.
    pub fn read<R>(&self, f: impl FnOnce(&Projection) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Makes one change: `decide` sees the current state and returns the records to write
    /// (or its own error); they are made durable in one append (all or none), then applied
    /// and published.
    pub async fn change<E>(
        &self,
        decide: impl FnOnce(&Projection) -> Result<Vec<ControlRecord>, E>,
    ) -> Result<Vec<ControlRecord>, ChangeError<E>> {
        let _writer = self.writer.lock().await;
        let records = self.read(decide).map_err(ChangeError::Rejected)?;
        let payloads = records
            .iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ChangeError::Registry)?;
        let receipt = self
            .log
            .append(payloads)
            .await
            .map_err(|e| ChangeError::Registry(e.into()))?;
        // Apply through the log, so records another process appended first apply first.
        self.catch_up(receipt.last_sequence + 1)
            .await
            .map_err(ChangeError::Registry)?;
        Ok(records)
    }

    /// The control records skipped because they do not decode.
    pub fn unreadable(&self) -> Vec<UnreadableRecord> {
        self.unreadable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The subscriptions, updated on every change.
    pub fn subscriptions(&self) -> watch::Receiver<Arc<SubscriptionSet>> {
        self.published.subscribe()
    }

    /// The subscription set as last published.
    pub fn current_subscriptions(&self) -> Arc<SubscriptionSet> {
        self.published.borrow().clone()
    }

    /// The instance an instance token belongs to.
    pub fn instance_for_token(&self, token: &str) -> Option<String> {
        let digest = token_digest(token);
        self.read(|s| s.instance_for_token(&digest).map(str::to_string))
    }
}

/// Encodes a control record for the log, refusing one that would not decode again: the
/// control log is replayed at every start, so a record that cannot be read back must
/// never be written (request bodies are already held to `ingest::limits`; this is the
/// last guard).
fn encode(record: &ControlRecord) -> Result<bytes::Bytes, RegistryError> {
    let bytes = serde_json::to_vec(record).map_err(|e| RegistryError::Encode(e.to_string()))?;
    serde_json::from_slice::<ControlRecord>(&bytes)
        .map_err(|e| RegistryError::Encode(format!("it would not read back: {e}")))?;
    Ok(bytes.into())
}
