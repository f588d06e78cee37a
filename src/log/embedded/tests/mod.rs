//! Tests of the embedded engine, with shared helpers: basics, properties, faults, cursors
//! and retention.

mod basics;
mod faults;
mod props;
mod retention_cursors;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{Clock, EmbeddedLog, EmbeddedOptions};
use crate::log::{EventLog, FsyncPolicy, Record};

/// Options for a test log: no fsync (the tests that need durability say so).
fn opts(dir: &Path) -> EmbeddedOptions {
    let mut o = EmbeddedOptions::new(dir);
    o.fsync = FsyncPolicy::Never;
    o
}

/// A clock the test sets by hand.
fn manual_clock(start: i64) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start));
    let reader = now.clone();
    (Clock::from_fn(move || reader.load(Ordering::SeqCst)), now)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn payload(i: u64, len: usize) -> Bytes {
    let mut v = i.to_le_bytes().to_vec();
    v.resize(len.max(8), (i % 251) as u8);
    Bytes::from(v)
}

/// Everything from `from` to the end, in small reads to cross segment boundaries often.
async fn read_all_from(log: &EmbeddedLog, from: u64) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = from;
    loop {
        let batch = log.read(next, 7, 4096).await.unwrap();
        let Some(last) = batch.last() else { break };
        next = last.sequence + 1;
        out.extend(batch);
    }
    out
}

async fn read_all(log: &EmbeddedLog) -> Vec<Record> {
    read_all_from(log, 0).await
}

/// Segment files of a log directory, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}
