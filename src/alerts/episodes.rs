//! The episode state machines: each operational event fires once when its episode starts
//! (and `recovered` once when a failing one ends), never once per event or per check.
//! Pure functions of what the watcher observes and the time, so they are tested alone.
//! Their state converts to and from its stored shape (`persist.rs`), so episodes survive a
//! restart.

use super::persist::{StoredCause, StoredSilence, StoredSubscription};
use crate::delivery::activity::Seen;

/// Why an instance is silent (`data.cause` of `switchyard.instance.silent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceCause {
    /// No event at all for the silence window (after it had some).
    NoEvents,
    /// No `messages.upsert` for the window while other events still arrive.
    NoMessages,
    /// Its gateway reported `connection.update` with `state: close`.
    ConnectionClosed,
}

impl SilenceCause {
    /// The name in the event's `data`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceCause::NoEvents => "no_events",
            SilenceCause::NoMessages => "no_messages",
            SilenceCause::ConnectionClosed => "connection_closed",
        }
    }
}

impl From<SilenceCause> for StoredCause {
    fn from(cause: SilenceCause) -> StoredCause {
        match cause {
            SilenceCause::NoEvents => StoredCause::NoEvents,
            SilenceCause::NoMessages => StoredCause::NoMessages,
            SilenceCause::ConnectionClosed => StoredCause::ConnectionClosed,
        }
    }
}

impl From<StoredCause> for SilenceCause {
    fn from(cause: StoredCause) -> SilenceCause {
        match cause {
            StoredCause::NoEvents => SilenceCause::NoEvents,
            StoredCause::NoMessages => SilenceCause::NoMessages,
            StoredCause::ConnectionClosed => SilenceCause::ConnectionClosed,
        }
    }
}

/// A silent episode that just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// Why.
    pub cause: SilenceCause,
    /// Since when, UTC milliseconds: the last event, the last message, or the close.
    pub since_ms: i64,
}

/// One instance's silence episode. At most one is open at a time, whatever its cause; it
/// ends with what contradicts its cause (an event, a message, another `connection.update`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceEpisode {
    /// The open episode and the time it was measured from.
    open: Option<Silence>,
}

impl InstanceEpisode {
    /// The episode as stored: the open silence, if any.
    pub fn stored(&self) -> Option<StoredSilence> {
        self.open.map(|s| StoredSilence {
            cause: s.cause.into(),
            since_ms: s.since_ms,
        })
    }

    /// The episode an earlier process stored: a silence it reported stays open (and is not
    /// reported again) until what contradicts it is seen.
    pub fn restored(silent: Option<StoredSilence>) -> InstanceEpisode {
        InstanceEpisode {
            open: silent.map(|s| Silence {
                cause: s.cause.into(),
                since_ms: s.since_ms,
            }),
        }
    }

    /// Checks the instance's activity at `now_ms` against the window; returns the silence
    /// that starts now, if one does.
    pub fn check(&mut self, seen: &Seen, now_ms: i64, window_ms: i64) -> Option<Silence> {
        if let Some(open) = self.open {
            let ended = match open.cause {
                SilenceCause::NoEvents => seen.last_event_ms > open.since_ms,
                SilenceCause::NoMessages => seen.last_message_ms > Some(open.since_ms),
                SilenceCause::ConnectionClosed => seen.closed_at_ms != Some(open.since_ms),
            };
            if !ended {
                return None;
            }
            self.open = None;
        }
        let silence = if let Some(closed) = seen.closed_at_ms {
            Silence {
                cause: SilenceCause::ConnectionClosed,
                since_ms: closed,
            }
        } else if now_ms - seen.last_event_ms >= window_ms {
            Silence {
                cause: SilenceCause::NoEvents,
                since_ms: seen.last_event_ms,
            }
        } else {
            match seen.last_message_ms {
                Some(message) if now_ms - message >= window_ms => Silence {
                    cause: SilenceCause::NoMessages,
                    since_ms: message,
                },
                _ => return None,
            }
        };
        self.open = Some(silence);
        Some(silence)
    }
}

