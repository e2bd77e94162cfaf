//! The proxy's unit tests: re-encoding, the route table, the local
//! commands, RESP3 through RESP2 connections.

use super::*;
use crate::service::testing::{assert_dialogue, run_until_job};

fn proxy() -> Proxy {
    Proxy::new(&"redis://h:1/2".parse().unwrap(), 1024, 7)
}

/// The job the proxy asks for on `input`, and what it wrote first.
fn forwarded(input: &[u8]) -> Vec<u8> {
    let (outcome, job) = run_until_job(proxy(), &[input]);
    assert_eq!(outcome.out, b"", "nothing answered before Redis");
    match job {
        Some(Job::Remote(request)) => {
            assert_eq!(request.replies, 1);
            request.commands
        }
        other => panic!("{input:?} was not forwarded: {other:?}"),
    }
}

#[test]
fn requests_are_re_encoded_as_arrays_of_bulk_strings() {
    let array = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n";
    assert_eq!(forwarded(array), array);
    // Inline, quoted: the same command, binary-safe on the way up.
    assert_eq!(
        forwarded(b"set k \"a\\r\\nb\"\r\n"),
        b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
    );
    assert_eq!(forwarded(b"PING\n"), b"*1\r\n$4\r\nPING\r\n");
    // Names are forwarded as the client spelled them; CONFIG GET and
    // an XREAD without BLOCK are plain commands.
    assert_eq!(
        forwarded(b"config get save\r\n"),
        b"*3\r\n$6\r\nconfig\r\n$3\r\nget\r\n$4\r\nsave\r\n"
    );
    assert_eq!(
        forwarded(b"XREADGROUP GROUP BLOCK c COUNT 1 STREAMS s >\r\n")[..4],
        *b"*9\r\n"
    );
    // Unknown to kv, and too long a name for the table: Redis decides.
    assert_eq!(
        forwarded(b"FROBNICATE_A_VERY_LONG_NAME\r\n"),
        b"*1\r\n$27\r\nFROBNICATE_A_VERY_LONG_NAME\r\n"
    );
}

#[test]
fn kv_limits_hold_before_anything_is_sent() {
    // A bulk over --kv-max-bulk (1024 here) is a protocol error, and
    // nothing goes to Redis.
    let (outcome, job) = run_until_job(proxy(), &[b"*2\r\n$3\r\nGET\r\n$2000\r\n"]);
    assert_eq!(job, None);
    assert!(outcome.closed);
    assert_eq!(outcome.out, b"-ERR Protocol error: invalid bulk length\r\n");
}

#[test]
fn refused_commands_are_answered_here_and_never_sent() {
    for (input, why) in [
        (&b"SUBSCRIBE news\r\n"[..], Why::PubSub),
        (b"psubscribe n*\r\n", Why::PubSub),
        (b"SUNSUBSCRIBE\r\n", Why::PubSub),
        (b"MULTI\r\n", Why::Transaction),
        (b"exec\r\n", Why::Transaction),
        (b"WATCH k\r\n", Why::Transaction),
        (b"BLPOP l 0\r\n", Why::Blocking),
        (b"BZPOPMIN z 1\r\n", Why::Blocking),
        (b"BLMOVE a b LEFT RIGHT 0\r\n", Why::Blocking),
        (b"WAIT 1 0\r\n", Why::Blocking),
        (b"XREAD COUNT 2 BLOCK 0 STREAMS s $\r\n", Why::Blocking),
        (
            b"XREADGROUP GROUP g c BLOCK 5 STREAMS s >\r\n",
            Why::Blocking,
        ),
        (b"MONITOR\r\n", Why::Stream),
        (b"PSYNC ? -1\r\n", Why::Stream),
        (b"AUTH secret\r\n", Why::SharedConnection),
        (b"READONLY\r\n", Why::SharedConnection),
        (b"SHUTDOWN NOSAVE\r\n", Why::Admin),
        (b"DEBUG SLEEP 10\r\n", Why::Admin),
        (b"CONFIG SET save x\r\n", Why::Admin),
        (b"CLIENT REPLY OFF\r\n", Why::Client),
        (b"CLIENT KILL ID 1\r\n", Why::Client),
        (b"CLIENT\r\n", Why::Client),
        (b"SELECT 0\r\n", Why::Select),
    ] {
        let (outcome, job) = run_until_job(proxy(), &[input]);
        assert_eq!(job, None, "{input:?} was sent");
        let name = input.split(|&b| b == b' ' || b == b'\r').next().unwrap();
        let expected = [
            b"-ERR ",
            name.to_ascii_uppercase().as_slice(),
            b" is not proxied: ",
            why.reason().as_bytes(),
            b"\r\n",
        ]
        .concat();
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            String::from_utf8_lossy(&expected)
        );
    }
}

