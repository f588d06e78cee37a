//! Append throughput of the embedded log (1 KiB payloads, `FsyncPolicy::Always`) at 1, 4,
//! 16 and 64 concurrent writers, next to a raw-file baseline measured in the same run.
//!
//! The baseline writes the same bytes (24-byte record header + payload) to one plain file
//! in groups averaging the size the log actually formed (records / groups, from the
//! writer's counters), each group one `write` plus one `fdatasync`, which is the floor the
//! log's group commit can reach. Run: `cargo bench --bench log_append`. Set `BENCH_DIR` to
//! measure on another file system than the temp dir.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchyard::log::embedded::{EmbeddedLog, EmbeddedOptions};
use switchyard::log::{EventLog, FsyncPolicy};

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAYLOAD: usize = 1024;
const RECORD_HEADER: usize = 24;
const WARMUP: Duration = Duration::from_millis(30);
/// Log and baseline alternate in short rounds so that drift in the disk's fsync latency
/// (large on virtual disks) hits both sides alike.
const ROUND: Duration = Duration::from_millis(150);
const ROUNDS: usize = 20;

/// `Always` unless `BENCH_FSYNC=never` (to see the log's own overhead without the disk).
fn fsync_policy() -> FsyncPolicy {
    match std::env::var("BENCH_FSYNC").as_deref() {
        Ok("never") => FsyncPolicy::Never,
        _ => FsyncPolicy::Always,
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// One measuring round: `writers` tasks append one 1 KiB record per call in a loop.
/// Returns (appends completed, hence fsynced, in the window; seconds; records per group).
fn log_round(
    runtime: &tokio::runtime::Runtime,
    log: &Arc<EmbeddedLog>,
    writers: usize,
) -> (u64, f64, f64) {
    let payload = Bytes::from(vec![0x5a; PAYLOAD]);
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let (log, payload) = (log.clone(), payload.clone());
            let (stop, counting, count) = (stop.clone(), counting.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    log.append(vec![payload.clone()]).await.expect("append");
                    if counting.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(WARMUP).await;
        let before = log.writer_stats();
        counting.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(ROUND).await;
        counting.store(false, Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        let after = log.writer_stats();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("writer task");
        }
        let groups = (after.groups - before.groups).max(1);
        (
            count.load(Ordering::Relaxed),
            elapsed,
            (after.records - before.records) as f64 / groups as f64,
        )
    })
}

/// One baseline round: groups averaging `group` records (one write, one fdatasync each) to
/// `file`. The log's average group is fractional (2.6 records, say), so group sizes
/// alternate between its floor and ceiling in the proportion that gives the same average:
/// rounding it instead would give the baseline up to 20% more records per fsync.
/// Returns (records, seconds).
fn baseline_round(file: &mut std::fs::File, group: f64) -> (u64, f64) {
    let group = group.max(1.0);
    let mut record = vec![0u8; RECORD_HEADER];
    record.extend_from_slice(&[0x5a; PAYLOAD]);
    let largest = group.ceil() as usize;
    let buf: Vec<u8> = record
        .iter()
        .copied()
        .cycle()
        .take(record.len() * largest)
        .collect();
    let mut owed = 0.0f64;
    let mut next_group = || {
        owed += group;
        let n = (owed.floor() as usize).clamp(1, largest);
        owed -= n as f64;
        n
    };
    let warm_until = Instant::now() + WARMUP;
    while Instant::now() < warm_until {
        let n = next_group();
        file.write_all(&buf[..record.len() * n]).expect("write");
        file.sync_data().expect("fsync");
    }
    // Counted like the log side: a fixed window, and only groups whose fsync completed
    // inside it (a stall straddling the end costs both sides alike).
    let start = Instant::now();
    let mut records = 0u64;
    loop {
        let n = next_group();
        file.write_all(&buf[..record.len() * n]).expect("write");
        file.sync_data().expect("fsync");
        if start.elapsed() >= ROUND {
            break;
        }
        records += n as u64;
    }
    (records, ROUND.as_secs_f64())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "embedded log append, 1 KiB payloads, {:?}, dir {}",
        fsync_policy(),
        bench_dir().display()
    );
    println!(
        "{:>8} {:>14} {:>10} {:>16} {:>8} {:>12}",
        "writers", "log events/s", "avg group", "raw events/s", "ratio", "median ratio"
    );
    for writers in [1usize, 4, 16, 64] {
        let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
        let mut options = EmbeddedOptions::new(dir.path().join("log"));
        options.fsync = fsync_policy();
        let log = EmbeddedLog::open(options).expect("open log");
        let mut raw_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("raw"))
            .expect("raw file");
        let (mut log_n, mut log_s, mut raw_n, mut raw_s, mut group_sum) =
            (0u64, 0.0, 0u64, 0.0, 0.0);
        let mut round_ratios = Vec::new();
        for _ in 0..ROUNDS {
            let (n, s, avg_group) = log_round(&runtime, &log, writers);
            log_n += n;
            log_s += s;
            group_sum += avg_group;
            let (rn, rs) = baseline_round(&mut raw_file, avg_group);
            raw_n += rn;
            raw_s += rs;
            round_ratios.push((n as f64 / s) / (rn as f64 / rs));
        }
        round_ratios.sort_by(f64::total_cmp);
        let (log_rate, raw_rate) = (log_n as f64 / log_s, raw_n as f64 / raw_s);
        println!(
            "{writers:>8} {log_rate:>14.0} {:>10.2} {raw_rate:>16.0} {:>7.2}x {:>11.2}x",
            group_sum / ROUNDS as f64,
            log_rate / raw_rate,
            round_ratios[ROUNDS / 2]
        );
    }
}
