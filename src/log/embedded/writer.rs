//! The single writer thread: group commit, segment roll, fsync policy and publication of
//! the new end of the log.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::engine::Shared;
use super::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::index::{self, IndexEntry, SealedSummary, SparseIndex};
use super::segment::{self, Segment};
use crate::log::{AppendReceipt, FsyncPolicy, LogError};

/// Stop gathering more requests into a group past this many bytes, so one group's buffer
/// (and the latency of its first request) stays bounded.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// One `append` call waiting for the writer.
pub(crate) struct AppendRequest {
    /// The call's payloads, already checked against the size limit.
    pub payloads: Vec<Bytes>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<AppendReceipt, LogError>>,
}

impl AppendRequest {
    fn encoded_len(&self) -> usize {
        self.payloads
            .iter()
            .map(|p| p.len() + RECORD_HEADER_LEN)
            .sum()
    }
}

/// The writer's own view of the active segment and of the log's end.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    base: u64,
    /// Bytes written to the active segment (written, not necessarily synced or published).
    len: u64,
    /// Sample position of the last index entry of the active segment.
    last_sample: Option<u64>,
    /// Index samples written but not yet handed to the shared state.
    new_samples: Vec<IndexEntry>,
    next_sequence: u64,
    last_timestamp_ms: i64,
    last_sync: Instant,
    dirty: bool,
    buf: Vec<u8>,
}

impl Writer {
    /// A writer appending to `file`, the active segment described by the last entry of the
    /// shared state.
    pub fn new(shared: Arc<Shared>, file: File, last_timestamp_ms: i64) -> Self {
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
            last_timestamp_ms,
            last_sync: Instant::now(),
            dirty: false,
            buf: Vec::new(),
        }
    }

    /// Serves requests until every sender is gone or the disk fails.
    pub fn run(mut self, rx: Receiver<AppendRequest>) {
        while let Some(first) = self.next_request(&rx) {
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
            match self.commit(&group) {
                Ok(receipts) => {
                    for (req, receipt) in group.into_iter().zip(receipts) {
                        // The caller may have given up waiting; its records are written anyway.
                        let _ = req.reply.send(Ok(receipt));
                    }
                }
                Err(e) => {
                    // After a failed write or fsync the file's state is unknown (and a failed
                    // fsync cannot be retried safely), so stop; recovery at the next open
                    // cuts whatever partial tail is left.
                    tracing::error!(file = %self.path.display(), error = %e, "log writer failed; log closed");
                    for req in group {
                        let _ = req
                            .reply
                            .send(Err(LogError::Io(io::Error::new(e.kind(), e.to_string()))));
                    }
                    return;
                }
            }
        }
        if self.dirty && self.shared.opts.fsync != FsyncPolicy::Never {
            if let Err(e) = self.sync() {
                tracing::error!(file = %self.path.display(), error = %e, "final log fsync failed");
            }
        }
    }

    /// Blocks for the next request; under `Interval` it wakes at the deadline to fsync
    /// written data even when no further append comes.
    fn next_request(&mut self, rx: &Receiver<AppendRequest>) -> Option<AppendRequest> {
        loop {
            let FsyncPolicy::Interval(every) = self.shared.opts.fsync else {
                return rx.recv().ok();
            };
            if !self.dirty {
                return rx.recv().ok();
            }
            let wait = (self.last_sync + every).saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(req) => return Some(req),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.sync() {
                        tracing::error!(file = %self.path.display(), error = %e, "log fsync failed; log closed");
                        return None;
                    }
                }
            }
        }
    }

    /// Writes a group, makes it durable per policy and publishes it. One write call per
    /// segment touched, one fsync for the whole group.
    fn commit(&mut self, group: &[AppendRequest]) -> io::Result<Vec<AppendReceipt>> {
        let shared = self.shared.clone();
        let opts = &shared.opts;
        let timestamp_ms = (opts.clock.now_ms)().max(self.last_timestamp_ms);
        let mut receipts = Vec::with_capacity(group.len());
        let mut records = 0u64;
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
                records += 1;
            }
            receipts.push(AppendReceipt {
                first_sequence,
                last_sequence: self.next_sequence - 1,
                timestamp_ms,
            });
        }
        self.flush()?;
        self.last_timestamp_ms = timestamp_ms;
        match opts.fsync {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync()?,
            _ => {}
        }
        self.publish_active(true);
        self.shared.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .records
            .fetch_add(records, Ordering::Relaxed);
        self.shared.published.send_replace(self.next_sequence);
        Ok(receipts)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
            self.dirty = true;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync: the file's length is data for this purpose, and we do not need mtime.
        self.file.sync_data()?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.last_sync = Instant::now();
        self.dirty = false;
        Ok(())
    }

    /// Hands the active segment's written state to readers. With `advance_end` the log's
    /// end moves too; without, readers still see nothing new because they never read past
    /// `next_sequence`.
    fn publish_active(&mut self, advance_end: bool) {
        let mut st = self.shared.write_state();
        if let Some(seg) = st.segments.back_mut() {
            seg.len = self.len;
            seg.last_sequence = self.next_sequence - 1;
            seg.last_timestamp_ms = self.last_timestamp_ms;
            seg.index.extend(&self.new_samples);
        }
        self.new_samples.clear();
        if advance_end {
            st.next_sequence = self.next_sequence;
        }
    }

    /// Seals the active segment (data synced unless `Never`, index persisted) and starts a
    /// new one at the next sequence.
    fn roll(&mut self, timestamp_ms: i64) -> io::Result<()> {
        self.flush()?;
        let never = self.shared.opts.fsync == FsyncPolicy::Never;
        if !never && self.dirty {
            self.sync()?;
        }
        self.last_timestamp_ms = timestamp_ms;
        self.publish_active(false);
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
        if !never {
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
        self.file = file;
        self.path = path;
        self.base = base;
        self.len = SEGMENT_HEADER_LEN;
        self.last_sample = None;
        self.dirty = false;
        Ok(())
    }
}
