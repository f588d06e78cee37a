//! The watcher's episodes on disk, so that a restart neither reports an episode again nor
//! misses one that spans it: `{data_dir}/alerts/episodes.json`, one JSON object with a
//! format version ([`FORMAT_VERSION`]), pinned by `tests/fixtures/stored/alerts/`.
//!
//! It holds each subscription's open episodes (failing with its longest run, dead letters,
//! lag, disabled) and each instance's activity ([`Seen`]) with its open silence. The watcher
//! writes it whole (temp file, fsync, rename, fsync of the directory) after a check round
//! that changed something, never per event; a crash loses at most the last round. A missing
//! file is a first start; one that does not decode, or of another version, is logged and
//! ignored: the server starts with no episodes (the behaviour before this file existed),
//! never fails to start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::delivery::activity::Seen;

/// The version this code writes and reads. Another one is ignored (with a warning).
pub const FORMAT_VERSION: u32 = 1;

/// The file's name in its directory (`{data_dir}/alerts`).
pub const FILE: &str = "episodes.json";

/// The temporary file a write goes through before its rename.
const TMP_FILE: &str = "episodes.json.tmp";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodesFile {
    /// The format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// Subscriptions with an open episode (or dead letters counted), by id. One without is
    /// left out: it starts as a new one would.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, StoredSubscription>,
    /// Instances whose activity this process saw, by name.
    #[serde(default)]
    pub instances: BTreeMap<String, StoredInstance>,
}

/// One subscription's episodes (`episodes::SubscriptionEpisodes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// Reported failing, not yet recovered: the longest failure run of the episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<u64>,
    /// Its dead letters at the last check, when there were some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
    /// A dead-letter episode was reported and no delivery ended it yet.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dead_lettering: bool,
    /// Since when (UTC milliseconds) its lag is above the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_above_since_ms: Option<i64>,
    /// That lag episode was reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lag_reported: bool,
    /// Its disable was reported and it was not enabled since.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

/// One instance: what was seen of it ([`Seen`], receive times in UTC milliseconds) and its
/// open silence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInstance {
    /// Its newest event.
    pub last_event_ms: i64,
    /// Its newest `messages.upsert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_ms: Option<i64>,
    /// An unanswered `connection.update` close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
    /// Its newest `connection.update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_update_ms: Option<i64>,
    /// The silence reported and not yet ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<StoredSilence>,
}

/// A reported silence (`episodes::Silence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSilence {
    /// Its cause, as in the event's `data.cause`.
    pub cause: StoredCause,
    /// The time it is measured from, UTC milliseconds.
    pub since_ms: i64,
}

/// `episodes::SilenceCause`, spelled as in the event's `data.cause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredCause {
    /// `no_events`.
    NoEvents,
    /// `no_messages`.
    NoMessages,
    /// `connection_closed`.
    ConnectionClosed,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl StoredInstance {
    /// What was seen, as the activity tracker holds it.
    pub fn seen(&self) -> Seen {
        Seen {
            last_event_ms: self.last_event_ms,
            last_message_ms: self.last_message_ms,
            closed_at_ms: self.closed_at_ms,
            connection_update_ms: self.connection_update_ms,
        }
    }

    /// `seen` with `silent`.
    pub fn new(seen: &Seen, silent: Option<StoredSilence>) -> StoredInstance {
        StoredInstance {
            last_event_ms: seen.last_event_ms,
            last_message_ms: seen.last_message_ms,
            closed_at_ms: seen.closed_at_ms,
            connection_update_ms: seen.connection_update_ms,
            silent,
        }
    }
}

impl EpisodesFile {
    /// An empty file of this version.
    pub fn new() -> EpisodesFile {
        EpisodesFile {
            v: FORMAT_VERSION,
            ..EpisodesFile::default()
        }
    }

