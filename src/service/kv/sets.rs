//! Set commands.

use std::collections::HashSet;

use indexmap::IndexSet;

use super::args::{self, Typed, random};
use super::lists::pop_count;
use super::reply::Reply;
use super::resp::{Request, parse_i64};
use crate::store::{Tx, code};

pub(crate) fn sadd(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if let Typed::Wrong = args::set(tx, req.arg(1), out) {
        return;
    }
    let added = tx
        .write(code::SADD, req.arg(1))
        .items(req.args_from(2))
        .apply()
        .count;
    out.int(added);
}

pub(crate) fn srem(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::set(tx, req.arg(1), out) {
        Typed::Found(_) => {}
        Typed::Missing => return out.int(0),
        Typed::Wrong => return,
    }
    let removed = tx
        .write(code::SREM, req.arg(1))
        .items(req.args_from(2))
        .apply()
        .count;
    out.int(removed);
}

fn write_set<'m>(members: impl ExactSizeIterator<Item = &'m [u8]>, out: &mut Reply<'_>) {
    out.set(members.len());
    members.for_each(|m| out.bulk(m));
}

pub(crate) fn smembers(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::set(tx, req.arg(1), out) {
        Typed::Found(set) => write_set(set.iter().map(Vec::as_slice), out),
        Typed::Missing => out.set(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn sismember(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::set(tx, req.arg(1), out) {
        Typed::Found(set) => out.bool(set.contains(req.arg(2))),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

pub(crate) fn smismember(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let set = match args::set(tx, req.arg(1), out) {
        Typed::Found(set) => Some(set),
        Typed::Missing => None,
        Typed::Wrong => return,
    };
    out.array(req.len() - 2);
    for member in req.args_from(2) {
        out.bool(set.is_some_and(|s| s.contains(member)));
    }
}

pub(crate) fn scard(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::set(tx, req.arg(1), out) {
        Typed::Found(set) => out.int(set.len() as i64),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

/// `count` members picked at random without repeats (all if fewer), in
/// O(count): Floyd's sampling of positions in the set's dense index.
fn pick(set: &IndexSet<Vec<u8>>, count: usize) -> Vec<Vec<u8>> {
    let len = set.len();
    if count >= len {
        return set.iter().cloned().collect();
    }
    let mut chosen = HashSet::with_capacity(count);
    for j in len - count..len {
        let t = (random() % (j as u64 + 1)) as usize;
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen
        .into_iter()
        .filter_map(|at| set.get_index(at).cloned())
        .collect()
}

pub(crate) fn spop(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(count) = pop_count(req, out) else {
        return;
    };
    let popped = match args::set(tx, req.arg(1), out) {
        Typed::Found(set) => pick(set, count.unwrap_or(1)),
        Typed::Missing if count.is_some() => return out.set(0),
        Typed::Missing => return out.null(),
        Typed::Wrong => return,
    };
    match count {
        Some(_) => write_set(popped.iter().map(Vec::as_slice), out),
        None => out.bulk(&popped[0]),
    }
    // Logged as the members removed: replay does not pick again.
    tx.write(code::SREM, req.arg(1))
        .items(popped.iter().map(Vec::as_slice))
        .apply();
}

pub(crate) fn srandmember(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if req.len() > 3 {
        return out.syntax();
    }
    let count = match req.len() {
        3 => match parse_i64(req.arg(2)) {
            Some(n) => Some(n),
            None => return out.not_integer(),
        },
        _ => None,
    };
    let set = match args::set(tx, req.arg(1), out) {
        Typed::Found(set) => set,
        Typed::Missing if count.is_some() => return out.array(0),
        Typed::Missing => return out.null(),
        Typed::Wrong => return,
    };
    match count {
        None => out.bulk(&pick(set, 1)[0]),
        Some(n) if n >= 0 => {
            let picked = pick(set, n as usize);
            out.array(picked.len());
            picked.iter().for_each(|m| out.bulk(m));
        }
        Some(n) => {
            // Negative: that many, repeats allowed.
            let n = n.unsigned_abs() as usize;
            out.array(n);
            for _ in 0..n {
                let at = (random() % set.len() as u64) as usize;
                out.bulk(set.get_index(at).expect("a set is never empty"));
            }
        }
    }
}

/// SINTER, SUNION, SDIFF over the sets named from argument 1 on.
fn combine(
    op: fn(&mut IndexSet<Vec<u8>>, &IndexSet<Vec<u8>>),
    first_missing_empties: bool,
    tx: &mut Tx<'_>,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) {
    let mut sets: Vec<Option<IndexSet<Vec<u8>>>> = Vec::with_capacity(req.len() - 1);
    for key in req.args_from(1) {
        match args::set(tx, key, out) {
            Typed::Found(set) => sets.push(Some(set.clone())),
            Typed::Missing => sets.push(None),
            Typed::Wrong => return,
        }
    }
    let mut sets = sets.into_iter();
    let mut result = sets.next().flatten().unwrap_or_default();
    for set in sets {
        match set {
            Some(set) => op(&mut result, &set),
            None if first_missing_empties => result.clear(),
            None => {}
        }
    }
    write_set(result.iter().map(Vec::as_slice), out);
}

pub(crate) fn sinter(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    combine(|a, b| a.retain(|m| b.contains(m)), true, tx, req, out);
}
pub(crate) fn sunion(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    combine(|a, b| a.extend(b.iter().cloned()), false, tx, req, out);
}
pub(crate) fn sdiff(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    combine(|a, b| a.retain(|m| !b.contains(m)), false, tx, req, out);
}
