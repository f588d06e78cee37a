//! Retention: deleting whole sealed segments, oldest first, by size and age, never past a
//! live cursor unless the hard limit forces it.

use std::fs;
use std::io;

use super::cursors::CursorStore;
use super::engine::Shared;
use super::format;
use crate::log::LogError;

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes of the deleted segments.
    pub deleted_bytes: u64,
    /// Cursors (name, position) left pointing below the first retained sequence because
    /// the hard limit deleted records they had not read; their readers skip ahead.
    pub skipped_cursors: Vec<(String, u64)>,
}

/// Runs one retention pass over the shared state.
pub(crate) fn enforce(shared: &Shared, cursors: &CursorStore) -> Result<RetentionReport, LogError> {
    let opts = &shared.opts;
    let now_ms = (opts.clock.now_ms)();
    let age_limit_ms = opts
        .retention_age
        .map(|a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
    let keep_from = cursors.min_position().unwrap_or(u64::MAX);
    let mut removed = Vec::new();
    let first_sequence = {
        let mut st = shared.write_state();
        let mut total: u64 = st.segments.iter().map(|s| s.len).sum();
        while let Some(seg) = st.segments.front().filter(|s| s.sealed) {
            let over_hard = opts.hard_limit_bytes.is_some_and(|h| total > h);
            let over_size = opts.retention_bytes.is_some_and(|b| total > b);
            let expired = age_limit_ms.is_some_and(|age| {
                seg.is_empty() || seg.last_timestamp_ms < now_ms.saturating_sub(age)
            });
            let needed = seg.last_sequence >= keep_from;
            if !(over_hard || ((over_size || expired) && !needed)) {
                break;
            }
            total -= seg.len;
            if let Some(seg) = st.segments.pop_front() {
                removed.push(seg);
            }
        }
        st.segments.front().map_or(st.next_sequence, |s| s.base)
    };

    let mut report = RetentionReport::default();
    let mut failed = false;
    for seg in &removed {
        report.deleted_segments += 1;
        report.deleted_bytes += seg.len;
        if failed {
            // Keep what is left on disk a contiguous run of sequences; it is reloaded at the
            // next open and deleted again then.
            continue;
        }
        // Index first: a crash in between leaves a segment without index (rebuilt at open)
        // rather than an orphan index.
        let index_path = shared.dir.join(format::index_file_name(seg.base));
        if let Err(e) = fs::remove_file(&index_path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(file = %index_path.display(), error = %e, "could not delete segment index");
            }
        }
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(file = %seg.path.display(), error = %e, "could not delete segment");
            failed = true;
            continue;
        }
        tracing::info!(file = %seg.path.display(), bytes = seg.len, last_sequence = seg.last_sequence, "retention deleted segment");
    }
    if !removed.is_empty() {
        report.skipped_cursors = cursors
            .all()
            .into_iter()
            .filter(|(_, pos)| *pos < first_sequence)
            .collect();
        for (name, position) in &report.skipped_cursors {
            tracing::warn!(cursor = %name, position, first_sequence, "hard retention limit deleted records a cursor still needed; it skips ahead");
        }
    }
    Ok(report)
}
