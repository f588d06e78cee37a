//! Reads by sequence and by time. A read snapshots what it needs under the state lock
//! (file handles, byte ranges, the published end) and then does its I/O without any lock,
//! with positional reads on the segments' read handles, so it never holds up the writer.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::engine::Shared;
use super::format::{self, RecordHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::segment::{self, Segment};
use crate::log::{LogError, Record};

/// Read this much at a time; records larger than this are read whole on their own.
const CHUNK: usize = 64 * 1024;

/// A byte range of one segment to read.
#[derive(Debug)]
struct SegmentSpan {
    path: PathBuf,
    file: Arc<File>,
    start: u64,
    end: u64,
}

impl SegmentSpan {
    fn of(seg: &Segment, start: u64) -> Self {
        Self {
            path: seg.path.clone(),
            file: seg.reader.clone(),
            start,
            end: seg.len,
        }
    }

    fn corrupt(&self, offset: u64) -> LogError {
        LogError::Corrupt {
            file: self.path.display().to_string(),
            offset,
        }
    }

    /// Calls `visit` with each record of the span, in order, until it breaks. Every record
    /// is checked against its CRC: published data that fails it is real corruption.
    fn for_each(
        &self,
        mut visit: impl FnMut(&RecordHeader, &[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, LogError> {
        let mut buf = Vec::new();
        let mut pos = self.start;
        while pos < self.end {
            let want = usize::try_from(self.end - pos)
                .unwrap_or(usize::MAX)
                .min(CHUNK);
            buf.resize(want, 0);
            segment::read_exact_at(&self.file, &mut buf, pos)?;
            let mut off = 0usize;
            while let Some(h) = buf.get(off..).and_then(format::decode_record_header) {
                let total =
                    usize::try_from(h.total_len()).map_err(|_| self.corrupt(pos + off as u64))?;
                if off + total > buf.len() {
                    if off > 0 {
                        break;
                    }
                    // A record larger than the chunk: read exactly it, if it fits the span.
                    if pos + total as u64 > self.end {
                        return Err(self.corrupt(pos));
                    }
                    buf.resize(total, 0);
                    segment::read_exact_at(&self.file, &mut buf, pos)?;
                }
                let payload = &buf[off + RECORD_HEADER_LEN..off + total];
                if !h.verify(payload) {
                    return Err(self.corrupt(pos + off as u64));
                }
                if visit(&h, payload).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                off += total;
            }
            if off == 0 {
                // Not even one whole record where published data should be.
                return Err(self.corrupt(pos));
            }
            pos += off as u64;
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// A read by sequence, ready to run off the async threads.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    spans: Vec<SegmentSpan>,
    from: u64,
    end: u64,
}

/// Snapshots what reading from `from` needs; `None` if there is nothing to read.
pub(crate) fn plan_read(shared: &Shared, from: u64) -> Option<ReadPlan> {
    let st = shared.read_state();
    let first = st.segments.front()?.base;
    let from = from.max(first);
    if from >= st.next_sequence {
        return None;
    }
    let at = st
        .segments
        .partition_point(|s| s.base <= from)
        .checked_sub(1)?;
    let mut spans = Vec::new();
    for (i, seg) in st.segments.range(at..).enumerate() {
        if seg.base >= st.next_sequence {
            break;
        }
        let start = match i {
            0 => seg
                .index
                .floor_by_sequence(from)
                .map_or(SEGMENT_HEADER_LEN, |e| e.position),
            _ => SEGMENT_HEADER_LEN,
        };
        spans.push(SegmentSpan::of(seg, start));
    }
    Some(ReadPlan {
        spans,
        from,
        end: st.next_sequence,
    })
}

impl ReadPlan {
    /// Gathers records `>= from` up to the published end, at most `max_records`, and no
    /// more than `max_bytes` of payload unless the first record alone is larger.
    pub fn execute(self, max_records: usize, max_bytes: usize) -> Result<Vec<Record>, LogError> {
        let mut out: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        for span in &self.spans {
            let flow = span.for_each(|h, payload| {
                if h.sequence >= self.end {
                    return ControlFlow::Break(());
                }
                if h.sequence < self.from {
                    return ControlFlow::Continue(());
                }
                if !out.is_empty() && bytes + payload.len() > max_bytes {
                    return ControlFlow::Break(());
                }
                bytes += payload.len();
                out.push(Record {
                    sequence: h.sequence,
                    timestamp_ms: h.timestamp_ms,
                    // Copied rather than sliced from the chunk so a kept record does not pin
                    // the whole read buffer.
                    payload: Bytes::copy_from_slice(payload),
                });
                if out.len() >= max_records {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if flow.is_break() {
                break;
            }
        }
        Ok(out)
    }
}

/// A lookup by time: either answered from memory or a scan of one segment's range.
#[derive(Debug)]
pub(crate) enum TimeLookup {
    /// The answer, known without I/O.
    Done(u64),
    /// The range to scan.
    Scan(TimePlan),
}

/// Scan of the one segment that holds the first record at or after a time.
#[derive(Debug)]
pub(crate) struct TimePlan {
    span: SegmentSpan,
    timestamp_ms: i64,
    /// What to answer if the scan finds nothing published: the record after the segment.
    fallback: u64,
    end: u64,
}

/// Finds the segment to scan for the first record with `timestamp >= timestamp_ms`.
/// Timestamps never decrease, so that is the first segment whose last record is not older.
pub(crate) fn plan_time_lookup(shared: &Shared, timestamp_ms: i64) -> TimeLookup {
    let st = shared.read_state();
    let at = st
        .segments
        .partition_point(|s| !s.is_empty() && s.last_timestamp_ms < timestamp_ms);
    let Some(seg) = st
        .segments
        .get(at)
        .filter(|s| !s.is_empty() && s.base < st.next_sequence)
    else {
        return TimeLookup::Done(st.next_sequence);
    };
    let start = seg
        .index
        .last_before_timestamp(timestamp_ms)
        .map_or(SEGMENT_HEADER_LEN, |e| e.position);
    TimeLookup::Scan(TimePlan {
        span: SegmentSpan::of(seg, start),
        timestamp_ms,
        fallback: (seg.last_sequence + 1).min(st.next_sequence),
        end: st.next_sequence,
    })
}

impl TimePlan {
    /// Runs the scan.
    pub fn execute(self) -> Result<u64, LogError> {
        let mut found = None;
        // Whether the scan broke early is told by `found`.
        let _ = self.span.for_each(|h, _| {
            if h.timestamp_ms >= self.timestamp_ms || h.sequence >= self.end {
                found = Some(h.sequence.min(self.end));
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found.unwrap_or(self.fallback))
    }
}
