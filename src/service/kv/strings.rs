//! String commands: GET, SET and its options, the counters, ranges.
//! Each is `fn(tx, request, reply)`; arity was checked by the table.

use super::args::{self, Typed, is};
use super::reply::{Reply, format_human};
use super::resp::{Request, parse_i64};
use crate::store::{Tx, code};

/// Writes `value` to the string `key`, and its deadline: `None` clears it,
/// `Some(None)` keeps it (KEEPTTL), `Some(Some(at))` sets it.
fn put(tx: &mut Tx<'_>, key: &[u8], value: &[u8], deadline: Option<Option<u64>>) {
    let had_deadline = tx.db().entry(key).is_some_and(|e| e.deadline.is_some());
    tx.write(code::SET, key).bytes(value).apply();
    match deadline {
        None if had_deadline => {
            tx.write(code::EXPIRE, key).u64(0).apply();
        }
        None => {}
        Some(None) => {}
        // A deadline already past is set as it is (Redis 7.0 does the
        // same): the key is gone at its next access.
        Some(Some(at)) => {
            tx.write(code::EXPIRE, key).u64(at).apply();
        }
    }
}

pub(crate) fn get(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::string(tx, req.arg(1), out) {
        Typed::Found(value) => out.bulk(value),
        Typed::Missing => out.null(),
        Typed::Wrong => {}
    }
}

/// A deadline from `EX`-like options: `amount` in `unit` ms, relative or
/// absolute; `None` with the error written when invalid.
pub(crate) fn deadline(
    now: u64,
    amount: &[u8],
    unit: u64,
    absolute: bool,
    command: &str,
    out: &mut Reply<'_>,
) -> Option<u64> {
    let Some(n) = parse_i64(amount) else {
        out.not_integer();
        return None;
    };
    let at = (n > 0)
        .then(|| n.checked_mul(unit as i64))
        .flatten()
        .and_then(|ms| {
            if absolute {
                Some(ms)
            } else {
                ms.checked_add(now as i64)
            }
        });
    match at {
        Some(at) => Some(at as u64),
        None => {
            out.error(&format!("ERR invalid expire time in '{command}' command"));
            None
        }
    }
}

pub(crate) fn set(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
    let mut expire: Option<(usize, u64, bool)> = None;
    let mut i = 3;
    while i < req.len() {
        let unit = match args::upper(req.arg(i), &mut [0; 16]) {
            b"NX" if !xx => {
                nx = true;
                None
            }
            b"XX" if !nx => {
                xx = true;
                None
            }
            b"GET" => {
                get = true;
                None
            }
            b"KEEPTTL" if expire.is_none() => {
                keep = true;
                None
            }
            b"EX" => Some((1000, false)),
            b"PX" => Some((1, false)),
            b"EXAT" => Some((1000, true)),
            b"PXAT" => Some((1, true)),
            _ => return out.syntax(),
        };
        if let Some((unit, absolute)) = unit {
            if keep || expire.is_some() || i + 1 >= req.len() {
                return out.syntax();
            }
            expire = Some((i + 1, unit, absolute));
            i += 1;
        }
        i += 1;
    }
    let deadline = match expire {
        Some((at, unit, absolute)) => {
            match deadline(tx.now(), req.arg(at), unit, absolute, "set", out) {
                Some(at) => Some(Some(at)),
                None => return,
            }
        }
        None if keep => Some(None),
        None => None,
    };
    let key = req.arg(1);
    // With GET the old value must be a string; without, SET overwrites
    // any type.
    let old = if get {
        match args::string(tx, key, out) {
            Typed::Wrong => return,
            Typed::Found(old) => Some(Some(old.clone())),
            Typed::Missing => None,
        }
    } else {
        tx.get(key).map(|_| None)
    };
    let exists = old.is_some();
    if (nx && exists) || (xx && !exists) {
        return match old {
            Some(Some(old)) => out.bulk(&old),
            _ if get => out.null(),
            _ => out.null(),
        };
    }
    put(tx, key, req.arg(2), deadline);
    match old {
        _ if !get => out.ok(),
        Some(Some(old)) => out.bulk(&old),
        _ => out.null(),
    }
}

pub(crate) fn setnx(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if tx.exists(req.arg(1)) {
        return out.int(0);
    }
    put(tx, req.arg(1), req.arg(2), None);
    out.int(1);
}

fn setex_with(unit: u64, command: &str, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(at) = deadline(tx.now(), req.arg(2), unit, false, command, out) else {
        return;
    };
    put(tx, req.arg(1), req.arg(3), Some(Some(at)));
    out.ok();
}

pub(crate) fn setex(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    setex_with(1000, "setex", tx, req, out);
}

pub(crate) fn psetex(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    setex_with(1, "psetex", tx, req, out);
}

pub(crate) fn getset(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::string(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(old) => out.bulk(old),
        Typed::Missing => out.null(),
    }
    put(tx, req.arg(1), req.arg(2), None);
}

pub(crate) fn getdel(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::string(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(old) => out.bulk(old),
        Typed::Missing => return out.null(),
    }
    tx.del(req.arg(1));
}

pub(crate) fn getex(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let key = req.arg(1);
    // None: leave the deadline; Some(0): PERSIST; Some(at): set it.
    let change = match req.len() {
        2 => None,
        3 if is(req, 2, "PERSIST") => Some(0),
        4 => {
            let (unit, absolute) = match args::upper(req.arg(2), &mut [0; 16]) {
                b"EX" => (1000, false),
                b"PX" => (1, false),
                b"EXAT" => (1000, true),
                b"PXAT" => (1, true),
                _ => return out.syntax(),
            };
            match deadline(tx.now(), req.arg(3), unit, absolute, "getex", out) {
                Some(at) => Some(at),
                None => return,
            }
        }
        _ => return out.syntax(),
    };
    match args::string(tx, key, out) {
        Typed::Wrong => return,
        Typed::Found(value) => out.bulk(value),
        Typed::Missing => return out.null(),
    }
    match change {
        Some(at) if at != 0 && at <= tx.now() => {
            tx.del(key);
        }
        Some(at) => {
            tx.write(code::EXPIRE, key).u64(at).apply();
        }
        None => {}
    }
}

