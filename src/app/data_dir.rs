//! The data directory: its lock, the generated global key, and the logs kept in it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::AppError;
use crate::config::Config;
use crate::log::embedded::{EmbeddedLog, EmbeddedOptions};
use crate::log::FsyncPolicy;

/// Returns the global API key: configured, stored in the data dir, or generated now (then
/// stored with owner-only permissions and printed once).
pub fn global_api_key(config: &Config) -> Result<String, AppError> {
    if let Some(key) = config.auth.api_key.as_ref().filter(|k| !k.is_empty()) {
        return Ok(key.clone());
    }
    let path = config.generated_key_path();
    let io = |source| AppError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => return Ok(key.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let key = uuid::Uuid::new_v4().simple().to_string();
    write_private(&path, &key).map_err(io)?;
    println!(
        "Generated the global API key (stored in {}): {key}",
        path.display()
    );
    Ok(key)
}

/// Takes an exclusive lock on `{data_dir}/LOCK`, held while the returned file lives.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, AppError> {
    lock_file(&data_dir.join("LOCK"))
}

/// Takes an exclusive lock on the file at `path` (created if missing), held while the
/// returned file lives.
pub(super) fn lock_file(path: &Path) -> Result<std::fs::File, AppError> {
    let path = path.to_path_buf();
    let err = |source| AppError::DataDir {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(err(std::io::Error::other(
            "another switchyard process is using this data directory",
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Opens the embedded log `name` in the data dir; the event log gets the retention settings.
pub(super) fn open_log(
    config: &Config,
    name: &str,
    fsync: FsyncPolicy,
) -> Result<Arc<EmbeddedLog>, AppError> {
    let mut options = EmbeddedOptions::new(config.server.data_dir.join(name));
    options.fsync = fsync;
    if name == "events" {
        let l = &config.log;
        options.segment_bytes = l.segment_bytes;
        options.max_record_bytes = config.ingest.max_body_bytes;
        options.retention_bytes = (l.retention_bytes > 0).then_some(l.retention_bytes);
        options.retention_age =
            (l.retention_hours > 0.0).then(|| Duration::from_secs_f64(l.retention_hours * 3600.0));
        options.hard_limit_bytes = (l.hard_limit_bytes > 0).then_some(l.hard_limit_bytes);
    }
    Ok(EmbeddedLog::open(options)?)
}