/// What a subscription's check found to report.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionAlert {
    /// The failure run reached the threshold.
    Failing {
        /// Failed attempts in a row.
        consecutive_failures: u64,
        /// The last one's error.
        last_error: Option<String>,
    },
    /// A failing subscription delivered again.
    Recovered {
        /// The longest failure run of the episode.
        failures_before: u64,
    },
    /// It dead-lettered an event (the first of an episode).
    DeadLettered {
        /// Its dead letters now.
        dead_letters: u64,
    },
    /// Its lag stayed above the threshold for the configured time.
    LagExceeded {
        /// The lag now, in events.
        lag: u64,
        /// Seconds it has been above the threshold.
        seconds_above: f64,
    },
}

/// The thresholds a subscription is held to (`[alerts]`).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Consecutive failures that make it failing.
    pub failing_after: u64,
    /// Lag, in events, above which it is lagging.
    pub lag_threshold: u64,
    /// How long it must lag before it is reported, milliseconds.
    pub lag_ms: i64,
}

/// What the watcher observed of a subscription at one check.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Failed attempts since its last delivered one.
    pub consecutive_failures: u64,
    /// The last failure's error.
    pub last_error: Option<String>,
    /// Its dead letters now.
    pub dead_letters: u64,
    /// Events behind the log's end.
    pub lag: u64,
}

/// One subscription's episodes: failing (ended by a delivery, which is `recovered`), dead
/// letters (ended by a delivery), lag (ended when the lag drops to the threshold), and
/// disabled (ended when it is enabled again).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SubscriptionEpisodes {
    /// Failing, with the longest run seen in the episode.
    failing: Option<u64>,
    /// Dead letters counted at the last check (`None` before the first).
    dead_letters: Option<u64>,
    dead_lettering: bool,
    /// Since when the lag is above the threshold, and whether that was reported.
    lag_since_ms: Option<i64>,
    lag_reported: bool,
    disabled: bool,
}

impl SubscriptionEpisodes {
    /// The episodes as stored; `None` when there is nothing to keep (no open episode, no
    /// dead letters): such a subscription starts after a restart as a new one would.
    pub fn stored(&self) -> Option<StoredSubscription> {
        let stored = StoredSubscription {
            failing: self.failing,
            dead_letters: self.dead_letters.filter(|n| *n > 0),
            dead_lettering: self.dead_lettering,
            lag_above_since_ms: self.lag_since_ms,
            lag_reported: self.lag_reported,
            disabled: self.disabled,
        };
        (stored != StoredSubscription::default()).then_some(stored)
    }

    /// The episodes an earlier process stored: an episode it reported is not reported
    /// again, and one that ends now still reports its end (`recovered`).
    pub fn restored(stored: &StoredSubscription) -> SubscriptionEpisodes {
        SubscriptionEpisodes {
            failing: stored.failing,
            dead_letters: stored.dead_letters,
            dead_lettering: stored.dead_lettering,
            lag_since_ms: stored.lag_above_since_ms,
            lag_reported: stored.lag_reported,
            disabled: stored.disabled,
        }
    }

