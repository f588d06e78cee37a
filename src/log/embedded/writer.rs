//! The writer thread: gathers appends into groups, assigns sequences, encodes and writes
//! them, and rolls segments. Making written data durable and publishing it is the sync
//! thread's job (`syncer`), so the two overlap: while one group's fsync is in flight, the
//! next group is already being gathered, encoded and written.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::engine::Shared;
use super::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::index::{self, IndexEntry, SealedSummary, SparseIndex};
use super::segment::{self, Segment};
use super::syncer::{copy_error, Completion, Reply, Written};
use crate::log::{AppendReceipt, FsyncPolicy, LogError};

/// Stop gathering more requests into a group past this many bytes, so one group's buffer
/// (and the latency of its first request) stays bounded.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// The longest the writer polls for the next request before it sleeps. A caller answered
/// a moment ago usually sends its next append within tens of microseconds, and waking a
/// sleeping thread costs about that much again (more on virtual machines, where an idle
/// vCPU is halted), so a short poll keeps a busy writer from paying it per append.
const MAX_POLL: Duration = Duration::from_micros(100);

/// Waits for requests, polling only while the gaps between them are short: it polls for
/// twice the recent average gap (at most `MAX_POLL`), and not at all once that average is
/// past `MAX_POLL`, as with many callers spread over time (HTTP ingest), where a poll would
/// mostly burn CPU the callers need.
struct RequestWaiter {
    /// Moving average of the time from the end of one group to the next request, in µs.
    average_gap_us: f64,
}

impl RequestWaiter {
    fn new() -> RequestWaiter {
        RequestWaiter {
            average_gap_us: 0.0,
        }
    }

    /// The next request; `None` once every sender is gone.
    fn next(&mut self, rx: &Receiver<AppendRequest>) -> Option<AppendRequest> {
        let started = Instant::now();
        let average = Duration::from_micros(self.average_gap_us as u64);
        let budget = (average * 2).min(MAX_POLL);
        let mut req = None;
        if average <= MAX_POLL {
            while started.elapsed() < budget {
                match rx.try_recv() {
                    Ok(r) => {
                        req = Some(r);
                        break;
                    }
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                }
            }
        }
        let req = match req {
            Some(req) => req,
            None => rx.recv().ok()?,
        };
        // Weight 1/8: a few long gaps switch polling off, a run of short ones back on.
        let gap_us = started.elapsed().as_secs_f64() * 1e6;
        self.average_gap_us += (gap_us.min(10_000.0) - self.average_gap_us) / 8.0;
        Some(req)
    }
}

/// One `append` call waiting for the writer.
pub(crate) struct AppendRequest {
    /// The call's payloads, already checked against the size limit.
    pub payloads: Vec<Bytes>,
    /// Where the outcome goes (sent by the sync thread once the records are durable).
    pub reply: Reply,
}

impl AppendRequest {
    fn encoded_len(&self) -> usize {
        self.payloads
            .iter()
            .map(|p| p.len() + RECORD_HEADER_LEN)
            .sum()
    }
}

/// The writer's own view of the active segment and of the log's end: what has been
/// written, which may be ahead of what is durable and published.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// The active segment, shared with the sync thread, which fsyncs it.
    file: Arc<File>,
    path: PathBuf,
    base: u64,
    /// Bytes written to the active segment (written, not necessarily synced or published).
    len: u64,
    /// Sample position of the last index entry of the active segment.
    last_sample: Option<u64>,
    /// Index samples written but not yet handed to the sync thread.
    new_samples: Vec<IndexEntry>,
    next_sequence: u64,
    /// `next_sequence` at the last hand-off to the sync thread.
    handed_off: u64,
    last_timestamp_ms: i64,
    buf: Vec<u8>,
    /// Written records go to the sync thread through here.
    to_sync: Sender<Written>,
    /// Completes a group here when the sync thread is idle and no other request waits.
    completion: Arc<Completion>,
}

