//! One hvrlake at a time per file location: an exclusive lock on `hvrlake.lock` in the
//! location's state directory (`HVR_LOC_STATEDIR`, else `<location>/_hvr_state`). A second
//! call waits for it (setting `lock_wait`), then fails with a line naming the lock. The
//! operating system drops the lock when the holder exits, also when it is killed.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::storage::{self, FileLoc};

/// A held lock; released when dropped.
pub struct LocationLock {
    _file: File,
}

/// The directory the lock lives in, when the state directory or the location is local.
pub fn lock_dir(state_dir: Option<&str>, file_loc: Option<&str>) -> Option<PathBuf> {
    if let Some(s) = state_dir
        && let Ok(FileLoc::Local(p)) = storage::file_loc(s)
    {
        return Some(p);
    }
    match file_loc.map(storage::file_loc) {
        Some(Ok(FileLoc::Local(p))) => Some(p.join("_hvr_state")),
        _ => None,
    }
}

/// Takes the lock in `dir`, waiting up to `wait` for another holder to finish.
pub fn acquire(dir: &Path, wait: Duration) -> Result<LocationLock> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::msg(format!(
            "state directory {}: cannot create it for the location lock: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join("hvrlake.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::msg(format!("{}: cannot open the lock: {e}", path.display())))?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(LocationLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                if started.elapsed() >= wait {
                    crate::bail!(
                        "another hvrlake is working on this file location (lock {} held); waited {} s (setting lock_wait)",
                        path.display(),
                        wait.as_secs()
                    );
                }
                if !told {
                    eprintln!(
                        "W_JX0E02: another hvrlake is working on this file location; waiting for lock {}",
                        path.display()
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                crate::bail!("{}: cannot lock: {e}", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), Duration::ZERO).unwrap();
        let e = acquire(dir.path(), Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(e.message().contains("lock_wait"), "{}", e.message());
        drop(first);
        acquire(dir.path(), Duration::ZERO).unwrap();
    }
}
