//! The store's own errors: what can stop it from opening its data
//! directory. `crate::error::StartupError` wraps them for `main`; the store
//! knows nothing of the application around it.

use std::io;
use std::path::{Path, PathBuf};

use super::log::{self, Corrupt, MAGIC};

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

/// The error for a log that does not start with [`MAGIC`](super::log::MAGIC). When records
/// check out right after it, only the magic is damaged (a flipped first
/// byte): the advice rewrites those 8 bytes and keeps every record.
pub(crate) fn bad_magic(path: PathBuf, bytes: &[u8]) -> StoreError {
    let file = path.display();
    let records_follow =
        bytes.len() > MAGIC.len() && log::starts_with_a_record(&bytes[MAGIC.len()..]);
    let (reason, advice) = if records_follow {
        (
            "its first 8 bytes are not RDYLOG1, but readyloop records follow them".to_owned(),
            format!(
                "the records are whole: restore the 8-byte header with \
                 `cp {file} {file}.damaged && printf 'RDYLOG1\\n' | dd of={file} bs=8 count=1 conv=notrunc`, \
                 then start again"
            ),
        )
    } else {
        (
            "it does not start with RDYLOG1: not a readyloop log".to_owned(),
            "move it out of the data directory, or pass another --data-dir".to_owned(),
        )
    };
    StoreError::Corrupt {
        path,
        offset: 0,
        reason,
        advice,
    }
}

/// The error for damage in the middle of the log: the advice that keeps
/// the most data (cut out only the damaged bytes, when a good record after
/// them is known), with a copy of the file made first.
pub(crate) fn corrupt_error(
    path: &Path,
    Corrupt {
        offset,
        reason,
        next,
    }: Corrupt,
) -> StoreError {
    let file = path.display();
    let backup = format!("cp {file} {file}.damaged");
    let advice = match next {
        Some(next) => format!(
            "restore the file from a backup, or drop only the {} damaged bytes and keep \
             every record after them with `{backup} && {{ head -c {offset} {file}.damaged; \
             tail -c +{} {file}.damaged; }} > {file}`",
            next - offset,
            next + 1
        ),
        None => format!(
            "restore the file from a backup, or keep only what precedes the damage \
             with `{backup} && truncate -s {offset} {file}`"
        ),
    };
    StoreError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
        advice,
    }
}