impl Writer {
    /// A writer appending to `file`, the active segment described by the last entry of the
    /// shared state, handing what it writes to the sync thread through `to_sync`.
    pub fn new(
        shared: Arc<Shared>,
        file: Arc<File>,
        last_timestamp_ms: i64,
        to_sync: Sender<Written>,
        completion: Arc<Completion>,
    ) -> Self {
        let (path, base, len, last_sample, next_sequence) = {
            let st = shared.read_state();
            let seg = st.segments.back();
            (
                seg.map(|s| s.path.clone()).unwrap_or_default(),
                seg.map_or(1, |s| s.base),
                seg.map_or(SEGMENT_HEADER_LEN, |s| s.len),
                seg.and_then(|s| s.index.entries().last().map(|e| e.position)),
                st.next_sequence,
            )
        };
        Self {
            shared,
            file,
            path,
            base,
            len,
            last_sample,
            new_samples: Vec::new(),
            next_sequence,
            handed_off: next_sequence,
            last_timestamp_ms,
            buf: Vec::new(),
            to_sync,
            completion,
        }
    }

    /// Serves requests until every sender is gone, the disk fails or the sync thread
    /// stops. Returning drops the channel to the sync thread, which then finishes what it
    /// was handed (final fsync included) and exits.
    pub fn run(mut self, rx: Receiver<AppendRequest>) {
        // A request taken while checking whether anyone else is waiting: it starts the
        // next group.
        let mut carried: Option<AppendRequest> = None;
        let mut waiter = RequestWaiter::new();
        while let Some(first) = carried.take().or_else(|| waiter.next(&rx)) {
            // No waiting for more: whatever arrives while this group is written or synced
            // joins the next one.
            let mut bytes = first.encoded_len();
            let mut group = vec![first];
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.encoded_len();
                        group.push(req);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let receipts = match self.write_group(&group) {
                Ok(receipts) => receipts,
                Err(e) => {
                    // After a failed write or fsync the file's state is unknown (and a failed
                    // fsync cannot be retried safely), so stop; recovery at the next open
                    // cuts whatever partial tail is left.
                    tracing::error!(file = %self.path.display(), error = %e, "log writer failed; log closed");
                    for req in group {
                        let _ = req.reply.send(Err(LogError::Io(copy_error(&e))));
                    }
                    return;
                }
            };
            // Nobody else waiting: nothing would overlap this group's fsync, so handing it
            // to the sync thread would only add a hop.
            let alone = match rx.try_recv() {
                Ok(req) => {
                    carried = Some(req);
                    false
                }
                Err(_) => true,
            };
            let replies = group
                .into_iter()
                .zip(receipts)
                .map(|(req, receipt)| (req.reply, receipt))
                .collect();
            let mut written = self.take_written(replies, None);
            if alone {
                match self.completion.try_inline(written) {
                    Ok(None) => continue,
                    Ok(Some(back)) => written = back,
                    Err((e, failed)) => {
                        // As in the sync thread: no retry, nothing more acknowledged.
                        tracing::error!(file = %self.path.display(), error = %e, "log fsync failed; log closed");
                        failed.fail(&e);
                        return;
                    }
                }
            }
            if let Err(failed) = self.hand_off(written) {
                // The sync thread stopped after a failed fsync (and said why).
                for (reply, _) in failed {
                    let _ = reply.send(Err(LogError::Closed));
                }
                return;
            }
        }
    }