pub(crate) fn mget(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    out.array(req.len() - 1);
    for key in req.args_from(1) {
        match tx.get(key).map(|e| &e.value) {
            Some(crate::store::Value::Str(value)) => out.bulk(value),
            _ => out.null(),
        }
    }
}

pub(crate) fn mset(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if req.len().is_multiple_of(2) {
        return out.error("ERR wrong number of arguments for 'mset' command");
    }
    for i in (1..req.len()).step_by(2) {
        put(tx, req.arg(i), req.arg(i + 1), None);
    }
    out.ok();
}

pub(crate) fn msetnx(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if req.len().is_multiple_of(2) {
        return out.error("ERR wrong number of arguments for 'msetnx' command");
    }
    if (1..req.len())
        .step_by(2)
        .any(|i| tx.get(req.arg(i)).is_some())
    {
        return out.int(0);
    }
    for i in (1..req.len()).step_by(2) {
        put(tx, req.arg(i), req.arg(i + 1), None);
    }
    out.int(1);
}

fn incr_by(tx: &mut Tx<'_>, key: &[u8], by: i64, out: &mut Reply<'_>) {
    let old = match args::string(tx, key, out) {
        Typed::Wrong => return,
        Typed::Found(value) => match parse_i64(value) {
            Some(n) => n,
            None => return out.not_integer(),
        },
        Typed::Missing => 0,
    };
    let Some(new) = old.checked_add(by) else {
        return out.error("ERR increment or decrement would overflow");
    };
    tx.write(code::SET, key)
        .bytes(itoa::Buffer::new().format(new).as_bytes())
        .apply();
    out.int(new);
}

pub(crate) fn incr(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    incr_by(tx, req.arg(1), 1, out);
}

pub(crate) fn decr(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    incr_by(tx, req.arg(1), -1, out);
}

pub(crate) fn incrby(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if let Some(by) = args::int(req, 2, out) {
        incr_by(tx, req.arg(1), by, out);
    }
}

pub(crate) fn decrby(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::int(req, 2, out).map(i64::checked_neg) {
        Some(Some(by)) => incr_by(tx, req.arg(1), by, out),
        Some(None) => out.error("ERR decrement would overflow"),
        None => {}
    }
}

pub(crate) fn incrbyfloat(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let key = req.arg(1);
    let old = match args::string(tx, key, out) {
        Typed::Wrong => return,
        Typed::Found(value) => match args::parse_f64(value) {
            Some(n) => n,
            None => return out.not_float(),
        },
        Typed::Missing => 0.0,
    };
    let Some(by) = args::float(req, 2, out) else {
        return;
    };
    let new = old + by;
    if !new.is_finite() {
        return out.error("ERR increment would produce NaN or Infinity");
    }
    let text = format_human(new);
    tx.write(code::SET, key).bytes(text.as_bytes()).apply();
    out.bulk(text.as_bytes());
}

pub(crate) fn append(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let old = match args::string(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(value) => value.len(),
        Typed::Missing => 0,
    };
    // As Redis: no string over proto-max-bulk-len (and so no log record
    // over the log's limit when compaction writes it whole).
    if old + req.arg(2).len() > super::DEFAULT_MAX_BULK {
        return out.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    let len = tx
        .write(code::APPEND, req.arg(1))
        .bytes(req.arg(2))
        .apply()
        .count;
    let len = if len == 0 {
        // Appending "" to a missing key: Redis creates an empty string.
        tx.write(code::SET, req.arg(1)).bytes(b"").apply();
        0
    } else {
        len
    };
    out.int(len);
}

pub(crate) fn strlen(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::string(tx, req.arg(1), out) {
        Typed::Found(value) => out.int(value.len() as i64),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn getrange(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(start) = args::int(req, 2, out) else {
        return;
    };
    let Some(end) = args::int(req, 3, out) else {
        return;
    };
    let value = match args::string(tx, req.arg(1), out) {
        Typed::Found(value) => value,
        Typed::Missing => return out.bulk(b""),
        Typed::Wrong => return,
    };
    // Redis' getrangeCommand, step by step (it differs from LRANGE).
    let len = value.len() as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return out.bulk(b"");
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { (len + end).max(0) } else { end }.min(len - 1);
    if start > end {
        return out.bulk(b"");
    }
    out.bulk(&value[start as usize..=end as usize]);
}

pub(crate) fn setrange(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(offset) = args::int(req, 2, out) else {
        return;
    };
    if offset < 0 {
        return out.error("ERR offset is out of range");
    }
    let patch = req.arg(3);
    let offset = offset as usize;
    if offset + patch.len() > super::DEFAULT_MAX_BULK {
        return out.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    let mut value = match args::string(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(value) => value.clone(),
        Typed::Missing if patch.is_empty() => return out.int(0),
        Typed::Missing => Vec::new(),
    };
    if !patch.is_empty() {
        if value.len() < offset + patch.len() {
            value.resize(offset + patch.len(), 0);
        }
        value[offset..offset + patch.len()].copy_from_slice(patch);
        tx.write(code::SET, req.arg(1)).bytes(&value).apply();
    }
    out.int(value.len() as i64);
}
