//! Reading command arguments as Redis does: integers (`string2ll`),
//! floats (`strtod`, with `inf`), case-insensitive options, and the
//! replies for arguments that do not parse.

use super::reply::Reply;
use super::resp::{Request, parse_i64};
use crate::store::{Entry, Tx, Value};

/// Argument `i` as an integer, or `ERR value is not an integer` written.
pub(crate) fn int(req: &Request<'_>, i: usize, out: &mut Reply<'_>) -> Option<i64> {
    let n = parse_i64(req.arg(i));
    if n.is_none() {
        out.not_integer();
    }
    n
}

/// Parses a float as Redis' `string2d`/`strtold`: no spaces, `inf`,
/// `-inf`, `+inf` allowed; NaN is not a number.
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let value = match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        rest if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') => text.parse().ok()?,
        _ => return None,
    };
    (!value.is_nan()).then_some(value)
}

/// Argument `i` as a float, or `ERR value is not a valid float` written.
pub(crate) fn float(req: &Request<'_>, i: usize, out: &mut Reply<'_>) -> Option<f64> {
    let n = parse_f64(req.arg(i));
    if n.is_none() {
        out.not_float();
    }
    n
}

/// True when argument `i` is the option `name` (any case).
pub(crate) fn is(req: &Request<'_>, i: usize, name: &str) -> bool {
    req.arg(i).eq_ignore_ascii_case(name.as_bytes())
}

/// A key's value of the wanted type, read through the lazy expiry.
pub(crate) enum Typed<'t, T> {
    /// No such key.
    Missing,
    /// It holds another type (`WRONGTYPE` was written).
    Wrong,
    /// The value.
    Found(&'t T),
}

macro_rules! typed_getter {
    ($name:ident, $variant:ident, $ty:ty) => {
        /// The key's value if it has this type; `WRONGTYPE` written if not.
        pub(crate) fn $name<'t>(
            tx: &'t mut Tx<'_>,
            key: &[u8],
            out: &mut Reply<'_>,
        ) -> Typed<'t, $ty> {
            match tx.get(key) {
                None => Typed::Missing,
                Some(Entry {
                    value: Value::$variant(v),
                    ..
                }) => Typed::Found(v),
                Some(_) => {
                    out.wrong_type();
                    Typed::Wrong
                }
            }
        }
    };
}

typed_getter!(string, Str, Vec<u8>);
typed_getter!(list, List, std::collections::VecDeque<Vec<u8>>);
typed_getter!(hash, Hash, std::collections::HashMap<Vec<u8>, Vec<u8>>);
typed_getter!(set, Set, indexmap::IndexSet<Vec<u8>>);
typed_getter!(zset, ZSet, crate::store::ZSet);

/// Normalizes Redis' `start stop` indices (negative from the end) over a
/// collection of `len`: the half-open range, or `None` when empty.
pub(crate) fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then(|| (start as usize, stop as usize + 1))
}

/// A pseudo-random number (splitmix64 over a shared counter): for SPOP,
/// SRANDMEMBER, RANDOMKEY. No clock, no OS entropy: random enough to pick
/// members, and a service may not read either.
pub(crate) fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An option word in upper case, copied to the stack (no allocation per
/// request); words longer than any option become empty.
pub(crate) fn upper<'b>(word: &[u8], buf: &'b mut [u8; 16]) -> &'b [u8] {
    let Some(copy) = buf.get_mut(..word.len()) else {
        return &[];
    };
    copy.copy_from_slice(word);
    copy.make_ascii_uppercase();
    copy
}
