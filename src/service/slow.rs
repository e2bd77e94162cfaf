//! `slow` (not in the seeds; docs/PROTOCOLS.md "slow"): work that takes a while,
//! so that the offload pool can be seen and measured.
//!
//! - `sleep <ms>` (0 to [`MAX_SLEEP_MS`]) answers `slept <ms>` after that long;
//! - `hash <rounds>` (1 to [`MAX_HASH_ROUNDS`]) answers the 16-digit hex
//!   digest of that many rounds of 64-bit FNV-1a, each over the previous
//!   digest ([`hash_rounds`]): real CPU work that no compiler can skip;
//! - anything else is `error: ...` naming the commands, and the connection
//!   goes on.
//!
//! A last command without its `\n` at end of input (`printf 'sleep 50' |
//! nc -N`) is answered too: the drivers run the job `eof` asks for, send
//! the reply, then close.
//!
//! The handler only parses and replies: the waiting and the hashing are a
//! [`Work`] handed to the driver as [`Job::Slow`], done by [`run`] on
//! whatever thread the driver picks. It must never sleep or hash itself.

use std::sync::Arc;
use std::time::Duration;

use super::framing::{LineHandler, Lines};
use super::{Cx, Factory, FnFactory, Job, JobOutput, Next, Shared};

/// The longest `sleep`, in milliseconds: 10 s. A bigger number gets an
/// error reply naming the range, and nothing sleeps.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// The most `hash` rounds: 10 million, about a tenth of a second of one
/// core. A bigger number gets an error reply naming the range.
pub const MAX_HASH_ROUNDS: u32 = 10_000_000;

/// What the commands are, for error replies.
const COMMANDS: &str =
    "the commands are 'sleep <ms>' (0 to 10000) and 'hash <rounds>' (1 to 10000000)";

/// The slow work one command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Block the thread for this long.
    Sleep(Duration),
    /// Hash for this many rounds ([`hash_rounds`]).
    Hash {
        /// How many rounds, 1 to [`MAX_HASH_ROUNDS`].
        rounds: u32,
    },
}

/// What a [`Work`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The sleep is over.
    Slept(Duration),
    /// The digest after all the rounds.
    Hashed(u64),
}

/// Does `work`, blocking the calling thread. Only jobs call this.
pub fn run(work: Work) -> Done {
    match work {
        Work::Sleep(duration) => {
            std::thread::sleep(duration);
            Done::Slept(duration)
        }
        Work::Hash { rounds } => Done::Hashed(hash_rounds(rounds)),
    }
}

/// 64-bit FNV-1a's offset basis: the digest before round one.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// 64-bit FNV-1a's prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `rounds` rounds of 64-bit FNV-1a, each over the 8 little-endian bytes of
/// the previous digest, starting from the offset basis. Each round needs the
/// one before, so the work cannot be skipped or parallelised.
pub fn hash_rounds(rounds: u32) -> u64 {
    let mut digest = FNV_OFFSET;
    for _ in 0..rounds {
        let mut next = FNV_OFFSET;
        for byte in digest.to_le_bytes() {
            next ^= u64::from(byte);
            next = next.wrapping_mul(FNV_PRIME);
        }
        digest = next;
    }
    digest
}

/// The `slow` line handler: parses a command, offloads its work, and
/// replies when the work comes back.
#[derive(Debug, Default)]
pub struct Slow;

impl Slow {
    /// The work `line` asks for, or the reason (without `error: `) it is refused.
    fn parse(line: &str) -> Result<Work, String> {
        let mut words = line.split_whitespace();
        let (command, argument, extra) = (words.next(), words.next(), words.next());
        match (command, argument, extra) {
            (Some("sleep"), Some(ms), None) => match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_SLEEP_MS => Ok(Work::Sleep(Duration::from_millis(ms))),
                _ => Err(format!(
                    "sleep takes a whole number of milliseconds from 0 to {MAX_SLEEP_MS}, e.g. 'sleep 50'"
                )),
            },
            (Some("hash"), Some(rounds), None) => match rounds.parse::<u32>() {
                Ok(rounds) if (1..=MAX_HASH_ROUNDS).contains(&rounds) => Ok(Work::Hash { rounds }),
                _ => Err(format!(
                    "hash takes a whole number of rounds from 1 to {MAX_HASH_ROUNDS}, e.g. 'hash 1000'"
                )),
            },
            (Some(command @ ("sleep" | "hash")), _, _) => {
                Err(format!("{command} takes exactly one number: {COMMANDS}"))
            }
            (None, _, _) => Err(format!("empty line: {COMMANDS}")),
            (Some(_), _, _) => Err(format!("unknown command: {COMMANDS}")),
        }
    }
}

