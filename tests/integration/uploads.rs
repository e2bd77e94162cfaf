//! `upload` over real sockets in every mode: a 50 MiB file arrives
//! byte-exact, refused headers write nothing, a client that leaves mid-file
//! leaves the directory as it was, two clients at once both succeed.

use std::hash::{DefaultHasher, Hasher};
use std::io::Write;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{TempDir, expect, per_mode, read_to_end};

/// `len` bytes that differ for each `seed`, not a repeating pattern.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and every byte depends on the ones before.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// One whole upload on `client`: header, `ready`, body, `ok <size>`.
#[track_caller]
fn put(client: &mut TcpStream, name: &str, body: &[u8]) {
    client
        .write_all(format!("put|{name}|{}\n", body.len()).as_bytes())
        .unwrap();
    expect(client, b"ready\n");
    client.write_all(body).unwrap();
    expect(client, format!("ok {}\n", body.len()).as_bytes());
}

/// Waits (the server notices a departed client asynchronously) until the
/// directory holds exactly `expected`.
#[track_caller]
fn wait_for_names(dir: &TempDir, expected: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.names() != expected {
        assert!(
            Instant::now() < deadline,
            "{what}: the directory holds {:?}, not {expected:?}",
            dir.names()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// 50 MiB of [`content`], made once for every mode's test.
fn fifty_mib() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| content(50 * 1024 * 1024, 50))
}

per_mode!(a_50_mib_file_arrives_byte_exact, |mode| {
    let body = fifty_mib();
    let dir = TempDir::new("upload-50m");
    let server = mode.serve_in(&["upload"], dir.path());
    let mut client = server.connect("upload");
    put(&mut client, "big.bin", body);
    let stored = std::fs::read(dir.path().join("big.bin")).unwrap();
    assert_eq!(stored.len(), body.len());
    assert_eq!(checksum(&stored), checksum(body));
    assert_eq!(dir.names(), ["big.bin"]);
});

per_mode!(two_files_on_one_connection_then_a_replacement, |mode| {
    let dir = TempDir::new("upload-two");
    let server = mode.serve_in(&["upload"], dir.path());
    let mut client = server.connect("upload");
    put(&mut client, "a", b"first");
    put(&mut client, "empty", b"");
    put(&mut client, "a", b"second");
    assert_eq!(dir.names(), ["a", "empty"]);
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"second");
});

per_mode!(
    a_client_that_does_not_wait_for_ready_is_served_too,
    |mode| {
        // Header and body (and the next upload) in one write: the body sits
        // behind the header in the server's buffer while the file is created.
        let dir = TempDir::new("upload-pipelined");
        let server = mode.serve_in(&["upload"], dir.path());
        let mut client = server.connect("upload");
        client
            .write_all(
                b"put|p|3
abcput|q|0
",
            )
            .unwrap();
        expect(
            &mut client,
            b"ready
ok 3
ready
ok 0
",
        );
        assert_eq!(dir.names(), ["p", "q"]);
    }
);

per_mode!(
    refused_names_and_sizes_get_their_error_and_write_nothing,
    |mode| {
        let no_dirs =
            "bad name: '/' and '\\' are not allowed: send a plain file name, without directories";
        let cases: &[(&str, &str)] = &[
            ("put|../escape|3\n", no_dirs),
            ("put|/etc/passwd|3\n", no_dirs),
            ("put|a\\b|3\n", no_dirs),
            ("put|..|3\n", "bad name: '..' is not allowed"),
            (
                "put|a\0b|3\n",
                "bad name: control characters (NUL included) are not allowed",
            ),
            (
                "put|a\x1bb|3\n",
                "bad name: control characters (NUL included) are not allowed",
            ),
            ("put||3\n", "bad name: the name is empty"),
            (
                "put|txt\u{202E}fdp.exe|3\n",
                "bad name: U+202E is an invisible or direction-changing character \
                 (bidi override, BOM, zero-width): send a name that reads as it is",
            ),
            (
                "put|\u{FF0E}\u{FF0E}\u{FF0F}x|3\n",
                "bad name: U+FF0E looks like '.', '/' or '\\' and is not allowed: \
                 use the ASCII character or another one",
            ),
            ("put|a|3x\n", "bad size: expected a decimal number of bytes"),
            ("put|a|-3\n", "bad size: expected a decimal number of bytes"),
            (
                "put|a|1073741825\n",
                "bad size: over the limit of 1073741824 bytes (the server's --max-upload)",
            ),
            ("get|a|3\n", "bad header: expected put|<name>|<size>"),
        ];
        let long_name = format!("put|{}|3\n", "n".repeat(256));
        let cases = cases
            .iter()
            .map(|&(header, reason)| (header.to_owned(), reason))
            .chain([(long_name, "bad name: longer than 255 bytes")]);
        let cases: Vec<(String, &str)> = cases.collect();
        let dir = TempDir::new("upload-refused");
        let server = mode.serve_in(&["upload"], dir.path());
        for (header, reason) in &cases {
            let mut client = server.connect("upload");
            client.write_all(format!("{header}abc").as_bytes()).unwrap();
            let got = read_to_end(&mut client);
            assert_eq!(
                String::from_utf8_lossy(&got),
                format!("error {reason}\n"),
                "{header:?}"
            );
            assert!(dir.names().is_empty(), "{header:?}");
        }
        // The server goes on.
        put(&mut server.connect("upload"), "fine", b"ok");
        assert_eq!(dir.names(), ["fine"]);
    }
);

