//! Durable delivery state: retry progress and dead letters, kept as JSON records in a
//! second log and replayed into memory at start.
//!
//! Only failures write here: an event delivered on its first try costs nothing. A record is
//! appended (durably) before the memory copy changes and before the cursor may pass the
//! event, so a crash never loses a dead letter nor resets an event's attempt count.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::delivery::subscription::OrderBy;
use crate::log::{EventLog, LogError};

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Accepted by the destination.
    Delivered,
    /// Failed; another attempt may follow.
    Retry,
    /// Failed for good (non-retryable status, refused target, invalid payload).
    Permanent,
    /// The destination asked to be disabled (410 Gone) or the failure run was too long.
    Disable,
}

/// One delivery attempt, for dead-letter history and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// When the attempt started, UTC milliseconds.
    pub at_ms: i64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The sink's explanation (`HTTP 500`, `timeout after 2000 ms`, ...); empty on success.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// How long the send took, milliseconds.
    pub duration_ms: u64,
}

/// An event that used all its attempts (or failed permanently), with its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The event's log sequence (redrive reads it back from the event log).
    pub sequence: u64,
    /// The event's id (the `webhook-id`).
    pub id: Uuid,
    /// The instance it belongs to.
    pub instance: String,
    /// Its dotted event name.
    pub event: String,
    /// Every attempt, oldest first (redrives append to it).
    pub attempts: Vec<Attempt>,
    /// When it was dead-lettered, UTC milliseconds.
    pub dead_at_ms: i64,
}

/// Retry progress of an event that failed at least once and is not finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    /// Attempts so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due, UTC milliseconds.
    pub next_attempt_ms: i64,
}

/// One record of the delivery-state log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StateRecord {
    /// An event failed and will be retried; replaces earlier progress of that event.
    Retry {
        subscription: String,
        sequence: u64,
        state: RetryState,
    },
    /// The event was finally delivered: forget its progress and its dead letter, if any.
    Delivered { subscription: String, sequence: u64 },
    /// The event is dead; replaces an earlier dead letter of the same sequence.
    DeadLetter {
        subscription: String,
        entry: DeadLetter,
    },
    /// The subscription's cursor was moved (replay): in-progress retries and parked lanes
    /// are void.
    Reset { subscription: String, from: u64 },
    /// A lane stopped retrying in memory: its events from `from` on wait, and the cursor may
    /// pass them (see `delivery/parking.rs`). Replaces an earlier record of the same lane.
    Parked {
        subscription: String,
        /// The lane's key (`window::lane_of` under `ordering`).
        lane: String,
        /// The lane's first unfinished sequence.
        from: u64,
        /// The ordering the lane key was made with: a restart finds the lane's later
        /// events with it even if the subscription's ordering changed since.
        ordering: OrderBy,
    },
    /// A parked lane delivered (or dead-lettered) everything it held and flows again.
    Unparked { subscription: String, lane: String },
}

/// Where a parked lane starts, as the delivery-state log last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParkedFrom {
    /// The lane's first unfinished sequence.
    pub from: u64,
    /// The ordering its key was made with.
    pub ordering: OrderBy,
}

/// The in-memory projection of the state log.
#[derive(Debug, Default)]
struct Projection {
    retries: HashMap<String, BTreeMap<u64, RetryState>>,
    dead: HashMap<String, BTreeMap<u64, DeadLetter>>,
    parked: HashMap<String, BTreeMap<String, ParkedFrom>>,
}