impl LineHandler for Slow {
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        match Self::parse(line) {
            Ok(work) => Next::Offload(Job::Slow(work)),
            Err(reason) => {
                self.error(&reason, cx);
                Next::Answered
            }
        }
    }

    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        let reply = match done {
            JobOutput::Slow(Done::Slept(duration)) => format!("slept {}\n", duration.as_millis()),
            JobOutput::Slow(Done::Hashed(digest)) => format!("{digest:016x}\n"),
            JobOutput::Panicked(why) => {
                log::error!("peer={} slow job panicked: {why}", cx.peer);
                "error: the job failed inside the server; try again\n".to_owned()
            }
            other => {
                log::error!("peer={} unexpected job output {other:?}", cx.peer);
                return Next::Close;
            }
        };
        cx.out.extend_from_slice(reply.as_bytes());
        Next::Answered
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let (max_line, framing) = (shared.limits.max_line, shared.limits.framing);
    FnFactory::new("slow", move || {
        Box::new(Lines::framed(Slow, max_line, framing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use crate::service::testing::{assert_dialogue, run as drive};

    fn slow() -> Box<dyn Service> {
        Box::new(Lines::new(Slow, 64))
    }

    #[test]
    fn sleep_replies_after_the_job() {
        assert_dialogue(slow, b"sleep 0\nsleep 5\r\n", b"slept 0\nslept 5\n");
    }

    #[test]
    fn sleep_asks_for_a_job_and_does_not_sleep_itself() {
        let mut out = Vec::new();
        let mut cx = crate::service::testing::cx(&mut out);
        let (consumed, next) = slow().input(b"sleep 10000\nhash 1\n", &mut cx);
        assert_eq!(consumed, 12);
        assert_eq!(
            next,
            Next::Offload(Job::Slow(Work::Sleep(Duration::from_secs(10))))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn hash_replies_the_hex_digest() {
        let one = format!("{:016x}\n", hash_rounds(1));
        let thousand = format!("{:016x}\n", hash_rounds(1000));
        assert_dialogue(
            slow,
            b"hash 1\nhash 1000\n",
            format!("{one}{thousand}").as_bytes(),
        );
        // Round one is plain FNV-1a of the offset basis' 8 bytes.
        let mut expected = FNV_OFFSET;
        for byte in FNV_OFFSET.to_le_bytes() {
            expected = (expected ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        assert_eq!(hash_rounds(1), expected);
        assert_eq!(hash_rounds(0), FNV_OFFSET);
        assert_ne!(hash_rounds(1000), hash_rounds(1001));
    }

    #[test]
    fn numbers_out_of_range_name_the_range() {
        assert_dialogue(
            slow,
            b"sleep 10001\nsleep -1\nsleep x\nhash 0\nhash 10000001\nhash 1e3\n",
            b"error: sleep takes a whole number of milliseconds from 0 to 10000, e.g. 'sleep 50'\n\
              error: sleep takes a whole number of milliseconds from 0 to 10000, e.g. 'sleep 50'\n\
              error: sleep takes a whole number of milliseconds from 0 to 10000, e.g. 'sleep 50'\n\
              error: hash takes a whole number of rounds from 1 to 10000000, e.g. 'hash 1000'\n\
              error: hash takes a whole number of rounds from 1 to 10000000, e.g. 'hash 1000'\n\
              error: hash takes a whole number of rounds from 1 to 10000000, e.g. 'hash 1000'\n",
        );
    }

    #[test]
    fn other_lines_name_the_commands_and_the_connection_goes_on() {
        let commands =
            "the commands are 'sleep <ms>' (0 to 10000) and 'hash <rounds>' (1 to 10000000)";
        let expected = format!(
            "error: unknown command: {commands}\n\
             error: empty line: {commands}\n\
             error: sleep takes exactly one number: {commands}\n\
             error: hash takes exactly one number: {commands}\n\
             slept 1\n"
        );
        assert_dialogue(
            slow,
            b"SLEEP 1\n\nsleep\nhash 1 2\nsleep 1\n",
            expected.as_bytes(),
        );
    }

    #[test]
    fn a_panicked_job_gets_an_error_reply() {
        let mut handler = Slow;
        let mut out = Vec::new();
        let mut cx = crate::service::testing::cx(&mut out);
        let next = handler.resume(JobOutput::Panicked("boom".into()), &mut cx);
        assert_eq!(next, Next::Answered);
        assert_eq!(out, b"error: the job failed inside the server; try again\n");
        assert!(!drive(slow(), &[b"hash 2\n"]).closed);
    }
}
