//! The blocking client's Redis Cluster mode (`--store redis-cluster://`):
//! per thread, a connection per node, made when a request first needs that
//! node (each one an [`Upstream`], with its backoff and idle check), and
//! the slot table, fetched with `CLUSTER SLOTS` before the first request.
//!
//! A request goes to the master of its slot ([`Request::slot`]; a request
//! about no key to any master). `-MOVED` updates the table, sends the
//! request again to the node named, and has the whole table fetched again
//! before the next request (a slot that moved is seldom the only one);
//! `-ASK` sends `ASKING` and the request to the node named, once, and
//! keeps the table. At most [`MAX_REDIRECTS`] redirections a request,
//! then `-ERR`. A redirection is followed only to a seed or a master of
//! the cluster: a script's error reply can look like one, and must not
//! send requests where a client chose. A node that cannot be reached
//! answers that request
//! [`Answer::Unavailable`], and the table is fetched again, from another
//! node, before the next one (a replica may have taken over).
//!
//! Blocking, like its parent: never on the event loop's thread.

use std::collections::HashMap;
use std::time::Instant;

use super::{RETRY_FIRST, Upstream};
use crate::remote::cluster::{self, Redirect, SlotTable};
use crate::remote::{Answer, ClusterUrl, Request, StoreUrl, reply};

/// The most redirections one request follows before it is answered
/// `-ERR` (a table that keeps changing under it, or nodes that disagree).
pub const MAX_REDIRECTS: usize = 5;

/// One thread's client of a Redis Cluster.
#[derive(Debug)]
pub struct Client {
    url: ClusterUrl,
    table: Option<SlotTable>,
    /// The table may be out of date (a `-MOVED`, a node lost): fetched
    /// again before the next request, at most every [`RETRY_FIRST`].
    stale: bool,
    fetched_at: Option<Instant>,
    nodes: HashMap<StoreUrl, Upstream>,
}

impl Client {
    /// A client with no connection yet: the table is fetched at first use.
    pub fn new(url: ClusterUrl) -> Client {
        Client {
            url,
            table: None,
            stale: true,
            fetched_at: None,
            nodes: HashMap::new(),
        }
    }

    /// Sends `request` to the node serving its slot, following redirections.
    pub fn run(&mut self, request: &Request) -> Answer {
        let Some(mut node) = self.route(request.slot) else {
            return Answer::Unavailable;
        };
        let mut asking = false;
        for _ in 0..=MAX_REDIRECTS {
            let answer = self.send(&node, request, asking);
            let Answer::Replies(replies) = &answer else {
                self.stale = true;
                return answer;
            };
            let redirect = cluster::redirect(replies, request.replies, &node);
            let to = match &redirect {
                None => return answer,
                Some(Redirect::Moved { node, .. } | Redirect::Ask { node, .. }) => node,
            };
            if !self.is_master(to) {
                // A script's error reply that looks like one: passed on.
                log::warn!(
                    "store {}: a redirection to {:?}, no master of the cluster: not followed",
                    self.url,
                    to.authority()
                );
                return answer;
            }
            match redirect {
                None => return answer,
                Some(Redirect::Moved { slot, node: to }) => {
                    log::debug!(
                        "store: slot {slot} moved from {} to {}",
                        node.authority(),
                        to.authority()
                    );
                    if let Some(table) = &mut self.table {
                        table.moved(slot, to.clone());
                    }
                    self.stale = true;
                    (node, asking) = (to, false);
                }
                Some(Redirect::Ask { slot, node: to }) => {
                    log::debug!(
                        "store: slot {slot} migrating from {} to {}: asking it",
                        node.authority(),
                        to.authority()
                    );
                    (node, asking) = (to, true);
                }
            }
        }
        log::warn!(
            "store {}: over {MAX_REDIRECTS} redirections for one request",
            self.url
        );
        let error = b"-ERR store: too many cluster redirections\r\n";
        Answer::Replies(error.repeat(request.replies))
    }