per_mode!(
    a_client_killed_mid_upload_leaves_the_directory_as_it_was,
    |mode| {
        let body = content(1024 * 1024, 7);
        let dir = TempDir::new("upload-killed");
        std::fs::write(dir.path().join("keep"), b"untouched").unwrap();
        let server = mode.serve_in(&["upload"], dir.path());
        let mut client = server.connect("upload");
        client
            .write_all(format!("put|keep|{}\n", body.len()).as_bytes())
            .unwrap();
        expect(&mut client, b"ready\n");
        client.write_all(&body[..body.len() / 2]).unwrap();
        drop(client);
        wait_for_names(&dir, &["keep"], mode.name);
        let kept = std::fs::read(dir.path().join("keep")).unwrap();
        assert_eq!(kept, b"untouched");
        // The server goes on.
        put(&mut server.connect("upload"), "next", b"x");
        assert_eq!(dir.names(), ["keep", "next"]);
    }
);

per_mode!(two_clients_uploading_at_once_both_succeed, |mode| {
    // In blocking mode the second waits for the first: each client has its
    // own thread, so neither test step waits on the other.
    let bodies = [content(4 * 1024 * 1024, 1), content(3 * 1024 * 1024, 2)];
    let dir = TempDir::new("upload-two-clients");
    let server = mode.serve_in(&["upload"], dir.path());
    thread::scope(|scope| {
        for (i, body) in bodies.iter().enumerate() {
            let mut client = server.connect("upload");
            scope.spawn(move || put(&mut client, &format!("file{i}"), body));
        }
    });
    assert_eq!(dir.names(), ["file0", "file1"]);
    for (i, body) in bodies.iter().enumerate() {
        let stored = std::fs::read(dir.path().join(format!("file{i}"))).unwrap();
        assert_eq!(checksum(&stored), checksum(body), "file{i}");
    }
});

/// A server killed with `kill -9` mid-upload leaves its temporary file; the
/// next start removes it, and only it: other names, a temporary name of a
/// process still running (this test's), and look-alike names stay.
#[test]
fn a_restart_removes_the_temporary_files_a_killed_server_left() {
    use crate::util::BinServer;
    let dir = TempDir::new("upload-stale");
    let upload_dir = dir.path().to_str().unwrap();
    let args = ["upload@127.0.0.1:0", "--upload-dir", upload_dir];
    let alive = format!(".upload-{}-0.part", std::process::id());
    let kept = [
        alive.as_str(),
        ".upload-1-x.part",
        ".upload-notes.part",
        "keep.txt",
    ];
    for name in kept {
        std::fs::write(dir.path().join(name), b"kept").unwrap();
    }

    let mut server = BinServer::start(&args, &["upload"]);
    let mut client = crate::util::connect(server.addr("upload"));
    client.write_all(b"put|big|1000000\n").unwrap();
    expect(&mut client, b"ready\n");
    client.write_all(&content(1000, 1)).unwrap();
    server.sigkill();
    let left: Vec<String> = dir
        .names()
        .into_iter()
        .filter(|name| !kept.contains(&name.as_str()))
        .collect();
    assert_eq!(left.len(), 1, "one temporary file: {:?}", dir.names());
    let stale = &left[0];
    assert!(
        stale.starts_with(".upload-") && stale.ends_with(".part"),
        "{stale}"
    );

    let server = BinServer::start(&args, &["upload"]);
    let mut expected: Vec<&str> = kept.to_vec();
    expected.sort();
    assert_eq!(dir.names(), expected, "only {stale} is gone");
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("removed 1 temporary upload files"),
        "{}",
        server.log.lock().unwrap()
    );
}
