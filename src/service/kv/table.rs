//! The command table: every command kv knows, with Redis' arity, and
//! what runs it. Looking a name up is one hash lookup of its lowercase
//! form (built on the stack).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::reply::Reply;
use super::resp::Request;
use super::{hashes, keys, lists, sets, strings, zsets};
use crate::store::Tx;

/// A data command: runs on the keyspace under the store's lock.
pub(crate) type Handler = fn(&mut Tx<'_>, &Request<'_>, &mut Reply<'_>);

/// What runs a command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// On the keyspace.
    Data(Handler),
    /// On the connection's own state (`super::conn`).
    Conn(Conn),
}

/// The commands about the connection or the server, not the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    Ping,
    Echo,
    Quit,
    Hello,
    Client,
    Select,
    Reset,
    Time,
    Info,
    Config,
    Command,
    RandomKey,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
    Publish,
    PubSub,
}

impl Conn {
    /// Which kind of subscription a (P)(UN)SUBSCRIBE is about.
    pub(crate) fn subscription_kind(self) -> crate::broker::Kind {
        match self {
            Conn::PSubscribe | Conn::PUnsubscribe => crate::broker::Kind::Pattern,
            _ => crate::broker::Kind::Channel,
        }
    }
}

/// One command.
#[derive(Debug)]
pub(crate) struct Command {
    /// Its name, lowercase, as error texts show it.
    pub(crate) name: &'static str,
    /// Redis' arity: `n` exactly n words, `-n` at least n.
    pub(crate) arity: i32,
    pub(crate) kind: Kind,
}

impl Command {
    /// True when `words` fit the arity.
    pub(crate) fn arity_ok(&self, words: usize) -> bool {
        match usize::try_from(self.arity) {
            Ok(exact) => words == exact,
            Err(_) => words >= self.arity.unsigned_abs() as usize,
        }
    }
}

macro_rules! commands {
    ($($name:literal $arity:literal $kind:expr;)*) => {
        /// Every command, in the order `COMMAND` lists them.
        pub(crate) const COMMANDS: &[Command] = &[
            $(Command { name: $name, arity: $arity, kind: $kind },)*
        ];
    };
}

use Kind::{Conn as C, Data as D};