impl Projection {
    fn apply(&mut self, record: StateRecord) {
        match record {
            StateRecord::Retry {
                subscription,
                sequence,
                state,
            } => {
                self.retries
                    .entry(subscription)
                    .or_default()
                    .insert(sequence, state);
            }
            StateRecord::Delivered {
                subscription,
                sequence,
            } => {
                remove(&mut self.retries, &subscription, sequence);
                remove(&mut self.dead, &subscription, sequence);
            }
            StateRecord::DeadLetter {
                subscription,
                entry,
            } => {
                remove(&mut self.retries, &subscription, entry.sequence);
                self.dead
                    .entry(subscription)
                    .or_default()
                    .insert(entry.sequence, entry);
            }
            StateRecord::Reset { subscription, .. } => {
                self.retries.remove(&subscription);
                self.parked.remove(&subscription);
            }
            StateRecord::Parked {
                subscription,
                lane,
                from,
                ordering,
            } => {
                self.parked
                    .entry(subscription)
                    .or_default()
                    .insert(lane, ParkedFrom { from, ordering });
            }
            StateRecord::Unparked { subscription, lane } => {
                if let Some(lanes) = self.parked.get_mut(&subscription) {
                    lanes.remove(&lane);
                    if lanes.is_empty() {
                        self.parked.remove(&subscription);
                    }
                }
            }
        }
    }
}

/// Removes one entry and drops the subscription's map once empty (bounded memory).
fn remove<V>(map: &mut HashMap<String, BTreeMap<u64, V>>, subscription: &str, sequence: u64) {
    if let Some(inner) = map.get_mut(subscription) {
        inner.remove(&sequence);
        if inner.is_empty() {
            map.remove(subscription);
        }
    }
}

/// The durable store of retry progress and dead letters.
pub(crate) struct StateStore {
    log: Arc<dyn EventLog>,
    projection: Mutex<Projection>,
}

impl StateStore {
    /// Replays the whole state log into memory. Records that do not parse (written by a
    /// newer version, or damaged) are skipped with a warning rather than refusing to start.
    pub(crate) async fn load(log: Arc<dyn EventLog>) -> Result<StateStore, LogError> {
        let mut projection = Projection::default();
        let mut from = log.first_sequence();
        loop {
            let records = log.read(from, 1024, 8 << 20).await?;
            let Some(last) = records.last() else { break };
            from = last.sequence + 1;
            for record in records {
                match serde_json::from_slice::<StateRecord>(&record.payload) {
                    Ok(parsed) => projection.apply(parsed),
                    Err(e) => tracing::warn!(
                        sequence = record.sequence,
                        error = %e,
                        "skipping unreadable delivery-state record"
                    ),
                }
            }
        }
        Ok(StateStore {
            log,
            projection: Mutex::new(projection),
        })
    }

