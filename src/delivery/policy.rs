//! The retry schedule: exponential backoff with jitter, bounded `Retry-After`, attempt limits.
//!
//! One policy serves every sink, so a webhook, a queue and a topic fail the same way. The
//! knobs are Evolution's (`WEBHOOK_RETRY_*`) and accept fractions of a second.

use std::time::Duration;

use crate::config::DeliveryConfig;
use crate::delivery::subscription::Policy;

/// How failed deliveries are retried and when a subscription gives up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per event, the first try included; after the last one the event is
    /// dead-lettered. At least 1.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// The longest delay between two attempts (before jitter and `Retry-After`).
    pub max_delay: Duration,
    /// Each delay is spread uniformly by +-this fraction (0..=1) so that many failing
    /// events do not retry in lock-step.
    pub jitter_factor: f64,
    /// Consecutive failed attempts (any instance) after which the subscription asks to be
    /// disabled; 0 = never.
    pub disable_after_failures: u32,
    /// Attempts (first try included) after which a still-failing event's lane is parked
    /// durably instead of retried in memory; 0 = never park.
    pub park_after_attempts: u32,
    /// An explicit schedule (a subscription's `policy.retry_delays_ms`): the wait after the
    /// n-th failed attempt is the n-th entry, the last one repeating. Empty: exponential.
    pub delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::from_config(&DeliveryConfig::default())
    }
}

impl RetryPolicy {
    /// The policy described by the `[delivery]` config section (Evolution's env names map
    /// onto it). Negative or non-finite values, which validation already refuses, become 0.
    pub fn from_config(cfg: &DeliveryConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: cfg.max_attempts.max(1),
            initial_delay: seconds(cfg.initial_delay_seconds),
            max_delay: seconds(cfg.max_delay_seconds),
            jitter_factor: if cfg.jitter_factor.is_finite() {
                cfg.jitter_factor.clamp(0.0, 1.0)
            } else {
                0.0
            },
            disable_after_failures: cfg.disable_after_failures,
            park_after_attempts: cfg.park_after_attempts,
            delays: Vec::new(),
        }
    }

    /// This policy with a subscription's own choices (`policy` in its sink object) over it.
    pub fn with(&self, policy: &Policy) -> RetryPolicy {
        let mut out = self.clone();
        if let Some(max) = policy.max_attempts {
            out.max_attempts = max.max(1);
        }
        if let Some(delays) = &policy.retry_delays_ms {
            out.delays = delays.iter().map(|ms| Duration::from_millis(*ms)).collect();
            // Parked lanes wait at most the longest delay (see `max_delay`'s users).
            out.max_delay = out.delays.iter().copied().max().unwrap_or(out.max_delay);
        }
        if let Some(limit) = policy.disable_after_failures {
            out.disable_after_failures = limit;
        }
        out
    }

    /// The delay after the `failed`-th failed attempt (1-based), before jitter: the
    /// explicit schedule's entry, else `min(initial * 2^(failed-1), max)`.
    pub fn scheduled_delay(&self, failed: u32) -> Duration {
        if let Some(last) = self.delays.last() {
            let index = failed.saturating_sub(1) as usize;
            return self.delays.get(index).copied().unwrap_or(*last);
        }
        let exponent = failed.saturating_sub(1).min(31);
        self.initial_delay
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay to wait after the `failed`-th failed attempt. `unit` is a random number in
    /// `[-1, 1]` that picks the jitter; `hint` is the destination's `Retry-After`, honoured
    /// but clamped to `[delay, 2 x delay]` so that a hostile or buggy endpoint can neither
    /// make us hammer it nor park an event for a year.
    pub fn delay_with(&self, failed: u32, hint: Option<Duration>, unit: f64) -> Duration {
        let base = self.scheduled_delay(failed).as_secs_f64();
        // An explicit schedule is kept as written.
        let unit = if unit.is_finite() && self.delays.is_empty() {
            unit.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let jittered = (base * (1.0 + self.jitter_factor * unit)).max(0.0);
        let delay = match hint {
            Some(hint) => hint.as_secs_f64().clamp(jittered, 2.0 * jittered),
            None => jittered,
        };
        Duration::try_from_secs_f64(delay).unwrap_or(self.max_delay)
    }

    /// [`RetryPolicy::delay_with`] with fresh randomness.
    pub fn delay(&self, failed: u32, hint: Option<Duration>) -> Duration {
        self.delay_with(failed, hint, rand::random_range(-1.0..=1.0))
    }

    /// Whether an event that has failed `failed` attempts has used them all.
    pub fn exhausted(&self, failed: u32) -> bool {
        failed >= self.max_attempts
    }

    /// Whether an event that failed `failed` times (and is not exhausted) parks its lane
    /// rather than waiting for its next attempt in memory.
    pub fn parks(&self, failed: u32) -> bool {
        self.park_after_attempts > 0 && failed >= self.park_after_attempts
    }
}

/// A subscription's events-per-second limit (`policy.rate_per_second`): a token bucket
/// that holds one second's worth, shared by all of the subscription's lanes, so a burst
/// after a quiet spell goes at once and a backlog drains at the rate.
pub struct Throttle(governor::DefaultDirectRateLimiter);

impl Throttle {
    /// A limit of `rate` events per second (at least 1).
    pub fn per_second(rate: u32) -> Throttle {
        let rate = std::num::NonZeroU32::new(rate).unwrap_or(std::num::NonZeroU32::MIN);
        Throttle(governor::RateLimiter::direct(governor::Quota::per_second(
            rate,
        )))
    }

    /// Waits until `events` more events may be sent.
    pub async fn admit(&self, events: usize) {
        for _ in 0..events {
            self.0.until_ready().await;
        }
    }
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Throttle")
    }
}