    /// The node for `slot`: its master, or for no slot (or one no master
    /// serves: that node answers `-CLUSTERDOWN` itself) one that is
    /// connected, else the first.
    fn route(&mut self, slot: Option<u16>) -> Option<StoreUrl> {
        let due = self.fetched_at.is_none_or(|at| at.elapsed() >= RETRY_FIRST);
        if self.table.is_none() || (self.stale && due) {
            self.fetch_table();
        }
        let table = self.table.as_ref()?;
        if let Some(owner) = slot.and_then(|slot| table.owner(slot)) {
            return Some(owner.clone());
        }
        let connected = table
            .nodes()
            .iter()
            .find(|node| self.nodes.get(*node).is_some_and(Upstream::connected));
        connected.or(table.nodes().first()).cloned()
    }

    /// True if `node` is a seed or a master of the cluster: in the table,
    /// in the table fetched again, or (a master with no slot yet, one a
    /// slot is migrating to) in `CLUSTER NODES`.
    fn is_master(&mut self, node: &StoreUrl) -> bool {
        let known = |client: &Client| {
            client.url.seeds.contains(node)
                || (client.table.iter()).any(|table| table.nodes().contains(node))
        };
        if known(self) {
            return true;
        }
        self.fetch_table();
        if known(self) {
            return true;
        }
        let asked: Vec<StoreUrl> = self.table.iter().flat_map(|t| t.nodes()).cloned().collect();
        let nodes = Request::command(&[b"CLUSTER", b"NODES"]);
        for at in asked {
            if let Answer::Replies(reply) = self.send(&at, &nodes, false)
                && let Ok(masters) = cluster::masters(&reply, &at)
            {
                return masters.contains(node);
            }
        }
        false
    }

    /// Asks the known masters, then the seeds, for `CLUSTER SLOTS`; the
    /// first usable answer is the table. A node in its backoff is passed
    /// over at once, so one just lost costs nothing here.
    fn fetch_table(&mut self) {
        self.fetched_at = Some(Instant::now());
        let known = self.table.iter().flat_map(|table| table.nodes());
        let mut candidates: Vec<StoreUrl> = Vec::new();
        for node in known.chain(&self.url.seeds) {
            if !candidates.contains(node) {
                candidates.push(node.clone());
            }
        }
        let slots = Request::command(&[b"CLUSTER", b"SLOTS"]);
        for node in candidates {
            let Answer::Replies(reply) = self.send(&node, &slots, false) else {
                continue;
            };
            match SlotTable::parse(&reply, &node) {
                Ok(table) => {
                    self.table = Some(table);
                    self.stale = false;
                    return;
                }
                Err(error) => log::warn!("store {}: node {}: {error}", self.url, node.authority()),
            }
        }
    }

    /// Sends `request` to `node` on this thread's connection to it; with
    /// `asking`, each command after an `ASKING` (which holds for the next
    /// command only), whose `+OK`s are taken out of the replies.
    fn send(&mut self, node: &StoreUrl, request: &Request, asking: bool) -> Answer {
        let upstream = self.nodes.entry(node.clone()).or_insert_with(Upstream::new);
        if !asking {
            return upstream.request(node, request);
        }
        let asking = Request::command(&[b"ASKING"]).commands;
        let mut commands = Vec::with_capacity(request.commands.len() + asking.len() * 2);
        // Commands are RESP arrays: `reply::len` frames them too.
        for command in each_reply(&request.commands, request.replies) {
            commands.extend_from_slice(&asking);
            commands.extend_from_slice(command);
        }
        let asked = Request::new(commands, request.replies * 2);
        match upstream.request(node, &asked) {
            Answer::Replies(replies) => {
                let mut kept = Vec::with_capacity(replies.len());
                for reply in each_reply(&replies, asked.replies).skip(1).step_by(2) {
                    kept.extend_from_slice(reply);
                }
                Answer::Replies(kept)
            }
            unavailable => unavailable,
        }
    }
}

/// The first `count` whole RESP values in `buf`, one by one (fewer if
/// `buf` holds fewer).
fn each_reply(mut buf: &[u8], count: usize) -> impl Iterator<Item = &[u8]> {
    (0..count).map_while(move |_| {
        let end = reply::len(buf, 1).ok()??;
        let (reply, rest) = buf.split_at(end);
        buf = rest;
        Some(reply)
    })
}