    /// Checks one observation at `now_ms`; returns what starts (or, for failing, ends) now.
    pub fn check(
        &mut self,
        seen: &Observation,
        now_ms: i64,
        limits: &Thresholds,
    ) -> Vec<SubscriptionAlert> {
        let mut alerts = Vec::new();
        let failures = seen.consecutive_failures;
        match self.failing {
            None if failures >= limits.failing_after => {
                self.failing = Some(failures);
                alerts.push(SubscriptionAlert::Failing {
                    consecutive_failures: failures,
                    last_error: seen.last_error.clone(),
                });
            }
            Some(peak) if failures == 0 => {
                self.failing = None;
                alerts.push(SubscriptionAlert::Recovered {
                    failures_before: peak,
                });
            }
            Some(peak) => self.failing = Some(peak.max(failures)),
            None => {}
        }
        if failures == 0 {
            self.dead_lettering = false;
        }
        // Without a count (a new subscription, or one a restart restored without dead
        // letters) the first check only learns it: dead letters from before are not news.
        // A restored count makes those dead-lettered since the last write news.
        if let Some(before) = self.dead_letters {
            if seen.dead_letters > before && !self.dead_lettering {
                self.dead_lettering = true;
                alerts.push(SubscriptionAlert::DeadLettered {
                    dead_letters: seen.dead_letters,
                });
            }
        }
        self.dead_letters = Some(seen.dead_letters);
        if seen.lag > limits.lag_threshold {
            let since = *self.lag_since_ms.get_or_insert(now_ms);
            if !self.lag_reported && now_ms - since >= limits.lag_ms {
                self.lag_reported = true;
                alerts.push(SubscriptionAlert::LagExceeded {
                    lag: seen.lag,
                    seconds_above: (now_ms - since) as f64 / 1000.0,
                });
            }
        } else {
            self.lag_since_ms = None;
            self.lag_reported = false;
        }
        alerts
    }

    /// The server disabled the subscription: whether that is news (once per episode).
    pub fn disabled(&mut self) -> bool {
        !std::mem::replace(&mut self.disabled, true)
    }

    /// The subscription is enabled (as the registry says): a later disable is news again.
    pub fn enabled(&mut self) {
        self.disabled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        failing_after: 3,
        lag_threshold: 100,
        lag_ms: 5_000,
    };

    fn failures(n: u64) -> Observation {
        Observation {
            consecutive_failures: n,
            last_error: (n > 0).then(|| "HTTP 500".to_string()),
            ..Observation::default()
        }
    }

    #[test]
    fn failing_fires_once_per_run_and_recovered_once_after_it() {
        let mut ep = SubscriptionEpisodes::default();
        assert!(ep.check(&failures(2), 0, &LIMITS).is_empty());
        assert_eq!(
            ep.check(&failures(3), 1, &LIMITS),
            vec![SubscriptionAlert::Failing {
                consecutive_failures: 3,
                last_error: Some("HTTP 500".into())
            }]
        );
        for n in 4..50 {
            assert!(ep.check(&failures(n), n as i64, &LIMITS).is_empty());
        }
        assert_eq!(
            ep.check(&failures(0), 60, &LIMITS),
            vec![SubscriptionAlert::Recovered {
                failures_before: 49
            }]
        );
        assert!(ep.check(&failures(0), 61, &LIMITS).is_empty());
        assert!(ep.check(&failures(2), 62, &LIMITS).is_empty());
        assert_eq!(ep.check(&failures(3), 63, &LIMITS).len(), 1, "a new run");
    }

    #[test]
    fn a_short_run_never_recovers() {
        let mut ep = SubscriptionEpisodes::default();
        assert!(ep.check(&failures(2), 0, &LIMITS).is_empty());
        assert!(ep.check(&failures(0), 1, &LIMITS).is_empty());
    }

    #[test]
    fn dead_letters_fire_once_until_a_delivery_and_not_for_old_ones() {
        let mut ep = SubscriptionEpisodes::default();
        let dead = |n: u64, failures: u64| Observation {
            dead_letters: n,
            consecutive_failures: failures,
            ..Observation::default()
        };
        assert!(ep.check(&dead(7, 1), 0, &LIMITS).is_empty(), "old ones");
        assert_eq!(
            ep.check(&dead(8, 2), 1, &LIMITS),
            vec![SubscriptionAlert::DeadLettered { dead_letters: 8 }]
        );
        assert!(ep.check(&dead(9, 1), 2, &LIMITS).is_empty());
        assert!(ep.check(&dead(9, 0), 3, &LIMITS).is_empty(), "delivered");
        assert_eq!(ep.check(&dead(10, 1), 4, &LIMITS).len(), 1, "new episode");
        assert!(ep.check(&dead(0, 1), 5, &LIMITS).is_empty(), "redriven");
    }