    /// Encodes and writes a group; one write call per segment touched. Returns each
    /// request's receipt; the records are not durable yet.
    fn write_group(&mut self, group: &[AppendRequest]) -> io::Result<Vec<AppendReceipt>> {
        let shared = self.shared.clone();
        let opts = &shared.opts;
        let timestamp_ms = (opts.clock.now_ms)().max(self.last_timestamp_ms);
        let mut receipts = Vec::with_capacity(group.len());
        for req in group {
            let first_sequence = self.next_sequence;
            for payload in &req.payloads {
                let end = self.len + self.buf.len() as u64;
                if end >= opts.segment_bytes && self.next_sequence > self.base {
                    self.roll(timestamp_ms)?;
                }
                let position = self.len + self.buf.len() as u64;
                if self
                    .last_sample
                    .is_none_or(|last| position >= last + opts.index_interval_bytes)
                {
                    self.last_sample = Some(position);
                    self.new_samples.push(IndexEntry {
                        sequence: self.next_sequence,
                        position,
                        timestamp_ms,
                    });
                }
                format::encode_record(&mut self.buf, self.next_sequence, timestamp_ms, payload);
                self.next_sequence += 1;
            }
            receipts.push(AppendReceipt {
                first_sequence,
                last_sequence: self.next_sequence - 1,
                timestamp_ms,
            });
        }
        self.flush()?;
        self.last_timestamp_ms = timestamp_ms;
        Ok(receipts)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            (&*self.file).write_all(&self.buf)?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Everything written since the last hand-off, with the replies to send once it is
    /// durable.
    fn take_written(
        &mut self,
        replies: Vec<(Reply, AppendReceipt)>,
        sealed: Option<mpsc::SyncSender<io::Result<()>>>,
    ) -> Written {
        let written = Written {
            records: self.next_sequence - self.handed_off,
            file: self.file.clone(),
            base: self.base,
            len: self.len,
            next_sequence: self.next_sequence,
            last_timestamp_ms: self.last_timestamp_ms,
            samples: std::mem::take(&mut self.new_samples),
            replies,
            sealed,
        };
        self.handed_off = self.next_sequence;
        written
    }

    /// Hands `written` to the sync thread. Gives the replies back if it is gone.
    fn hand_off(&mut self, written: Written) -> Result<(), Vec<(Reply, AppendReceipt)>> {
        self.completion.handing_off();
        self.to_sync.send(written).map_err(|e| e.0.replies)
    }

    /// Seals the active segment (data synced unless `Never`, published, index persisted)
    /// and starts a new one at the next sequence.
    fn roll(&mut self, timestamp_ms: i64) -> io::Result<()> {
        self.flush()?;
        self.last_timestamp_ms = timestamp_ms;
        // A barrier: wait until the sync thread has made the segment's tail durable and
        // published it, so its description is final and the sync thread has nothing left
        // for it when the new segment becomes the last one.
        let (done, synced) = mpsc::sync_channel(1);
        let stopped = || io::Error::other("log sync thread stopped");
        let written = self.take_written(Vec::new(), Some(done));
        self.hand_off(written).map_err(|_| stopped())?;
        synced.recv().map_err(|_| stopped())??;

        let (summary, sealed_index, sealed_base) = {
            let mut st = self.shared.write_state();
            match st.segments.back_mut() {
                Some(seg) => {
                    seg.sealed = true;
                    let summary = SealedSummary {
                        segment_len: seg.len,
                        last_sequence: seg.last_sequence,
                        last_timestamp_ms: seg.last_timestamp_ms,
                    };
                    (summary, seg.index.clone(), seg.base)
                }
                None => return Err(io::Error::other("no active segment")),
            }
        };
        let index_path = self.shared.dir.join(format::index_file_name(sealed_base));
        if let Err(e) = index::write_index_file(&index_path, &summary, &sealed_index) {
            tracing::warn!(file = %index_path.display(), error = %e, "could not persist segment index; it will be rebuilt at open");
        }

        let base = self.next_sequence;
        let path = self.shared.dir.join(format::segment_file_name(base));
        let file = segment::create_segment_file(&path, base)?;
        if self.shared.opts.fsync != FsyncPolicy::Never {
            file.sync_data()?;
            segment::sync_dir(&self.shared.dir)?;
        }
        let reader = Arc::new(File::open(&path)?);
        self.shared.write_state().segments.push_back(Segment {
            base,
            path: path.clone(),
            reader,
            len: SEGMENT_HEADER_LEN,
            last_sequence: base - 1,
            last_timestamp_ms: timestamp_ms,
            index: SparseIndex::new(self.shared.opts.index_interval_bytes),
            sealed: false,
        });
        self.file = Arc::new(file);
        self.path = path;
        self.base = base;
        self.len = SEGMENT_HEADER_LEN;
        self.last_sample = None;
        Ok(())
    }
}
