//! Sorted set commands.

use std::ops::Bound;

use super::args::{self, Typed, is};
use super::lists::pop_count;
use super::reply::Reply;
use super::resp::Request;
use crate::store::{Tx, ZSet, code};

pub(crate) fn zadd(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < req.len() {
        match args::upper(req.arg(i), &mut [0; 16]) {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            b"CH" => ch = true,
            b"INCR" => incr = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = req.len() - i;
    if pairs == 0 || !pairs.is_multiple_of(2) {
        return out.syntax();
    }
    if nx && xx {
        return out.error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return out.error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs > 2 {
        return out.error("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(pairs / 2);
    for at in (i..req.len()).step_by(2) {
        match args::parse_f64(req.arg(at)) {
            Some(score) => scores.push(score),
            None => return out.not_float(),
        }
    }
    let zset = match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => Some(zset),
        Typed::Missing => None,
        Typed::Wrong => return,
    };
    // The final score of each member that changes, decided before writing.
    let mut changes: Vec<(f64, &[u8])> = Vec::with_capacity(scores.len());
    let (mut added, mut updated) = (0, 0);
    let mut incr_result = None;
    for (n, &given) in scores.iter().enumerate() {
        let member = req.arg(i + 2 * n + 1);
        let current = zset.and_then(|z| z.score(member)).or_else(|| {
            changes
                .iter()
                .rev()
                .find(|(_, m)| *m == member)
                .map(|(s, _)| *s)
        });
        let score = match (incr, current) {
            (true, Some(old)) => old + given,
            _ => given,
        };
        if score.is_nan() {
            return out.error("ERR resulting score is not a number (NaN)");
        }
        let allowed = match current {
            None => !xx,
            Some(old) => !nx && (!gt || score > old) && (!lt || score < old),
        };
        if !allowed {
            continue;
        }
        incr_result = Some(score);
        match current {
            None => added += 1,
            Some(old) if old != score => updated += 1,
            Some(_) => continue,
        }
        changes.push((score, member));
    }
    if !changes.is_empty() {
        let mut write = tx.write(code::ZADD, req.arg(1));
        for (score, member) in &changes {
            write = write.item(&score.to_bits().to_le_bytes()).item(member);
        }
        write.apply();
    }
    if incr {
        match incr_result {
            Some(score) => out.double(score),
            None => out.null(),
        }
    } else {
        out.int(if ch { added + updated } else { added });
    }
}

pub(crate) fn zincrby(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(by) = args::float(req, 2, out) else {
        return;
    };
    let old = match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => zset.score(req.arg(3)).unwrap_or(0.0),
        Typed::Missing => 0.0,
        Typed::Wrong => return,
    };
    let score = old + by;
    if score.is_nan() {
        return out.error("ERR resulting score is not a number (NaN)");
    }
    tx.write(code::ZADD, req.arg(1))
        .item(&score.to_bits().to_le_bytes())
        .item(req.arg(3))
        .apply();
    out.double(score);
}

pub(crate) fn zrem(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::zset(tx, req.arg(1), out) {
        Typed::Found(_) => {}
        Typed::Missing => return out.int(0),
        Typed::Wrong => return,
    }
    let removed = tx
        .write(code::ZREM, req.arg(1))
        .items(req.args_from(2))
        .apply()
        .count;
    out.int(removed);
}

pub(crate) fn zscore(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => match zset.score(req.arg(2)) {
            Some(score) => out.double(score),
            None => out.null(),
        },
        Typed::Missing => out.null(),
        Typed::Wrong => {}
    }
}

pub(crate) fn zcard(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => out.int(zset.len() as i64),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

fn rank_in(rev: bool, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => match zset.rank(req.arg(2)) {
            Some(rank) if rev => out.int((zset.len() - 1 - rank) as i64),
            Some(rank) => out.int(rank as i64),
            None => out.null(),
        },
        Typed::Missing => out.null(),
        Typed::Wrong => {}
    }
}

pub(crate) fn zrank(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    rank_in(false, tx, req, out);
}
pub(crate) fn zrevrank(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    rank_in(true, tx, req, out);
}

/// A score bound: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
fn bound(text: &[u8]) -> Option<Bound<f64>> {
    match text.strip_prefix(b"(") {
        Some(rest) => args::parse_f64(rest).map(Bound::Excluded),
        None => args::parse_f64(text).map(Bound::Included),
    }
}

pub(crate) fn zcount(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let (Some(min), Some(max)) = (bound(req.arg(2)), bound(req.arg(3))) else {
        return out.error("ERR min or max is not a float");
    };
    match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => out.int(zset.range(min, max).count() as i64),
        Typed::Missing => out.int(0),
        Typed::Wrong => {}
    }
}

/// Writes members (with scores) as ZRANGE does in each protocol.
fn write_members(members: &[(&[u8], f64)], scores: bool, out: &mut Reply<'_>) {
    if scores && !out.resp3 {
        out.array(2 * members.len());
    } else {
        out.array(members.len());
    }
    for (member, score) in members {
        if scores && out.resp3 {
            out.array(2);
        }
        out.bulk(member);
        if scores {
            out.double(*score);
        }
    }
}

pub(crate) fn zrange(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    range_with(None, tx, req, out);
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count].
pub(crate) fn zrangebyscore(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    range_with(Some((true, false)), tx, req, out);
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count].
pub(crate) fn zrevrangebyscore(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    range_with(Some((true, true)), tx, req, out);
}

/// ZREVRANGE key start stop [WITHSCORES].
pub(crate) fn zrevrange(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    range_with(Some((false, true)), tx, req, out);
}

/// ZRANGE and its older forms: `fixed` is (by score, reversed) for the
/// forms whose name says it, `None` for ZRANGE's own BYSCORE and REV.
fn range_with(
    fixed: Option<(bool, bool)>,
    tx: &mut Tx<'_>,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) {
    let (mut by_score, mut rev) = fixed.unwrap_or((false, false));
    let mut scores = false;
    let mut limit = None;
    let mut i = 4;
    while i < req.len() {
        if fixed.is_none() && is(req, i, "BYSCORE") {
            by_score = true;
        } else if fixed.is_none() && is(req, i, "REV") {
            rev = true;
        } else if is(req, i, "WITHSCORES") {
            scores = true;
        } else if is(req, i, "LIMIT") && i + 2 < req.len() {
            let Some(offset) = args::int(req, i + 1, out) else {
                return;
            };
            let Some(count) = args::int(req, i + 2, out) else {
                return;
            };
            limit = Some((offset, count));
            i += 2;
        } else {
            return out.syntax();
        }
        i += 1;
    }
    if limit.is_some() && !by_score {
        return out.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    // Redis checks the range before it looks at the key.
    let (low, high) = if rev { (3, 2) } else { (2, 3) };
    let bounds = (bound(req.arg(low)), bound(req.arg(high)));
    let indices = (
        super::resp::parse_i64(req.arg(2)),
        super::resp::parse_i64(req.arg(3)),
    );
    if by_score && (bounds.0.is_none() || bounds.1.is_none()) {
        return out.error("ERR min or max is not a float");
    }
    if !by_score && (indices.0.is_none() || indices.1.is_none()) {
        return out.not_integer();
    }
    let zset: &ZSet = match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => zset,
        Typed::Missing => return out.array(0),
        Typed::Wrong => return,
    };
    let members: Vec<(&[u8], f64)> = if by_score {
        let (Some(min), Some(max)) = bounds else {
            unreachable!("checked above")
        };
        let (offset, count) = limit.unwrap_or((0, -1));
        if offset < 0 {
            return out.array(0);
        }
        let count = if count < 0 {
            usize::MAX
        } else {
            count as usize
        };
        let range = zset.range(min, max);
        if rev {
            range.rev().skip(offset as usize).take(count).collect()
        } else {
            range.skip(offset as usize).take(count).collect()
        }
    } else {
        let (Some(start), Some(stop)) = indices else {
            unreachable!("checked above")
        };
        match args::index_range(start, stop, zset.len()) {
            Some((from, to)) if rev => zset.iter().rev().skip(from).take(to - from).collect(),
            Some((from, to)) => zset.iter().skip(from).take(to - from).collect(),
            None => Vec::new(),
        }
    };
    write_members(&members, scores, out);
}

fn pop(max: bool, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(count) = pop_count(req, out) else {
        return;
    };
    let zset = match args::zset(tx, req.arg(1), out) {
        Typed::Found(zset) => zset,
        Typed::Missing => return out.array(0),
        Typed::Wrong => return,
    };
    let n = count.unwrap_or(1).min(zset.len());
    let popped: Vec<(Vec<u8>, f64)> = if max {
        zset.iter()
            .rev()
            .take(n)
            .map(|(m, s)| (m.to_vec(), s))
            .collect()
    } else {
        zset.iter().take(n).map(|(m, s)| (m.to_vec(), s)).collect()
    };
    let members: Vec<(&[u8], f64)> = popped.iter().map(|(m, s)| (m.as_slice(), *s)).collect();
    if count.is_none() || !out.resp3 {
        // One pop, or RESP2: a flat [member, score, ...] array.
        out.array(2 * members.len());
        for (member, score) in &members {
            out.bulk(member);
            out.double(*score);
        }
    } else {
        write_members(&members, true, out);
    }
    if n > 0 {
        tx.write(code::ZREM, req.arg(1))
            .items(popped.iter().map(|(m, _)| m.as_slice()))
            .apply();
    }
}

pub(crate) fn zpopmin(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    pop(false, tx, req, out);
}
pub(crate) fn zpopmax(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    pop(true, tx, req, out);
}