    #[test]
    fn lag_fires_after_the_time_above_and_again_only_after_it_drops() {
        let mut ep = SubscriptionEpisodes::default();
        let lag = |n: u64| Observation {
            lag: n,
            ..Observation::default()
        };
        assert!(ep.check(&lag(500), 0, &LIMITS).is_empty());
        assert!(ep.check(&lag(500), 4_999, &LIMITS).is_empty());
        assert_eq!(
            ep.check(&lag(700), 5_000, &LIMITS),
            vec![SubscriptionAlert::LagExceeded {
                lag: 700,
                seconds_above: 5.0
            }]
        );
        assert!(ep.check(&lag(900), 9_000, &LIMITS).is_empty());
        assert!(
            ep.check(&lag(100), 10_000, &LIMITS).is_empty(),
            "at threshold"
        );
        assert!(ep.check(&lag(101), 11_000, &LIMITS).is_empty());
        assert_eq!(ep.check(&lag(101), 16_000, &LIMITS).len(), 1);
        let mut brief = SubscriptionEpisodes::default();
        assert!(brief.check(&lag(500), 0, &LIMITS).is_empty());
        assert!(brief.check(&lag(0), 1_000, &LIMITS).is_empty());
        assert!(
            brief.check(&lag(500), 5_500, &LIMITS).is_empty(),
            "restarted"
        );
    }

    #[test]
    fn disabled_once_until_enabled() {
        let mut ep = SubscriptionEpisodes::default();
        assert!(ep.disabled());
        assert!(!ep.disabled());
        ep.enabled();
        assert!(ep.disabled());
    }

    fn seen(last_event: i64, last_message: Option<i64>, closed: Option<i64>) -> Seen {
        Seen {
            last_event_ms: last_event,
            last_message_ms: last_message,
            closed_at_ms: closed,
            connection_update_ms: closed,
        }
    }

    #[test]
    fn silence_fires_once_and_ends_with_the_next_event() {
        let mut ep = InstanceEpisode::default();
        let s = seen(1_000, Some(1_000), None);
        assert_eq!(ep.check(&s, 2_000, 2_000), None, "inside the window");
        let silent = ep.check(&s, 3_000, 2_000);
        assert_eq!(
            silent,
            Some(Silence {
                cause: SilenceCause::NoEvents,
                since_ms: 1_000
            })
        );
        for now in 3_001..3_100 {
            assert_eq!(ep.check(&s, now * 10, 2_000), None, "once per episode");
        }
        let back = seen(40_000, Some(40_000), None);
        assert_eq!(ep.check(&back, 40_500, 2_000), None, "traffic again");
        assert_eq!(
            ep.check(&back, 42_000, 2_000).map(|s| s.cause),
            Some(SilenceCause::NoEvents),
            "a new episode"
        );
    }

    #[test]
    fn no_messages_while_other_events_flow() {
        let mut ep = InstanceEpisode::default();
        assert_eq!(
            ep.check(&seen(9_000, Some(1_000), None), 9_500, 2_000),
            Some(Silence {
                cause: SilenceCause::NoMessages,
                since_ms: 1_000
            })
        );
        assert_eq!(
            ep.check(&seen(20_000, Some(1_000), None), 20_100, 2_000),
            None
        );
        assert_eq!(
            InstanceEpisode::default().check(&seen(30_000, None, None), 30_100, 2_000),
            None,
            "an instance without messages is not missing them"
        );
    }

    #[test]
    fn a_closed_connection_is_one_episode_until_another_connection_update() {
        let mut ep = InstanceEpisode::default();
        let closed = seen(5_000, Some(4_000), Some(5_000));
        assert_eq!(
            ep.check(&closed, 5_100, 2_000).map(|s| s.cause),
            Some(SilenceCause::ConnectionClosed)
        );
        assert_eq!(ep.check(&closed, 60_000, 2_000), None, "no second cause");
        let reopened = seen(61_000, Some(4_000), None);
        assert_eq!(
            ep.check(&reopened, 61_100, 2_000).map(|s| s.cause),
            Some(SilenceCause::NoMessages),
            "open again, still without messages"
        );
    }

