//! The store's append-only log on disk: the record format, replay at start
//! (with torn-tail repair), and the file the writer appends to.
//!
//! This file knows bytes and files, not policies: *when* to write and fsync
//! is decided in [`super::durability`] (the flusher thread and group commit). It never
//! runs on the event-loop thread except through [`super::Store::open`]
//! before any listener is bound.
//!
//! # Format
//!
//! ```text
//! file    = MAGIC record*
//! MAGIC   = "RDYLOG1\n"                      8 bytes
//! record  = len:u32le crc:u32le body         8 + len bytes
//! body    = op:u8 key_len:u32le key value    op 1 = SET key value, 2 = DEL key (no value)
//! crc     = CRC-32 (IEEE) of the 4 len bytes followed by the body
//! ```
//!
//! # Recovery
//!
//! Replay reads records until the end of the file. At the first record that
//! does not check out (short header, absurd length, past the end of the
//! file, wrong checksum), it looks for any good record further on:
//! - none: the record is a torn write from a crash; it is dropped with a
//!   warning naming the file and offset, and the file is truncated there;
//! - one: the damage is in the middle, and truncating would silently lose
//!   the good records after it, so start-up fails naming file and offset.
//!
//! A record whose checksum is good but whose op is unknown (a newer format)
//! is always an error, never dropped.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The first bytes of every log file, so a stray file is never replayed.
pub(crate) const MAGIC: &[u8; 8] = b"RDYLOG1\n";
/// Bytes before a record's body: its length and checksum.
pub(crate) const RECORD_HEADER: usize = 8;
/// The shortest body: an op and a key length.
const MIN_BODY: usize = 5;
/// The longest body replay accepts: a 512 MiB key plus a 512 MiB value
/// (Redis' `proto-max-bulk-len` each). A longer length field is damage.
pub(crate) const MAX_BODY: usize = (1 << 30) + MIN_BODY;
/// The log's file name inside `--data-dir`.
pub(crate) const LOG_NAME: &str = "store.log";
/// Where a rewrite (compaction) writes before it renames over [`LOG_NAME`].
pub(crate) const REWRITE_NAME: &str = "store.log.rewrite";
/// The lock file inside `--data-dir`: one server per directory.
pub(crate) const LOCK_NAME: &str = "lock";

const OP_SET: u8 = 1;
const OP_DEL: u8 = 2;

/// One change, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    /// `key` now holds `value`.
    Set(&'a [u8], &'a [u8]),
    /// `key` is gone.
    Del(&'a [u8]),
}

/// The bytes a SET of `key` to `value` takes in the log; the store sums
/// it over live keys to know when a rewrite pays off.
pub(crate) fn set_len(key: &[u8], value: &[u8]) -> u64 {
    (RECORD_HEADER + MIN_BODY + key.len() + value.len()) as u64
}

