//! kv against the real Redis: the same seeded random sequence of commands
//! (every supported command; wrong types, bad arguments, missing keys,
//! binary values, transactions) goes to a `redis-server` and to kv, and
//! the replies are compared byte for byte. Replies whose order Redis does
//! not define (KEYS, SMEMBERS, HGETALL...) are compared as multisets, and
//! random or time-dependent ones (SRANDMEMBER with a negative count,
//! RANDOMKEY, TTL) by shape. Half the run speaks RESP2, half RESP3.

use readyloop::server::Mode;

use crate::kv_util::{Client, RedisServer, Value};
use crate::util::TestServer;

/// Commands per protocol version (two versions: over 10,000 in all).
const COMMANDS: usize = 6_000;
/// The seed; a failure names it with the command's index.
const SEED: u64 = 0x5eed_0012;

/// How two replies must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Byte for byte.
    Exact,
    /// The same items in any order (pairs kept together for maps).
    Unordered,
    /// The same kind of reply (and null-ness).
    Shape,
    /// An integer TTL: equal when negative, within 2 when not.
    Ttl,
    /// INCRBYFLOAT: Redis adds in `long double`, kv in `f64`, so big
    /// magnitudes differ in their last digits. The same kind of reply; then
    /// both are set to Redis' value, so the data stays the same.
    Float,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "k1", "k2", "k3", "list", "hash", "set", "zset", "s:1", "n", "\u{e9}",
];
const VALUES: &[&str] = &[
    "",
    "a",
    "b",
    "c",
    "hello world",
    "0",
    "1",
    "-1",
    "10",
    "3.5",
    "-2.25",
    "abc",
    "9223372036854775807",
    "-9223372036854775808",
    "x y",
    "007",
];
const INTS: &[&str] = &[
    "0", "1", "-1", "2", "3", "5", "-3", "10", "-10", "100", "x", "1.5", "",
];
const FLOATS: &[&str] = &[
    "0", "1", "0.5", "-0.25", "2.5", "10", "-3", "inf", "-inf", "x", "(1", "1e2",
];

/// A value, sometimes binary.
fn value(rng: &mut Rng) -> Vec<u8> {
    if rng.below(10) == 0 {
        return vec![0, 0xff, b'\r', b'\n', rng.below(256) as u8];
    }
    rng.pick(VALUES).as_bytes().to_vec()
}