/// The start-up check: a seed node answers `CLUSTER SLOTS` with every one
/// of the 16384 slots served, and says `cluster_state:ok` (with `wait`,
/// each seed tried again with backoff until one does). The client it
/// returns has that table, for the start-up requests; it is dropped before
/// serving, so no thread or child inherits its connections.
pub fn reach(url: &ClusterUrl, wait: bool) -> Result<Client, String> {
    let mut backoff = RETRY_FIRST;
    loop {
        let mut failures = Vec::new();
        for seed in &url.seeds {
            match check_seed(seed) {
                Ok(table) => {
                    let mut client = Client::new(url.clone());
                    (client.table, client.stale) = (Some(table), false);
                    client.fetched_at = Some(Instant::now());
                    return Ok(client);
                }
                Err(error) => failures.push(format!("{}: {error}", seed.authority())),
            }
        }
        let failure = failures.join("; ");
        if !wait {
            return Err(failure);
        }
        log::warn!("store {url}: {failure}: trying again in {backoff:?} (--store-wait)");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(super::START_RETRY_MAX);
    }
}

/// `seed`'s slot table, if it serves every slot and every master says the
/// cluster is up (`cluster_state:ok` in `CLUSTER INFO`: each node decides
/// for itself, and one that has not yet answers `-CLUSTERDOWN`).
fn check_seed(seed: &StoreUrl) -> Result<SlotTable, String> {
    let reply = ask(seed, &[b"CLUSTER", b"SLOTS"])?;
    let table = SlotTable::parse(&reply, seed).map_err(|error| {
        if error.contains("cluster support disabled") {
            format!("{error} (a single Redis is --store redis://HOST:PORT)")
        } else {
            error
        }
    })?;
    let check = format!(
        "`redis-cli --cluster check {}` says what is wrong",
        seed.authority()
    );
    let gaps = table.uncovered();
    if !gaps.is_empty() {
        return Err(format!(
            "the cluster does not serve every slot: {} have no master ({check})",
            ranges(&gaps)
        ));
    }
    for master in table.nodes() {
        let info = ask(master, &[b"CLUSTER", b"INFO"])
            .map_err(|error| format!("master {}: {error}", master.authority()))?;
        let info = String::from_utf8_lossy(&info);
        let state =
            (info.lines().map(str::trim_end)).find(|line| line.starts_with("cluster_state:"));
        if state != Some("cluster_state:ok") {
            return Err(format!(
                "master {}: the cluster is not up there ({}) ({check})",
                master.authority(),
                state
                    .unwrap_or("CLUSTER INFO has no cluster_state")
                    .escape_debug()
            ));
        }
    }
    Ok(table)
}

/// One command to `node`, on a connection of its own: its reply.
fn ask(node: &StoreUrl, words: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut stream = super::connect(node).map_err(|error| error.to_string())?;
    super::exchange(&mut stream, &Request::command(words)).map_err(|error| error.to_string())
}

