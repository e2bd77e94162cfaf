//! Key commands: DEL, EXISTS, TYPE, the EXPIRE family, TTL, RENAME, KEYS,
//! SCAN, RANDOMKEY, DBSIZE, FLUSHDB.

use super::args::{self, is};
use super::reply::Reply;
use super::resp::{Request, parse_i64};
use crate::store::{Tx, Value, code};

pub(crate) fn del(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let mut removed = 0;
    for key in req.args_from(1) {
        if tx.exists(key) && tx.del(key) {
            removed += 1;
        }
    }
    out.int(removed);
}

pub(crate) fn exists(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let found = req.args_from(1).filter(|key| tx.exists(key)).count();
    out.int(found as i64);
}

pub(crate) fn type_(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let name = tx.get(req.arg(1)).map_or("none", |e| e.value.type_name());
    out.simple(name);
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: `unit` ms per count, `absolute`.
fn expire_with(
    unit: u64,
    absolute: bool,
    command: &str,
    tx: &mut Tx<'_>,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in req.args_from(3) {
        match args::upper(option, &mut [0; 16]) {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return out.error_parts(&[b"ERR Unsupported option ", option]);
            }
        }
    }
    if nx && (xx || gt || lt) {
        return out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return out.error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = parse_i64(req.arg(2)) else {
        return out.not_integer();
    };
    let when = n.checked_mul(unit as i64).and_then(|ms| {
        if absolute {
            Some(ms)
        } else {
            ms.checked_add(tx.now() as i64)
        }
    });
    let Some(when) = when else {
        return out.error(&format!("ERR invalid expire time in '{command}' command"));
    };
    let key = req.arg(1);
    let Some(entry) = tx.get(key) else {
        return out.int(0);
    };
    // No deadline counts as infinite for GT and LT, as Redis.
    let current = entry.deadline;
    let allowed = match current {
        None => !xx && !gt,
        Some(at) => !nx && (!gt || when > at as i64) && (!lt || when < at as i64),
    };
    if !allowed {
        return out.int(0);
    }
    if when <= tx.now() as i64 {
        tx.del(key);
    } else {
        tx.write(code::EXPIRE, key).u64(when as u64).apply();
    }
    out.int(1);
}

pub(crate) fn expire(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    expire_with(1000, false, "expire", tx, req, out);
}
pub(crate) fn pexpire(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    expire_with(1, false, "pexpire", tx, req, out);
}
pub(crate) fn expireat(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    expire_with(1000, true, "expireat", tx, req, out);
}
pub(crate) fn pexpireat(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    expire_with(1, true, "pexpireat", tx, req, out);
}

fn ttl_in(unit: u64, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let now = tx.now();
    match tx.get(req.arg(1)) {
        None => out.int(-2),
        Some(entry) => match entry.deadline {
            None => out.int(-1),
            // Redis rounds to the nearest second: (ttl + 500) / 1000.
            Some(at) => out.int(((at - now + unit / 2) / unit) as i64),
        },
    }
}

pub(crate) fn ttl(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    ttl_in(1000, tx, req, out);
}
pub(crate) fn pttl(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    ttl_in(1, tx, req, out);
}

/// EXPIRETIME, PEXPIRETIME: the absolute deadline, in `unit` ms.
fn deadline_in(unit: u64, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    match tx.get(req.arg(1)) {
        None => out.int(-2),
        Some(entry) => match entry.deadline {
            None => out.int(-1),
            Some(at) => out.int((at / unit) as i64),
        },
    }
}

pub(crate) fn expiretime(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    deadline_in(1000, tx, req, out);
}
pub(crate) fn pexpiretime(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    deadline_in(1, tx, req, out);
}

pub(crate) fn persist(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let has_deadline = tx.get(req.arg(1)).is_some_and(|e| e.deadline.is_some());
    if has_deadline {
        tx.write(code::EXPIRE, req.arg(1)).u64(0).apply();
    }
    out.bool(has_deadline);
}

fn rename_with(nx: bool, tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let (from, to) = (req.arg(1), req.arg(2));
    if tx.get(from).is_none() {
        return out.error("ERR no such key");
    }
    if nx && tx.get(to).is_some() {
        return out.int(0);
    }
    if from != to {
        tx.write(code::RENAME, from).bytes(to).apply();
    }
    if nx { out.int(1) } else { out.ok() }
}

pub(crate) fn rename(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    rename_with(false, tx, req, out);
}
pub(crate) fn renamenx(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    rename_with(true, tx, req, out);
}

