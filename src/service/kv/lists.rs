//! List commands: pushes, pops (with a count), ranges, LSET, LREM, LTRIM.

use super::args::{self, Typed};
use super::reply::Reply;
use super::resp::Request;
use crate::store::{Tx, code};

fn push(code: u8, only_existing: bool, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let key = req.arg(1);
    match args::list(tx, key, out) {
        Typed::Wrong => return,
        Typed::Missing if only_existing => return out.int(0),
        _ => {}
    }
    let len = tx.write(code, key).items(req.args_from(2)).apply().count;
    out.int(len);
}

pub(crate) fn lpush(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    push(code::LPUSH, false, tx, req, out);
}
pub(crate) fn rpush(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    push(code::RPUSH, false, tx, req, out);
}
pub(crate) fn lpushx(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    push(code::LPUSH, true, tx, req, out);
}
pub(crate) fn rpushx(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    push(code::RPUSH, true, tx, req, out);
}

/// The optional count of the pop commands (`LPOP key [count]`, `SPOP`,
/// `ZPOPMIN`, ...): `Some(None)` without one, `Some(Some(n))` with one;
/// `None` once the error (too many arguments, a count that is not a
/// non-negative integer) is written.
pub(crate) fn pop_count(req: &Request<'_>, out: &mut Reply<'_>) -> Option<Option<usize>> {
    match req.len() {
        len if len > 3 => {
            out.syntax();
            None
        }
        3 => match super::resp::parse_i64(req.arg(2)) {
            Some(n) if n >= 0 => Some(Some(n as usize)),
            _ => {
                out.error("ERR value is out of range, must be positive");
                None
            }
        },
        _ => Some(None),
    }
}

fn pop(code: u8, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(count) = pop_count(req, out) else {
        return;
    };
    let key = req.arg(1);
    let list = match args::list(tx, key, out) {
        Typed::Found(list) => list,
        Typed::Wrong => return,
        Typed::Missing if count.is_some() => return out.null_array(),
        Typed::Missing => return out.null(),
    };
    let n = count.unwrap_or(1).min(list.len());
    if count.is_some() {
        out.array(n);
    }
    if code == code::LPOP {
        list.iter().take(n).for_each(|item| out.bulk(item));
    } else {
        list.iter().rev().take(n).for_each(|item| out.bulk(item));
    }
    if n > 0 {
        tx.write(code, key).u64(n as u64).apply();
    }
}

pub(crate) fn lpop(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    pop(code::LPOP, tx, req, out);
}
pub(crate) fn rpop(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    pop(code::RPOP, tx, req, out);
}

pub(crate) fn lrange(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(start) = args::int(req, 2, out) else {
        return;
    };
    let Some(stop) = args::int(req, 3, out) else {
        return;
    };
    match args::list(tx, req.arg(1), out) {
        Typed::Found(list) => match args::index_range(start, stop, list.len()) {
            Some((from, to)) => {
                out.array(to - from);
                list.range(from..to).for_each(|item| out.bulk(item));
            }
            None => out.array(0),
        },
        Typed::Missing => out.array(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn llen(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::list(tx, req.arg(1), out) {
        Typed::Found(list) => out.int(list.len() as i64),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

/// A Redis list index (negative from the end) into a list of `len`.
fn position(index: i64, len: usize) -> Option<usize> {
    let at = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&at).then_some(at as usize)
}

pub(crate) fn lindex(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    // Redis looks at the key before it parses the index.
    let list = match args::list(tx, req.arg(1), out) {
        Typed::Found(list) => list,
        Typed::Missing => return out.null(),
        Typed::Wrong => return,
    };
    let Some(index) = args::int(req, 2, out) else {
        return;
    };
    match position(index, list.len()) {
        Some(at) => out.bulk(&list[at]),
        None => out.null(),
    }
}

pub(crate) fn lset(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let len = match args::list(tx, req.arg(1), out) {
        Typed::Found(list) => list.len(),
        Typed::Missing => return out.error("ERR no such key"),
        Typed::Wrong => return,
    };
    let Some(index) = args::int(req, 2, out) else {
        return;
    };
    let Some(at) = position(index, len) else {
        return out.error("ERR index out of range");
    };
    tx.write(code::LSET, req.arg(1))
        .u64(at as u64)
        .bytes(req.arg(3))
        .apply();
    out.ok();
}

pub(crate) fn lrem(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(count) = args::int(req, 2, out) else {
        return;
    };
    match args::list(tx, req.arg(1), out) {
        Typed::Found(_) => {}
        Typed::Missing => return out.int(0),
        Typed::Wrong => return,
    }
    let removed = tx
        .write(code::LREM, req.arg(1))
        .u64(count as u64)
        .bytes(req.arg(3))
        .apply()
        .count;
    out.int(removed);
}

pub(crate) fn ltrim(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(start) = args::int(req, 2, out) else {
        return;
    };
    let Some(stop) = args::int(req, 3, out) else {
        return;
    };
    let len = match args::list(tx, req.arg(1), out) {
        Typed::Found(list) => list.len(),
        Typed::Missing => return out.ok(),
        Typed::Wrong => return,
    };
    let (from, to) = args::index_range(start, stop, len).unwrap_or((0, 0));
    tx.write(code::LTRIM, req.arg(1))
        .u64(from as u64)
        .u64(to as u64)
        .apply();
    out.ok();
}
