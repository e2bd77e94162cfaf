//! `kv` dialogues, every one in every split of its input.

use super::*;
use crate::service::Limits;
use crate::service::testing::{assert_dialogue, run};
use crate::service::todo::{self, SEED_TASKS};

fn kv() -> Box<dyn Service> {
    Box::new(Kv::new(Store::in_memory(), 100))
}

/// Encodes words as a multibulk request, as redis-cli does.
fn req(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn reqs(requests: &[&[&[u8]]]) -> Vec<u8> {
    requests.iter().flat_map(|words| req(words)).collect()
}

#[test]
fn set_get_del_exists_dbsize_pipelined() {
    let input = reqs(&[
        &[b"SET", b"k", b"v"],
        &[b"get", b"k"],
        &[b"GET", b"nope"],
        &[b"set", b"k2", b""],
        &[b"EXISTS", b"k", b"k", b"x"],
        &[b"DBSIZE"],
        &[b"DEL", b"k", b"x", b"k2"],
        &[b"DEL", b"k"],
        &[b"GET", b"k"],
    ]);
    assert_dialogue(
        kv,
        &input,
        b"+OK\r\n$1\r\nv\r\n$-1\r\n+OK\r\n:2\r\n:2\r\n:2\r\n:0\r\n$-1\r\n",
    );
}

#[test]
fn values_are_binary_safe() {
    let input = reqs(&[
        &[b"SET", b"\x00\xff", b"a\r\nb\x00"],
        &[b"GET", b"\x00\xff"],
    ]);
    assert_dialogue(kv, &input, b"+OK\r\n$5\r\na\r\nb\x00\r\n");
}

#[test]
fn ping_echo_and_inline_commands() {
    assert_dialogue(
        kv,
        b"PING\r\nping hello\n\r\n  echo \t hi  \r\nPING a b\r\n",
        b"+PONG\r\n$5\r\nhello\r\n$2\r\nhi\r\n-ERR wrong number of arguments for 'ping' command\r\n",
    );
    let input = reqs(&[&[b"PING"], &[b"PING", b"x y"], &[b"ECHO", b""]]);
    assert_dialogue(kv, &input, b"+PONG\r\n$3\r\nx y\r\n$0\r\n\r\n");
    // `*0` and blank lines are ignored, as Redis does.
    assert_dialogue(kv, b"*0\r\n\r\nPING\r\n", b"+PONG\r\n");
}

#[test]
fn incr_counts_and_refuses_non_integers() {
    let input = b"INCR n\r\nINCR n\r\nSET s abc\r\nINCR s\r\nSET m 9223372036854775807\r\n\
                  INCR m\r\nSET z -1\r\nINCR z\r\nGET n\r\n";
    assert_dialogue(
        kv,
        input,
        b":1\r\n:2\r\n+OK\r\n-ERR value is not an integer or out of range\r\n+OK\r\n\
          -ERR increment or decrement would overflow\r\n+OK\r\n:0\r\n$1\r\n2\r\n",
    );
}

#[test]
fn unknown_commands_wrong_arity_and_options() {
    assert_dialogue(
        kv,
        b"NOPE a b\r\nGET\r\nGET a b\r\nSET k v EX 10 PX 5\r\nINCR\r\nDEL\r\nGET k\r\n",
        b"-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n\
          -ERR wrong number of arguments for 'get' command\r\n\
          -ERR wrong number of arguments for 'get' command\r\n\
          -ERR syntax error\r\n\
          -ERR wrong number of arguments for 'incr' command\r\n\
          -ERR wrong number of arguments for 'del' command\r\n$-1\r\n",
    );
    // A name with a CR in it cannot break the error line.
    let input = req(&[b"a\rb"]);
    assert_dialogue(
        kv,
        &input,
        b"-ERR unknown command 'a b', with args beginning with: \r\n",
    );
}

#[test]
fn command_and_config_for_redis_cli_and_benchmark() {
    let input = reqs(&[
        &[b"COMMAND", b"DOCS"],
        &[b"COMMAND", b"nope"],
        &[b"CONFIG", b"GET", b"save"],
        &[b"CONFIG", b"GET", b"appendonly", b"maxmemory"],
        &[b"CONFIG", b"SET", b"x", b"y"],
    ]);
    assert_dialogue(
        kv,
        &input,
        b"*0\r\n-ERR unknown subcommand 'nope'. Try COMMAND HELP.\r\n\
          *2\r\n$4\r\nsave\r\n$0\r\n\r\n\
          *4\r\n$10\r\nappendonly\r\n$2\r\nno\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n\
          -ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n",
    );
    let count = format!(":{}\r\n", table::COMMANDS.len());
    assert_dialogue(kv, &req(&[b"command", b"count"]), count.as_bytes());
    let listing = run(kv(), &[&req(&[b"COMMAND"])]).out;
    assert!(listing.starts_with(
        format!("*{}\r\n*6\r\n$3\r\nget\r\n:2\r\n", table::COMMANDS.len()).as_bytes()
    ));
}

#[test]
fn quit_answers_ok_then_closes() {
    let input = [req(&[b"PING"]), req(&[b"QUIT"]), req(&[b"PING"])].concat();
    assert_dialogue(kv, &input, b"+PONG\r\n+OK\r\n");
    let outcome = run(kv(), &[&input]);
    assert!(outcome.closed);
}

#[test]
fn malformed_frames_are_a_protocol_error_and_a_close() {
    for (input, says) in [
        (&b"*x\r\n"[..], "invalid multibulk length"),
        (b"*2\r\n$3\r\nGET\r\n+k\r\n", "expected '$', got '+'"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$101\r\n", "invalid bulk length"),
        (b"*1\r\n$4\r\nPINGxx", "expected CRLF after a bulk string"),
        (b"*1\r\n$4\nPING\r\n", "invalid bulk length"),
        (b"*1\rx", "expected LF after CR"),
        (
            b"*1\r\n$00000000000000000000000000000000004\r\n",
            "too big bulk count string",
        ),
        (b"*99999999\r\n", "invalid multibulk length"),
    ] {
        for chunks in crate::service::testing::splits(input) {
            let outcome = run(kv(), &chunks);
            let out = String::from_utf8_lossy(&outcome.out);
            assert!(outcome.closed, "{input:?} split {chunks:?}: {out}");
            assert!(
                out.starts_with("-ERR Protocol error: ")
                    && out.contains(says)
                    && out.ends_with("\r\n"),
                "{input:?}: {out}"
            );
        }
    }
}

#[test]
fn an_incomplete_request_is_kept_and_each_whole_one_answered_and_counted() {
    let input = reqs(&[&[b"SET", b"a", b"1"], &[b"GET", b"a"], &[b"PING"]]);
    let mut service = kv();
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let first = req(&[b"SET", b"a", b"1"]).len();
    assert_eq!(
        service.input(&input, &mut cx),
        (first, Next::Answered),
        "one per call"
    );
    let outcome = run(kv(), &[&input[..input.len() - 3]]);
    assert_eq!(outcome.answered, 2);
    assert_eq!(outcome.out, b"+OK\r\n$1\r\n1\r\n");
}

#[test]
fn under_fsync_always_writes_reply_after_the_job() {
    let dir = std::env::temp_dir().join(format!("readyloop-kv-always-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, crate::store::Fsync::Always).unwrap();
    let mut service = Kv::new(store.clone(), 100);
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let input = b"GET a\r\nSET a 1\r\nGET a\r\n";
    assert_eq!(service.input(input, &mut cx), (7, Next::Answered));
    let (used, next) = service.input(&input[7..], &mut cx);
    assert_eq!(used, 9, "stops after the write");
    let Next::Offload(Job::Store(work)) = next else {
        panic!("{next:?}");
    };
    assert_eq!(out, b"$-1\r\n", "no +OK before the record is durable");
    let mut cx = crate::service::testing::cx(&mut out);
    assert_eq!(
        service.resume(JobOutput::Store(crate::store::run(work)), &mut cx),
        Next::Answered
    );
    assert_eq!(out, b"$-1\r\n+OK\r\n");
    // The whole dialogue, with jobs run inline, in every split.
    let make = || -> Box<dyn Service> {
        // Every split starts from the same data.
        store.tx(std::time::SystemTime::now(), |tx| {
            tx.del(b"a");
            tx.del(b"n");
        });
        Box::new(Kv::new(store.clone(), 100))
    };
    assert_dialogue(
        make,
        b"SET a 1\r\nINCR n\r\nDEL a\r\nDEL a\r\nGET n\r\n",
        b"+OK\r\n:1\r\n:1\r\n:0\r\n$1\r\n1\r\n",
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn todo_and_kv_see_the_same_data() {
    let shared = Shared {
        store: Store::in_memory(),
        stats: Default::default(),
        limits: Limits::default(),
    };
    let todo_factory = todo::factory(&shared);
    let kv_factory = factory(&shared);
    let mut todo_service = todo_factory.make();
    let mut kv_service = kv_factory.make();
    let kv_out = run(
        kv_service.as_mut(),
        &[b"GET task_01\r\nSET from_kv hello\r\nDBSIZE\r\n"],
    );
    assert_eq!(
        kv_out.out,
        format!("$11\r\nsee someone\r\n+OK\r\n:{}\r\n", SEED_TASKS.len() + 1).as_bytes()
    );
    let todo_out = run(
        todo_service.as_mut(),
        &[b"GET/from_kv/x\nPOST/from_todo=a=b/c/x\n"],
    );
    assert_eq!(todo_out.out, b"hello\r\nsubmit success\r\n");
    let kv_out = run(kv_factory.make().as_mut(), &[b"GET from_todo\r\n"]);
    assert_eq!(kv_out.out, b"$5\r\na=b/c\r\n");
}
