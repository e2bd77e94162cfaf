//! `slow` over real sockets in every mode: sleeps take their time, hashes
//! give the digest, bad arguments get the error naming the range, and
//! commands sent together are all answered, in order.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use readyloop::service::slow::hash_rounds;

use crate::util::{expect, per_mode, read_to_end, write_bytewise};

per_mode!(sleep_and_hash_dialogues, |mode| {
    let digest = format!("{:016x}\n", hash_rounds(1000));
    let server = mode.serve(&["slow"]);
    let mut client = server.connect("slow");
    let started = Instant::now();
    client.write_all(b"sleep 50\n").unwrap();
    expect(&mut client, b"slept 50\n");
    assert!(started.elapsed() >= Duration::from_millis(50));
    client.write_all(b"hash 1000\n").unwrap();
    expect(&mut client, digest.as_bytes());
});

per_mode!(commands_sent_together_are_all_answered_in_order, |mode| {
    let input = "sleep 20\nhash 1000\nsleep 0\nhash 1\n";
    let expected = format!(
        "slept 20\n{:016x}\nslept 0\n{:016x}\n",
        hash_rounds(1000),
        hash_rounds(1)
    );
    let server = mode.serve(&["slow"]);
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
        assert_eq!(read_to_end(&mut client), b"", "bytewise={bytewise}");
    }
});

per_mode!(bad_arguments_get_an_error_naming_the_range, |mode| {
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
    let server = mode.serve(&["slow"]);
    let mut client = server.connect("slow");
    client
        .write_all(b"sleep 10001\nsleep soon\nhash 0\nhash 99999999999\nnap 5\nsleep\nsleep 1\n")
        .unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut client);
    assert_eq!(String::from_utf8_lossy(&got), expected);
});

per_mode!(
    a_last_command_without_newline_before_eof_is_answered,
    |mode| {
        // As `printf 'sleep 30' | nc -N`: the line ends at EOF, and its answer
        // needs a job; the connection closes only after the job's reply.
        let server = mode.serve(&["slow"]);
        let mut client = server.connect("slow");
        client.write_all(b"hash 1\nsleep 30").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let expected = format!("{:016x}\nslept 30\n", hash_rounds(1));
        assert_eq!(
            String::from_utf8(read_to_end(&mut client)).unwrap(),
            expected
        );
    }
);