#[test]
fn the_connection_commands_are_answered_here() {
    assert_dialogue(
        proxy,
        b"SELECT 2\r\nCLIENT SETNAME app\r\nCLIENT GETNAME\r\nCLIENT ID\r\n\
          CLIENT SETINFO LIB-NAME redis-py\r\nRESET\r\nCLIENT GETNAME\r\n\
          HELLO 2 AUTH u p\r\nHELLO 4\r\n",
        b"+OK\r\n+OK\r\n$3\r\napp\r\n:7\r\n+OK\r\n+RESET\r\n$-1\r\n\
          -ERR HELLO is not proxied: it would change the upstream connection other clients share\r\n\
          -NOPROTO unsupported protocol version\r\n",
    );
    let (outcome, job) = run_until_job(proxy(), &[b"HELLO 2\r\n"]);
    assert_eq!(job, None);
    assert!(
        outcome.out.starts_with(b"*14\r\n$6\r\nserver\r\n"),
        "{outcome:?}"
    );
    // QUIT answers and closes; what follows is not run.
    let (outcome, job) = run_until_job(proxy(), &[b"QUIT\r\nGET k\r\n"]);
    assert_eq!(
        (outcome.out.as_slice(), outcome.closed, job),
        (&b"+OK\r\n"[..], true, None)
    );
}

#[test]
fn a_store_out_of_reach_is_an_error_reply_and_the_client_goes_on() {
    // Run by the test driver with no store configured in this process:
    // every forwarded command is answered Unavailable.
    assert_dialogue(
        proxy,
        b"GET k\r\nMULTI\r\nPING\r\n",
        b"-ERR store unavailable\r\n-ERR MULTI is not proxied: a transaction needs a \
          connection of its own to Redis (EVAL is forwarded, and atomic)\r\n\
          -ERR store unavailable\r\n",
    );
}

#[test]
fn a_resp3_client_gets_the_reply_redis_gives_in_resp3() {
    let mut service = proxy();
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let (_, next) = service.input(b"HELLO 3\r\n", &mut cx);
    assert_eq!(next, Next::Answered);
    assert!(out.starts_with(b"%7\r\n$6\r\nserver\r\n"), "{out:?}");
    out.clear();
    // Answered here in RESP3 too.
    let mut cx = crate::service::testing::cx(&mut out);
    let _ = service.input(b"CLIENT GETNAME\r\n", &mut cx);
    assert_eq!(out, b"_\r\n");
    out.clear();
    let mut cx = crate::service::testing::cx(&mut out);
    let (_, next) = service.input(b"HGETALL h\r\n", &mut cx);
    let Next::Offload(Job::Remote(request)) = next else {
        panic!("{next:?}")
    };
    assert_eq!(
        request.commands,
        b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n\
          *2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"
    );
    assert_eq!(request.replies, 3);
    // HELLO 3's map, the command's reply, HELLO 2's array: the middle one.
    let replies = b"%1\r\n$5\r\nproto\r\n:3\r\n%1\r\n$1\r\na\r\n$1\r\n1\r\n\
                    *2\r\n$5\r\nproto\r\n:2\r\n";
    let next = service.resume(
        JobOutput::Remote(Answer::Replies(replies.to_vec())),
        &mut cx,
    );
    assert_eq!(next, Next::Answered);
    assert_eq!(out, b"%1\r\n$1\r\na\r\n$1\r\n1\r\n");
    // RESET goes back to RESP2: one command, one reply.
    let _ = service.input(b"RESET\r\n", &mut crate::service::testing::cx(&mut out));
    assert_eq!(
        forwarded_by(&mut service, b"GET k\r\n"),
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    );
}

/// What `service` (in whatever state) sends Redis for `input`.
fn forwarded_by(service: &mut Proxy, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (_, next) = service.input(input, &mut crate::service::testing::cx(&mut out));
    match next {
        Next::Offload(Job::Remote(request)) => request.commands,
        other => panic!("{input:?} was not forwarded: {other:?}"),
    }
}

