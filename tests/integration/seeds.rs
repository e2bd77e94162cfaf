//! The seeds' own clients under `--framing read`, in every mode: each sends
//! a message with no newline and waits for the reply (`sendall(msg)`, then
//! `recv(1024)`), so a server that waited for `\n` would hang them. Also
//! what `read` framing costs (two quick messages merge into one) and the
//! one line limit, whatever the split, in every mode.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use readyloop::service::Limits;
use readyloop::service::framing::Framing;
use readyloop::service::menu::{GREETING, OPERATOR, RETRY};
use readyloop::service::once::ANSWER as ONCE_ANSWER;

use crate::util::{ModeCase, TempDir, TestServer, expect, per_mode, read_to_end, write_bytewise};

/// A server for `services` in `mode`, keeping `limits`.
fn serve(mode: &ModeCase, services: &[&str], limits: Limits) -> TestServer {
    TestServer::start_with(mode.mode, services, mode.options(), limits)
}

/// Read framing, everything else the default.
fn read_framing(upload_dir: &TempDir) -> Limits {
    Limits {
        framing: Framing::Read,
        upload_dir: upload_dir.path().to_owned(),
        ..Limits::default()
    }
}

/// One `recv(1024)`, as the seeds' clients do, as text.
#[track_caller]
fn recv(stream: &mut TcpStream) -> String {
    let mut buf = [0; 1024];
    let n = stream
        .read(&mut buf)
        .unwrap_or_else(|e| panic!("recv: {e}"));
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// `sendall(msg)` with no newline, then one `recv(1024)`.
#[track_caller]
fn ask(stream: &mut TcpStream, msg: &str) -> String {
    stream.write_all(msg.as_bytes()).unwrap();
    recv(stream)
}

/// The seed clients of once, hello, upper, menu, todo and upload, one after the
/// other (each closes before the next: blocking mode serves one at a time).
fn seed_clients(mode: &ModeCase) {
    let dir = TempDir::new("seed-uploads");
    let services = ["once", "hello", "upper", "menu", "todo", "upload"];
    let server = serve(mode, &services, read_framing(&dir));

    // Seed 002's first client: one message, one answer, then the close.
    let mut once = server.connect("once");
    assert_eq!(ask(&mut once, "请求占领地球"), ONCE_ANSWER);
    assert_eq!(read_to_end(&mut once), b"");

    // Seed 000's client_thread1.py: messages, then `--quit--`.
    let mut hello = server.connect("hello");
    assert_eq!(ask(&mut hello, "zack"), "Hello ZACK\n");
    assert_eq!(ask(&mut hello, "python"), "Hello PYTHON\n");
    hello.write_all(b"--quit--").unwrap();
    assert_eq!(
        String::from_utf8(read_to_end(&mut hello)).unwrap(),
        "Goodbye\n"
    );

    // Seed 001's `socketserver` client.
    let mut upper = server.connect("upper");
    assert_eq!(ask(&mut upper, "hello world"), "HELLO WORLD\n");
    assert_eq!(ask(&mut upper, "straße"), "STRASSE\n");
    drop(upper);

    // Seed 002's 10086 client: the greeting first, `exit` closes.
    let mut menu = server.connect("menu");
    assert_eq!(recv(&mut menu), GREETING);
    assert_eq!(ask(&mut menu, "0"), OPERATOR);
    assert_eq!(ask(&mut menu, "1xxx"), RETRY);
    menu.write_all(b"exit").unwrap();
    assert_eq!(read_to_end(&mut menu), b"");

    // Seed 004's todo commands.
    let mut todo = server.connect("todo");
    assert_eq!(ask(&mut todo, "GET/task_01/x"), "see someone\r\n");
    assert_eq!(ask(&mut todo, "POST/task_09=walk/x"), "submit success\r\n");
    assert_eq!(ask(&mut todo, "GET/task_09/"), "walk\r\n");
    drop(todo);

    // Seed 002's upload client: the header, wait for the ack, the bytes in
    // 1024-byte sends; then the next file on the same connection.
    let mut upload = server.connect("upload");
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(ask(&mut upload, "put|seed.bin|3000"), "ready\n");
    for piece in body.chunks(1024) {
        upload.write_all(piece).unwrap();
    }
    assert_eq!(recv(&mut upload), "ok 3000\n");
    assert_eq!(ask(&mut upload, "put|second.txt|5"), "ready\n");
    assert_eq!(ask(&mut upload, "hello"), "ok 5\n");
    assert_eq!(dir.names(), ["second.txt", "seed.bin"]);
    assert_eq!(std::fs::read(dir.path().join("seed.bin")).unwrap(), body);
}

/// A quick client's next header in the same write as the end of its body:
/// under `read` framing the rest of that read is the next message, answered
/// once the body's jobs are done.
fn a_header_behind_a_body_in_one_write(mode: &ModeCase) {
    let dir = TempDir::new("seed-behind");
    let server = serve(mode, &["upload"], read_framing(&dir));
    let mut upload = server.connect("upload");
    assert_eq!(ask(&mut upload, "put|a|3"), "ready\n");
    upload.write_all(b"abcput|b|1").unwrap();
    expect(&mut upload, b"ok 3\nready\n");
    assert_eq!(ask(&mut upload, "!"), "ok 1\n");
    assert_eq!(dir.names(), ["a", "b"]);
}

/// The same bytes in one write, under each framing: `read` answers them as
/// one message (the seeds' sticky packets), `newline` as two.
fn quick_messages_merge_under_read_framing_only(mode: &ModeCase) {
    let dir = TempDir::new("seed-merge");
    let read = serve(mode, &["hello"], read_framing(&dir));
    let newline = serve(mode, &["hello"], Limits::default());
    let conversation = |server: &TestServer, input: &[u8]| {
        let mut client = server.connect("hello");
        client.write_all(input).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        String::from_utf8(read_to_end(&mut client)).unwrap()
    };
    // Two seed messages sent back to back: one greeting for both.
    assert_eq!(conversation(&read, b"zackpython"), "Hello ZACKPYTHON\n");
    // With a newline each: still one message under `read` (one `Hello`)...
    assert_eq!(
        conversation(&read, b"zack\npython\n"),
        "Hello ZACK\nPYTHON\n"
    );
    // ... and two under `newline`.
    assert_eq!(
        conversation(&newline, b"zack\npython\n"),
        "Hello ZACK\nHello PYTHON\n"
    );
}

/// The longest line of the limit tests.
const MAX_LINE: usize = 100;
const TOO_LONG: &str = "error: line too long (the limit is 100 bytes)\n";

/// How a client sends one line.
#[derive(Debug, Clone, Copy)]
enum Split {
    Whole,
    TwoWrites,
    Bytewise,
}

/// Sends `line` to a fresh `upper` client as `split` says; returns all it
/// got back until the server closed (after a half-close of ours).
fn send_line(server: &TestServer, line: &[u8], split: Split) -> String {
    let mut client = server.connect("upper");
    match split {
        Split::Whole => client.write_all(line).unwrap(),
        Split::TwoWrites => {
            let (first, second) = line.split_at(line.len() / 2);
            client.set_nodelay(true).unwrap();
            client.write_all(first).unwrap();
            thread::sleep(Duration::from_millis(50)); // two reads, not one
            let _ = client.write_all(second); // the server may have closed
        }
        Split::Bytewise => write_bytewise(&mut client, line),
    }
    let _ = client.shutdown(Shutdown::Write);
    String::from_utf8(read_to_end(&mut client)).unwrap()
}

/// `--max-line 100`: a terminated line over it is refused and closed
/// however it arrives; a line of exactly 100 bytes is answered.
fn the_line_limit_holds_whatever_the_split(mode: &ModeCase) {
    let limits = Limits {
        max_line: MAX_LINE,
        ..Limits::default()
    };
    let server = serve(mode, &["upper"], limits);
    let over = [vec![b'x'; 3 * MAX_LINE], b"\n".to_vec()].concat();
    let just_over = [vec![b'x'; MAX_LINE + 1], b"\n".to_vec()].concat();
    let at_limit = [vec![b'x'; MAX_LINE], b"\nok\n".to_vec()].concat();
    let answered = format!("{}\nOK\n", "X".repeat(MAX_LINE));
    for split in [Split::Whole, Split::TwoWrites, Split::Bytewise] {
        // The half-close comes after the whole line, so an answer with no
        // close, or a close with no error, fails here.
        assert_eq!(send_line(&server, &over, split), TOO_LONG, "{split:?}");
        assert_eq!(send_line(&server, &just_over, split), TOO_LONG, "{split:?}");
        assert_eq!(send_line(&server, &at_limit, split), answered, "{split:?}");
    }
}

/// Under `read` framing the limit holds for a message too (its trailing
/// `\n` not counted).
fn the_line_limit_holds_under_read_framing(mode: &ModeCase) {
    let dir = TempDir::new("seed-limit");
    let limits = Limits {
        max_line: MAX_LINE,
        ..read_framing(&dir)
    };
    let server = serve(mode, &["upper"], limits);
    let mut client = server.connect("upper");
    let answer = format!("{}\n", "Y".repeat(MAX_LINE));
    // 100 bytes is at the limit, with or without a trailing newline.
    assert_eq!(ask(&mut client, &"y".repeat(MAX_LINE)), answer);
    assert_eq!(
        ask(&mut client, &format!("{}\n", "y".repeat(MAX_LINE))),
        answer
    );
    client
        .write_all("y".repeat(3 * MAX_LINE).as_bytes())
        .unwrap();
    assert_eq!(
        String::from_utf8(read_to_end(&mut client)).unwrap(),
        TOO_LONG
    );
}

/// A test per case and mode: `seed_clients::evloop`, ...
macro_rules! every_mode {
    ($($case:ident),* $(,)?) => {
        $( per_mode!($case, |mode| $case(mode)); )*
    };
}

every_mode!(
    seed_clients,
    a_header_behind_a_body_in_one_write,
    quick_messages_merge_under_read_framing_only,
    the_line_limit_holds_whatever_the_split,
    the_line_limit_holds_under_read_framing,
);
