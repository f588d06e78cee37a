//! Cursor commits of every subscription of one engine, batched: runners stage the position
//! they may commit, and one task makes the staged positions durable together once per
//! `commit_interval` (`EventLog::commit_cursors`: one write of the embedded cursor file for a
//! thousand subscriptions, not a thousand writes).
//!
//! A runner's last commit, when it stops, is direct and durable before it returns; it first
//! withdraws its staged position after any flush in progress, so an older staged position
//! can never land after it (a replay moves a cursor back between a stop and a start).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::delivery::engine::Shared;

/// Positions staged by runners, waiting for the next flush.
#[derive(Default)]
pub(crate) struct CursorStager {
    staged: Mutex<HashMap<Arc<str>, u64>>,
    /// Held while a flush writes; `withdraw` waits for it.
    flushing: tokio::sync::Mutex<()>,
    /// Wakes the committer when the first position is staged after a flush.
    due: Notify,
}

impl CursorStager {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, u64>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stages `position` as `subscription`'s cursor; durable at the next flush.
    pub(crate) fn stage(&self, subscription: &Arc<str>, position: u64) {
        let mut staged = self.lock();
        let first = staged.is_empty();
        staged.insert(subscription.clone(), position);
        drop(staged);
        if first {
            self.due.notify_one();
        }
    }

    /// Drops `subscription`'s staged position once no flush is in progress.
    pub(crate) async fn withdraw(&self, subscription: &str) {
        let _flushing = self.flushing.lock().await;
        self.lock().remove(subscription);
    }
}

/// The engine's committer: flushes staged cursors every `commit_interval` while there are
/// any; sleeps on a notification otherwise. Ends at cancellation.
pub(crate) async fn committer(shared: Arc<Shared>) {
    let stager = &shared.cursors;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = stager.due.notified() => {}
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(shared.options.commit_interval) => {}
        }
        let _flushing = stager.flushing.lock().await;
        let batch: Vec<(Arc<str>, u64)> = stager.lock().drain().collect();
        if batch.is_empty() {
            continue;
        }
        let cursors: Vec<(String, u64)> = batch
            .iter()
            .map(|(id, position)| (id.to_string(), *position))
            .collect();
        match shared.log.commit_cursors(&cursors).await {
            Ok(()) => {
                for (id, position) in &batch {
                    shared
                        .stats_for(id)
                        .cursor
                        .store(*position, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, cursors = batch.len(), "cannot commit cursors");
                // Retried at the next flush, unless a runner staged a newer position since.
                let mut staged = stager.lock();
                for (id, position) in batch {
                    staged.entry(id).or_insert(position);
                }
                drop(staged);
                stager.due.notify_one();
            }
        }
    }
}
