//! Unit tests of `upload`, with jobs run inline against a scratch directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::service::testing::{self, splits};

/// A fresh empty directory under the system's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "readyloop-upload-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn clear(&self) {
        for name in self.names() {
            fs::remove_file(self.0.join(name)).unwrap();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A service writing into `dir` in chunks of 7 bytes (so that small bodies
/// take several Write jobs), files of at most 100 bytes.
fn upload(dir: &Path) -> Upload {
    let mut service = Upload::new(dir.to_owned(), 100);
    service.chunk_size = 7;
    service
}

/// The same under `--framing read`.
fn upload_read(dir: &Path) -> Upload {
    Upload {
        framing: Framing::Read,
        ..upload(dir)
    }
}

fn cx(out: &mut Vec<u8>) -> Cx<'_> {
    crate::service::testing::cx(out)
}

#[test]
fn files_arrive_byte_exact_in_any_split() {
    let dir = Scratch::new();
    let body: Vec<u8> = (0..=255u8).rev().cycle().take(20).collect();
    let input = [
        &b"put|a.bin|20\n"[..],
        &body,
        b"put|empty|0\r\n",
        b"put|b|3\nxyz",
    ]
    .concat();
    for chunks in splits(&input) {
        let outcome = testing::run(&mut upload(&dir.0), &chunks);
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            "ready\nok 20\nready\nok 0\nready\nok 3\n",
            "split as {chunks:?}"
        );
        assert_eq!(dir.names(), ["a.bin", "b", "empty"]);
        assert_eq!(fs::read(dir.0.join("a.bin")).unwrap(), body);
        assert_eq!(fs::read(dir.0.join("b")).unwrap(), b"xyz");
        assert_eq!(fs::read(dir.0.join("empty")).unwrap(), b"");
        dir.clear();
    }
}

#[test]
fn a_second_upload_of_a_name_replaces_the_file() {
    let dir = Scratch::new();
    let outcome = testing::run(&mut upload(&dir.0), &[b"put|f|3\nabcput|f|2\nxy"]);
    assert_eq!(outcome.out, b"ready\nok 3\nready\nok 2\n");
    assert_eq!(fs::read(dir.0.join("f")).unwrap(), b"xy");
    assert_eq!(dir.names(), ["f"]);
}

#[test]
fn refused_headers_write_nothing_and_close() {
    let dir = Scratch::new();
    let over_long = format!("put|{}|1\n", "x".repeat(MAX_HEADER));
    let cases: &[(&[u8], &str)] = &[
        (
            b"put|../etc/x|3\nabc",
            "bad name: '/' and '\\' are not allowed: send a plain file name, without directories",
        ),
        (b"put|..|3\nabc", "bad name: '..' is not allowed"),
        (
            b"put|a\\b|3\nabc",
            "bad name: '/' and '\\' are not allowed: send a plain file name, without directories",
        ),
        (
            b"put|a\0b|3\nabc",
            "bad name: control characters (NUL included) are not allowed",
        ),
        (b"put||3\nabc", "bad name: the name is empty"),
        (
            b"put|a|abc\nabc",
            "bad size: expected a decimal number of bytes",
        ),
        (
            b"put|a|101\nabc",
            "bad size: over the limit of 100 bytes (the server's --max-upload)",
        ),
        (b"get|a|3\nabc", "bad header: expected put|<name>|<size>"),
        (
            over_long.as_bytes(),
            "header too long: the limit is 512 bytes; expected put|<name>|<size>",
        ),
    ];
    for &(input, reason) in cases {
        for chunks in splits(input) {
            let outcome = testing::run(&mut upload(&dir.0), &chunks);
            assert_eq!(
                String::from_utf8_lossy(&outcome.out),
                format!("error {reason}\n"),
                "{input:?} split as {chunks:?}"
            );
            assert!(outcome.closed, "{input:?}");
            assert!(dir.names().is_empty(), "{input:?} left {:?}", dir.names());
        }
    }
    // A good upload before the bad header is kept.
    let outcome = testing::run(&mut upload(&dir.0), &[b"put|ok|1\n!put|/x|1\n!"]);
    assert_eq!(
        String::from_utf8_lossy(&outcome.out),
        "ready\nok 1\nerror bad name: '/' and '\\' are not allowed: send a plain file name, without directories\n"
    );
    assert_eq!(dir.names(), ["ok"]);
}

#[test]
fn eof_mid_body_leaves_the_directory_empty() {
    let dir = Scratch::new();
    let input = b"put|half|30\n0123456789abcdefghij";
    for chunks in splits(input) {
        let outcome = testing::run(&mut upload(&dir.0), &chunks);
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            "ready\nerror incomplete: the connection ended after 20 of 30 bytes; nothing was stored\n"
        );
        assert!(dir.names().is_empty(), "{:?}", dir.names());
    }
}

