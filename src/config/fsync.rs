//! `log.fsync`: `always`, `never`, or a number of milliseconds between syncs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::log::FsyncPolicy;

/// The configured fsync policy, as written in config (`always`, `never`, `250`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncSetting {
    /// Every append waits for its fsync.
    Always,
    /// Never fsync.
    Never,
    /// Milliseconds between fsyncs.
    IntervalMs(u64),
}

impl FsyncSetting {
    /// The log's policy for this setting.
    pub fn policy(self) -> FsyncPolicy {
        match self {
            FsyncSetting::Always => FsyncPolicy::Always,
            FsyncSetting::Never => FsyncPolicy::Never,
            FsyncSetting::IntervalMs(ms) => FsyncPolicy::Interval(Duration::from_millis(ms)),
        }
    }

    fn parse(text: &str) -> Option<FsyncSetting> {
        match text.trim().to_ascii_lowercase().as_str() {
            "always" => Some(FsyncSetting::Always),
            "never" => Some(FsyncSetting::Never),
            other => other
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(FsyncSetting::IntervalMs),
        }
    }
}

const EXPECTED: &str = "`always`, `never`, or a number of milliseconds (> 0)";

impl<'de> Deserialize<'de> for FsyncSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FsyncSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FsyncSetting, E> {
                FsyncSetting::parse(v).ok_or_else(|| E::custom(format!("`{v}` is not {EXPECTED}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FsyncSetting, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FsyncSetting, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for FsyncSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FsyncSetting::Always => s.serialize_str("always"),
            FsyncSetting::Never => s.serialize_str("never"),
            FsyncSetting::IntervalMs(ms) => s.serialize_u64(*ms),
        }
    }
}
