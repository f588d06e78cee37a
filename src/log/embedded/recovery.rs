//! Opening a log directory: find the segments, load or rebuild sealed indexes, and scan the
//! active (last) segment, cutting a torn or corrupt tail back to the last valid record.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::format::{self, FileKind, SEGMENT_HEADER_LEN};
use super::index::{self, SealedSummary, SparseIndex};
use super::segment::{self, Segment};
use super::EmbeddedOptions;
use crate::log::LogError;

/// A log ready to serve: its segments and the writer's starting point.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Every segment, oldest first; the last is active.
    pub segments: VecDeque<Segment>,
    /// Append handle of the active segment.
    pub active_file: File,
    /// One past the last valid record.
    pub next_sequence: u64,
    /// Timestamp of the last valid record (`i64::MIN` for an empty log).
    pub last_timestamp_ms: i64,
}

fn corrupt(path: &Path, offset: u64) -> LogError {
    LogError::Corrupt {
        file: path.display().to_string(),
        offset,
    }
}

/// Recovers the log in `opts.dir`, creating the directory and a first segment if needed.
pub(crate) fn recover(opts: &EmbeddedOptions) -> Result<Recovered, LogError> {
    let dir = &opts.dir;
    fs::create_dir_all(dir)?;
    let mut bases = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match format::parse_file_name(name) {
            Some(FileKind::Segment(base)) => {
                bases.insert(base);
            }
            Some(FileKind::Index(base)) => {
                indexes.insert(base);
            }
            None if name.ends_with(".index.tmp") => {
                // An index write that did not finish its rename; harmless, just clutter.
                let _ = fs::remove_file(entry.path());
            }
            None => {}
        }
    }
    for orphan in indexes.difference(&bases) {
        let _ = fs::remove_file(dir.join(format::index_file_name(*orphan)));
    }
    if bases.is_empty() {
        segment::create_segment_file(&dir.join(format::segment_file_name(1)), 1)?.sync_all()?;
        segment::sync_dir(dir)?;
        bases.insert(1);
    }

    let interval = opts.index_interval_bytes;
    let last_base = bases.last().copied().unwrap_or(1);
    let mut segments: VecDeque<Segment> = VecDeque::new();
    let mut last_timestamp_ms = i64::MIN;
    for &base in &bases {
        let path = dir.join(format::segment_file_name(base));
        if base == 0 {
            return Err(corrupt(&path, 0));
        }
        if let Some(prev) = segments.back() {
            if base != prev.last_sequence + 1 {
                // A gap or overlap between segments cannot be repaired by cutting a tail.
                return Err(corrupt(&path, 0));
            }
        }
        let reader = File::open(&path)?;
        let file_len = reader.metadata()?.len();
        let (len, last_sequence, last_ts, idx) = if base == last_base {
            recover_active(&path, &reader, base, file_len, last_timestamp_ms, interval)?
        } else {
            load_sealed(
                dir,
                &path,
                &reader,
                base,
                file_len,
                last_timestamp_ms,
                interval,
            )?
        };
        if last_sequence >= base {
            last_timestamp_ms = last_ts;
        }
        segments.push_back(Segment {
            base,
            path,
            reader: Arc::new(reader),
            len,
            last_sequence,
            last_timestamp_ms: last_ts,
            index: idx,
            sealed: base != last_base,
        });
    }
    let active_path = dir.join(format::segment_file_name(last_base));
    let active_file = OpenOptions::new().append(true).open(&active_path)?;
    let next_sequence = segments.back().map_or(1, |s| s.last_sequence + 1);
    Ok(Recovered {
        segments,
        active_file,
        next_sequence,
        last_timestamp_ms,
    })
}

/// A sealed segment: trusted, described by its index file, or scanned (and its index
/// rewritten) when the index is missing or does not match the file.
fn load_sealed(
    dir: &Path,
    path: &Path,
    file: &File,
    base: u64,
    file_len: u64,
    min_ts: i64,
    interval: u64,
) -> Result<(u64, u64, i64, SparseIndex), LogError> {
    let index_path = dir.join(format::index_file_name(base));
    if let Some((summary, idx)) = index::read_index_file(&index_path, interval)? {
        if summary.segment_len == file_len && summary.last_sequence + 1 >= base {
            return Ok((
                file_len,
                summary.last_sequence,
                summary.last_timestamp_ms,
                idx,
            ));
        }
    }
    let scan = segment::scan_segment(file, base, file_len, min_ts, interval)?;
    if scan.problem.is_some() {
        // Only the tail may be cut; damage inside a sealed segment needs an operator.
        return Err(corrupt(path, scan.valid_len));
    }
    let last_ts = scan.last_timestamp_ms.unwrap_or(min_ts);
    let summary = SealedSummary {
        segment_len: file_len,
        last_sequence: scan.last_sequence,
        last_timestamp_ms: last_ts,
    };
    tracing::info!(file = %path.display(), "rebuilt missing or invalid segment index");
    if let Err(e) = index::write_index_file(&index_path, &summary, &scan.index) {
        tracing::warn!(file = %index_path.display(), error = %e, "could not persist rebuilt index");
    }
    Ok((file_len, scan.last_sequence, last_ts, scan.index))
}

/// The active segment: every record is checked and the first bad one ends the log there.
fn recover_active(
    path: &Path,
    file: &File,
    base: u64,
    file_len: u64,
    min_ts: i64,
    interval: u64,
) -> Result<(u64, u64, i64, SparseIndex), LogError> {
    let scan = segment::scan_segment(file, base, file_len, min_ts, interval)?;
    if let Some(reason) = scan.problem {
        tracing::warn!(
            file = %path.display(),
            offset = scan.valid_len,
            bytes_cut = file_len - scan.valid_len,
            reason,
            "log tail torn or corrupt; truncating to the last valid record"
        );
        let mut w = OpenOptions::new().write(true).open(path)?;
        if scan.valid_len < SEGMENT_HEADER_LEN {
            // Even the header is bad: the segment had no durable record, start it afresh.
            w.set_len(0)?;
            w.write_all(&format::encode_segment_header(base))?;
        } else {
            w.set_len(scan.valid_len)?;
        }
        w.sync_all()?;
    }
    // A stale index of this segment (sealed once, then a crash before the next segment
    // existed) would disagree with what the writer appends now.
    let _ = fs::remove_file(path.with_extension("index"));
    let last_ts = scan.last_timestamp_ms.unwrap_or(min_ts);
    Ok((
        scan.valid_len.max(SEGMENT_HEADER_LEN),
        scan.last_sequence,
        last_ts,
        scan.index,
    ))
}