    /// Through its stored shape, as across a restart.
    fn restart(ep: &SubscriptionEpisodes) -> SubscriptionEpisodes {
        let stored = ep.stored().unwrap_or_default();
        let json = serde_json::to_vec(&stored).unwrap();
        SubscriptionEpisodes::restored(&serde_json::from_slice(&json).unwrap())
    }

    #[test]
    fn a_restart_keeps_a_reported_failing_run_and_its_recovery() {
        let mut ep = SubscriptionEpisodes::default();
        assert!(ep.stored().is_none(), "nothing to keep");
        assert!(ep.check(&failures(0), 0, &LIMITS).is_empty());
        assert!(ep.stored().is_none(), "no dead letters counted is nothing");
        assert_eq!(ep.check(&failures(4), 1, &LIMITS).len(), 1);
        let mut after = restart(&ep);
        assert_eq!(after.stored(), ep.stored());
        assert!(
            after.check(&failures(9), 2, &LIMITS).is_empty(),
            "no second failing"
        );
        assert_eq!(
            after.check(&failures(0), 3, &LIMITS),
            vec![SubscriptionAlert::Recovered { failures_before: 9 }]
        );
        assert!(restart(&after).stored().is_none(), "over");
    }

    #[test]
    fn a_restart_keeps_lag_and_dead_letter_episodes() {
        let mut ep = SubscriptionEpisodes::default();
        let seen = |lag: u64, dead: u64, failures: u64| Observation {
            lag,
            dead_letters: dead,
            consecutive_failures: failures,
            ..Observation::default()
        };
        assert!(ep.check(&seen(500, 3, 1), 0, &LIMITS).is_empty());
        assert_eq!(ep.check(&seen(500, 4, 2), 5_000, &LIMITS).len(), 2);
        let mut after = restart(&ep);
        assert!(
            after.check(&seen(600, 5, 1), 9_000, &LIMITS).is_empty(),
            "the same lag and dead-letter episodes"
        );
        // Lag dropped while it was down, then rises: a new episode, timed from now.
        let mut dropped = restart(&after);
        assert!(dropped.check(&seen(0, 5, 0), 10_000, &LIMITS).is_empty());
        assert!(dropped.check(&seen(500, 5, 0), 11_000, &LIMITS).is_empty());
        assert_eq!(dropped.check(&seen(500, 5, 0), 16_000, &LIMITS).len(), 1);
        // A lag episode not reported yet keeps its start: reported once its time is up.
        let mut young = SubscriptionEpisodes::default();
        assert!(young.check(&seen(500, 0, 0), 0, &LIMITS).is_empty());
        let mut young = restart(&young);
        assert_eq!(young.check(&seen(500, 0, 0), 5_000, &LIMITS).len(), 1);
        // The disable flag too, until enabled.
        let mut disabled = SubscriptionEpisodes::default();
        assert!(disabled.disabled());
        assert!(!restart(&disabled).disabled());
    }

    #[test]
    fn a_restart_keeps_a_reported_silence() {
        let mut ep = InstanceEpisode::default();
        let s = seen(1_000, Some(1_000), None);
        assert!(ep.check(&s, 3_000, 2_000).is_some());
        let json = serde_json::to_string(&ep.stored()).unwrap();
        let mut after = InstanceEpisode::restored(serde_json::from_str(&json).unwrap());
        assert_eq!(after, ep);
        assert_eq!(after.check(&s, 90_000, 2_000), None, "not again");
        let back = seen(95_000, Some(95_000), None);
        assert_eq!(after.check(&back, 95_001, 2_000), None);
        assert_eq!(after.stored(), None, "ended by the event");
        for cause in [
            SilenceCause::NoEvents,
            SilenceCause::NoMessages,
            SilenceCause::ConnectionClosed,
        ] {
            let stored: StoredCause = cause.into();
            assert_eq!(SilenceCause::from(stored), cause);
            assert_eq!(
                serde_json::to_value(stored).unwrap(),
                serde_json::json!(cause.as_str())
            );
        }
    }
}