#[test]
fn redis_replies_are_written_verbatim() {
    let mut service = proxy();
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let (used, next) = service.input(b"LRANGE l 0 -1\r\n", &mut cx);
    assert!(matches!(next, Next::Offload(Job::Remote(_))), "{next:?}");
    assert_eq!(used, 15);
    let reply = b"*2\r\n$1\r\na\r\n$-1\r\n".to_vec();
    let next = service.resume(JobOutput::Remote(Answer::Replies(reply.clone())), &mut cx);
    assert_eq!((next, out), (Next::Answered, reply));
}

/// Drives `service` over `input` to its job: the job and the bytes taken.
fn batch_of(service: &mut Proxy, input: &[u8]) -> (usize, remote::Request) {
    let mut out = Vec::new();
    let (used, next) = service.input(input, &mut crate::service::testing::cx(&mut out));
    assert_eq!(out, b"", "nothing answered before Redis");
    match next {
        Next::Offload(Job::Remote(request)) => (used, request),
        other => panic!("{input:?} was not forwarded: {other:?}"),
    }
}

#[test]
fn a_pipeline_goes_up_as_one_batch_and_comes_back_in_order() {
    let mut service = proxy();
    let pipeline = b"SET a 1\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\nGET a\r\n";
    let (used, request) = batch_of(&mut service, pipeline);
    assert_eq!(used, pipeline.len());
    assert_eq!(request.replies, 3);
    assert_eq!(
        request.commands,
        b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\na\r\n"
    );
    let mut out = Vec::new();
    let replies = b"+OK\r\n:1\r\n$1\r\n1\r\n";
    let next = service.resume(
        JobOutput::Remote(Answer::Replies(replies.to_vec())),
        &mut crate::service::testing::cx(&mut out),
    );
    assert_eq!(
        (next, out.as_slice()),
        (Next::AnsweredMany(3), &replies[..])
    );
    // A lost store answers each command of the batch.
    let (_, _) = batch_of(&mut service, b"INCR a\r\nGET b\r\n");
    let mut out = Vec::new();
    let next = service.resume(
        JobOutput::Remote(Answer::Unavailable),
        &mut crate::service::testing::cx(&mut out),
    );
    assert_eq!(next, Next::AnsweredMany(2));
    assert_eq!(out, b"-ERR store unavailable\r\n-ERR store unavailable\r\n");
}

#[test]
fn a_batch_stops_before_what_is_not_forwarded_or_not_whole() {
    let mut service = proxy();
    // QUIT is answered here: after the batch's replies, not before.
    let (used, request) = batch_of(&mut service, b"INCR a\r\nDEL b\r\nQUIT\r\nINCR c\r\n");
    assert_eq!((used, request.replies), (15, 2));
    // A frame cut short: the batch goes; the parser keeps the start.
    let mut service = proxy();
    let (used, request) = batch_of(&mut service, b"INCR a\r\n*2\r\n$3\r\nGET");
    assert_eq!((used, request.replies), (19, 1));
    // A malformed frame is left for after the batch (then closes).
    let mut service = proxy();
    let (used, request) = batch_of(&mut service, b"INCR a\r\n*x\r\n");
    assert_eq!((used, request.replies), (8, 1));
    // The caps: at most MAX_BATCH commands in one batch.
    let mut service = proxy();
    let many = b"INCR k\r\n".repeat(MAX_BATCH as usize + 5);
    let (used, request) = batch_of(&mut service, &many);
    assert_eq!(
        (used, request.replies),
        (8 * MAX_BATCH as usize, MAX_BATCH as usize)
    );
}

#[test]
fn a_reply_that_may_be_large_closes_the_batch() {
    // One per batch, last: the batch's replies cost one large reply at most.
    let (used, request) = batch_of(&mut proxy(), b"SET a 1\r\nGET a\r\nSET b 2\r\n");
    assert_eq!((used, request.replies), (16, 2));
    let (used, request) = batch_of(&mut proxy(), b"GET a\r\nGET b\r\n");
    assert_eq!((used, request.replies), (7, 1));
    // SET ... GET answers the old value.
    let (used, request) = batch_of(&mut proxy(), b"SET a 1 GET\r\nINCR b\r\n");
    assert_eq!((used, request.replies), (13, 1));
    let (used, request) = batch_of(
        &mut proxy(),
        b"set a 1\r\nlpush l x\r\nping\r\nlrange l 0 -1\r\nincr n\r\n",
    );
    assert_eq!((used, request.replies), (41, 4));
}

