//! The disk work of `upload`: create a temporary file, write chunks to it,
//! commit it under its final name. This is the only part of the service that
//! touches the file system, and it runs as a job on whatever thread the
//! driver picks, never inside `Service::input`.
//!
//! A [`TempUpload`] removes its temporary file when dropped uncommitted, so
//! every way an upload can end early (the client leaves mid-file, the
//! connection is dropped with a job in flight and its stale completion is
//! discarded, a job panics, the server shuts down) leaves no file behind.
//! A `kill -9` runs no drop: [`remove_stale_temp_files`] clears what it
//! left when the server starts again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How temporary files start. A client may not upload a name starting with
/// this (the header check refuses it), so no upload can rename onto the
/// temporary file of another.
pub const TEMP_PREFIX: &str = ".upload-";

/// How temporary files end.
pub const TEMP_SUFFIX: &str = ".part";

/// Numbers temporary files within this process; with the process id it makes
/// each name unique, and `create_new` makes sure of it.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// An open temporary file in the upload directory, named
/// `.upload-<pid>-<n>.part`, that becomes `<name>` on commit.
///
/// Dropping it uncommitted closes and removes the file.
#[derive(Debug)]
pub struct TempUpload {
    file: File,
    /// The temporary file's path (removed on drop unless `committed`).
    path: PathBuf,
    /// The upload directory, where the final name goes.
    dir: PathBuf,
    /// Renamed into place: the path is no longer ours to remove.
    committed: bool,
}

impl TempUpload {
    /// Creates a fresh temporary file in `dir`, never reusing an existing one.
    pub fn create(dir: &Path) -> io::Result<TempUpload> {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "{TEMP_PREFIX}{}-{n}{TEMP_SUFFIX}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempUpload {
            file,
            path,
            dir: dir.to_owned(),
            committed: false,
        })
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file durable under `name` in the upload directory: fsync the
    /// data, rename over any file of that name (atomic: readers see the old
    /// file or the new one, never a mix), fsync the directory so the rename
    /// itself survives a crash.
    pub fn commit(mut self, name: &str) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.path, self.dir.join(name))?;
        self.committed = true;
        File::open(&self.dir)?.sync_all()
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = fs::remove_file(&self.path)
        {
            log::warn!(
                "cannot remove the temporary file {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Removes the temporary files a killed server left in `dir` (a `kill -9`
/// runs no destructor, so [`TempUpload`]'s drop never came): the files
/// named exactly `.upload-<pid>-<n>.part` whose `<pid>` is not a running
/// process. A file of a live process (another server sharing the
/// directory, or one whose pid was reused since) is left alone, and so is
/// every other name. Called once at start, before anything is served.
/// Returns how many files were removed.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_pid) else {
            continue;
        };
        if process_exists(pid) || !entry.file_type()?.is_file() {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The pid in a temporary file's name, if `name` is one
/// (`.upload-<pid>-<n>.part`, both numbers plain decimal).
fn temp_file_pid(name: &str) -> Option<libc::pid_t> {
    let numbers = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(TEMP_SUFFIX)?;
    let (pid, n) = numbers.split_once('-')?;
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !decimal(pid) || !decimal(n) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// True if a process `pid` exists (`kill(pid, 0)`; EPERM means it exists
/// but is not ours).
fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Two handles are the same upload when they name the same temporary file
/// (so that tests can compare jobs).
impl PartialEq for TempUpload {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}
impl Eq for TempUpload {}

/// The disk work one step of an upload asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    /// Create a temporary file in `dir` for the upload of `name`.
    Create {
        /// The upload directory.
        dir: PathBuf,
        /// The final name (checked already), for log lines.
        name: String,
    },
    /// Append `bytes` to the file. Chunks are written in the order asked,
    /// since a connection has at most one job in flight.
    Write {
        /// The file, moved into the job and back.
        file: TempUpload,
        /// The next chunk of the body.
        bytes: Vec<u8>,
    },
    /// fsync, rename to `name`, fsync the directory ([`TempUpload::commit`]).
    Commit {
        /// The complete file.
        file: TempUpload,
        /// Its final name in the upload directory.
        name: String,
    },
}

/// What a [`Work`] came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    /// The temporary file is open.
    Created(TempUpload),
    /// The chunk is written; `bytes` is the chunk's buffer, emptied, to be
    /// filled again (no allocation per chunk).
    Written {
        /// The file, back from the job.
        file: TempUpload,
        /// The emptied buffer.
        bytes: Vec<u8>,
    },
    /// The file is durably stored under its name.
    Committed,
    /// The step failed; the temporary file is already removed. The reason
    /// is fit for the client (`error <reason>`).
    Failed(String),
}

/// Does `work`, blocking the calling thread on the disk. Only jobs call this.
pub fn run(work: Work) -> Done {
    match work {
        Work::Create { dir, name } => match TempUpload::create(&dir) {
            Ok(file) => {
                log::debug!("upload of {name:?} goes to {}", file.path.display());
                Done::Created(file)
            }
            Err(e) => {
                log::warn!("cannot create a file in {}: {e}", dir.display());
                Done::Failed(format!("cannot create the file: {e}"))
            }
        },
        Work::Write {
            mut file,
            mut bytes,
        } => match file.file.write_all(&bytes) {
            Ok(()) => {
                bytes.clear();
                Done::Written { file, bytes }
            }
            Err(e) => {
                log::warn!("cannot write to {}: {e}", file.path.display());
                Done::Failed(format!("cannot write the file: {e}"))
            }
        },
        Work::Commit { file, name } => {
            let temp = file.path.clone();
            match file.commit(&name) {
                Ok(()) => Done::Committed,
                Err(e) => {
                    log::warn!("cannot commit {} as {name:?}: {e}", temp.display());
                    Done::Failed(format!("cannot store the file: {e}"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_temporary_names_carry_a_pid() {
        assert_eq!(temp_file_pid(".upload-123-0.part"), Some(123));
        assert_eq!(temp_file_pid(".upload-7-42.part"), Some(7));
        for name in [
            ".upload-123.part",
            ".upload--1-0.part",
            ".upload-0-1.part",
            ".upload-1-2.part.bak",
            "x.upload-1-2.part",
            ".upload-1-2-3.part",
            ".upload-a-2.part",
            ".upload-+1-2.part",
            ".upload-1-.part",
            "report.txt",
        ] {
            assert_eq!(temp_file_pid(name), None, "{name}");
        }
    }
}
