//! `kv` dialogues, every one in every split of its input. (Over 500 lines:
//! one table of cases per command family, read as a list.)

use super::*;
use crate::service::testing::{assert_dialogue, run};
use crate::service::todo::{self, SEED_TASKS};
use crate::service::{Backend, Limits};

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

/// Found by `fuzz/` (resp): a protocol error was counted as an answered
/// request (`Next::Last`); it answers none (`Next::Close`).
#[test]
fn a_protocol_error_closes_counting_only_the_requests_before_it() {
    for input in [&b"*1\r\n$4\r\nPING\r\n*x\r\n"[..], b"PING\r\nSET k \"v\r\n"] {
        for chunks in crate::service::testing::splits(input) {
            let outcome = run(kv(), &chunks);
            let out = String::from_utf8_lossy(&outcome.out);
            assert!(out.starts_with("+PONG\r\n-ERR Protocol error: "), "{out}");
            assert_eq!((outcome.answered, outcome.closed), (1, true), "{chunks:?}");
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
    // EXEC's whole reply waits for the transaction's records; a
    // transaction that changed nothing needs no job.
    let mut service = Kv::new(store.clone(), 100);
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let input = b"MULTI\r\nSET a 2\r\nINCR n\r\nEXEC\r\nMULTI\r\nGET a\r\nEXEC\r\n";
    let mut at = 0;
    for _ in 0..3 {
        let (used, next) = service.input(&input[at..], &mut cx);
        assert_eq!(next, Next::Answered);
        at += used;
    }
    let (used, next) = service.input(&input[at..], &mut cx);
    at += used;
    let Next::Offload(Job::Store(work)) = next else {
        panic!("EXEC of writes under always: {next:?}");
    };
    assert_eq!(
        out, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n",
        "EXEC's reply is held"
    );
    let mut cx = crate::service::testing::cx(&mut out);
    assert_eq!(
        service.resume(JobOutput::Store(crate::store::run(work)), &mut cx),
        Next::Answered
    );
    for _ in 0..3 {
        let (used, next) = service.input(&input[at..], &mut cx);
        assert_eq!(next, Next::Answered, "a read-only EXEC needs no job");
        at += used;
    }
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n+OK\r\n+QUEUED\r\n*1\r\n$1\r\n2\r\n"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn todo_and_kv_see_the_same_data() {
    let shared = Shared {
        backend: Backend::File(Store::in_memory()),
        broker: Default::default(),
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

#[test]
fn multi_exec_runs_the_queue_as_one_step_and_discard_drops_it() {
    let input = reqs(&[
        &[b"MULTI"],
        &[b"SET", b"a", b"1"],
        &[b"INCR", b"a"],
        &[b"LPUSH", b"a", b"x"],
        &[b"EXEC"],
        &[b"MULTI"],
        &[b"SET", b"b", b"1"],
        &[b"DISCARD"],
        &[b"GET", b"b"],
        &[b"EXEC"],
        &[b"DISCARD"],
    ]);
    assert_dialogue(
        kv,
        &input,
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n\
          *3\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
          +OK\r\n+QUEUED\r\n+OK\r\n$-1\r\n\
          -ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n",
    );
}

#[test]
fn an_error_while_queueing_makes_exec_abort_and_apply_nothing() {
    let input = reqs(&[
        &[b"MULTI"],
        &[b"SET", b"a", b"1"],
        &[b"NOSUCH"],
        &[b"GET"],
        &[b"EXEC"],
        &[b"GET", b"a"],
    ]);
    assert_dialogue(
        kv,
        &input,
        b"+OK\r\n+QUEUED\r\n\
          -ERR unknown command 'NOSUCH', with args beginning with: \r\n\
          -ERR wrong number of arguments for 'get' command\r\n\
          -EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n",
    );
}

#[test]
fn a_watched_key_changed_by_another_connection_makes_exec_answer_null() {
    let store = Store::in_memory();
    let mut watcher = Kv::new(store.clone(), 100);
    let mut other = Kv::new(store.clone(), 100);
    let mut out = Vec::new();
    let feed = |service: &mut Kv, words: &[&[u8]], out: &mut Vec<u8>| {
        let request = req(words);
        let mut cx = crate::service::testing::cx(out);
        assert_eq!(
            service.input(&request, &mut cx),
            (request.len(), Next::Answered)
        );
    };
    feed(&mut watcher, &[b"WATCH", b"k"], &mut out);
    feed(&mut watcher, &[b"MULTI"], &mut out);
    feed(&mut watcher, &[b"SET", b"k", b"mine"], &mut out);
    feed(&mut other, &[b"SET", b"k", b"theirs"], &mut out);
    feed(&mut watcher, &[b"EXEC"], &mut out);
    feed(&mut watcher, &[b"GET", b"k"], &mut out);
    // Unwatched now: the next transaction runs.
    feed(&mut watcher, &[b"MULTI"], &mut out);
    feed(&mut watcher, &[b"SET", b"k", b"mine"], &mut out);
    feed(&mut watcher, &[b"EXEC"], &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK\r\n+OK\r\n+QUEUED\r\n+OK\r\n*-1\r\n$6\r\ntheirs\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n"
    );
}

#[test]
fn hello_3_switches_to_resp3_replies() {
    let input = reqs(&[
        &[b"HELLO", b"3"],
        &[b"GET", b"nope"],
        &[b"HSET", b"h", b"f", b"v"],
        &[b"HGETALL", b"h"],
        &[b"ZADD", b"z", b"1.5", b"m"],
        &[b"ZSCORE", b"z", b"m"],
        &[b"SADD", b"s", b"x"],
        &[b"SMEMBERS", b"s"],
        &[b"HELLO", b"2"],
        &[b"GET", b"nope"],
        &[b"HELLO", b"4"],
    ]);
    let out = run(kv(), &[&input]).out;
    let text = String::from_utf8_lossy(&out);
    let after_hello = text.split_once("*0\r\n").unwrap().1; // `modules` ends HELLO's map
    assert!(
        text.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{text}"
    );
    assert!(
        after_hello.starts_with(
            "_\r\n:1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n:1\r\n,1.5\r\n:1\r\n~1\r\n$1\r\nx\r\n*14\r\n"
        ),
        "{after_hello}"
    );
    assert!(
        text.ends_with("$-1\r\n-NOPROTO unsupported protocol version\r\n"),
        "{text}"
    );
}

#[test]
fn deadlines_are_absolute_wall_times_and_expire_lazily() {
    use std::time::{Duration, Instant, SystemTime};
    let store = Store::in_memory();
    let mut service = Kv::new(store.clone(), 100);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut out = Vec::new();
    let at = |service: &mut Kv, wall: SystemTime, words: &[&[u8]], out: &mut Vec<u8>| {
        let request = req(words);
        let mut cx = Cx::new(out, Instant::now(), wall, crate::service::testing::peer());
        let _ = service.input(&request, &mut cx);
    };
    at(
        &mut service,
        start,
        &[b"SET", b"k", b"v", b"EX", b"10"],
        &mut out,
    );
    at(&mut service, start, &[b"PEXPIRE", b"p", b"100"], &mut out);
    at(
        &mut service,
        start + Duration::from_secs(4),
        &[b"TTL", b"k"],
        &mut out,
    );
    at(
        &mut service,
        start + Duration::from_secs(9),
        &[b"GET", b"k"],
        &mut out,
    );
    at(
        &mut service,
        start + Duration::from_secs(10),
        &[b"GET", b"k"],
        &mut out,
    );
    at(
        &mut service,
        start + Duration::from_secs(10),
        &[b"TTL", b"k"],
        &mut out,
    );
    at(
        &mut service,
        start,
        &[b"SET", b"e", b"v", b"PXAT", b"1800000000500"],
        &mut out,
    );
    at(&mut service, start, &[b"DBSIZE"], &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK\r\n:0\r\n:6\r\n$1\r\nv\r\n$-1\r\n:-2\r\n+OK\r\n:1\r\n"
    );
    // The active cycle (the event loop's timer) takes what nobody reads.
    let later = start + Duration::from_secs(1);
    assert_eq!(store.expire_cycle(later, 100), 1);
    assert_eq!(store.len(), 0);
}

#[test]
fn a_scan_returns_every_key_present_throughout_despite_writes() {
    let store = Store::in_memory();
    let mut service = Kv::new(store.clone(), 100);
    let mut out = Vec::new();
    let mut ask = |words: &[&[u8]]| -> Vec<u8> {
        out.clear();
        let request = req(words);
        let mut cx = crate::service::testing::cx(&mut out);
        let _ = service.input(&request, &mut cx);
        out.clone()
    };
    for i in 0..50 {
        ask(&[b"SET", format!("stay:{i}").as_bytes(), b"v"]);
    }
    let mut cursor = b"0".to_vec();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut round = 0;
    loop {
        let reply = ask(&[b"SCAN", &cursor, b"COUNT", b"7"]);
        let text = String::from_utf8(reply).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        // *2, $n, cursor, *k, then $len/key pairs.
        cursor = lines[2].as_bytes().to_vec();
        for key in lines[4..].iter().skip(1).step_by(2) {
            *seen.entry((*key).to_owned()).or_default() += 1;
        }
        // Keys come and go between the calls.
        ask(&[b"SET", format!("new:{round}").as_bytes(), b"v"]);
        ask(&[b"DEL", format!("new:{}", round.max(1) - 1).as_bytes()]);
        round += 1;
        if cursor == b"0" {
            break;
        }
        assert!(round < 100, "the scan does not end");
    }
    // Redis' guarantee: at least once (a deletion may move a key that was
    // returned already, so it can come twice), and in few calls.
    for i in 0..50 {
        assert!(
            seen.contains_key(&format!("stay:{i}")),
            "stay:{i}: {seen:?}"
        );
    }
    assert!(seen.values().all(|&n| n <= 2), "{seen:?}");
    assert!(round <= 60 / 7 + 2, "{round} calls");
}

#[test]
fn spop_and_srandmember_pick_distinct_members_of_the_set() {
    let store = Store::in_memory();
    let mut service = Kv::new(store, 100);
    let mut out = Vec::new();
    let mut ask = |words: &[&[u8]]| -> Vec<String> {
        out.clear();
        let request = req(words);
        let mut cx = crate::service::testing::cx(&mut out);
        let _ = service.input(&request, &mut cx);
        // The members of a flat reply: every other line after the header.
        let text = String::from_utf8(out.clone()).unwrap();
        text.split("\r\n")
            .skip(2)
            .step_by(2)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let members: Vec<Vec<u8>> = (0..100).map(|i| format!("m{i}").into_bytes()).collect();
    let mut sadd: Vec<&[u8]> = vec![b"SADD", b"s"];
    sadd.extend(members.iter().map(Vec::as_slice));
    ask(&sadd);
    let all: std::collections::HashSet<String> = (0..100).map(|i| format!("m{i}")).collect();
    let picked = ask(&[b"SRANDMEMBER", b"s", b"10"]);
    let distinct: std::collections::HashSet<&String> = picked.iter().collect();
    assert!(picked.len() == 10 && distinct.len() == 10 && picked.iter().all(|m| all.contains(m)));
    let popped = ask(&[b"SPOP", b"s", b"30"]);
    let distinct: std::collections::HashSet<&String> = popped.iter().collect();
    assert!(popped.len() == 30 && distinct.len() == 30 && popped.iter().all(|m| all.contains(m)));
    // SCARD's `:70` is a line of its own, not a member.
    assert!(ask(&[b"SCARD", b"s"]).is_empty());
    assert_eq!(ask(&[b"SMEMBERS", b"s"]).len(), 70);
    let repeats = ask(&[b"SRANDMEMBER", b"s", b"-200"]);
    assert!(
        repeats.len() == 200
            && repeats
                .iter()
                .all(|m| all.contains(m) && !popped.contains(m))
    );
}
