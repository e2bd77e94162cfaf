//! The seeds' Python clients, run by python3 against the real binary: under
//! `--framing read` they work unmodified; under the default `newline`
//! framing they wait for a reply that never comes.
//!
//! The scripts are the seeds' (001's `socketserver` client, 002's 10086
//! client and its upload client) in Python 3, with two changes that keep a
//! test bounded: they stop at the end of their input, and their socket has
//! a timeout.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use readyloop::service::menu::{GREETING, OPERATOR, RETRY};

use crate::util::{BinServer, TempDir};

/// Seed 001's client: send each typed line with no newline, print one
/// `recv(1024)`.
const UPPER_CLIENT: &str = r#"
import socket, sys

client = socket.socket()
client.connect(('127.0.0.1', int(sys.argv[1])))
client.settimeout(float(sys.argv[2]))

while True:
    try:
        msg = input('>>:').strip()
    except EOFError:
        break
    if not msg:
        continue
    else:
        client.sendall(msg.encode('utf-8'))
        updata = client.recv(1024)
        print(updata.decode())
"#;

/// Seed 002's 10086 client: print what came, send the typed line with no
/// newline, stop after `exit`.
const MENU_CLIENT: &str = r#"
import socket, sys

sk = socket.socket()
sk.connect(('127.0.0.1', int(sys.argv[1])))
sk.settimeout(float(sys.argv[2]))

while True:
    data = sk.recv(1024)
    print('receive:', data.decode())
    inp = input('please input:')
    sk.sendall(inp.encode())
    if inp == 'exit':
        break

sk.close()
"#;

/// Seed 002's upload client: the header with no newline, wait for the ack,
/// the file in 1024-byte sends. Its header is `put|<name>|<size>`, the
/// shape the seed's server splits into three (the seed's client sends only
/// `<name>|<size>`, which its own server cannot split). The seed never reads
/// the final reply; this one prints it once its input ends.
const UPLOAD_CLIENT: &str = r#"
import os, socket, sys

sk = socket.socket()
sk.connect(('127.0.0.1', int(sys.argv[1])))
sk.settimeout(float(sys.argv[2]))

while True:
    try:
        path = input('path:')
    except EOFError:
        break
    file_name = os.path.basename(path)
    file_size = os.stat(path).st_size
    sk.send(('put|' + file_name + '|' + str(file_size)).encode())
    sk.recv(1024)
    send_size = 0
    f = open(path, 'rb')
    Flag = True
    while Flag:
        if send_size + 1024 > file_size:
            data = f.read(file_size - send_size)
            Flag = False
        else:
            data = f.read(1024)
            send_size += 1024
        sk.send(data)
    f.close()

sk.shutdown(socket.SHUT_WR)
print(sk.recv(1024).decode())
sk.close()
"#;

/// How long the test waits for python3 over the scripts' own timeouts.
const PYTHON_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `script` with python3 against `addr`, typing `stdin`; the script's
/// socket gives up after `timeout` seconds.
#[track_caller]
fn python(script: &str, addr: SocketAddr, timeout: f64, stdin: &str) -> Output {
    let mut child = match Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(addr.port().to_string())
        .arg(timeout.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run python3 ({e}): this test runs the seeds' Python clients; \
             install it with `apt-get install python3`"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + PYTHON_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 ran over {PYTHON_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The script's output, after checking it exited 0.
#[track_caller]
fn printed(output: &Output) -> String {
    assert!(
        output.status.success(),
        "python3 failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn the_seeds_python_clients_work_under_read_framing() {
    let server = BinServer::start(
        &["--framing", "read", "upper@127.0.0.1:0", "menu@127.0.0.1:0"],
        &["upper", "menu"],
    );
    let upper = python(
        UPPER_CLIENT,
        server.addr("upper"),
        5.0,
        "hello world\n\nstraße\n",
    );
    assert_eq!(
        printed(&upper),
        ">>:HELLO WORLD\n\n>>:>>:STRASSE\n\n>>:",
        "upper"
    );
    let menu = python(MENU_CLIENT, server.addr("menu"), 5.0, "0\n1xxx\nexit\n");
    let expected = [GREETING, OPERATOR, RETRY]
        .map(|reply| format!("receive: {reply}\nplease input:"))
        .concat();
    assert_eq!(printed(&menu), expected, "menu");
}

#[test]
fn the_seeds_python_upload_client_stores_its_file_under_read_framing() {
    let (uploads, sources) = (TempDir::new("py-uploads"), TempDir::new("py-sources"));
    let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let source = sources.path().join("seed.bin");
    std::fs::write(&source, &body).unwrap();
    let dir = uploads.path().to_str().unwrap();
    let server = BinServer::start(
        &[
            "--framing",
            "read",
            "--upload-dir",
            dir,
            "upload@127.0.0.1:0",
        ],
        &["upload"],
    );
    let typed = format!("{}\n", source.display());
    let upload = python(UPLOAD_CLIENT, server.addr("upload"), 5.0, &typed);
    assert_eq!(printed(&upload), "path:path:ok 3000\n\n");
    assert_eq!(uploads.names(), ["seed.bin"]);
    assert_eq!(
        std::fs::read(uploads.path().join("seed.bin")).unwrap(),
        body
    );
}

#[test]
fn under_newline_framing_the_seeds_python_client_waits_in_vain() {
    let server = BinServer::start(&["upper@127.0.0.1:0"], &["upper"]);
    let upper = python(UPPER_CLIENT, server.addr("upper"), 1.0, "hello world\n");
    assert!(!upper.status.success(), "{upper:?}");
    assert_eq!(String::from_utf8_lossy(&upper.stdout), ">>:");
    let stderr = String::from_utf8_lossy(&upper.stderr);
    assert!(stderr.contains("timed out"), "{stderr}");
}