    /// Encodes the file (compact JSON: it is rewritten whole).
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Decodes a file of [`FORMAT_VERSION`]; an error says why it cannot be used.
    pub fn decode(bytes: &[u8]) -> Result<EpisodesFile, String> {
        // The version first, so a newer format is named as such rather than as a decode
        // error of whatever changed in it.
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if version.v != FORMAT_VERSION {
            return Err(format!(
                "format version {} (this version reads {FORMAT_VERSION})",
                version.v
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The file's path under `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts").join(FILE)
}

/// Reads the file at `path`: empty when it is missing, or (with a warning) when it cannot be
/// read or decoded.
pub fn load(path: &Path) -> EpisodesFile {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return EpisodesFile::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot read the alert episodes; starting without them");
            return EpisodesFile::new();
        }
    };
    match EpisodesFile::decode(&bytes) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "unusable alert episodes file; starting without them");
            EpisodesFile::new()
        }
    }
}

/// Replaces the file at `path` with `bytes` atomically: temp file, fsync, rename, fsync of
/// the directory (created if missing). Blocking.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the episodes file has no directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(TMP_FILE);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EpisodesFile {
        let mut file = EpisodesFile::new();
        file.subscriptions.insert(
            "webhook:a".into(),
            StoredSubscription {
                failing: Some(7),
                dead_letters: Some(2),
                dead_lettering: true,
                lag_above_since_ms: Some(1_736_937_000_000),
                lag_reported: true,
                disabled: false,
            },
        );
        file.instances.insert(
            "sales".into(),
            StoredInstance {
                last_event_ms: 1_736_937_000_500,
                last_message_ms: Some(1_736_937_000_400),
                closed_at_ms: None,
                connection_update_ms: Some(1_736_936_000_000),
                silent: Some(StoredSilence {
                    cause: StoredCause::NoEvents,
                    since_ms: 1_736_937_000_500,
                }),
            },
        );
        file.instances.insert(
            "quiet".into(),
            StoredInstance {
                last_event_ms: 5,
                ..StoredInstance::default()
            },
        );
        file
    }

    #[test]
    fn a_file_decodes_to_what_was_encoded_and_leaves_out_what_is_absent() {
        let file = sample();
        let bytes = file.encode().unwrap();
        assert_eq!(EpisodesFile::decode(&bytes), Ok(file));
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["v"], serde_json::json!(1));
        assert_eq!(
            value["instances"]["quiet"],
            serde_json::json!({"last_event_ms": 5}),
            "absent fields are not written"
        );
        assert_eq!(
            value["instances"]["sales"]["silent"],
            serde_json::json!({"cause": "no_events", "since_ms": 1_736_937_000_500i64})
        );
        // An older writer's file without the optional maps.
        assert_eq!(EpisodesFile::decode(br#"{"v":1}"#), Ok(EpisodesFile::new()));
    }

    #[test]
    fn a_corrupt_or_unknown_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(load(&path), EpisodesFile::new(), "missing: a first start");
        for bad in [
            &b"{\"v\":1,\"subscriptions\":{\"x\":"[..],
            b"",
            b"\x00\xff garbage",
            b"[1,2]",
            br#"{"subscriptions":{}}"#,
            br#"{"v":2,"subscriptions":{},"instances":{}}"#,
            br#"{"v":1,"instances":{"a":{"last_event_ms":1,"silent":{"cause":"bored","since_ms":1}}}}"#,
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bad).unwrap();
            assert_eq!(
                load(&path),
                EpisodesFile::new(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let err = EpisodesFile::decode(br#"{"v":2}"#).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
        // A directory where the file should be: unreadable, still no failure.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(load(&path), EpisodesFile::new());
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let first = sample();
        write(&path, &first.encode().unwrap()).unwrap();
        assert_eq!(load(&path), first);
        let second = EpisodesFile::new();
        write(&path, &second.encode().unwrap()).unwrap();
        assert_eq!(load(&path), second);
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![FILE.to_string()]);
    }
}