/// One random command and how to compare its replies.
fn command(rng: &mut Rng) -> (Vec<Vec<u8>>, Compare) {
    let key = |rng: &mut Rng| rng.pick(KEYS).as_bytes().to_vec();
    let s = |text: &str| text.as_bytes().to_vec();
    let int = |rng: &mut Rng| s(rng.pick(INTS));
    let float = |rng: &mut Rng| s(rng.pick(FLOATS));
    let values = |rng: &mut Rng, n: usize| (0..n).map(|_| value(rng)).collect::<Vec<_>>();
    let mut words: Vec<Vec<u8>>;
    let mut compare = Compare::Exact;
    let pick = rng.below(100);
    words = match pick {
        0..=3 => vec![s("SET"), key(rng), value(rng)],
        4 => {
            let options = [
                "NX",
                "XX",
                "GET",
                "KEEPTTL",
                "EX 100",
                "PX 100000",
                "EX 0",
                "EX x",
                "NX GET",
                "XX KEEPTTL",
                "EXAT 99999999999",
                "PXAT 99999999999999",
                "EX 10 PX 5",
            ];
            let mut w = vec![s("SET"), key(rng), value(rng)];
            w.extend(rng.pick(&options).split(' ').map(s));
            w
        }
        5..=7 => vec![s("GET"), key(rng)],
        8 => vec![s("GETSET"), key(rng), value(rng)],
        9 => vec![s("GETDEL"), key(rng)],
        10 => vec![s("MGET"), key(rng), key(rng), key(rng)],
        11 => vec![s("MSET"), key(rng), value(rng), key(rng), value(rng)],
        12 => vec![s("MSETNX"), key(rng), value(rng), key(rng), value(rng)],
        13 => vec![s("SETNX"), key(rng), value(rng)],
        14 => vec![s(rng.pick(&["INCR", "DECR"])), key(rng)],
        15 => vec![s(rng.pick(&["INCRBY", "DECRBY"])), key(rng), int(rng)],
        16 => {
            compare = Compare::Float;
            let by = rng.pick(&["0.5", "-0.25", "3", "x", "10"]);
            vec![s("INCRBYFLOAT"), key(rng), s(by)]
        }
        17 => vec![s("APPEND"), key(rng), value(rng)],
        18 => vec![s("STRLEN"), key(rng)],
        19 => vec![s("GETRANGE"), key(rng), int(rng), int(rng)],
        20 => vec![
            s("SETRANGE"),
            key(rng),
            s(rng.pick(&["0", "1", "3", "-1", "x"])),
            value(rng),
        ],
        21 => vec![
            s(rng.pick(&["DEL", "UNLINK", "EXISTS"])),
            key(rng),
            key(rng),
        ],
        22 => vec![s("TYPE"), key(rng)],
        23 => {
            let mut w = vec![s(rng.pick(&["EXPIRE", "PEXPIRE"])), key(rng)];
            w.push(s(rng.pick(&["100", "100000", "0", "-1", "x"])));
            if rng.below(3) == 0 {
                w.push(s(rng.pick(&["NX", "XX", "GT", "LT", "NX XX", "BAD"])));
            }
            let last = w.pop().unwrap();
            w.extend(String::from_utf8(last).unwrap().split(' ').map(s));
            w
        }
        24 => vec![
            s(rng.pick(&["EXPIREAT", "PEXPIREAT"])),
            key(rng),
            s(rng.pick(&["1", "0", "99999999999"])),
        ],
        25 => {
            compare = Compare::Ttl;
            vec![s(rng.pick(&["TTL", "PTTL"])), key(rng)]
        }
        26 => vec![s("PERSIST"), key(rng)],
        27 => vec![s(rng.pick(&["RENAME", "RENAMENX"])), key(rng), key(rng)],
        28 => {
            compare = Compare::Unordered;
            vec![
                s("KEYS"),
                s(rng.pick(&["*", "k*", "?", "[ks]*", "*:*", "nomatch"])),
            ]
        }
        29 => vec![s("DBSIZE")],
        30..=32 => {
            let mut w = vec![
                s(rng.pick(&["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"])),
                key(rng),
            ];
            let n = 1 + rng.below(3);
            w.extend(values(rng, n));
            w
        }
        33 | 34 => {
            let mut w = vec![s(rng.pick(&["LPOP", "RPOP"])), key(rng)];
            if rng.below(2) == 0 {
                w.push(s(rng.pick(&["0", "1", "2", "5", "-1", "x"])));
            }
            w
        }
        35 | 36 => vec![s("LRANGE"), key(rng), int(rng), int(rng)],
        37 => vec![s("LLEN"), key(rng)],
        38 => vec![s("LINDEX"), key(rng), int(rng)],
        39 => vec![s("LSET"), key(rng), int(rng), value(rng)],
        40 => vec![s("LREM"), key(rng), int(rng), value(rng)],
        41 => vec![s("LTRIM"), key(rng), int(rng), int(rng)],
        42..=44 => {
            let mut w = vec![s(rng.pick(&["HSET", "HMSET"])), key(rng)];
            for _ in 0..1 + rng.below(2) {
                w.push(value(rng));
                w.push(value(rng));
            }
            w
        }
        45 => vec![s("HSETNX"), key(rng), value(rng), value(rng)],
        46 => vec![s("HGET"), key(rng), value(rng)],
        47 => vec![s("HMGET"), key(rng), value(rng), value(rng)],
        48 => vec![s("HDEL"), key(rng), value(rng), value(rng)],
        49 => {
            compare = Compare::Unordered;
            vec![s(rng.pick(&["HGETALL", "HKEYS", "HVALS"])), key(rng)]
        }
        50 => vec![s(rng.pick(&["HLEN"])), key(rng)],
        51 => vec![s(rng.pick(&["HEXISTS", "HSTRLEN"])), key(rng), value(rng)],
        52 => vec![s("HINCRBY"), key(rng), value(rng), int(rng)],
        53 => {
            compare = Compare::Float;
            let by = rng.pick(&["0.5", "2", "-1.25", "x"]);
            vec![s("HINCRBYFLOAT"), key(rng), value(rng), s(by)]
        }
        54..=56 => {
            let mut w = vec![s("SADD"), key(rng)];
            let n = 1 + rng.below(3);
            w.extend(values(rng, n));
            w
        }
        57 => vec![s("SREM"), key(rng), value(rng), value(rng)],
        58 => {
            compare = Compare::Unordered;
            vec![s("SMEMBERS"), key(rng)]
        }
        59 => vec![s("SISMEMBER"), key(rng), value(rng)],
        60 => vec![s("SMISMEMBER"), key(rng), value(rng), value(rng)],
        61 => vec![s("SCARD"), key(rng)],
        62 => {
            // Popping everything keeps both servers' data the same.
            compare = Compare::Unordered;
            vec![s("SPOP"), key(rng), s("1000")]
        }
        63 => {
            let count = rng.pick(&["1000", "-3", "0"]);
            compare = if count == "-3" {
                Compare::Shape
            } else {
                Compare::Unordered
            };
            vec![s("SRANDMEMBER"), key(rng), s(count)]
        }
        64 => {
            compare = Compare::Unordered;
            vec![
                s(rng.pick(&["SINTER", "SUNION", "SDIFF"])),
                key(rng),
                key(rng),
            ]
        }
        65..=67 => {
            let mut w = vec![s("ZADD"), key(rng)];
            if rng.below(3) == 0 {
                let options = [
                    "NX", "XX", "GT", "LT", "CH", "INCR", "NX XX", "GT LT", "XX CH",
                ];
                w.extend(rng.pick(&options).split(' ').map(s));
            }
            for _ in 0..1 + rng.below(2) {
                w.push(float(rng));
                w.push(value(rng));
            }
            w
        }
        68 => vec![s("ZINCRBY"), key(rng), float(rng), value(rng)],
        69 => vec![s("ZREM"), key(rng), value(rng), value(rng)],
        70 => vec![s("ZSCORE"), key(rng), value(rng)],
        71 => vec![s("ZCARD"), key(rng)],
        72 => vec![s(rng.pick(&["ZRANK", "ZREVRANK"])), key(rng), value(rng)],
        73 => vec![s("ZCOUNT"), key(rng), float(rng), float(rng)],
        74 | 75 => {
            let mut w = vec![s("ZRANGE"), key(rng)];
            let by_score = rng.below(2) == 0;
            if by_score {
                w.push(float(rng));
                w.push(float(rng));
                w.push(s("BYSCORE"));
            } else {
                w.push(int(rng));
                w.push(int(rng));
            }
            if rng.below(3) == 0 {
                w.push(s("REV"));
            }
            if by_score && rng.below(3) == 0 {
                w.extend(["LIMIT", rng.pick(&["0", "1"]), rng.pick(&["1", "2", "-1"])].map(s));
            }
            if rng.below(2) == 0 {
                w.push(s("WITHSCORES"));
            }
            w
        }
        76 => {
            let mut w = vec![s(rng.pick(&["ZPOPMIN", "ZPOPMAX"])), key(rng)];
            if rng.below(2) == 0 {
                w.push(s(rng.pick(&["1", "2", "0", "-1"])));
            }
            w
        }
        77 => vec![s("PING")],
        78 => vec![s("ECHO"), value(rng)],
        79 => vec![s("SELECT"), s(rng.pick(&["0", "1", "x"]))],
        80 => {
            compare = Compare::Shape;
            vec![s("RANDOMKEY")]
        }
        81 => vec![s(rng.pick(&["GETEX"])), key(rng)],
        82 => vec![
            s("SETEX"),
            key(rng),
            s(rng.pick(&["100", "0", "x"])),
            value(rng),
        ],
        83 => vec![s("NOSUCHCOMMAND"), key(rng)],
        84 => {
            // A wrong number of arguments.
            vec![s(rng.pick(&[
                "GET", "SET", "LPUSH", "HSET", "ZADD", "INCR", "EXPIRE", "LRANGE",
            ]))]
        }
        85 => vec![s("FLUSHALL")]
            .into_iter()
            .filter(|_| rng.below(4) == 0)
            .collect(),
        87 => {
            compare = Compare::Ttl;
            vec![s(rng.pick(&["EXPIRETIME", "PEXPIRETIME"])), key(rng)]
        }
        88 => {
            let mut w = vec![
                s(rng.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"])),
                key(rng),
            ];
            w.push(float(rng));
            w.push(float(rng));
            if rng.below(2) == 0 {
                w.push(s("WITHSCORES"));
            }
            if rng.below(3) == 0 {
                w.extend(["LIMIT", rng.pick(&["0", "1"]), rng.pick(&["1", "-1"])].map(s));
            }
            w
        }
        89 => {
            let mut w = vec![s("ZREVRANGE"), key(rng), int(rng), int(rng)];
            if rng.below(2) == 0 {
                w.push(s("WITHSCORES"));
            }
            w
        }
        86 => {
            compare = Compare::Unordered;
            vec![s("SCAN"), s("0"), s("COUNT"), s("1000")]
        }
        _ => vec![s("EXISTS"), key(rng)],
    };
    if words.is_empty() {
        words = vec![s("PING")];
    }
    (words, compare)
}

/// Items sorted, recursively for maps' pairs; top-level only otherwise.
fn unordered(value: &Value) -> Value {
    match value {
        Value::Many(b'%', Some(items)) => {
            let mut pairs: Vec<Value> = items
                .chunks(2)
                .map(|pair| Value::Many(b'*', Some(pair.to_vec())))
                .collect();
            pairs.sort();
            Value::Many(b'%', Some(pairs))
        }
        // SCAN: [cursor, keys]: the cursor's value is the server's own.
        Value::Many(kind, Some(items))
            if items.len() == 2
                && matches!(items[1], Value::Many(_, Some(_)))
                && matches!(items[0], Value::Bulk(Some(_))) =>
        {
            Value::Many(*kind, Some(vec![Value::Bulk(None), unordered(&items[1])]))
        }
        Value::Many(kind, Some(items)) => {
            let mut items = items.clone();
            items.sort();
            Value::Many(*kind, Some(items))
        }
        other => other.clone(),
    }
}

fn shape(value: &Value) -> String {
    match value {
        Value::Line(kind, _) => format!("line {}", *kind as char),
        Value::Bulk(bytes) => format!("bulk {}", bytes.is_some()),
        Value::Many(kind, items) => format!(
            "many {} {:?}",
            *kind as char,
            items
                .as_ref()
                .map(|i| i.iter().map(shape).collect::<Vec<_>>())
        ),
    }
}

fn agree(compare: Compare, redis: &(Vec<u8>, Value), kv: &(Vec<u8>, Value)) -> bool {
    match compare {
        Compare::Exact => redis.0 == kv.0,
        Compare::Unordered => unordered(&redis.1) == unordered(&kv.1),
        Compare::Shape | Compare::Float => shape(&redis.1) == shape(&kv.1),
        Compare::Ttl => match (&redis.1, &kv.1) {
            (Value::Line(b':', a), Value::Line(b':', b)) => {
                let (a, b): (i64, i64) = (
                    String::from_utf8_lossy(a).parse().unwrap(),
                    String::from_utf8_lossy(b).parse().unwrap(),
                );
                a == b || (a >= 0 && b >= 0 && (a - b).abs() <= 2000)
            }
            _ => redis.0 == kv.0,
        },
    }
}

/// Sends `words` to both and compares; panics with the history on a
/// difference.
fn step(
    redis: &mut Client,
    kv: &mut Client,
    words: &[Vec<u8>],
    compare: Compare,
    history: &mut Vec<String>,
) {
    let shown: Vec<String> = words.iter().map(|w| w.escape_ascii().to_string()).collect();
    history.push(shown.join(" "));
    redis.send(words);
    kv.send(words);
    let (want, got) = (redis.reply(), kv.reply());
    if !agree(compare, &want, &got) {
        let recent = history
            .iter()
            .rev()
            .take(40)
            .rev()
            .cloned()
            .collect::<Vec<_>>();
        panic!(
            "command {} (seed {SEED:#x}) differs ({compare:?}):\n  {}\nredis: {:?}\nkv:    {:?}\nthe commands before it:\n  {}",
            history.len(),
            history.last().unwrap(),
            want.0.escape_ascii().to_string(),
            got.0.escape_ascii().to_string(),
            recent.join("\n  ")
        );
    }
    if let (Compare::Float, Value::Bulk(Some(value))) = (compare, &want.1) {
        let resync = if words[0] == b"INCRBYFLOAT" {
            vec![
                b"SET".to_vec(),
                words[1].clone(),
                value.clone(),
                b"KEEPTTL".to_vec(),
            ]
        } else {
            vec![
                b"HSET".to_vec(),
                words[1].clone(),
                words[2].clone(),
                value.clone(),
            ]
        };
        for client in [redis, kv] {
            client.send(&resync);
            client.reply();
        }
    }
}

fn run_against(resp3: bool, seed: u64) {
    // READYLOOP_KV_SEED=<n> explores other sequences.
    let seed = std::env::var("READYLOOP_KV_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(seed, |s| s ^ seed);
    let redis_server = RedisServer::start();
    let kv_server = TestServer::start(Mode::Evloop, &["kv"]);
    let mut redis = Client::connect(redis_server.addr);
    let mut kv = Client::connect(kv_server.addr("kv"));
    let mut history = Vec::new();
    let s = |t: &str| t.as_bytes().to_vec();
    // The same start: kv's store holds todo's seed tasks.
    for client in [&mut redis, &mut kv] {
        client.send(&[s("FLUSHALL")]);
        client.reply();
        if resp3 {
            client.send(&[s("HELLO"), s("3")]);
            client.reply();
        }
    }
    let mut rng = Rng(seed);
    let mut sent = 0;
    while sent < COMMANDS {
        if rng.below(40) == 0 {
            // A transaction, sometimes with a queueing error (EXECABORT).
            step(
                &mut redis,
                &mut kv,
                &[s("MULTI")],
                Compare::Exact,
                &mut history,
            );
            for _ in 0..1 + rng.below(3) {
                // Inside EXEC replies are compared exactly: only
                // commands whose replies are exact go in.
                let (words, compare) = command(&mut rng);
                let words = if compare == Compare::Exact {
                    words
                } else {
                    vec![s("PING")]
                };
                step(&mut redis, &mut kv, &words, Compare::Exact, &mut history);
            }
            let end = if rng.below(5) == 0 { "DISCARD" } else { "EXEC" };
            step(&mut redis, &mut kv, &[s(end)], Compare::Exact, &mut history);
            sent += 2;
            continue;
        }
        let (words, compare) = command(&mut rng);
        step(&mut redis, &mut kv, &words, compare, &mut history);
        sent += 1;
    }
}

#[test]
fn the_same_random_commands_get_the_same_replies_as_redis_in_resp2() {
    run_against(false, SEED);
}

#[test]
fn the_same_random_commands_get_the_same_replies_as_redis_in_resp3() {
    run_against(true, SEED ^ 0x3333);
}
