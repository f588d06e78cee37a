//! The sync thread: makes what the writer thread wrote durable (per the fsync policy),
//! publishes it to readers and tail followers, then answers the appends it covers.
//!
//! One fsync covers everything written before it started, so all the hand-offs waiting
//! when the thread gets to them share one fsync and one publication: that is a group.
//! Publication (the active segment's description and the log's end, under the state lock)
//! happens only after that fsync returned, which is what keeps readers from seeing a record
//! before it is durable.
//!
//! When the sync thread is idle and no further request waits, the writer completes the
//! group itself through the same code (`Completion::try_inline`): there is nothing to
//! overlap, and the hop to this thread would cost more than it saves.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::engine::Shared;
use super::index::IndexEntry;
use crate::log::{AppendReceipt, FsyncPolicy, LogError};

/// Where one append's outcome goes.
pub(crate) type Reply = oneshot::Sender<Result<AppendReceipt, LogError>>;

/// Records the writer thread has written to the active segment since its previous
/// hand-off, and the state of that segment once they are in.
pub(crate) struct Written {
    /// The segment file written to.
    pub file: Arc<File>,
    /// The segment's base sequence (which segment this describes).
    pub base: u64,
    /// Records written since the previous hand-off.
    pub records: u64,
    /// The segment's length with these records (header included).
    pub len: u64,
    /// One past the last record written.
    pub next_sequence: u64,
    /// Timestamp of the last record written.
    pub last_timestamp_ms: i64,
    /// Index samples taken for these records.
    pub samples: Vec<IndexEntry>,
    /// Appends whose records are all written by now, with their receipts.
    pub replies: Vec<(Reply, AppendReceipt)>,
    /// Set when the writer is about to seal this segment: it blocks until this answers,
    /// after the segment's data is synced (unless `Never`) and published. So nothing ever
    /// follows a sealing hand-off in the channel.
    pub sealed: Option<SyncSender<io::Result<()>>>,
}

impl Written {
    /// Answers everything waiting on these records with a copy of `e`: they were not made
    /// durable, and never will be.
    pub fn fail(self, e: &io::Error) {
        for (reply, _) in self.replies {
            let _ = reply.send(Err(LogError::Io(copy_error(e))));
        }
        if let Some(sealed) = self.sealed {
            let _ = sealed.send(Err(copy_error(e)));
        }
    }
}

/// `io::Error` is not `Clone`; every waiter gets its own with the same kind and message.
pub(crate) fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// The completion side of the pipeline, shared by the sync thread and the writer thread.
///
/// The writer completes a group itself (no hop to the sync thread) when handing it over
/// would gain nothing: the sync thread is idle and no further request is waiting, so there
/// is nothing to write while this group's fsync runs (one writer, a few writers).
/// `pending` counts hand-offs the sync thread has not completed yet; at zero, everything
/// handed over is published, so completing inline keeps publication in sequence order.
/// Only under `Always` and `Never`: an `Interval` sync is timed by the sync thread from
/// what it completed itself.
pub(crate) struct Completion {
    syncer: Mutex<Syncer>,
    pending: AtomicU64,
    /// Whether the policy lets the writer complete inline.
    inline: bool,
}

