//! Durable cursors (name -> next sequence) kept in a `cursors` file beside the segments,
//! replaced atomically; concurrent commits share one write.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::segment;
use crate::log::LogError;

const FILE: &str = "cursors";
const TMP_FILE: &str = "cursors.tmp";

#[derive(Serialize, Deserialize)]
struct CursorFile {
    version: u32,
    cursors: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct CursorState {
    /// The newest wanted positions, durable or not.
    wanted: BTreeMap<String, u64>,
    /// Bumped on every change of `wanted`.
    version: u64,
    /// The positions last written to disk, and the version they correspond to.
    durable: BTreeMap<String, u64>,
    durable_version: u64,
}

/// The cursor table of one log directory.
#[derive(Debug)]
pub(crate) struct CursorStore {
    dir: PathBuf,
    state: Mutex<CursorState>,
    /// Held by the one task writing the file; the others queue here and usually find their
    /// change already written by the time they get it (that is the coalescing).
    write_turn: tokio::sync::Mutex<()>,
}

impl CursorStore {
    /// Loads the cursors of `dir` (none if the file does not exist yet).
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(FILE);
        // A leftover temp file is a write that never got renamed: the old file is current.
        let _ = fs::remove_file(dir.join(TMP_FILE));
        let cursors = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<CursorFile>(&bytes) {
                Ok(f) if f.version == 1 => f.cursors,
                _ => {
                    return Err(LogError::Corrupt {
                        file: path.display().to_string(),
                        offset: 0,
                    })
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(CursorState {
                wanted: cursors.clone(),
                durable: cursors,
                ..CursorState::default()
            }),
            write_turn: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CursorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The durable position of `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.lock().durable.get(name).copied()
    }

    /// Every durable cursor, by name.
    pub fn all(&self) -> Vec<(String, u64)> {
        self.lock()
            .durable
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The lowest position any cursor holds or is about to hold: what retention must keep.
    pub fn min_position(&self) -> Option<u64> {
        let st = self.lock();
        st.wanted.values().chain(st.durable.values()).copied().min()
    }

    /// Sets (`Some`) or removes (`None`) a cursor and returns once the change is durable.
    pub async fn set(&self, name: &str, position: Option<u64>) -> Result<(), LogError> {
        let mine = self.change(|wanted| match position {
            Some(p) => wanted.insert(name.to_owned(), p) != Some(p),
            None => wanted.remove(name).is_some(),
        });
        match mine {
            Some(version) => self.write_at_least(version).await,
            None => Ok(()),
        }
    }

    /// Sets several cursors and returns once they are durable: one file write for all.
    pub async fn set_many(&self, cursors: &[(String, u64)]) -> Result<(), LogError> {
        let mine = self.change(|wanted| {
            cursors.iter().fold(false, |changed, (name, p)| {
                (wanted.insert(name.clone(), *p) != Some(*p)) || changed
            })
        });
        match mine {
            Some(version) => self.write_at_least(version).await,
            None => Ok(()),
        }
    }

    /// Applies `edit` (true when it changed something) to the wanted cursors; the version
    /// that must reach the disk, or `None` when the wanted state is durable already.
    fn change(&self, edit: impl FnOnce(&mut BTreeMap<String, u64>) -> bool) -> Option<u64> {
        let mut st = self.lock();
        if edit(&mut st.wanted) {
            st.version += 1;
        }
        (st.durable_version < st.version).then_some(st.version)
    }

    /// Returns once the state of version `mine` (or a later one) is on disk, writing it
    /// unless a concurrent writer already did.
    async fn write_at_least(&self, mine: u64) -> Result<(), LogError> {
        let _turn = self.write_turn.lock().await;
        let (snapshot, version) = {
            let st = self.lock();
            if st.durable_version >= mine {
                return Ok(());
            }
            (st.wanted.clone(), st.version)
        };
        let dir = self.dir.clone();
        let snapshot = tokio::task::spawn_blocking(move || write_file(&dir, snapshot))
            .await
            .map_err(|e| LogError::Engine(format!("cursor write task failed: {e}")))??;
        let mut st = self.lock();
        if version > st.durable_version {
            st.durable = snapshot;
            st.durable_version = version;
        }
        Ok(())
    }
}

/// Replaces the cursor file atomically: temp file, fsync, rename, fsync of the directory.
fn write_file(
    dir: &Path,
    cursors: BTreeMap<String, u64>,
) -> Result<BTreeMap<String, u64>, LogError> {
    let file = CursorFile {
        version: 1,
        cursors,
    };
    let bytes = serde_json::to_vec(&file)
        .map_err(|e| LogError::Engine(format!("encoding cursors: {e}")))?;
    let tmp = dir.join(TMP_FILE);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(FILE))?;
    segment::sync_dir(dir)?;
    Ok(file.cursors)
}