commands! {
    "get" 2 D(strings::get);
    "set" -3 D(strings::set);
    "setnx" 3 D(strings::setnx);
    "setex" 4 D(strings::setex);
    "psetex" 4 D(strings::psetex);
    "getset" 3 D(strings::getset);
    "getdel" 2 D(strings::getdel);
    "getex" -2 D(strings::getex);
    "mget" -2 D(strings::mget);
    "mset" -3 D(strings::mset);
    "msetnx" -3 D(strings::msetnx);
    "incr" 2 D(strings::incr);
    "decr" 2 D(strings::decr);
    "incrby" 3 D(strings::incrby);
    "decrby" 3 D(strings::decrby);
    "incrbyfloat" 3 D(strings::incrbyfloat);
    "append" 3 D(strings::append);
    "strlen" 2 D(strings::strlen);
    "getrange" 4 D(strings::getrange);
    "setrange" 4 D(strings::setrange);
    "del" -2 D(keys::del);
    "unlink" -2 D(keys::del);
    "exists" -2 D(keys::exists);
    "type" 2 D(keys::type_);
    "expire" -3 D(keys::expire);
    "pexpire" -3 D(keys::pexpire);
    "expireat" -3 D(keys::expireat);
    "pexpireat" -3 D(keys::pexpireat);
    "ttl" 2 D(keys::ttl);
    "pttl" 2 D(keys::pttl);
    "expiretime" 2 D(keys::expiretime);
    "pexpiretime" 2 D(keys::pexpiretime);
    "persist" 2 D(keys::persist);
    "rename" 3 D(keys::rename);
    "renamenx" 3 D(keys::renamenx);
    "keys" 2 D(keys::keys);
    "scan" -2 D(keys::scan);
    "randomkey" 1 C(Conn::RandomKey);
    "dbsize" 1 D(keys::dbsize);
    "flushdb" -1 D(keys::flushdb);
    "flushall" -1 D(keys::flushdb);
    "lpush" -3 D(lists::lpush);
    "rpush" -3 D(lists::rpush);
    "lpushx" -3 D(lists::lpushx);
    "rpushx" -3 D(lists::rpushx);
    "lpop" -2 D(lists::lpop);
    "rpop" -2 D(lists::rpop);
    "lrange" 4 D(lists::lrange);
    "llen" 2 D(lists::llen);
    "lindex" 3 D(lists::lindex);
    "lset" 4 D(lists::lset);
    "lrem" 4 D(lists::lrem);
    "ltrim" 4 D(lists::ltrim);
    "hset" -4 D(hashes::hset);
    "hmset" -4 D(hashes::hmset);
    "hsetnx" 4 D(hashes::hsetnx);
    "hget" 3 D(hashes::hget);
    "hmget" -3 D(hashes::hmget);
    "hdel" -3 D(hashes::hdel);
    "hgetall" 2 D(hashes::hgetall);
    "hkeys" 2 D(hashes::hkeys);
    "hvals" 2 D(hashes::hvals);
    "hlen" 2 D(hashes::hlen);
    "hexists" 3 D(hashes::hexists);
    "hstrlen" 3 D(hashes::hstrlen);
    "hincrby" 4 D(hashes::hincrby);
    "hincrbyfloat" 4 D(hashes::hincrbyfloat);
    "sadd" -3 D(sets::sadd);
    "srem" -3 D(sets::srem);
    "smembers" 2 D(sets::smembers);
    "sismember" 3 D(sets::sismember);
    "smismember" -3 D(sets::smismember);
    "scard" 2 D(sets::scard);
    "spop" -2 D(sets::spop);
    "srandmember" -2 D(sets::srandmember);
    "sinter" -2 D(sets::sinter);
    "sunion" -2 D(sets::sunion);
    "sdiff" -2 D(sets::sdiff);
    "zadd" -4 D(zsets::zadd);
    "zincrby" 4 D(zsets::zincrby);
    "zrem" -3 D(zsets::zrem);
    "zscore" 3 D(zsets::zscore);
    "zcard" 2 D(zsets::zcard);
    "zrank" 3 D(zsets::zrank);
    "zrevrank" 3 D(zsets::zrevrank);
    "zcount" 4 D(zsets::zcount);
    "zrange" -4 D(zsets::zrange);
    "zrangebyscore" -4 D(zsets::zrangebyscore);
    "zrevrangebyscore" -4 D(zsets::zrevrangebyscore);
    "zrevrange" -4 D(zsets::zrevrange);
    "zpopmin" -2 D(zsets::zpopmin);
    "zpopmax" -2 D(zsets::zpopmax);
    "ping" -1 C(Conn::Ping);
    "echo" 2 C(Conn::Echo);
    "quit" -1 C(Conn::Quit);
    "hello" -1 C(Conn::Hello);
    "client" -2 C(Conn::Client);
    "select" 2 C(Conn::Select);
    "reset" 1 C(Conn::Reset);
    "time" 1 C(Conn::Time);
    "info" -1 C(Conn::Info);
    "config" -2 C(Conn::Config);
    "command" -1 C(Conn::Command);
    "multi" 1 C(Conn::Multi);
    "exec" 1 C(Conn::Exec);
    "discard" 1 C(Conn::Discard);
    "watch" -2 C(Conn::Watch);
    "unwatch" 1 C(Conn::Unwatch);
    "subscribe" -2 C(Conn::Subscribe);
    "unsubscribe" -1 C(Conn::Unsubscribe);
    "psubscribe" -2 C(Conn::PSubscribe);
    "punsubscribe" -1 C(Conn::PUnsubscribe);
    "publish" 3 C(Conn::Publish);
    "pubsub" -2 C(Conn::PubSub);
}

/// The command named `name` (any case).
pub(crate) fn lookup(name: &[u8]) -> Option<&'static Command> {
    static BY_NAME: OnceLock<HashMap<&'static [u8], &'static Command>> = OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| COMMANDS.iter().map(|c| (c.name.as_bytes(), c)).collect());
    let mut lower = [0u8; 16];
    let lower = lower.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    by_name.get(&*lower).copied()
}