impl Completion {
    /// The completion side of the log of `shared`.
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        let inline = !matches!(shared.opts.fsync, FsyncPolicy::Interval(_));
        Arc::new(Self {
            inline,
            syncer: Mutex::new(Syncer {
                shared,
                dirty: None,
                last_sync: Instant::now(),
            }),
            pending: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Syncer> {
        // A panic inside `complete` leaves nothing half-published that matters here.
        self.syncer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a hand-off about to be sent to the sync thread.
    pub fn handing_off(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Completes `written` on the calling (writer) thread if the sync thread is idle and
    /// the policy allows it; gives it back otherwise. `Err` means its fsync failed and
    /// nothing of it was published or answered.
    pub fn try_inline(
        &self,
        mut written: Written,
    ) -> Result<Option<Written>, (io::Error, Written)> {
        if !self.inline || self.pending.load(Ordering::Acquire) > 0 {
            return Ok(Some(written));
        }
        let outcome = self.lock().complete(std::slice::from_mut(&mut written));
        match outcome {
            Ok(()) => Ok(None),
            Err(e) => Err((e, written)),
        }
    }

    /// Serves hand-offs until the writer thread is gone (then fsyncs what is left unless
    /// `Never`) or an fsync fails.
    pub fn run(&self, rx: Receiver<Written>) {
        while let Some(first) = self.next_written(&rx) {
            let mut group = vec![first];
            group.extend(rx.try_iter());
            let handed = group.len() as u64;
            let outcome = self.lock().complete(&mut group);
            self.pending.fetch_sub(handed, Ordering::AcqRel);
            if let Err(e) = outcome {
                // A failed fsync cannot be retried safely (the kernel may have dropped the
                // dirty pages), so stop: nothing more is published or acknowledged, and the
                // writer stops when its next hand-off finds this thread gone.
                tracing::error!(dir = %self.lock().shared.dir.display(), error = %e, "log fsync failed; log closed");
                group.extend(rx.try_iter());
                for written in group {
                    written.fail(&e);
                }
                return;
            }
        }
        let mut syncer = self.lock();
        if let Some(file) = syncer.dirty.take() {
            if let Err(e) = syncer.sync(&file) {
                tracing::error!(dir = %syncer.shared.dir.display(), error = %e, "final log fsync failed");
            }
        }
    }

    /// Blocks for the next hand-off; under `Interval` it wakes at the deadline to fsync
    /// published data even when nothing more is written.
    fn next_written(&self, rx: &Receiver<Written>) -> Option<Written> {
        loop {
            let deadline = {
                let syncer = self.lock();
                match (syncer.shared.opts.fsync, &syncer.dirty) {
                    (FsyncPolicy::Interval(every), Some(_)) => syncer.last_sync + every,
                    _ => {
                        drop(syncer);
                        return rx.recv().ok();
                    }
                }
            };
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(written) => return Some(written),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    let mut syncer = self.lock();
                    let Some(file) = syncer.dirty.clone() else {
                        continue;
                    };
                    if let Err(e) = syncer.sync(&file) {
                        tracing::error!(dir = %syncer.shared.dir.display(), error = %e, "log fsync failed; log closed");
                        // Not retried at exit either (see `run`).
                        syncer.dirty = None;
                        return None;
                    }
                }
            }
        }
    }
}

/// What completing needs: the log, and under `Interval` the sync schedule.
struct Syncer {
    shared: Arc<Shared>,
    /// The file holding published data that is not synced yet (`Interval` only).
    dirty: Option<Arc<File>>,
    last_sync: Instant,
}

impl Syncer {
    /// Syncs a group per policy, publishes it and answers its appends. On error nothing
    /// is published or answered.
    fn complete(&mut self, group: &mut [Written]) -> io::Result<()> {
        let Some(last) = group.last() else {
            return Ok(());
        };
        let records: u64 = group.iter().map(|w| w.records).sum();
        let sealing = last.sealed.is_some();
        // The writer only switches files after a sealing hand-off has been answered, so a
        // group never spans two segments.
        debug_assert!(group.iter().all(|w| w.base == last.base));
        let unsynced = records > 0 || self.dirty.is_some();
        let sync_now = unsynced
            && match self.shared.opts.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(every) => sealing || self.last_sync.elapsed() >= every,
                FsyncPolicy::Never => false,
            };
        if sync_now {
            self.sync(&last.file)?;
        } else if unsynced && self.shared.opts.fsync != FsyncPolicy::Never {
            self.dirty = Some(last.file.clone());
        }

        let next_sequence = last.next_sequence;
        {
            let mut st = self.shared.write_state();
            if let Some(seg) = st.segments.back_mut() {
                debug_assert_eq!(seg.base, last.base);
                seg.len = last.len;
                seg.last_sequence = next_sequence - 1;
                seg.last_timestamp_ms = last.last_timestamp_ms;
                for written in group.iter() {
                    seg.index.extend(&written.samples);
                }
            }
            st.next_sequence = next_sequence;
        }
        self.shared.published.send_replace(next_sequence);
        if records > 0 {
            let stats = &self.shared.stats;
            stats.groups.fetch_add(1, Ordering::Relaxed);
            stats.records.fetch_add(records, Ordering::Relaxed);
        }
        for written in group.iter_mut() {
            for (reply, receipt) in written.replies.drain(..) {
                // The caller may have given up waiting; its records are written anyway.
                let _ = reply.send(Ok(receipt));
            }
            if let Some(sealed) = written.sealed.take() {
                let _ = sealed.send(Ok(()));
            }
        }
        Ok(())
    }

    fn sync(&mut self, file: &File) -> io::Result<()> {
        // fdatasync: the file's length is data for this purpose, and we do not need mtime.
        file.sync_data()?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.last_sync = Instant::now();
        self.dirty = None;
        Ok(())
    }
}
