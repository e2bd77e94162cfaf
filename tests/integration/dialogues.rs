//! Every service's dialogue from docs/PROTOCOLS.md, run against every mode, with
//! the client's bytes sent all in one write and one byte per write. The
//! client half-closes after its input, so each expected reply is everything
//! the server sends until it closes.

use std::net::Shutdown;

use readyloop::service::menu::{GREETING, OPERATOR, RETRY};
use readyloop::service::once::ANSWER as ONCE_ANSWER;

use readyloop::service::Limits;

use crate::util::{ModeCase, TestServer, per_mode, read_to_end, undated, write_bytewise};

/// One client's whole conversation with one service.
struct Dialogue {
    service: &'static str,
    input: Vec<u8>,
    expected: Vec<u8>,
}

fn dialogue(
    service: &'static str,
    input: impl Into<Vec<u8>>,
    expected: impl Into<Vec<u8>>,
) -> Dialogue {
    Dialogue {
        service,
        input: input.into(),
        expected: expected.into(),
    }
}

fn check(d: &Dialogue, mode: &ModeCase) {
    let server = mode.serve(&[d.service]);
    for bytewise in [false, true] {
        let mut client = server.connect(d.service);
        if bytewise {
            write_bytewise(&mut client, &d.input);
        } else {
            std::io::Write::write_all(&mut client, &d.input).unwrap();
        }
        // The server may have closed first (`--quit--`, HTTP/1.0): fine.
        let _ = client.shutdown(Shutdown::Write);
        let got = read_to_end(&mut client);
        assert_eq!(
            undated(&got),
            String::from_utf8_lossy(&d.expected),
            "{} bytewise={bytewise}",
            d.service
        );
    }
}

fn echo_binary() -> Dialogue {
    let bytes: Vec<u8> = (0..=255u8).chain(b"\r\n\n tail".iter().copied()).collect();
    dialogue("echo", bytes.clone(), bytes)
}

fn hello_quits_in_any_case() -> Dialogue {
    dialogue(
        "hello",
        "zack\nMiXeD case\r\n--Quit--\nnever answered\n",
        "Hello ZACK\nHello MIXED CASE\nGoodbye\n",
    )
}

fn once_answers_one_message_then_closes() -> Dialogue {
    dialogue("once", "请求占领地球\nnever read\n", ONCE_ANSWER)
}

fn upper_lines() -> Dialogue {
    dialogue(
        "upper",
        "  hi there \r\nstraße\n\nno newline",
        "HI THERE\nSTRASSE\n\nNO NEWLINE\n",
    )
}

fn menu_robot() -> Dialogue {
    dialogue(
        "menu",
        "0\n1xxx\nexit\n0\n",
        format!("{GREETING}{OPERATOR}{RETRY}"),
    )
}

fn todo_commands() -> Dialogue {
    dialogue(
        "todo",
        "GET/task_01/x\nPOST/task_09=walk/x\nGET/task_09/\nGET/nothing/\nhello\nPOST/url=a=b/c//x\nGET/url/\n",
        "see someone\r\nsubmit success\r\nwalk\r\nno key match\r\ndata no found\r\nsubmit success\r\na=b/c/\r\n",
    )
}

fn todo_malformed_commands_keep_the_connection() -> Dialogue {
    dialogue(
        "todo",
        "GET/\nPOST/novalue/x\nPOST/=v/x\nGET/task_02/\n",
        "error: expected GET/<key>/<anything>\r\n\
         error: '=' missing: expected POST/<key>=<value>/<anything>\r\n\
         error: empty key\r\n\
         read book\r\n",
    )
}

const HELLO_200: &str = "HTTP/1.1 200 OK\r\nServer: readyloop\r\nDate: <date>\r\n\
    Content-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello, World";

fn http_pipelined_keep_alive() -> Dialogue {
    let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let last = "HEAD /?any=query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let close_head = "HTTP/1.1 200 OK\r\nServer: readyloop\r\nDate: <date>\r\n\
        Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n";
    dialogue(
        "http",
        format!("{request}{request}{last}"),
        format!("{HELLO_200}{HELLO_200}{close_head}"),
    )
}

fn http_1_0_closes() -> Dialogue {
    let reply = "HTTP/1.1 200 OK\r\nServer: readyloop\r\nDate: <date>\r\n\
        Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nHello, World";
    dialogue(
        "http",
        "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        reply,
    )
}

/// A test per dialogue and mode: `echo_binary::evloop`, ...
macro_rules! every_mode {
    ($($case:ident),* $(,)?) => {
        $( per_mode!($case, |mode| check(&$case(), mode)); )*
    };
}

every_mode!(
    echo_binary,
    hello_quits_in_any_case,
    once_answers_one_message_then_closes,
    upper_lines,
    menu_robot,
    todo_commands,
    todo_malformed_commands_keep_the_connection,
    http_pipelined_keep_alive,
    http_1_0_closes,
);

// Seed 002's first client against `once` under `--framing read`: it sends
// its message with no newline and waits without closing its side; the
// answer comes, then the server closes.
per_mode!(once_answers_a_seed_client, |mode| {
    let limits = Limits {
        framing: readyloop::service::framing::Framing::Read,
        ..Limits::default()
    };
    let server = TestServer::start_with(mode.mode, &["once"], mode.options(), limits);
    let mut client = server.connect("once");
    std::io::Write::write_all(&mut client, "请求占领地球".as_bytes()).unwrap();
    let got = read_to_end(&mut client);
    assert_eq!(String::from_utf8_lossy(&got), ONCE_ANSWER);
});