/// Keys not past their deadline, in no order.
fn live_keys<'t>(tx: &'t Tx<'_>) -> impl Iterator<Item = (&'t [u8], &'t Value)> {
    let now = tx.now();
    tx.db()
        .iter()
        .filter(move |(_, e)| e.deadline.is_none_or(|at| at > now))
        .map(|(key, e)| (key, &e.value))
}

pub(crate) fn keys(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let pattern = req.arg(1);
    let found: Vec<&[u8]> = live_keys(tx)
        .map(|(key, _)| key)
        .filter(|key| glob(pattern, key))
        .collect();
    out.array(found.len());
    for key in found {
        out.bulk(key);
    }
}

/// SCAN: walks the keyspace's positions from the last down, `COUNT` of
/// them per call; the cursor is how many positions are left to walk.
///
/// A deletion moves the last entry into the hole: that entry has always
/// been walked already (the walk starts at the end), so it is at worst
/// returned twice; new keys go to the end, which may or may not be
/// walked. So a key present for the whole scan is returned at least once,
/// Redis' guarantee, and each call costs O(COUNT), as in Redis.
pub(crate) fn scan(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    let Some(cursor) = std::str::from_utf8(req.arg(1))
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return out.error("ERR invalid cursor");
    };
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while i < req.len() {
        if i + 1 >= req.len() {
            return out.syntax();
        }
        if is(req, i, "MATCH") {
            pattern = Some(req.arg(i + 1));
        } else if is(req, i, "COUNT") {
            match parse_i64(req.arg(i + 1)) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return out.syntax(),
                None => return out.not_integer(),
            }
        } else if is(req, i, "TYPE") {
            kind = Some(req.arg(i + 1));
        } else {
            return out.syntax();
        }
        i += 2;
    }
    let db = tx.db();
    let now = tx.now();
    let left = match cursor {
        0 => db.len(),
        n => (n as usize).min(db.len()),
    };
    let stop = left.saturating_sub(count);
    let found: Vec<&[u8]> = (stop..left)
        .rev()
        .filter_map(|at| db.get_index(at))
        .filter(|(key, entry)| {
            entry.deadline.is_none_or(|at| at > now)
                && pattern.is_none_or(|p| glob(p, key))
                && kind.is_none_or(|k| k.eq_ignore_ascii_case(entry.value.type_name().as_bytes()))
        })
        .map(|(key, _)| key)
        .collect();
    out.array(2);
    out.bulk(itoa::Buffer::new().format(stop).as_bytes());
    out.array(found.len());
    for key in found {
        out.bulk(key);
    }
}

/// RANDOMKEY: a random position, skipping keys past their deadline.
pub(crate) fn randomkey(tx: &mut Tx<'_>, pick: u64, out: &mut Reply<'_>) {
    let db = tx.db();
    let now = tx.now();
    let len = db.len();
    let live = |at: usize| {
        db.get_index(at)
            .filter(|(_, e)| e.deadline.is_none_or(|d| d > now))
    };
    let start = if len == 0 {
        0
    } else {
        (pick % len as u64) as usize
    };
    // From the random position on, wrapping: the first live key.
    match (start..len).chain(0..start).find_map(live) {
        Some((key, _)) => out.bulk(key),
        None => out.null(),
    }
}

pub(crate) fn dbsize(tx: &mut Tx<'_>, _req: &Request<'_>, out: &mut Reply<'_>) {
    out.int(tx.db().len() as i64);
}

pub(crate) fn flushdb(tx: &mut Tx<'_>, req: &Request<'_>, out: &mut Reply<'_>) {
    if req.len() > 2 || (req.len() == 2 && !is(req, 1, "SYNC") && !is(req, 1, "ASYNC")) {
        return out.syntax();
    }
    tx.write(code::FLUSH, b"").apply();
    out.ok();
}

/// Redis' `stringmatchlen`: `*`, `?`, `[abc]`, `[^a-z]`, `\\x`.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after a `*` that matched too little.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' if t < text.len() => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' if t < text.len() => {
                    if let Some(end) = class_matches(&pattern[p..], text[t]) {
                        p += end;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && t < text.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                c if c != b'\\' && c != b'[' && c != b'?' && t < text.len() && c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        } else if t == text.len() {
            return true;
        }
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp + 1;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// If the class at the start of `pattern` (`[...]`) matches `c`, its length.
fn class_matches(pattern: &[u8], c: u8) -> Option<usize> {
    let mut i = 1;
    let negate = pattern.get(1) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (a, b) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (a..=b).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    // An unclosed class ends the pattern, as in Redis.
    let end = (i + 1).min(pattern.len());
    (matched != negate).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_as_redis() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbb", false),
            ("h?llo", "hello", true),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("key:*:x", "key:1:x", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} {t}");
        }
    }
}
