//! An application's state directory, `state.dir/<application.id>/`: locked by one instance at a
//! time, and holding the instance's process id, so that a restarted instance keeps its
//! transactional ids and fences the open transactions of the instance it replaces.

use std::fs::{File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;

use crate::error::{EngineError, Result};

const LOCK_FILE: &str = ".lock";
const PROCESS_FILE: &str = "eddy-process-metadata";

/// The locked state directory of one running application instance.
#[derive(Debug)]
pub(crate) struct StateDirectory {
    process_id: String,
    /// Held for the instance's life; the lock goes with the file.
    _lock: File,
}

impl StateDirectory {
    /// Creates and locks `state_dir/application_id`, and reads the process id kept there (or
    /// makes and keeps a new one). A directory locked by another instance, in this process or
    /// another, is a configuration error: two instances on one directory would fence each other.
    pub fn open(state_dir: &Path, application_id: &str) -> Result<Self> {
        let path = state_dir.join(application_id);
        let config_error = |reason: String| EngineError::Config {
            key: "state.dir".into(),
            reason,
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| config_error(format!("cannot create {}: {e}", path.display())))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(|e| {
                config_error(format!("cannot open the lock in {}: {e}", path.display()))
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(config_error(format!(
                    "{} is in use by another instance of application {application_id}; \
                     give each instance its own state.dir",
                    path.display()
                )))
            }
            Err(TryLockError::Error(e)) => {
                return Err(config_error(format!("cannot lock {}: {e}", path.display())))
            }
        }
        let process_id = read_or_create_process_id(&path.join(PROCESS_FILE))
            .map_err(|e| config_error(format!("process id in {}: {e}", path.display())))?;
        tracing::debug!(dir = %path.display(), process_id, "state directory locked");
        Ok(Self {
            process_id,
            _lock: lock,
        })
    }

    /// This instance's process id: the same across restarts on this directory.
    pub fn process_id(&self) -> &str {
        &self.process_id
    }
}

fn read_or_create_process_id(file: &Path) -> std::io::Result<String> {
    if let Ok(text) = std::fs::read_to_string(file) {
        let id = text.trim();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Ok(id.to_string());
        }
        tracing::warn!(file = %file.display(), "unreadable process id; making a new one");
    }
    let id = new_process_id();
    // Written aside and renamed, so a crash never leaves half an id.
    let partial = file.with_extension("partial");
    let mut f = File::create(&partial)?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&partial, file)?;
    Ok(id)
}

/// 128 random bits in hex (std's hasher keys are random per process).
fn new_process_id() -> String {
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_id_survives_a_restart_and_the_directory_takes_one_instance() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDirectory::open(dir.path(), "app").unwrap();
        assert!(dir.path().join("app").join(LOCK_FILE).exists());
        assert_eq!(first.process_id().len(), 32);
        let err = StateDirectory::open(dir.path(), "app").unwrap_err();
        assert!(
            err.to_string().contains("in use by another instance"),
            "{err}"
        );
        // Another application shares the state.dir but not the directory.
        let other = StateDirectory::open(dir.path(), "other").unwrap();
        assert_ne!(other.process_id(), first.process_id());
        let id = first.process_id().to_string();
        drop(first);
        let again = StateDirectory::open(dir.path(), "app").unwrap();
        assert_eq!(again.process_id(), id);
    }

    #[test]
    fn an_unreadable_process_id_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(
            dir.path().join("app").join(PROCESS_FILE),
            "\u{0}\u{1}garbage",
        )
        .unwrap();
        let d = StateDirectory::open(dir.path(), "app").unwrap();
        assert_eq!(d.process_id().len(), 32);
    }
}
