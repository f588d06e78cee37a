//! Provider-retry dedupe: a key seen for an instance within the window is a retry, to be
//! acknowledged but not appended again.
//!
//! Keys are the adapters' exact `dedupe_key`s (provider, chat, message id, event, status),
//! compared whole: nothing is hashed down or truncated, so two different messages can
//! never collide (Evolution's own dedupe merged distinct messages, its issue #2110).
//! Memory is bounded twice: expired keys are evicted on every call, and past `capacity`
//! the oldest key is dropped early (a retry of it would then be stored again, the safe
//! direction: a duplicate, never a loss).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembers recently seen (instance, dedupe key) pairs for a time window.
#[derive(Debug)]
pub struct Deduper {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Composite key -> when it was first seen.
    seen: HashMap<String, Instant>,
    /// Keys in first-seen order, for eviction from the oldest end.
    order: VecDeque<(Instant, String)>,
}

impl Deduper {
    /// A deduper that forgets a key `window` after first seeing it and holds at most
    /// `capacity` keys (at least one).
    pub fn new(window: Duration, capacity: usize) -> Self {
        Deduper {
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The window this deduper was built with.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// True the first time `key` is seen for `instance` within the window (append the
    /// event); false for a retry inside the window (acknowledge, do not append).
    pub fn first_seen(&self, instance: &str, key: &str, now: Instant) -> bool {
        let composite = composite(instance, key);
        // A poisoned lock only means another thread panicked mid-update; the maps are
        // still consistent enough to keep deduping.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.evict_expired(now, self.window);
        if inner.seen.contains_key(&composite) {
            return false;
        }
        inner.seen.insert(composite.clone(), now);
        inner.order.push_back((now, composite));
        while inner.seen.len() > self.capacity {
            match inner.order.pop_front() {
                Some((_, oldest)) => {
                    inner.seen.remove(&oldest);
                }
                None => break,
            }
        }
        true
    }

    /// Forgets `key` again: called when the append of the event it admitted failed, so the
    /// provider's next retry is stored rather than taken for a duplicate.
    pub fn forget(&self, instance: &str, key: &str) {
        let composite = composite(instance, key);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.seen.remove(&composite);
        inner.order.retain(|(_, k)| *k != composite);
    }

    /// How many keys are held now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The instance's length prefixes it, so ("a|b", "c") and ("a", "b|c") differ.
fn composite(instance: &str, key: &str) -> String {
    format!("{}:{instance}{key}", instance.len())
}

impl Inner {
    fn evict_expired(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    #[test]
    fn retries_within_the_window_are_dropped() {
        let d = Deduper::new(W, 100);
        let t0 = Instant::now();
        assert!(d.first_seen("i", "whapi|c|false|M1|messages.upsert|", t0));
        assert!(!d.first_seen(
            "i",
            "whapi|c|false|M1|messages.upsert|",
            t0 + Duration::from_secs(5)
        ));
        assert!(!d.first_seen(
            "i",
            "whapi|c|false|M1|messages.upsert|",
            t0 + Duration::from_secs(59)
        ));
    }

    #[test]
    fn a_forgotten_key_is_accepted_again() {
        let d = Deduper::new(W, 100);
        let t0 = Instant::now();
        assert!(d.first_seen("i", "k", t0));
        assert!(d.first_seen("i", "other", t0));
        d.forget("i", "k");
        assert!(d.first_seen("i", "k", t0));
        assert!(
            !d.first_seen("i", "other", t0),
            "forget touches only its key"
        );
    }

    #[test]
    fn after_the_window_it_is_accepted_again() {
        let d = Deduper::new(W, 100);
        let t0 = Instant::now();
        assert!(d.first_seen("i", "k", t0));
        assert!(d.first_seen("i", "k", t0 + W));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn different_messages_are_never_merged() {
        let d = Deduper::new(W, 100);
        let t0 = Instant::now();
        assert!(d.first_seen(
            "i",
            "meta|5511@s.whatsapp.net|false|wamid.A|messages.upsert|",
            t0
        ));
        assert!(d.first_seen(
            "i",
            "meta|5511@s.whatsapp.net|false|wamid.B|messages.upsert|",
            t0
        ));
        // Same id in another chat is another message too.
        assert!(d.first_seen(
            "i",
            "meta|5512@s.whatsapp.net|false|wamid.A|messages.upsert|",
            t0
        ));
    }

    #[test]
    fn same_id_different_status_is_not_merged() {
        let d = Deduper::new(W, 100);
        let t0 = Instant::now();
        assert!(d.first_seen("i", "meta|c|true|wamid.A|messages.update|DELIVERY_ACK", t0));
        assert!(d.first_seen("i", "meta|c|true|wamid.A|messages.update|READ", t0));
        assert!(!d.first_seen("i", "meta|c|true|wamid.A|messages.update|READ", t0));
    }

    #[test]
    fn instances_are_separate_and_unambiguous() {
        let d = Deduper::new(W, 100);
        let t0 = Instant::now();
        assert!(d.first_seen("a", "k", t0));
        assert!(d.first_seen("b", "k", t0));
        assert!(d.first_seen("a|b", "c", t0));
        assert!(d.first_seen("a", "b|c", t0));
    }

    #[test]
    fn memory_is_bounded() {
        let d = Deduper::new(W, 3);
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(d.first_seen("i", &format!("k{i}"), t0));
        }
        assert_eq!(d.len(), 3);
        // The newest are kept; the oldest were dropped (and would be stored again).
        assert!(!d.first_seen("i", "k9", t0));
        assert!(d.first_seen("i", "k0", t0));
        // Expiry empties it.
        assert!(d.first_seen("i", "z", t0 + W * 2));
        assert_eq!(d.len(), 1);
    }
}