/// `0-99, 200, 300-310` (the first few).
fn ranges(gaps: &[(u16, u16)]) -> String {
    let mut text: Vec<String> = gaps
        .iter()
        .take(5)
        .map(|&(first, last)| match first == last {
            true => format!("slot {first}"),
            false => format!("slots {first}-{last}"),
        })
        .collect();
    if gaps.len() > 5 {
        text.push(format!("and {} more ranges", gaps.len() - 5));
    }
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A "node" on one connection: `answer` gives the reply to each
    /// command (whole RESP arrays); the commands it saw come back at the end.
    fn fake_node(
        mut answer: impl FnMut(&[u8], u16) -> Vec<u8> + Send + 'static,
    ) -> (u16, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let node = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let (mut buf, mut seen) = (Vec::new(), Vec::new());
            let mut chunk = [0; 4096];
            loop {
                while let Ok(Some(end)) = reply::len(&buf, 1) {
                    let command: Vec<u8> = buf.drain(..end).collect();
                    stream.write_all(&answer(&command, port)).unwrap();
                    seen.push(command);
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return seen,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        (port, node)
    }

    fn has(command: &[u8], word: &[u8]) -> bool {
        command.windows(word.len()).any(|w| w == word)
    }

    #[test]
    fn redirections_are_bounded_then_an_error_reply() {
        let (port, node) = fake_node(|command, port| {
            if has(command, b"SELECT") {
                b"+OK\r\n".to_vec()
            } else if has(command, b"SLOTS") {
                format!("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n")
                    .into_bytes()
            } else {
                // Always elsewhere, and that is here: a table that never settles.
                format!("-MOVED 5 127.0.0.1:{port}\r\n").into_bytes()
            }
        });
        let url: ClusterUrl = format!("redis-cluster://127.0.0.1:{port}").parse().unwrap();
        let mut client = Client::new(url);
        let get = Request::command(&[b"GET", b"k"]).routed_by(b"k");
        assert_eq!(
            client.run(&get),
            Answer::Replies(b"-ERR store: too many cluster redirections\r\n".to_vec())
        );
        drop(client);
        let seen = node.join().unwrap();
        let gets = seen.iter().filter(|c| has(c, b"GET")).count();
        assert_eq!(
            gets,
            MAX_REDIRECTS + 1,
            "the first try and each redirection"
        );
    }

    #[test]
    fn ask_sends_asking_before_each_command_and_keeps_the_table() {
        // The node the slot is migrating to: GET is served only right
        // after ASKING, as Redis does (the flag holds for one command).
        let mut after_asking = false;
        let (target, asked) = fake_node(move |command, port| {
            let reply = if has(command, b"ASKING") {
                b"+OK\r\n".to_vec()
            } else if has(command, b"SELECT") || has(command, b"HELLO") {
                b"+hello\r\n".to_vec()
            } else if after_asking {
                b"$5\r\nthere\r\n".to_vec()
            } else {
                format!("-MOVED 7 127.0.0.1:{port}\r\n").into_bytes()
            };
            after_asking = has(command, b"ASKING");
            reply
        });
        let (port, node) = fake_node(move |command, port| {
            if has(command, b"SELECT") || has(command, b"HELLO") {
                b"+OK\r\n".to_vec()
            } else if has(command, b"SLOTS") {
                format!("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n")
                    .into_bytes()
            } else if has(command, b"NODES") {
                // The target is a master with no slot yet.
                let text = format!(
                    "a :{port}@1 myself,master - 0 0 1 connected 0-16383\n\
                     b 127.0.0.1:{target}@2 master - 0 0 2 connected\n"
                );
                format!("${}\r\n{text}\r\n", text.len()).into_bytes()
            } else if has(command, b"spoof") {
                // As a script's error reply could say.
                b"-MOVED 7 127.0.0.1:1\r\n".to_vec()
            } else {
                format!("-ASK 7 127.0.0.1:{target}\r\n").into_bytes()
            }
        });
        let url: ClusterUrl = format!("redis-cluster://127.0.0.1:{port}").parse().unwrap();
        let mut client = Client::new(url);
        // As the kv proxy sends a RESP3 client's command.
        let mut commands = Request::command(&[b"HELLO", b"3"]).commands;
        commands.extend_from_slice(&Request::command(&[b"GET", b"k"]).commands);
        commands.extend_from_slice(&Request::command(&[b"HELLO", b"2"]).commands);
        let get = Request::new(commands, 3).routed_by(b"k");
        assert_eq!(
            client.run(&get),
            Answer::Replies(b"+hello\r\n$5\r\nthere\r\n+hello\r\n".to_vec())
        );
        let owner = client.table.as_ref().unwrap().owner(7).unwrap().port;
        assert_eq!(owner, port, "ASK changes no table");
        // A redirection to no master of the cluster is not followed.
        let spoof = Request::command(&[b"EVAL", b"spoof", b"1", b"k"]).routed_by(b"k");
        assert_eq!(
            client.run(&spoof),
            Answer::Replies(b"-MOVED 7 127.0.0.1:1\r\n".to_vec())
        );
        drop(client);
        let at_target = asked.join().unwrap();
        let names: Vec<bool> = at_target.iter().map(|c| has(c, b"ASKING")).collect();
        assert_eq!(
            names,
            [false, true, false, true, false, true, false],
            "{at_target:?}"
        );
        let at_source: Vec<String> = (node.join().unwrap().iter())
            .map(|command| command.escape_ascii().to_string())
            .collect();
        // SELECT, CLUSTER SLOTS, the three commands, CLUSTER SLOTS and
        // NODES to check the target is a master; the spoof, SLOTS and
        // NODES again.
        assert_eq!(at_source.len(), 10, "{at_source:#?}");
    }
}
