//! The store's own errors: what can stop it from opening its data
//! directory. `crate::error::StartupError` wraps them for `main`; the store
//! knows nothing of the application around it.

use std::io;
use std::path::PathBuf;

/// Why the store could not open (or finish) its log. Each message names
/// the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or its log cannot be created, read or written.
    #[error("{}: cannot {action}: {source} (pass --data-dir a directory this user can write)", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, as "create the data directory".
        action: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("{}: another readyloop is using this data directory: stop it, or pass another --data-dir", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The log is damaged before its end: dropping the bad record would
    /// silently lose the good ones after it, so the store does not open.
    #[error("{}: corrupt record at byte offset {offset}: {reason}. Nothing was changed: {advice}", path.display())]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// What the operator can do that keeps the most data.
        advice: String,
    },
}

impl StoreError {
    /// The error for `action` failing on `path`, for `map_err`.
    pub(crate) fn io(
        path: &std::path::Path,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError::Io {
            path,
            action,
            source,
        }
    }
}
