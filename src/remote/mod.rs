//! The store on Redis (`--store redis://HOST:PORT[/DB]`): what `todo` and
//! `kv` send to a Redis server instead of the embedded store, and what comes
//! back, in the types every mode shares.
//!
//! A service that keeps its data in Redis returns
//! `Next::Offload(Job::Remote(Request))`: one or more RESP commands, already
//! encoded, and how many replies they get. The driver decides how to send
//! it: the event loop pipelines it onto one of its own non-blocking upstream
//! connections (`server/upstream.rs`), the other modes send it on a blocking
//! connection their worker owns. Either way the service is resumed with an
//! [`Answer`]: the replies' bytes, exactly as Redis sent them, or
//! [`Answer::Unavailable`] when the store could not be reached. Nothing is
//! acknowledged that Redis did not acknowledge: a request whose connection
//! broke before its reply arrived is answered `Unavailable`, never guessed.
//!
//! This module must not know sockets of the event loop or services' wire
//! formats: it is the vocabulary between them. [`reply`] finds where a RESP
//! reply ends, which both kinds of client need.

pub mod blocking;
pub mod reply;

use std::fmt;
use std::str::FromStr;

/// Where the store lives: `redis://HOST:PORT[/DB]` (port 6379 and db 0 when
/// left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// A host name or an IP address (IPv6 in brackets: `redis://[::1]:6379`).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The logical database, selected on every new upstream connection.
    pub db: u32,
}

impl StoreUrl {
    /// `host:port`, as `ToSocketAddrs` takes it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}/{}", self.authority(), self.db)
    }
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("redis://").ok_or_else(|| {
            format!("{text:?} is not a redis:// URL (e.g. redis://127.0.0.1:6379/0)")
        })?;
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (
                authority,
                db.parse()
                    .map_err(|_| format!("{db:?} is not a database number in {text:?}"))?,
            ),
            None => (rest, 0),
        };
        if authority.contains('@') {
            return Err(format!("{text:?}: passwords in the URL are not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: an unclosed '[' in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?} names no host"));
        }
        let port = match port {
            None => 6379,
            Some(port) => port
                .parse()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| format!("{port:?} is not a TCP port in {text:?}"))?,
        };
        Ok(StoreUrl {
            host: host.to_owned(),
            port,
            db,
        })
    }
}

/// Commands for Redis, as one job: the bytes of one or more RESP commands
/// and the number of replies they get. Sent as a whole, in order, on one
/// upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Encoded RESP commands ([`encode`]).
    pub commands: Vec<u8>,
    /// How many replies `commands` get (one per command).
    pub replies: usize,
}

impl Request {
    /// One command from its arguments.
    pub fn command(args: &[&[u8]]) -> Request {
        let mut commands = Vec::new();
        encode(args, &mut commands);
        Request {
            commands,
            replies: 1,
        }
    }
}

/// What came back for a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The replies, back to back, byte for byte as Redis sent them (each
    /// one a whole RESP reply: [`reply::len`] walks them).
    Replies(Vec<u8>),
    /// The store could not be reached, or the connection broke before every
    /// reply had arrived. What the request asked may or may not have been
    /// done; the client is told it was not acknowledged.
    Unavailable,
}

/// Appends one command as a RESP array of bulk strings, the form Redis
/// reads fastest and the only one that is binary-safe.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(digits.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(digits.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Result<StoreUrl, String> {
        text.parse()
    }

    #[test]
    fn urls_name_host_port_and_db() {
        let full = url("redis://10.0.0.1:6390/3").unwrap();
        assert_eq!(
            (full.host.as_str(), full.port, full.db),
            ("10.0.0.1", 6390, 3)
        );
        let bare = url("redis://localhost").unwrap();
        assert_eq!((bare.port, bare.db), (6379, 0));
        assert_eq!(url("redis://h:1/").unwrap().db, 0);
        let v6 = url("redis://[::1]:7000/1").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority()),
            ("::1", "[::1]:7000".to_owned())
        );
        assert_eq!(v6.to_string(), "redis://[::1]:7000/1");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, says) in [
            ("http://x:1", "not a redis:// URL"),
            ("redis://:6379", "names no host"),
            ("redis://h:0", "not a TCP port"),
            ("redis://h:99999", "not a TCP port"),
            ("redis://h:1/x", "not a database number"),
            ("redis://u:p@h:1", "passwords"),
            ("redis://[::1:1", "unclosed"),
        ] {
            let error = url(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let request = Request::command(&[b"SET", b"k", b"a b\r\n"]);
        assert_eq!(
            request.commands,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na b\r\n\r\n"
        );
        assert_eq!(request.replies, 1);
    }
}
