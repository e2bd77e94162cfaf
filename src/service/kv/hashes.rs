//! Hash commands.

use super::args::{self, Typed};
use super::reply::{Reply, format_human};
use super::resp::{Request, parse_i64};
use crate::store::{Tx, code};

fn hset_pairs(
    command: &str,
    tx: &mut Tx<'_>,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) -> Option<i64> {
    if !req.len().is_multiple_of(2) {
        out.error(&format!(
            "ERR wrong number of arguments for '{command}' command"
        ));
        return None;
    }
    if let Typed::Wrong = args::hash(tx, req.arg(1), out) {
        return None;
    }
    Some(
        tx.write(code::HSET, req.arg(1))
            .items(req.args_from(2))
            .apply()
            .count,
    )
}

pub(crate) fn hset(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if let Some(added) = hset_pairs("hset", tx, req, out) {
        out.int(added);
    }
}

pub(crate) fn hmset(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if hset_pairs("hmset", tx, req, out).is_some() {
        out.ok();
    }
}

pub(crate) fn hsetnx(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::hash(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(hash) if hash.contains_key(req.arg(2)) => return out.int(0),
        _ => {}
    }
    tx.write(code::HSET, req.arg(1))
        .items(req.args_from(2))
        .apply();
    out.int(1);
}

pub(crate) fn hget(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::hash(tx, req.arg(1), out) {
        Typed::Found(hash) => match hash.get(req.arg(2)) {
            Some(value) => out.bulk(value),
            None => out.null(),
        },
        Typed::Missing => out.null(),
        Typed::Wrong => {}
    }
}

pub(crate) fn hmget(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let hash = match args::hash(tx, req.arg(1), out) {
        Typed::Found(hash) => Some(hash),
        Typed::Missing => None,
        Typed::Wrong => return,
    };
    out.array(req.len() - 2);
    for field in req.args_from(2) {
        match hash.and_then(|h| h.get(field)) {
            Some(value) => out.bulk(value),
            None => out.null(),
        }
    }
}

pub(crate) fn hdel(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::hash(tx, req.arg(1), out) {
        Typed::Found(_) => {}
        Typed::Missing => return out.int(0),
        Typed::Wrong => return,
    }
    let removed = tx
        .write(code::HDEL, req.arg(1))
        .items(req.args_from(2))
        .apply()
        .count;
    out.int(removed);
}

/// HGETALL, HKEYS, HVALS: which halves of each pair to reply.
fn listing(fields: bool, values: bool, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let hash = match args::hash(tx, req.arg(1), out) {
        Typed::Found(hash) => hash,
        Typed::Missing if fields && values => return out.map(0),
        Typed::Missing => return out.array(0),
        Typed::Wrong => return,
    };
    if fields && values {
        out.map(hash.len());
    } else {
        out.array(hash.len());
    }
    for (field, value) in hash {
        if fields {
            out.bulk(field);
        }
        if values {
            out.bulk(value);
        }
    }
}

pub(crate) fn hgetall(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    listing(true, true, tx, req, out);
}
pub(crate) fn hkeys(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    listing(true, false, tx, req, out);
}
pub(crate) fn hvals(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    listing(false, true, tx, req, out);
}

pub(crate) fn hlen(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::hash(tx, req.arg(1), out) {
        Typed::Found(hash) => out.int(hash.len() as i64),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn hexists(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::hash(tx, req.arg(1), out) {
        Typed::Found(hash) => out.bool(hash.contains_key(req.arg(2))),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn hstrlen(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::hash(tx, req.arg(1), out) {
        Typed::Found(hash) => out.int(hash.get(req.arg(2)).map_or(0, |v| v.len() as i64)),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn hincrby(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(by) = args::int(req, 3, out) else {
        return;
    };
    let old = match args::hash(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(hash) => match hash.get(req.arg(2)) {
            Some(value) => match parse_i64(value) {
                Some(n) => n,
                None => return out.error("ERR hash value is not an integer"),
            },
            None => 0,
        },
        Typed::Missing => 0,
    };
    let Some(new) = old.checked_add(by) else {
        return out.error("ERR increment or decrement would overflow");
    };
    tx.write(code::HSET, req.arg(1))
        .item(req.arg(2))
        .item(itoa::Buffer::new().format(new).as_bytes())
        .apply();
    out.int(new);
}

pub(crate) fn hincrbyfloat(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(by) = args::float(req, 3, out) else {
        return;
    };
    let old = match args::hash(tx, req.arg(1), out) {
        Typed::Wrong => return,
        Typed::Found(hash) => match hash.get(req.arg(2)) {
            Some(value) => match args::parse_f64(value) {
                Some(n) => n,
                None => return out.error("ERR hash value is not a float"),
            },
            None => 0.0,
        },
        Typed::Missing => 0.0,
    };
    let new = old + by;
    if !new.is_finite() {
        return out.error("ERR increment would produce NaN or Infinity");
    }
    let text = format_human(new);
    tx.write(code::HSET, req.arg(1))
        .item(req.arg(2))
        .item(text.as_bytes())
        .apply();
    out.bulk(text.as_bytes());
}
