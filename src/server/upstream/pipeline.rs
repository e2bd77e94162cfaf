//! The sans-I/O half of one upstream connection to the store: the bytes
//! waiting to be written, the bytes read and not yet cut into replies, and
//! the line of requests still owed replies, oldest first.
//!
//! Redis answers the commands of one connection in the order they arrived,
//! so the first whole replies read belong to the oldest request: cutting
//! them off the front ([`reply::len`]) and giving them to the front of the
//! line routes every reply to the client that asked, however the bytes were
//! split or however many clients share the connection.
//!
//! No socket and no clock here (deadlines come in as instants), so the
//! routing is tested byte by byte without a network.

use std::collections::VecDeque;
use std::time::Instant;

use crate::remote::{Answer, reply};
use crate::server::offload::Ticket;

/// Who is owed the replies of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The `SELECT db` sent first on every new connection: its reply is
    /// checked here and given to nobody.
    Select,
    /// A client connection's job.
    Client(Ticket),
}

/// A request written (or waiting to be) whose replies have not all come.
#[derive(Debug)]
struct Owed {
    owner: Owner,
    replies: usize,
    /// When the store counts as unavailable if the replies have not come.
    deadline: Instant,
}

/// The store broke the protocol or refused the connection's set-up: the
/// connection cannot be trusted to stay in step and is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault(pub(crate) String);

/// One upstream connection's buffers and its line of owed replies.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    /// Requests appended and not yet written; `unsent[written..]` is pending.
    unsent: Vec<u8>,
    written: usize,
    /// Bytes read that are not yet a whole reply for the front request.
    received: Vec<u8>,
    owed: VecDeque<Owed>,
    /// The `SELECT` was answered `+OK`: the connection is in use.
    selected: bool,
}

impl Pipeline {
    /// Appends `commands` (getting `replies` replies, owed to `owner`) to
    /// what is to be written, behind every earlier request.
    pub(crate) fn push(
        &mut self,
        owner: Owner,
        commands: &[u8],
        replies: usize,
        deadline: Instant,
    ) {
        self.unsent.extend_from_slice(commands);
        self.owed.push_back(Owed {
            owner,
            replies,
            deadline,
        });
    }

