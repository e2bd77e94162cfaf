//! todo over Redis: the replies to its `GET` and `SET` read into todo's
//! own lines, and the seed tasks as one start-up request.

use super::{Asked, NO_MATCH, SEED_TASKS, SUBMITTED};
use crate::remote::{Answer, Request};

/// Writes the todo reply for Redis' `answer` to a `GET` or a `POST`, as
/// the file store would answer: a key holding another type is no match.
pub(super) fn reply(asked: Asked, answer: &Answer, out: &mut Vec<u8>) {
    let Answer::Replies(reply) = answer else {
        return out.extend_from_slice(b"error: store unavailable");
    };
    match (asked, reply.first()) {
        (Asked::Get, Some(b'$')) => match bulk(reply) {
            Some(value) => out.extend_from_slice(value),
            None => out.extend_from_slice(NO_MATCH.as_bytes()),
        },
        (Asked::Get, Some(b'-')) if reply.starts_with(b"-WRONGTYPE") => {
            out.extend_from_slice(NO_MATCH.as_bytes())
        }
        (Asked::Post, Some(b'+')) => out.extend_from_slice(SUBMITTED.as_bytes()),
        (_, Some(b'-')) => {
            out.extend_from_slice(b"error: the store said: ");
            out.extend(reply[1..].trim_ascii_end().escape_ascii());
        }
        _ => out.extend_from_slice(b"error: unexpected reply from the store"),
    }
}

/// The bytes of a bulk-string reply, `None` for the null bulk (`$-1`).
fn bulk(reply: &[u8]) -> Option<&[u8]> {
    let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&reply[1..header_end])
        .ok()?
        .parse()
        .ok()?;
    reply.get(header_end + 2..header_end + 2 + len)
}

/// The start-up data for Redis: [`SEED_TASKS`] as `SET key value NX`, so
/// keys already there are kept, one request per key (in a cluster each
/// goes to its key's node). `serve` sends them before serving (a service
/// does no I/O); each reply is `+OK` (stored) or a null (kept).
pub fn seed_requests() -> Vec<Request> {
    SEED_TASKS
        .iter()
        .map(|(key, value)| {
            Request::command(&[b"SET", key.as_bytes(), value.as_bytes(), b"NX"])
                .routed_by(key.as_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote;
    use crate::service::framing::Lines;
    use crate::service::testing::run;
    use crate::service::todo::Todo;
    use crate::service::{Backend, Job, JobOutput, Next, Service};

    /// What a todo over Redis asks for `line`, and what it answers when
    /// Redis says `answer`.
    fn over_redis(line: &[u8], answer: Answer) -> (Vec<u8>, String) {
        use crate::service::testing::cx;
        let url = "redis://127.0.0.1:1/0".parse().unwrap();
        let mut service = Lines::new(Todo::new(Backend::Redis(url)), 64);
        let mut out = Vec::new();
        let (used, next) = service.input(line, &mut cx(&mut out));
        assert_eq!(used, line.len());
        let Next::Offload(Job::Remote(request)) = next else {
            panic!("{line:?} was not sent to Redis: {next:?}");
        };
        assert!(out.is_empty(), "nothing answered before Redis");
        assert_eq!(request.replies, 1);
        let key = line.split(|&b| b == b'/').nth(1).unwrap();
        let key = key.split(|&b| b == b'=').next().unwrap();
        assert_eq!(
            request.slot,
            Some(remote::cluster::slot(key)),
            "routed by its key"
        );
        let next = service.resume(JobOutput::Remote(answer), &mut cx(&mut out));
        assert_eq!(next, Next::Answered);
        (request.commands, String::from_utf8(out).unwrap())
    }

    #[test]
    fn over_redis_get_and_post_are_get_and_set() {
        let replies = |bytes: &[u8]| Answer::Replies(bytes.to_vec());
        let get = b"*2\r\n$3\r\nGET\r\n$7\r\ntask_01\r\n".to_vec();
        for (answer, says) in [
            (replies(b"$5\r\na/b=c\r\n"), "a/b=c\r\n"),
            (replies(b"$0\r\n\r\n"), "\r\n"),
            (replies(b"$-1\r\n"), "no key match\r\n"),
            (
                replies(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
                "no key match\r\n",
            ),
            (
                replies(b"-LOADING Redis is loading\r\n"),
                "error: the store said: LOADING Redis is loading\r\n",
            ),
            (
                replies(b":1\r\n"),
                "error: unexpected reply from the store\r\n",
            ),
            (Answer::Unavailable, "error: store unavailable\r\n"),
        ] {
            assert_eq!(
                over_redis(b"GET/task_01/x\n", answer),
                (get.clone(), says.to_owned())
            );
        }
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv=w\r\n".to_vec();
        for (answer, says) in [
            (replies(b"+OK\r\n"), "submit success\r\n"),
            (
                replies(b"-OOM command not allowed\r\n"),
                "error: the store said: OOM command not allowed\r\n",
            ),
            (Answer::Unavailable, "error: store unavailable\r\n"),
        ] {
            assert_eq!(
                over_redis(b"POST/k=v=w/x\n", answer),
                (set.clone(), says.to_owned())
            );
        }
        // Malformed lines are answered here, never sent.
        let url = "redis://127.0.0.1:1/0".parse().unwrap();
        let outcome = run(
            Lines::new(Todo::new(Backend::Redis(url)), 64),
            &[b"GET\nnope\n"],
        );
        assert_eq!(
            outcome.out,
            b"error: expected GET/<key>/<anything>\r\ndata no found\r\n"
        );
    }

    #[test]
    fn the_seed_requests_set_only_missing_tasks_each_routed_by_its_key() {
        let requests = seed_requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(
            requests[0].commands,
            b"*4\r\n$3\r\nSET\r\n$7\r\ntask_01\r\n$11\r\nsee someone\r\n$2\r\nNX\r\n"
        );
        for (request, (key, _)) in requests.iter().zip(SEED_TASKS) {
            assert_eq!(request.replies, 1);
            assert_eq!(request.slot, Some(remote::cluster::slot(key.as_bytes())));
        }
    }
}