#[test]
fn dropping_the_service_or_a_job_mid_body_removes_the_temp_file() {
    let dir = Scratch::new();
    let mut out = Vec::new();
    let mut service = upload(&dir.0);
    let (n, next) = service.input(b"put|x|20\n0123456789", &mut cx(&mut out));
    assert_eq!(n, 9);
    let Next::Offload(job) = next else {
        panic!("{next:?}")
    };
    let next = service.resume(job.run(), &mut cx(&mut out));
    assert_eq!((next, &out[..]), (Next::Wait, &b"ready\n"[..]));
    assert_eq!(dir.names().len(), 1, "the temp file exists");
    assert!(dir.names()[0].starts_with(".upload-") && dir.names()[0].ends_with(".part"));

    // A Write job whose completion is discarded (stale) removes the file.
    let (n, next) = service.input(b"0123456789", &mut cx(&mut out));
    assert_eq!(n, 7);
    let Next::Offload(job) = next else {
        panic!("{next:?}")
    };
    drop(job.run());
    assert!(dir.names().is_empty(), "{:?}", dir.names());

    // A connection dropped while its service holds the file.
    let mut service = upload(&dir.0);
    let (_, next) = service.input(b"put|y|20\n", &mut cx(&mut out));
    let Next::Offload(job) = next else {
        panic!("{next:?}")
    };
    let _ = service.resume(job.run(), &mut cx(&mut out));
    assert_eq!(dir.names().len(), 1);
    drop(service);
    assert!(dir.names().is_empty(), "{:?}", dir.names());
}

#[test]
fn a_failed_write_is_answered_after_the_body_and_the_connection_goes_on() {
    let dir = Scratch::new();
    let mut out = Vec::new();
    let mut service = upload(&dir.0);
    let (_, next) = service.input(b"put|x|10\n", &mut cx(&mut out));
    let Next::Offload(job) = next else {
        panic!("{next:?}")
    };
    let _ = service.resume(job.run(), &mut cx(&mut out));
    let (n, next) = service.input(b"0123456789put|y|1\n!", &mut cx(&mut out));
    assert_eq!(n, 7);
    assert!(matches!(
        next,
        Next::Offload(Job::Upload(Work::Write { .. }))
    ));
    drop(next); // as if the disk were full: the file goes with the job
    let failed = JobOutput::Upload(Done::Failed("cannot write the file: disk full".into()));
    assert_eq!(service.resume(failed, &mut cx(&mut out)), Next::Wait);
    // The last 3 body bytes are dropped, then the error, then the next upload.
    let rest = b"789put|y|1\n!";
    let outcome = testing::run(&mut service, &[rest]);
    assert_eq!(
        String::from_utf8_lossy(&[&out[..], &outcome.out].concat()),
        "ready\nerror cannot write the file: disk full\nready\nok 1\n"
    );
    assert_eq!(dir.names(), ["y"]);
}

#[test]
fn a_panicked_job_is_an_error_reply() {
    let dir = Scratch::new();
    let mut out = Vec::new();
    let mut service = upload(&dir.0);
    let (_, next) = service.input(b"put|x|1\n", &mut cx(&mut out));
    drop(next);
    let next = service.resume(JobOutput::Panicked("boom".into()), &mut cx(&mut out));
    assert_eq!(next, Next::Close);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "error internal error in the server; nothing was stored\n"
    );
}

#[test]
fn a_missing_directory_is_an_error_reply_and_a_close() {
    let dir = Scratch::new();
    let missing = dir.0.join("missing");
    let outcome = testing::run(&mut upload(&missing), &[b"put|x|1\n!"]);
    let out = String::from_utf8_lossy(&outcome.out);
    assert!(out.starts_with("error cannot create the file: "), "{out}");
    assert!(outcome.closed);
    assert!(dir.names().is_empty());
}

#[test]
fn under_read_framing_a_header_ends_where_its_read_ended() {
    // The seed's client: a header with no newline, wait for the ack, the bytes.
    let dir = Scratch::new();
    let chunks: [&[u8]; 4] = [b"put|a.txt|5", b"hello", b"put|b|12\r", b"0123456789ab"];
    let outcome = testing::run(&mut upload_read(&dir.0), &chunks);
    assert_eq!(
        String::from_utf8_lossy(&outcome.out),
        "ready\nok 5\nready\nok 12\n"
    );
    assert_eq!(fs::read(dir.0.join("a.txt")).unwrap(), b"hello");
    assert_eq!(fs::read(dir.0.join("b")).unwrap(), b"0123456789ab");
    dir.clear();
    // Under newline framing the same client waits for its ack forever.
    let outcome = testing::run(&mut upload(&dir.0), &chunks[..1]);
    assert_eq!((outcome.out, outcome.closed), (Vec::new(), false));
    assert!(dir.names().is_empty());
}

#[test]
fn under_read_framing_a_newline_still_ends_a_header() {
    let dir = Scratch::new();
    let outcome = testing::run(&mut upload_read(&dir.0), &[b"put|f|3\nabcput|g|1\n!"]);
    assert_eq!(outcome.out, b"ready\nok 3\nready\nok 1\n");
    assert_eq!(dir.names(), ["f", "g"]);
}

#[test]
fn under_read_framing_a_bad_or_split_header_is_refused() {
    let dir = Scratch::new();
    for chunks in [&[&b"get|a|3"[..]][..], &[b"put|a", b"|3"]] {
        let outcome = testing::run(&mut upload_read(&dir.0), chunks);
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            "error bad header: expected put|<name>|<size>\n",
            "{chunks:?}"
        );
        assert!(outcome.closed, "{chunks:?}");
        assert!(dir.names().is_empty());
    }
}

#[test]
fn under_read_framing_a_header_in_the_read_that_ends_a_body_is_answered() {
    // The rest of that read waited behind the body's jobs: it is a message.
    let dir = Scratch::new();
    let outcome = testing::run(&mut upload_read(&dir.0), &[b"put|a|3", b"abcput|b|1", b"!"]);
    assert_eq!(
        String::from_utf8_lossy(&outcome.out),
        "ready\nok 3\nready\nok 1\n"
    );
    assert_eq!(dir.names(), ["a", "b"]);
}