    /// The bytes to write next.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.unsent[self.written..]
    }

    /// The socket took `n` more bytes of [`unsent`](Self::unsent).
    pub(crate) fn sent(&mut self, n: usize) {
        self.written += n;
        if self.written == self.unsent.len() {
            // An idle upstream holds no write buffer (rule 12).
            self.unsent = Vec::new();
            self.written = 0;
        }
    }

    /// Requests whose replies have not all arrived (written or not).
    pub(crate) fn in_flight(&self) -> usize {
        self.owed.len()
    }

    /// Bytes appended and not yet taken by the socket.
    pub(crate) fn unsent_len(&self) -> usize {
        self.unsent.len() - self.written
    }

    /// The oldest request's deadline: replies come in order, so if it is
    /// late, everything behind it is too.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.owed.front().map(|owed| owed.deadline)
    }

    /// True once the connection's `SELECT` was answered `+OK`.
    pub(crate) fn selected(&self) -> bool {
        self.selected
    }

    /// Takes bytes read from the store: every reply now whole goes, with
    /// its ticket, to `answers`, in the order the requests were pushed.
    pub(crate) fn received(
        &mut self,
        bytes: &[u8],
        answers: &mut Vec<(Ticket, Answer)>,
    ) -> Result<(), Fault> {
        self.received.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(front) = self.owed.front() {
            let Some(len) = reply::len(&self.received[at..], front.replies)
                .map_err(|malformed| Fault(malformed.to_string()))?
            else {
                break;
            };
            let replies = &self.received[at..at + len];
            match front.owner {
                Owner::Select if replies.starts_with(b"+") => self.selected = true,
                Owner::Select => {
                    return Err(Fault(format!(
                        "SELECT answered {}",
                        replies.trim_ascii_end().escape_ascii()
                    )));
                }
                Owner::Client(ticket) => {
                    answers.push((ticket, Answer::Replies(replies.to_vec())));
                }
            }
            at += len;
            self.owed.pop_front();
        }
        if self.owed.is_empty() && at < self.received.len() {
            return Err(Fault("the store sent a reply nobody asked for".into()));
        }
        if at == self.received.len() {
            self.received = Vec::new(); // rule 12: nothing held between replies
        } else {
            self.received.drain(..at);
        }
        Ok(())
    }

    /// The connection is gone: every client still owed a reply is answered
    /// [`Answer::Unavailable`] (nothing is acknowledged that the store did
    /// not acknowledge), and the buffers are emptied for the next connection.
    pub(crate) fn fail(&mut self, answers: &mut Vec<(Ticket, Answer)>) {
        for owed in self.owed.drain(..) {
            if let Owner::Client(ticket) = owed.owner {
                answers.push((ticket, Answer::Unavailable));
            }
        }
        *self = Pipeline::default();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::remote::Request;

    fn ticket(key: usize) -> Ticket {
        Ticket { key, generation: 7 }
    }

    /// Three clients' requests behind a `SELECT`, and the store's replies to
    /// all four, back to back.
    fn three_clients(now: Instant) -> (Pipeline, Vec<u8>, Vec<(Ticket, Answer)>) {
        let mut pipeline = Pipeline::default();
        let select = Request::command(&[b"SELECT", b"0"]);
        pipeline.push(Owner::Select, &select.commands, 1, now);
        let set = Request::command(&[b"SET", b"k", b"v"]);
        pipeline.push(Owner::Client(ticket(3)), &set.commands, 1, now);
        let mut two = Request::command(&[b"GET", b"k"]).commands;
        two.extend_from_slice(&Request::command(&[b"LRANGE", b"l", b"0", b"-1"]).commands);
        pipeline.push(Owner::Client(ticket(1)), &two, 2, now);
        let get = Request::command(&[b"GET", b"missing"]);
        pipeline.push(Owner::Client(ticket(2)), &get.commands, 1, now);
        let replies = b"+OK\r\n+OK\r\n$1\r\nv\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n$-1\r\n".to_vec();
        let expected = vec![
            (ticket(3), Answer::Replies(b"+OK\r\n".to_vec())),
            (
                ticket(1),
                Answer::Replies(b"$1\r\nv\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n".to_vec()),
            ),
            (ticket(2), Answer::Replies(b"$-1\r\n".to_vec())),
        ];
        (pipeline, replies, expected)
    }

    #[test]
    fn requests_are_written_back_to_back_in_push_order() {
        let (mut pipeline, _, _) = three_clients(Instant::now());
        let mut expected = Request::command(&[b"SELECT", b"0"]).commands;
        expected.extend_from_slice(&Request::command(&[b"SET", b"k", b"v"]).commands);
        assert!(pipeline.unsent().starts_with(&expected));
        let all = pipeline.unsent().len();
        pipeline.sent(5);
        assert_eq!(pipeline.unsent_len(), all - 5);
        pipeline.sent(all - 5);
        assert_eq!(pipeline.unsent(), b"");
        assert_eq!(pipeline.in_flight(), 4, "written is not answered");
    }

    #[test]
    fn replies_go_to_their_tickets_in_order_in_every_split() {
        let now = Instant::now();
        let (_, replies, expected) = three_clients(now);
        // Every way of cutting the replies in two, and byte by byte.
        for cut in 0..=replies.len() {
            let (mut pipeline, _, _) = three_clients(now);
            let mut answers = Vec::new();
            pipeline.received(&replies[..cut], &mut answers).unwrap();
            pipeline.received(&replies[cut..], &mut answers).unwrap();
            assert_eq!(answers, expected, "cut at {cut}");
            assert!(pipeline.selected());
            assert_eq!(pipeline.in_flight(), 0);
        }
        let (mut pipeline, _, _) = three_clients(now);
        let mut answers = Vec::new();
        for byte in &replies {
            pipeline
                .received(std::slice::from_ref(byte), &mut answers)
                .unwrap();
        }
        assert_eq!(answers, expected);
    }

    #[test]
    fn the_oldest_request_has_the_nearest_deadline() {
        let now = Instant::now();
        let mut pipeline = Pipeline::default();
        assert_eq!(pipeline.next_deadline(), None);
        pipeline.push(Owner::Client(ticket(1)), b"*1\r\n$4\r\nPING\r\n", 1, now);
        let later = now + Duration::from_secs(1);
        pipeline.push(Owner::Client(ticket(2)), b"*1\r\n$4\r\nPING\r\n", 1, later);
        assert_eq!(pipeline.next_deadline(), Some(now));
        let mut answers = Vec::new();
        pipeline.received(b"+PONG\r\n", &mut answers).unwrap();
        assert_eq!(pipeline.next_deadline(), Some(later));
    }

    #[test]
    fn a_lost_connection_answers_every_pending_ticket_unavailable() {
        let now = Instant::now();
        let (mut pipeline, replies, _) = three_clients(now);
        let mut answers = Vec::new();
        // The SELECT's and the first client's replies came, and half of the second's.
        pipeline.received(&replies[..14], &mut answers).unwrap();
        assert_eq!(answers.len(), 1);
        pipeline.fail(&mut answers);
        assert_eq!(
            answers[1..],
            [
                (ticket(1), Answer::Unavailable),
                (ticket(2), Answer::Unavailable)
            ]
        );
        assert_eq!((pipeline.in_flight(), pipeline.unsent_len()), (0, 0));
        // The next connection starts clean: no leftover half reply.
        pipeline.push(Owner::Client(ticket(4)), b"*1\r\n$4\r\nPING\r\n", 1, now);
        let mut after = Vec::new();
        pipeline.received(b"+PONG\r\n", &mut after).unwrap();
        assert_eq!(after, [(ticket(4), Answer::Replies(b"+PONG\r\n".to_vec()))]);
    }

    #[test]
    fn a_refused_select_or_an_unasked_reply_or_garbage_is_a_fault() {
        let now = Instant::now();
        let mut answers = Vec::new();
        let mut refused = Pipeline::default();
        refused.push(Owner::Select, b"*2\r\n$6\r\nSELECT\r\n$2\r\n99\r\n", 1, now);
        let fault = refused
            .received(b"-ERR DB index is out of range\r\n", &mut answers)
            .unwrap_err();
        assert!(
            fault.0.contains("SELECT answered -ERR DB index"),
            "{fault:?}"
        );

        let mut idle = Pipeline::default();
        assert!(idle.received(b"+OK\r\n", &mut answers).is_err());

        let mut garbage = Pipeline::default();
        garbage.push(Owner::Client(ticket(1)), b"*1\r\n$4\r\nPING\r\n", 1, now);
        assert!(garbage.received(b"hello\r\n", &mut answers).is_err());
        assert!(answers.is_empty());
    }
}