#[test]
fn a_pipeline_split_anywhere_gets_the_same_replies() {
    // Through the Dialogue, with Redis played by a function: every split
    // of a pipeline gives the same bytes back and counts every command.
    let pipeline: &[u8] = b"SET a 1\r\nGET a\r\nPING\r\nQUIT\r\n";
    let redis = |request: &remote::Request| {
        let mut replies = Vec::new();
        for _ in 0..request.replies {
            replies.extend_from_slice(b"+R\r\n");
        }
        Answer::Replies(replies)
    };
    for cut in 0..=pipeline.len() {
        let (a, b) = pipeline.split_at(cut);
        let mut service = proxy();
        let (mut out, mut answered) = (Vec::new(), 0);
        let mut pending: Vec<u8> = Vec::new();
        for chunk in [a, b] {
            pending.extend_from_slice(chunk);
            loop {
                let mut cx = crate::service::testing::cx(&mut out);
                let (used, next) = service.input(&pending, &mut cx);
                pending.drain(..used);
                match next {
                    Next::Offload(Job::Remote(request)) => {
                        match service.resume(JobOutput::Remote(redis(&request)), &mut cx) {
                            Next::Answered => answered += 1,
                            Next::AnsweredMany(n) => answered += n,
                            other => panic!("{other:?}"),
                        }
                    }
                    Next::Last => {
                        answered += 1;
                        break;
                    }
                    Next::Answered => answered += 1,
                    Next::Wait => break,
                    other => panic!("{other:?}"),
                }
                if pending.is_empty() {
                    break;
                }
            }
        }
        assert_eq!(out, b"+R\r\n+R\r\n+R\r\n+OK\r\n", "cut at {cut}");
        assert_eq!(answered, 4, "cut at {cut}");
    }
}

#[test]
fn over_a_cluster_each_command_goes_alone_routed_by_its_first_key() {
    let cluster: Redis = "redis-cluster://h:1".parse().unwrap();
    let slot = |key: &[u8]| Some(remote::cluster::slot(key));
    for (input, routed_by) in [
        (&b"GET k1\r\n"[..], slot(b"k1")),
        (b"set {u}.a 1\r\n", slot(b"u")),
        // Keys on two slots: routed by the first (Redis says -CROSSSLOT).
        (b"MSET a 1 b 2\r\n", slot(b"a")),
        (b"EVAL s 2 ka kb x\r\n", slot(b"ka")),
        (b"EVAL s 0 x\r\n", None),
        (b"ZUNION 2 za zb\r\n", slot(b"za")),
        (b"OBJECT ENCODING ok\r\n", slot(b"ok")),
        (b"BITOP AND dest src\r\n", slot(b"dest")),
        (b"XREAD COUNT 2 STREAMS s1 0\r\n", slot(b"s1")),
        (b"XREAD COUNT 2\r\n", None),
        (b"PING\r\n", None),
        (b"DBSIZE\r\n", None),
        (b"PUBLISH ch msg\r\n", None),
        (b"CLUSTER KEYSLOT k\r\n", None),
        (b"OBJECT HELP\r\n", None),
    ] {
        let mut service = Proxy::new(&cluster, 1024, 7);
        let (_, request) = batch_of(&mut service, input);
        assert_eq!(request.slot, routed_by, "{}", input.escape_ascii());
    }
    // A pipeline is not batched: its commands may be on other slots.
    let mut service = Proxy::new(&cluster, 1024, 7);
    let pipeline = b"INCR a\r\nINCR b\r\n";
    let (used, request) = batch_of(&mut service, pipeline);
    assert_eq!((used, request.replies), (b"INCR a\r\n".len(), 1));
    assert_eq!(request.slot, slot(b"a"));
    // One server: no routing, and the pipeline goes up whole.
    let (used, request) = batch_of(&mut proxy(), pipeline);
    assert_eq!(
        (used, request.replies, request.slot),
        (pipeline.len(), 2, None)
    );
}