/// Appends the record for `op` to `out`.
///
/// # Panics
///
/// If the body would be over [`MAX_BODY`]: services bound their requests
/// far below it (todo by `--max-line`, kv by its 64 MiB request limit).
pub(crate) fn encode(op: Op<'_>, out: &mut Vec<u8>) {
    let (code, key, value): (u8, &[u8], &[u8]) = match op {
        Op::Set(key, value) => (OP_SET, key, value),
        Op::Del(key) => (OP_DEL, key, &[]),
    };
    let body_len = MIN_BODY + key.len() + value.len();
    assert!(body_len <= MAX_BODY, "a store record over 1 GiB");
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(code);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = checksum(&out[start..start + 4], &out[start + RECORD_HEADER..]);
    out[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Why a record does not check out.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// Damaged or torn: may be dropped if nothing good follows it.
    Damaged(String),
    /// The checksum is right but the content is not understood: never dropped.
    Unknown(String),
}

/// Parses the record at the start of `bytes`: the op and its total length.
fn parse(bytes: &[u8]) -> Result<(Op<'_>, usize), Bad> {
    let damaged = |reason: String| Err(Bad::Damaged(reason));
    if bytes.len() < RECORD_HEADER {
        return damaged(format!("a header cut short ({} of 8 bytes)", bytes.len()));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if !(MIN_BODY..=MAX_BODY).contains(&len) {
        return damaged(format!("an impossible record length {len}"));
    }
    let Some(body) = bytes.get(RECORD_HEADER..RECORD_HEADER + len) else {
        let missing = RECORD_HEADER + len - bytes.len();
        return damaged(format!("a record cut short ({missing} bytes missing)"));
    };
    if checksum(&bytes[..4], body) != crc {
        return damaged("a checksum mismatch".to_owned());
    }
    let key_len = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
    let Some(key) = body.get(MIN_BODY..MIN_BODY + key_len) else {
        return Err(Bad::Unknown(format!(
            "a key length {key_len} over its record"
        )));
    };
    let value = &body[MIN_BODY + key_len..];
    let op = match body[0] {
        OP_SET => Op::Set(key, value),
        OP_DEL if value.is_empty() => Op::Del(key),
        code => {
            return Err(Bad::Unknown(format!(
                "an unknown record type {code} (written by a newer readyloop?)"
            )));
        }
    };
    Ok((op, RECORD_HEADER + len))
}

/// How a replay ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Every byte was a good record.
    Clean,
    /// The records end with a torn one at `offset`: drop from there.
    Torn {
        /// Where the torn record starts (the good length of the file).
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
}

/// A record that cannot be dropped: the file and offset for the error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    /// Where the bad record starts.
    pub(crate) offset: u64,
    /// What was wrong, and what follows it.
    pub(crate) reason: String,
}

/// Replays `bytes` (a whole log, [`MAGIC`] included), calling `apply` for
/// each good record in order. See the module docs for torn vs corrupt.
pub(crate) fn scan(bytes: &[u8], mut apply: impl FnMut(Op<'_>)) -> Result<Scan, Corrupt> {
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match parse(&bytes[at..]) {
            Ok((op, len)) => {
                apply(op);
                at += len;
            }
            Err(Bad::Unknown(reason)) => {
                return Err(Corrupt {
                    offset: at as u64,
                    reason,
                });
            }
            Err(Bad::Damaged(reason)) => {
                // Torn only if nothing good follows; the search is long only
                // on a damaged file, and only at start.
                let good_after = (at + 1..bytes.len()).find(|&p| parse(&bytes[p..]).is_ok());
                return match good_after {
                    None => Ok(Scan::Torn {
                        offset: at as u64,
                        reason,
                    }),
                    Some(next) => Err(Corrupt {
                        offset: at as u64,
                        reason: format!("{reason}, and a good record follows at byte {next}"),
                    }),
                };
            }
        }
    }
    Ok(Scan::Clean)
}

/// The data directory, opened: its lock held, the log replayed and repaired.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The directory.
    pub(crate) dir: PathBuf,
    /// The log file's path.
    pub(crate) path: PathBuf,
    /// The log, positioned at its (good) end, for appending.
    pub(crate) file: File,
    /// Its length in bytes.
    pub(crate) size: u64,
    /// The lock file; the lock lasts as long as this handle.
    pub(crate) lock: File,
    /// The data replayed.
    pub(crate) map: HashMap<Vec<u8>, Vec<u8>>,
}

/// Creates `dir` if needed, takes its lock, replays its log and truncates a
/// torn tail.
pub(crate) fn open(dir: &Path) -> Result<Opened, StoreError> {
    let io_error = StoreError::io;
    fs::create_dir_all(dir).map_err(io_error(dir, "create the data directory"))?;
    let lock_path = dir.join(LOCK_NAME);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path, "create the lock file"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Locked {
                dir: dir.to_owned(),
            });
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(io_error(&lock_path, "lock the data directory")(e));
        }
    }
    // A rewrite that crashed before its rename: the log is still whole.
    let _ = fs::remove_file(dir.join(REWRITE_NAME));

    let path = dir.join(LOG_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path, "open the log"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(io_error(&path, "read the log"))?;

    let mut map = HashMap::new();
    let mut size = bytes.len() as u64;
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
        // New, or torn while being created: start it over.
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(MAGIC))
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_dir(dir))
            .map_err(io_error(&path, "create the log"))?;
        size = MAGIC.len() as u64;
    } else if !bytes.starts_with(MAGIC) {
        let advice = format!(
            "move it away, or pass another --data-dir; if it is a readyloop log with \
             its first bytes damaged, restore them with \
             `printf 'RDYLOG1\\n' | dd of={} bs=8 count=1 conv=notrunc`",
            path.display()
        );
        return Err(StoreError::Corrupt {
            path,
            offset: 0,
            reason: "it does not start with RDYLOG1: not a readyloop log".to_owned(),
            advice,
        });
    } else {
        let scan = scan(&bytes, |op| match op {
            Op::Set(key, value) => {
                map.insert(key.to_vec(), value.to_vec());
            }
            Op::Del(key) => {
                map.remove(key);
            }
        })
        .map_err(|Corrupt { offset, reason }| StoreError::Corrupt {
            advice: format!(
                "restore the file from a backup, or keep only what precedes the damage \
                 with `cp {0} {0}.damaged && truncate -s {offset} {0}`",
                path.display()
            ),
            path: path.clone(),
            offset,
            reason,
        })?;
        if let Scan::Torn { offset, reason } = scan {
            log::warn!(
                "{}: dropping a torn last record at byte offset {offset} ({reason}; {} bytes), \
                 probably cut by a crash: truncating the log to {offset} bytes",
                path.display(),
                size - offset
            );
            file.set_len(offset)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&path, "truncate the torn record off the log"))?;
            size = offset;
        }
    }
    file.seek(SeekFrom::Start(size))
        .map_err(io_error(&path, "seek to the end of the log"))?;
    Ok(Opened {
        dir: dir.to_owned(),
        path,
        file,
        size,
        lock,
        map,
    })
}