/// Seconds (fractions allowed) as a `Duration`; anything not finite or negative is zero.
fn seconds(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
            jitter_factor: 0.2,
            disable_after_failures: 0,
            park_after_attempts: 3,
            delays: Vec::new(),
        }
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = policy();
        let ms: Vec<u128> = (1..=6).map(|n| p.scheduled_delay(n).as_millis()).collect();
        assert_eq!(ms, vec![50, 100, 200, 300, 300, 300]);
        assert_eq!(p.scheduled_delay(1000), Duration::from_millis(300));
    }

    #[test]
    fn jitter_stays_within_its_factor() {
        let p = policy();
        assert_eq!(p.delay_with(2, None, -1.0), Duration::from_millis(80));
        assert_eq!(p.delay_with(2, None, 1.0), Duration::from_millis(120));
        for _ in 0..200 {
            let d = p.delay(3, None).as_secs_f64();
            assert!((0.16..=0.24).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_is_clamped_to_one_to_two_times_the_schedule() {
        let p = policy();
        let d = |hint_ms| p.delay_with(1, Some(Duration::from_millis(hint_ms)), 0.0);
        assert_eq!(d(10), Duration::from_millis(50));
        assert_eq!(d(70), Duration::from_millis(70));
        assert_eq!(d(10_000), Duration::from_millis(100));
    }

    #[test]
    fn attempts_include_the_first_try() {
        let p = policy();
        assert!(!p.exhausted(3));
        assert!(p.exhausted(4));
    }

    #[test]
    fn config_accepts_fractional_seconds() {
        let cfg = DeliveryConfig {
            initial_delay_seconds: 0.02,
            max_delay_seconds: 0.5,
            ..DeliveryConfig::default()
        };
        let p = RetryPolicy::from_config(&cfg);
        assert_eq!(p.initial_delay, Duration::from_millis(20));
        assert_eq!(p.max_delay, Duration::from_millis(500));
        assert_eq!(p.max_attempts, 10);
    }
}
