//! `slow` over real sockets in every mode: sleeps take their time, hashes
//! give the digest, bad arguments get the error naming the range, and
//! commands sent together are all answered, in order.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use readyloop::server::Options;
use readyloop::service::Limits;
use readyloop::service::slow::hash_rounds;

use crate::util::{TestServer, expect, modes, read_to_end, write_bytewise};

fn start(mode: readyloop::server::Mode, threads: Option<usize>) -> TestServer {
    let options = Options {
        threads,
        ..Options::default()
    };
    TestServer::start_with(mode, &["slow"], options, Limits::default())
}

#[test]
fn sleep_and_hash_dialogues() {
    let digest = format!("{:016x}\n", hash_rounds(1000));
    for &(name, mode, threads) in modes() {
        let server = start(mode, threads);
        let mut client = server.connect("slow");
        let started = Instant::now();
        client.write_all(b"sleep 50\n").unwrap();
        expect(&mut client, b"slept 50\n");
        assert!(started.elapsed() >= Duration::from_millis(50), "{name}");
        client.write_all(b"hash 1000\n").unwrap();
        expect(&mut client, digest.as_bytes());
    }
}

#[test]
fn commands_sent_together_are_all_answered_in_order() {
    let input = "sleep 20\nhash 1000\nsleep 0\nhash 1\n";
    let expected = format!(
        "slept 20\n{:016x}\nslept 0\n{:016x}\n",
        hash_rounds(1000),
        hash_rounds(1)
    );
    for &(name, mode, threads) in modes() {
        let server = start(mode, threads);
        for bytewise in [false, true] {
            let mut client = server.connect("slow");
            if bytewise {
                write_bytewise(&mut client, input.as_bytes());
            } else {
                client.write_all(input.as_bytes()).unwrap();
            }
            // Keep the connection open: the answers must not wait for EOF.
            expect(&mut client, expected.as_bytes());
            client.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_end(&mut client), b"", "{name} bytewise={bytewise}");
        }
    }
}

#[test]
fn bad_arguments_get_an_error_naming_the_range() {
    let commands = "the commands are 'sleep <ms>' (0 to 10000) and 'hash <rounds>' (1 to 10000000)";
    let expected = format!(
        "error: sleep takes a whole number of milliseconds from 0 to 10000, e.g. 'sleep 50'\n\
         error: sleep takes a whole number of milliseconds from 0 to 10000, e.g. 'sleep 50'\n\
         error: hash takes a whole number of rounds from 1 to 10000000, e.g. 'hash 1000'\n\
         error: hash takes a whole number of rounds from 1 to 10000000, e.g. 'hash 1000'\n\
         error: unknown command: {commands}\n\
         error: sleep takes exactly one number: {commands}\n\
         slept 1\n"
    );
    for &(name, mode, threads) in modes() {
        let server = start(mode, threads);
        let mut client = server.connect("slow");
        client
            .write_all(
                b"sleep 10001\nsleep soon\nhash 0\nhash 99999999999\nnap 5\nsleep\nsleep 1\n",
            )
            .unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let got = read_to_end(&mut client);
        assert_eq!(String::from_utf8_lossy(&got), expected, "{name}");
    }
}

#[test]
fn a_last_command_without_newline_before_eof_is_answered() {
    // As `printf 'sleep 30' | nc -N`: the line ends at EOF, and its answer
    // needs a job; the connection closes only after the job's reply.
    for &(name, mode, threads) in modes() {
        let server = start(mode, threads);
        let mut client = server.connect("slow");
        client.write_all(b"hash 1\nsleep 30").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let expected = format!("{:016x}\nslept 30\n", hash_rounds(1));
        assert_eq!(
            String::from_utf8(read_to_end(&mut client)).unwrap(),
            expected,
            "{name}"
        );
    }
}
