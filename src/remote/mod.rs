//! The store on Redis (`--store redis://HOST:PORT[/DB]`, or a Redis
//! Cluster: `--store redis-cluster://HOST:PORT[,HOST:PORT...]`): what `todo`
//! and `kv` send to Redis instead of the embedded store, and what comes
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
//! reply ends, which both kinds of client need; [`cluster`] is Redis
//! Cluster's routing (hash slots, `CLUSTER SLOTS`, `-MOVED`/`-ASK`). A
//! [`Request`] names the key that routes it ([`Request::routed_by`]), so a
//! cluster client sends it to the node serving that key's slot.

pub mod blocking;
pub mod cluster;
pub mod reply;

use std::fmt;
use std::str::FromStr;

/// Which Redis the store is: one server, or a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redis {
    /// `redis://HOST:PORT[/DB]`.
    Server(StoreUrl),
    /// `redis-cluster://HOST:PORT[,HOST:PORT...]`.
    Cluster(ClusterUrl),
}

impl Redis {
    /// The database clients see: the URL's, or 0 in a cluster (which has
    /// no other).
    pub fn db(&self) -> u32 {
        match self {
            Redis::Server(url) => url.db,
            Redis::Cluster(_) => 0,
        }
    }

    /// True for a Redis Cluster: requests go to the node serving their
    /// key's slot, one command at a time, on blocking connections in every
    /// mode (the event loop's and uring's offload pools).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }
}

impl fmt::Display for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redis::Server(url) => url.fmt(f),
            Redis::Cluster(url) => url.fmt(f),
        }
    }
}

impl FromStr for Redis {
    type Err = String;

    /// `redis://...` or `redis-cluster://...`.
    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with(ClusterUrl::SCHEME) {
            text.parse().map(Redis::Cluster)
        } else {
            text.parse().map(Redis::Server)
        }
    }
}

/// A Redis Cluster: `redis-cluster://HOST:PORT[,HOST:PORT...][/0]`, the
/// seed nodes asked for the slot table (any one that answers will do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// The seed nodes, in the order given (database 0).
    pub seeds: Vec<StoreUrl>,
}

impl ClusterUrl {
    const SCHEME: &str = "redis-cluster://";
}

impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::SCHEME)?;
        for (i, seed) in self.seeds.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}{}", seed.authority())?;
        }
        Ok(())
    }
}

impl FromStr for ClusterUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix(Self::SCHEME).ok_or_else(|| {
            format!("{text:?} is not a redis-cluster:// URL (e.g. redis-cluster://127.0.0.1:7000)")
        })?;
        let seeds = match rest.split_once('/') {
            Some((seeds, "" | "0")) => seeds,
            Some((_, db)) => {
                return Err(format!(
                    "{text:?}: a Redis Cluster has database 0 only, not {db:?}: drop /{db}"
                ));
            }
            None => rest,
        };
        let seeds = seeds
            .split(',')
            .map(|seed| {
                if seed.is_empty() {
                    return Err(format!("{text:?}: an empty seed node between commas"));
                }
                format!("redis://{seed}")
                    .parse::<StoreUrl>()
                    .map_err(|reason| format!("{text:?}: seed {seed:?}: {reason}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(ClusterUrl { seeds })
    }
}

/// Where the store lives: `redis://HOST:PORT[/DB]` (port 6379 and db 0 when
/// left out). Also one node of a cluster (db 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// The hash slot of the key the commands are about, which a Redis
    /// Cluster routes them by ([`Request::routed_by`]); `None` for
    /// commands about no key, which any node answers. One server ignores
    /// it. A routed request's commands are all on that slot, and each is
    /// safe to send again when a node redirects it (a command redirected
    /// was not run; kv's `HELLO` around a command is idempotent).
    pub slot: Option<u16>,
}

impl Request {
    /// One command from its arguments, routed by no key.
    pub fn command(args: &[&[u8]]) -> Request {
        let mut commands = Vec::new();
        encode(args, &mut commands);
        Request::new(commands, 1)
    }

    /// Encoded `commands` that get `replies` replies, routed by no key.
    pub fn new(commands: Vec<u8>, replies: usize) -> Request {
        Request {
            commands,
            replies,
            slot: None,
        }
    }

    /// The same request, routed by `key` in a cluster (its hash slot).
    pub fn routed_by(self, key: &[u8]) -> Request {
        Request {
            slot: Some(cluster::slot(key)),
            ..self
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
    encode_words(args.iter().copied(), out);
}

/// [`encode`] from an iterator of words (a parsed request's, with no
/// `Vec` of them made per command).
pub fn encode_words<'a>(words: impl ExactSizeIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(digits.format(words.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for word in words {
        out.push(b'$');
        out.extend_from_slice(digits.format(word.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(word);
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
    fn cluster_urls_name_seed_nodes_and_database_0() {
        let redis: Redis = "redis-cluster://10.0.0.1:7000,[::1]:7001,h/0"
            .parse()
            .unwrap();
        let Redis::Cluster(cluster) = &redis else {
            panic!("{redis:?} is a cluster")
        };
        let seeds: Vec<String> = cluster.seeds.iter().map(StoreUrl::authority).collect();
        assert_eq!(seeds, ["10.0.0.1:7000", "[::1]:7001", "h:6379"]);
        assert!(cluster.seeds.iter().all(|seed| seed.db == 0));
        assert_eq!(redis.db(), 0);
        assert!(redis.is_cluster());
        assert_eq!(
            redis.to_string(),
            "redis-cluster://10.0.0.1:7000,[::1]:7001,h:6379"
        );
        let server: Redis = "redis://h:1/4".parse().unwrap();
        assert_eq!(server.db(), 4);
        assert!(!server.is_cluster());
        for (text, says) in [
            ("redis-cluster://h:1/2", "database 0 only"),
            ("redis-cluster://h:1,,h:2", "an empty seed node"),
            ("redis-cluster://", "an empty seed node"),
            ("redis-cluster://h:1,h:0", "seed \"h:0\""),
            ("redis-cluster://u:p@h:1", "passwords"),
            ("redis-clustr://h:1", "not a redis:// URL"),
        ] {
            let error = text.parse::<Redis>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn requests_are_routed_by_their_key_slot() {
        let get = Request::command(&[b"GET", b"{user1}.name"]);
        assert_eq!(get.slot, None);
        assert_eq!(
            get.routed_by(b"{user1}.name").slot,
            Some(cluster::slot(b"user1"))
        );
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
