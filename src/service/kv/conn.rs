//! The commands about the connection and the server rather than the data:
//! HELLO, CLIENT, SELECT, TIME, INFO, CONFIG, COMMAND. What they need of
//! the connection comes in [`Session`].

use std::time::SystemTime;

use super::args::{self, is};
use super::keys::glob;
use super::reply::{Reply, printable};
use super::resp::{Request, parse_i64};
use super::table::{COMMANDS, Kind};
use crate::store::{Fsync, Tx};

/// The Redis version kv's commands follow (what `HELLO` and `INFO` say).
pub(crate) const REDIS_VERSION: &str = "7.0.15";

/// What a connection knows of itself.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// `CLIENT ID`: unique per server process.
    pub(crate) id: u64,
    /// `CLIENT SETNAME`.
    pub(crate) name: Option<Vec<u8>>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub(crate) lib: (Option<Vec<u8>>, Option<Vec<u8>>),
    /// The client's address, as `CLIENT INFO` shows it.
    pub(crate) peer: String,
    /// Its pub/sub subscriptions.
    pub(crate) pubsub: super::pubsub::Subscriber,
}

/// A name `CLIENT SETNAME` accepts: printable, no spaces (Redis' rule).
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: returns the new
/// protocol (true for RESP3) when it succeeds.
pub(crate) fn hello(
    session: &mut Session,
    resp3: bool,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) -> Option<bool> {
    let mut resp3 = resp3;
    if req.len() >= 2 {
        match parse_i64(req.arg(1)) {
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            Some(_) => {
                out.error("NOPROTO unsupported protocol version");
                return None;
            }
            None => {
                out.error("ERR Protocol version is not an integer or out of range");
                return None;
            }
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < req.len() {
        if is(req, i, "AUTH") && i + 2 < req.len() {
            i += 3; // no passwords here: any user and password pass
        } else if is(req, i, "SETNAME") && i + 1 < req.len() {
            if !valid_name(req.arg(i + 1)) {
                out.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
                return None;
            }
            name = Some(req.arg(i + 1).to_vec());
            i += 2;
        } else {
            out.error_parts(&[b"ERR Syntax error in HELLO option '", req.arg(i), b"'"]);
            return None;
        }
    }
    if let Some(name) = name {
        session.name = Some(name);
    }
    out.resp3 = resp3;
    out.map(7);
    for (field, value) in [("server", "redis"), ("version", REDIS_VERSION)] {
        out.bulk(field.as_bytes());
        out.bulk(value.as_bytes());
    }
    out.bulk(b"proto");
    out.int(if resp3 { 3 } else { 2 });
    out.bulk(b"id");
    out.int(session.id as i64);
    for (field, value) in [("mode", "standalone"), ("role", "master")] {
        out.bulk(field.as_bytes());
        out.bulk(value.as_bytes());
    }
    out.bulk(b"modules");
    out.array(0);
    Some(resp3)
}

fn client_line(session: &Session) -> Vec<u8> {
    let mut line =
        format!("id={} addr={} laddr= fd=0 name=", session.id, session.peer).into_bytes();
    printable(session.name.as_deref().unwrap_or_default(), &mut line);
    line.extend_from_slice(b" db=0 lib-name=");
    printable(session.lib.0.as_deref().unwrap_or_default(), &mut line);
    line.extend_from_slice(b" lib-ver=");
    printable(session.lib.1.as_deref().unwrap_or_default(), &mut line);
    line.extend_from_slice(b"\n");
    line
}

pub(crate) fn client(session: &mut Session, req: &Request<'_>, out: &mut Reply<'_>) {
    let mut buf = [0; 16];
    match (args::upper(req.arg(1), &mut buf), req.len()) {
        (b"ID", 2) => out.int(session.id as i64),
        (b"GETNAME", 2) => match &session.name {
            Some(name) => out.bulk(name),
            None => out.null(),
        },
        (b"SETNAME", 3) => {
            let name = req.arg(2);
            if !valid_name(name) {
                return out.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            session.name = (!name.is_empty()).then(|| name.to_vec());
            out.ok();
        }
        (b"SETINFO", 4) => {
            let value = Some(req.arg(3).to_vec());
            if is(req, 2, "LIB-NAME") {
                session.lib.0 = value;
            } else if is(req, 2, "LIB-VER") {
                session.lib.1 = value;
            } else {
                return out.error_parts(&[b"ERR Unrecognized option '", req.arg(2), b"'"]);
            }
            out.ok();
        }
        (b"INFO", 2) => out.bulk(&client_line(session)),
        (b"LIST", _) => out.bulk(&client_line(session)),
        (b"ID" | b"GETNAME" | b"SETNAME" | b"SETINFO" | b"INFO", _) => {
            let name = String::from_utf8_lossy(req.arg(1)).to_ascii_lowercase();
            out.error(&format!(
                "ERR wrong number of arguments for 'client|{name}' command"
            ));
        }
        _ => unknown_subcommand(req.arg(1), "CLIENT", out),
    }
}

pub(crate) fn unknown_subcommand(sub: &[u8], command: &str, out: &mut Reply<'_>) {
    out.error_parts(&[
        b"ERR unknown subcommand '",
        sub,
        b"'. Try ",
        command.as_bytes(),
        b" HELP.",
    ]);
}

pub(crate) fn select(req: &Request<'_>, out: &mut Reply<'_>) {
    match parse_i64(req.arg(1)) {
        Some(0) => out.ok(),
        Some(_) => out.error("ERR DB index is out of range"),
        None => out.not_integer(),
    }
}

pub(crate) fn time(wall: SystemTime, out: &mut Reply<'_>) {
    let micros = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    out.array(2);
    out.bulk_int((micros / 1_000_000) as i64);
    out.bulk_int((micros % 1_000_000) as i64);
}

/// `CONFIG GET`: the settings clients and tools ask for, answered for
/// this server; `CONFIG RESETSTAT` is accepted; `SET` is refused.
pub(crate) fn config(
    policy: Option<Fsync>,
    max_bulk: usize,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) {
    if is(req, 1, "RESETSTAT") && req.len() == 2 {
        return out.ok();
    }
    if !is(req, 1, "GET") {
        return unknown_subcommand(req.arg(1), "CONFIG", out);
    }
    if req.len() < 3 {
        return out.error("ERR wrong number of arguments for 'config|get' command");
    }
    let appendfsync = match policy {
        Some(Fsync::Always) => "always",
        Some(Fsync::Everysec) | None => "everysec",
        Some(Fsync::No) => "no",
    };
    let max_bulk = max_bulk.to_string();
    // Only what is true of this server (no `maxclients`: --max-conns is
    // the drivers' business, not kv's).
    let settings: [(&str, &str); 7] = [
        ("save", ""),
        ("appendonly", if policy.is_some() { "yes" } else { "no" }),
        ("appendfsync", appendfsync),
        ("databases", "1"),
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("proto-max-bulk-len", &max_bulk),
    ];
    let found: Vec<&(&str, &str)> = settings
        .iter()
        .filter(|(name, _)| {
            req.args_from(2)
                .any(|p| glob(&p.to_ascii_lowercase(), name.as_bytes()))
        })
        .collect();
    out.map(found.len());
    for (name, value) in found {
        out.bulk(name.as_bytes());
        out.bulk(value.as_bytes());
    }
}

/// `COMMAND`, `COMMAND COUNT|LIST|INFO|DOCS`: what redis-cli and client
/// libraries ask. DOCS is empty (redis-cli 7 then uses its built-in help).
pub(crate) fn command(req: &Request<'_>, out: &mut Reply<'_>) {
    let info = |out: &mut Reply<'_>, c: &super::table::Command| {
        out.array(6);
        out.bulk(c.name.as_bytes());
        out.int(i64::from(c.arity));
        out.array(0);
        let keyed = matches!(c.kind, Kind::Data(_)) && c.arity.unsigned_abs() > 1;
        out.int(i64::from(keyed));
        out.int(i64::from(keyed));
        out.int(i64::from(keyed));
    };
    if req.len() == 1 {
        out.array(COMMANDS.len());
        return COMMANDS.iter().for_each(|c| info(out, c));
    }
    match args::upper(req.arg(1), &mut [0; 16]) {
        b"COUNT" => out.int(COMMANDS.len() as i64),
        b"LIST" => {
            out.array(COMMANDS.len());
            COMMANDS.iter().for_each(|c| out.bulk(c.name.as_bytes()));
        }
        b"DOCS" => out.map(0),
        b"INFO" => {
            out.array(req.len() - 2);
            for name in req.args_from(2) {
                match super::table::lookup(name) {
                    Some(c) => info(out, c),
                    None => out.null_array(),
                }
            }
        }
        _ => unknown_subcommand(req.arg(1), "COMMAND", out),
    }
}

/// `INFO [section...]`: the sections clients read, in Redis' field names.
pub(crate) fn info(tx: &mut Tx<'_>, policy: Option<Fsync>, req: &Request<'_>, out: &mut Reply<'_>) {
    let wanted = |section: &str| {
        req.len() == 1
            || req
                .args_from(1)
                .any(|s| s.eq_ignore_ascii_case(section.as_bytes()) || is_all(s))
    };
    let mut text = String::new();
    if wanted("server") {
        text.push_str(&format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
             os:{}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\n\
             server_time_usec:{}\r\nexecutable:readyloop\r\n\r\n",
            std::env::consts::OS,
            std::process::id(),
            tx.now() * 1000,
        ));
    }
    if wanted("clients") {
        // No blocking commands: nobody is ever blocked.
        text.push_str("# Clients\r\nblocked_clients:0\r\n\r\n");
    }
    if wanted("memory") {
        text.push_str("# Memory\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n");
    }
    if wanted("persistence") {
        let aof = i32::from(policy.is_some());
        text.push_str(&format!(
            "# Persistence\r\nloading:0\r\naof_enabled:{aof}\r\nrdb_changes_since_last_save:0\r\n\r\n"
        ));
    }
    if wanted("stats") {
        // No eviction (maxmemory 0); the counters are the server's /metrics.
        text.push_str("# Stats\r\nevicted_keys:0\r\n\r\n");
    }
    if wanted("keyspace") {
        text.push_str("# Keyspace\r\n");
        let keys = tx.db().len();
        if keys > 0 {
            let expires = tx.db().expiring();
            text.push_str(&format!("db0:keys={keys},expires={expires},avg_ttl=0\r\n"));
        }
    }
    out.bulk(text.as_bytes());
}

fn is_all(section: &[u8]) -> bool {
    [&b"all"[..], b"everything", b"default"]
        .iter()
        .any(|s| section.eq_ignore_ascii_case(s))
}