    /// Appends `record` durably, then applies it to memory.
    pub(crate) async fn record(&self, record: StateRecord) -> Result<(), LogError> {
        // Plain strings and numbers; should it ever fail, nothing is appended in its place.
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| LogError::Engine(format!("delivery-state record does not encode: {e}")))?;
        self.log.append(vec![Bytes::from(bytes)]).await?;
        self.lock().apply(record);
        Ok(())
    }

    /// Retry progress of one event, if it has failed before.
    pub(crate) fn retry_state(&self, subscription: &str, sequence: u64) -> Option<RetryState> {
        self.lock()
            .retries
            .get(subscription)
            .and_then(|m| m.get(&sequence))
            .cloned()
    }

    /// Whether any of `sequences` has retry state for `subscription` (one lock per batch).
    pub(crate) fn any_retrying(
        &self,
        subscription: &str,
        mut sequences: impl Iterator<Item = u64>,
    ) -> bool {
        match self.lock().retries.get(subscription) {
            Some(retries) if !retries.is_empty() => sequences.any(|s| retries.contains_key(&s)),
            _ => false,
        }
    }

    /// The subscription's dead letters, oldest sequence first.
    pub(crate) fn dead_letters(&self, subscription: &str) -> Vec<DeadLetter> {
        self.lock()
            .dead
            .get(subscription)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The subscription's parked lanes, by lane key.
    pub(crate) fn parked_lanes(&self, subscription: &str) -> BTreeMap<String, ParkedFrom> {
        self.lock()
            .parked
            .get(subscription)
            .cloned()
            .unwrap_or_default()
    }

    /// How many dead letters the subscription has.
    pub(crate) fn dead_letter_count(&self, subscription: &str) -> usize {
        self.lock().dead.get(subscription).map_or(0, BTreeMap::len)
    }

    fn lock(&self) -> MutexGuard<'_, Projection> {
        // A panic while holding this lock leaves a consistent map (every mutation is one
        // insert or remove), so a poisoned lock is still safe to use.
        self.projection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The golden-fixture check of `tests/stored_formats.rs`, shared so that `StateRecord` is
/// pinned without widening its visibility (see `stored_shapes_are_pinned` below).
#[cfg(test)]
#[path = "../../tests/stored_formats/golden.rs"]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::embedded::{EmbeddedLog, EmbeddedOptions};

    fn dead(sequence: u64) -> DeadLetter {
        DeadLetter {
            sequence,
            id: Uuid::new_v4(),
            instance: "a".into(),
            event: "call".into(),
            attempts: vec![Attempt {
                at_ms: 1,
                outcome: AttemptOutcome::Permanent,
                reason: "HTTP 400".into(),
                duration_ms: 3,
            }],
            dead_at_ms: 2,
        }
    }

    #[tokio::test]
    async fn state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn EventLog> {
            EmbeddedLog::open(EmbeddedOptions::new(dir.path())).unwrap()
        };
        let log = open();
        let store = StateStore::load(log.clone()).await.unwrap();
        let retry = RetryState {
            attempts: dead(0).attempts,
            next_attempt_ms: 99,
        };
        for (sub, seq) in [("s", 5), ("s", 6), ("t", 5)] {
            store
                .record(StateRecord::Retry {
                    subscription: sub.into(),
                    sequence: seq,
                    state: retry.clone(),
                })
                .await
                .unwrap();
        }
        let entry = dead(5);
        let dl = |entry: DeadLetter| StateRecord::DeadLetter {
            subscription: "s".into(),
            entry,
        };
        store.record(dl(entry.clone())).await.unwrap();
        store.record(dl(dead(7))).await.unwrap();
        store
            .record(StateRecord::Delivered {
                subscription: "s".into(),
                sequence: 7,
            })
            .await
            .unwrap();
        let parked = |subscription: &str, lane: &str, from| StateRecord::Parked {
            subscription: subscription.into(),
            lane: lane.into(),
            from,
            ordering: OrderBy::Chat,
        };
        for record in [
            parked("s", "a\u{1f}1@s.whatsapp.net", 5),
            parked("s", "a\u{1f}2@s.whatsapp.net", 8),
            parked("s", "a\u{1f}1@s.whatsapp.net", 6),
            parked("t", "a", 5),
            StateRecord::Unparked {
                subscription: "s".into(),
                lane: "a\u{1f}2@s.whatsapp.net".into(),
            },
        ] {
            store.record(record).await.unwrap();
        }
        store
            .record(StateRecord::Reset {
                subscription: "t".into(),
                from: 1,
            })
            .await
            .unwrap();

        drop(store);
        drop(log);
        let again = StateStore::load(open()).await.unwrap();
        assert_eq!(again.dead_letters("s"), vec![entry]);
        assert_eq!(again.dead_letter_count("t"), 0);
        assert_eq!(
            again.retry_state("s", 5),
            None,
            "dead-lettering ends retries"
        );
        assert_eq!(again.retry_state("s", 6), Some(retry));
        assert_eq!(again.retry_state("t", 5), None, "reset voids retries");
        let lanes = again.parked_lanes("s");
        assert_eq!(
            lanes.into_iter().collect::<Vec<_>>(),
            vec![(
                "a\u{1f}1@s.whatsapp.net".to_owned(),
                ParkedFrom {
                    from: 6,
                    ordering: OrderBy::Chat
                }
            )],
            "the latest record of a lane wins; an unparked lane is gone"
        );
        assert!(
            again.parked_lanes("t").is_empty(),
            "reset voids parked lanes"
        );
    }

    /// Pins the delivery-state log's records as written today against
    /// `tests/fixtures/stored/delivery/` (ARCHITECTURE.md: stored formats are pinned). It
    /// lives here because `StateRecord` is `pub(crate)`: a unit test pins the real type
    /// without making it public. `UPDATE_STORED_FIXTURES=1` writes missing fixtures only.
    #[test]
    fn stored_shapes_are_pinned() {
        let attempt = |at_ms, outcome, reason: &str, duration_ms| Attempt {
            at_ms,
            outcome,
            reason: reason.into(),
            duration_ms,
        };
        let retry = StateRecord::Retry {
            subscription: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
            sequence: 1043,
            state: RetryState {
                attempts: vec![
                    attempt(1_736_937_000_000, AttemptOutcome::Retry, "HTTP 503", 41),
                    attempt(
                        1_736_937_001_250,
                        AttemptOutcome::Retry,
                        "timeout after 2000 ms",
                        2000,
                    ),
                ],
                next_attempt_ms: 1_736_937_005_250,
            },
        };
        // A dead letter redriven once: the redrive's attempts are appended to the history.
        let dead_letter = StateRecord::DeadLetter {
            subscription: "codechat:0194b3c2-7e1a-7c3d-9f00-00000000c001".into(),
            entry: DeadLetter {
                sequence: 1044,
                id: Uuid::parse_str("0194b3c2-7e1a-7c3d-9f00-00000000f001").unwrap(),
                instance: "sales".into(),
                event: "messages.upsert".into(),
                attempts: vec![
                    attempt(1_736_937_000_000, AttemptOutcome::Retry, "HTTP 500", 12),
                    attempt(
                        1_736_937_060_000,
                        AttemptOutcome::Disable,
                        "HTTP 410 Gone",
                        9,
                    ),
                    attempt(1_736_940_000_000, AttemptOutcome::Permanent, "HTTP 400", 15),
                ],
                dead_at_ms: 1_736_940_000_016,
            },
        };
        // A permanent failure on the first try (a refused target): one attempt. A custom
        // event in a partition other than the first, on a Linq subscription that selects it.
        let dead_letter_first = StateRecord::DeadLetter {
            subscription: "linq:0194b3c2-7e1a-7c3d-9f00-00000000d001".into(),
            entry: DeadLetter {
                sequence: 562_949_953_421_400,
                id: Uuid::parse_str("0194b3c2-7e1a-7c3d-9f00-00000000f004").unwrap(),
                instance: "sales".into(),
                event: "linq.phone_number.status_updated".into(),
                attempts: vec![attempt(
                    1_736_937_000_000,
                    AttemptOutcome::Permanent,
                    "refused: 10.0.0.5 is a private address",
                    0,
                )],
                dead_at_ms: 1_736_937_000_001,
            },
        };
        let samples = [
            ("retry", retry),
            (
                "delivered",
                StateRecord::Delivered {
                    subscription: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
                    sequence: 1043,
                },
            ),
            ("dead_letter_redriven", dead_letter),
            ("dead_letter_first_try", dead_letter_first),
            (
                "reset",
                StateRecord::Reset {
                    subscription: "global:webhook".into(),
                    from: 17,
                },
            ),
            (
                "parked",
                StateRecord::Parked {
                    subscription: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
                    lane: "sales\u{1f}5511999990000@s.whatsapp.net".into(),
                    from: 1043,
                    ordering: OrderBy::Chat,
                },
            ),
            (
                "unparked",
                StateRecord::Unparked {
                    subscription: "webhook:0194b3c2-7e1a-7c3d-9f00-00000000a001".into(),
                    lane: "sales".into(),
                },
            ),
        ];
        // `StateStore::record` appends `serde_json::to_vec(&record)`.
        let samples: Vec<(&str, Vec<u8>)> = samples
            .iter()
            .map(|(name, record)| (*name, serde_json::to_vec(record).unwrap()))
            .collect();
        super::golden::check("delivery", "StateRecord", &samples, |bytes| {
            let record: StateRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            serde_json::to_vec(&record).map_err(|e| e.to_string())
        });
    }
}
