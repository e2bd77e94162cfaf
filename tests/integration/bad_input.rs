//! Bad input gets the error reply docs/PROTOCOLS.md names, and the server goes on
//! serving everyone else. Every case runs in every mode (UDP: all but forking).

use std::io::Write;
use std::net::{Shutdown, UdpSocket};
use std::time::Duration;

use readyloop::service::Limits;
use readyloop::service::udp::MAX_DATAGRAM;

use crate::util::{TestServer, expect, per_mode, read_to_end};

/// After each bad client, a good one on the same service is still answered.
fn still_serves(server: &TestServer) {
    let mut client = server.connect("upper");
    client.write_all(b"still here\n").unwrap();
    expect(&mut client, b"STILL HERE\n");
}

per_mode!(over_long_line_is_refused_and_closed, |mode| {
    let limits = Limits {
        max_line: 1024,
        ..Limits::default()
    };
    let server = TestServer::start_with(mode.mode, &["upper"], mode.options(), limits);
    let mut client = server.connect("upper");
    client.write_all(b"ok\n").unwrap();
    client.write_all(&vec![b'x'; 4096]).unwrap();
    let got = read_to_end(&mut client);
    assert_eq!(got, b"OK\nerror: line too long (the limit is 1024 bytes)\n");
    still_serves(&server);
});

per_mode!(
    invalid_utf8_gets_an_error_and_the_connection_goes_on,
    |mode| {
        let server = mode.serve(&["upper", "hello"]);
        for (service, reply) in [("upper", "OK\n"), ("hello", "Hello OK\n")] {
            let mut client = server.connect(service);
            client.write_all(b"\xff\xfe\xfd\nok\n").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let got = String::from_utf8(read_to_end(&mut client)).unwrap();
            assert_eq!(
                got,
                format!("error: input is not valid UTF-8\n{reply}"),
                "{service}"
            );
        }
        still_serves(&server);
    }
);

per_mode!(malformed_http_gets_400_and_oversized_headers_431, |mode| {
    let cases: [(&[u8], &str); 4] = [
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"), // 1.1 without Host
        (
            // A 405 keeps the connection (the body was read); this one asks to close.
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 405 Method Not Allowed\r\n",
        ),
        (b"", "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
    ];
    let server = mode.serve(&["http", "upper"]);
    for (request, status) in cases {
        let mut request = request.to_vec();
        if request.is_empty() {
            request = format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "y".repeat(9000)
            )
            .into_bytes();
        }
        let mut client = server.connect("http");
        client.write_all(&request).unwrap();
        let got = String::from_utf8(read_to_end(&mut client)).unwrap();
        assert!(got.starts_with(status), "{got:?}");
        assert!(got.contains("Connection: close\r\n"), "{got:?}");
    }
    still_serves(&server);
});

// The forking mode serves TCP only (it starts no threads before fork).
per_mode!(
    udp_echoes_and_refuses_oversized_datagrams,
    [evloop, threaded, threaded_pool, blocking, uring],
    |mode| {
        let server = mode.serve(&["udp", "upper"]);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.connect(server.addr("udp")).unwrap();
        let mut buf = vec![0; 70_000];
        client.send(b"hello udp").unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello udp");
        client.send(&vec![b'z'; MAX_DATAGRAM + 100]).unwrap();
        let n = client.recv(&mut buf).unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(
            reply,
            format!(
                "error: datagram of {} bytes is over the 8192-byte limit\n",
                MAX_DATAGRAM + 100
            )
        );
        still_serves(&server);
    }
);