/// Fsyncs a directory, so a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// CRC-32 (IEEE 802.3, the zlib/PNG one) of `a` followed by `b`.
///
/// `crc32fast` computes the same CRC as the table this log started with
/// (so every log written since still replays), with SIMD where the CPU has
/// it: replay checksums every byte of the log, and so does the search past
/// a damaged record.
pub(crate) fn checksum(a: &[u8], b: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(a);
    hasher.update(b);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(ops: &[Op<'_>]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for &op in ops {
            encode(op, &mut bytes);
        }
        bytes
    }

    fn replay(bytes: &[u8]) -> (Result<Scan, Corrupt>, Vec<String>) {
        let mut seen = Vec::new();
        let scan = scan(bytes, |op| seen.push(format!("{op:?}")));
        (scan, seen)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(checksum(b"1234", b"56789"), 0xCBF4_3926);
        assert_eq!(checksum(b"", b""), 0);
    }

    /// A log written by readyloop before the CRC came from `crc32fast`
    /// (its bytes made by Python's `zlib.crc32`, an independent IEEE CRC):
    /// SET greeting hello, SET n 41, DEL greeting, SET n 42.
    const OLD_LOG: &[u8] = b"RDYLOG1\n\
        \x12\x00\x00\x00\xf5\x8d\xd1\xd7\x01\x08\x00\x00\x00greetinghello\
        \x08\x00\x00\x00\x5c\xae\xb9\xbf\x01\x01\x00\x00\x00n41\
        \x0d\x00\x00\x00\xd8\xea\xc0\x9e\x02\x08\x00\x00\x00greeting\
        \x08\x00\x00\x00\xe6\xff\xb0\x26\x01\x01\x00\x00\x00n42";

    #[test]
    fn a_log_written_by_the_old_checksum_code_replays() {
        let (scan, seen) = replay(OLD_LOG);
        assert_eq!(scan, Ok(Scan::Clean));
        assert_eq!(
            seen,
            [
                format!("{:?}", Op::Set(b"greeting", b"hello")),
                format!("{:?}", Op::Set(b"n", b"41")),
                format!("{:?}", Op::Del(b"greeting")),
                format!("{:?}", Op::Set(b"n", b"42")),
            ]
        );
        // And encoding the same changes today gives the same bytes.
        let ops = [
            Op::Set(b"greeting", b"hello"),
            Op::Set(b"n", b"41"),
            Op::Del(b"greeting"),
            Op::Set(b"n", b"42"),
        ];
        assert_eq!(log_of(&ops), OLD_LOG);
    }

    #[test]
    fn records_round_trip() {
        let ops = [Op::Set(b"k", b"v"), Op::Del(b"k"), Op::Set(b"", b"")];
        let bytes = log_of(&ops);
        assert_eq!(bytes.len() as u64, 8 + set_len(b"k", b"v") + 14 + 13);
        let (scan, seen) = replay(&bytes);
        assert_eq!(scan, Ok(Scan::Clean));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let bytes = log_of(&[Op::Set(b"a", b"1"), Op::Set(b"b", b"22")]);
        let second = 8 + set_len(b"a", b"1") as usize;
        for cut in second + 1..bytes.len() {
            let (scan, seen) = replay(&bytes[..cut]);
            assert!(
                matches!(scan, Ok(Scan::Torn { offset, .. }) if offset == second as u64),
                "cut at {cut}: {scan:?}"
            );
            assert_eq!(seen.len(), 1);
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn_too() {
        let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 4096]);
        assert!(matches!(replay(&bytes).0, Ok(Scan::Torn { offset, .. }) if offset == end));
    }

    #[test]
    fn damage_followed_by_a_good_record_is_corrupt() {
        let mut bytes = log_of(&[
            Op::Set(b"a", b"1"),
            Op::Set(b"b", b"2"),
            Op::Set(b"c", b"3"),
        ]);
        let second = 8 + set_len(b"a", b"1") as usize;
        bytes[second + RECORD_HEADER + 6] ^= 0x40; // the key of the second record
        let (scan, seen) = replay(&bytes);
        let corrupt = scan.unwrap_err();
        assert_eq!(corrupt.offset, second as u64);
        assert!(corrupt.reason.contains("checksum"), "{}", corrupt.reason);
        assert_eq!(seen.len(), 1);
        // A broken length field in the middle is caught the same way.
        let mut bytes = log_of(&[
            Op::Set(b"a", b"1"),
            Op::Set(b"b", b"2"),
            Op::Set(b"c", b"3"),
        ]);
        bytes[second + 3] = 0x7f;
        assert_eq!(replay(&bytes).0.unwrap_err().offset, second as u64);
    }

    #[test]
    fn an_unknown_op_with_a_good_checksum_is_never_dropped() {
        let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
        let start = bytes.len();
        encode(Op::Set(b"b", b"2"), &mut bytes);
        bytes[start + RECORD_HEADER] = 9;
        let crc = checksum(&bytes[start..start + 4], &bytes[start + RECORD_HEADER..]);
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let corrupt = replay(&bytes).0.unwrap_err();
        assert!(corrupt.reason.contains("unknown record type 9"));
    }
}
