//! Fuzzes `kv`'s RESP request parser (`kv/resp.rs`: multibulk and inline,
//! incremental across reads), fed as the service feeds it, and the service
//! around it for its protocol errors. Checks, besides "no panic":
//! - every cutting of the input gives the same frames (requests, empty
//!   frames, the protocol error), and the same "in a frame" at the end;
//! - what the parser allocates stays within [`ALLOC_PER_BYTE`] times the
//!   bytes that arrived plus [`ALLOC_SLACK`], with Redis' 512 MiB bulk
//!   limit: a declared length (`$536870912`, `*1048576`) costs nothing
//!   until its bytes come (measured by a counting allocator);
//! - with a small bulk limit, a frame over a limit, or malformed, is a
//!   protocol error; then the service (over inputs whose commands all
//!   have replies that do not depend on time or on other connections) ends
//!   its output with `-ERR Protocol error: <the reason>` and closes, the
//!   same for every cutting, having answered (counted) one request per
//!   request frame; it never closes otherwise, except for `QUIT`.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use readyloop::service::kv::DEFAULT_MAX_BULK;
use readyloop::service::kv::testing::{Frame, Frames, frames};
use readyloop::service::{self, Backend, Limits, Service, Shared};
use readyloop::stats::Stats;
use readyloop::store::Store;
use readyloop_fuzz::{End, cuttings, same_for_every_cutting};

/// Bytes allocated per byte received, at most: the parser's copy of a
/// partial frame (2x, as a `Vec` grows), its word ranges (16 bytes a word,
/// 2x), and this target's copies of the words (a `Vec` each, 2x); a word
/// takes two bytes at the least (`a ` inline).
const ALLOC_PER_BYTE: usize = 64;
/// Allocation that does not grow with the input.
const ALLOC_SLACK: usize = 64 * 1024;
/// Small, so "invalid bulk length" is reached.
const SMALL_MAX_BULK: usize = 16;

/// Commands whose replies depend on the requests alone: not on the clock
/// (`TIME`, `TTL`), other connections (`CLIENT ID`, `HELLO`) or chance
/// (`RANDOMKEY`, `SPOP`).
const DETERMINISTIC: &str = "PING ECHO SET GET DEL EXISTS APPEND STRLEN INCR DECR MGET MSET \
    LPUSH RPUSH LPOP RPOP LLEN LRANGE HSET HGET HDEL HLEN SADD SREM SCARD SISMEMBER ZADD ZSCORE \
    ZCARD MULTI EXEC DISCARD QUIT";

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters only add and subtract the sizes it was asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The frames of `reads`, and the most bytes allocated at once meanwhile.
fn measured(max_bulk: usize, reads: &[&[u8]]) -> (Frames, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let frames = frames(max_bulk, reads);
    (frames, PEAK.load(Relaxed).saturating_sub(before))
}

/// The same frames for every cutting, within the allocation bound.
fn same_frames(max_bulk: usize, data: &[u8]) -> Frames {
    let bound = ALLOC_PER_BYTE * data.len() + ALLOC_SLACK;
    let mut whole = None;
    for reads in cuttings(data) {
        let (got, allocated) = measured(max_bulk, &reads);
        assert!(
            allocated <= bound,
            "{allocated} bytes allocated for {} bytes of input",
            data.len()
        );
        let whole = whole.get_or_insert_with(|| got.clone());
        let lengths: Vec<usize> = reads.iter().map(|r| r.len()).collect();
        assert_eq!(
            &got,
            whole,
            "reads of {:?}...",
            &lengths[..lengths.len().min(16)]
        );
    }
    whole.expect("a whole cutting")
}

fn kv() -> Box<dyn Service> {
    let shared = Shared {
        backend: Backend::File(Store::in_memory()),
        stats: Arc::new(Stats::default()),
        broker: Default::default(),
        limits: Limits {
            kv_max_bulk: SMALL_MAX_BULK,
            ..Limits::default()
        },
    };
    service::kv::factory(&shared).make()
}

fuzz_target!(|data: &[u8]| {
    same_frames(DEFAULT_MAX_BULK, data);

    let small = same_frames(SMALL_MAX_BULK, data);
    let requests: Vec<&Vec<Vec<u8>>> = small
        .frames
        .iter()
        .filter_map(|f| match f {
            Frame::Request(words) => Some(words),
            _ => None,
        })
        .collect();
    let deterministic = requests.iter().all(|words| {
        DETERMINISTIC
            .split_whitespace()
            .any(|name| name.as_bytes().eq_ignore_ascii_case(&words[0]))
    });
    if !deterministic {
        return;
    }
    let run = same_for_every_cutting(kv, data);
    let quits = requests.iter().any(|w| w[0].eq_ignore_ascii_case(b"QUIT"));
    if !quits {
        // A protocol error answers no request: it closes (`Next::Close`).
        assert_eq!(
            run.answered as usize,
            requests.len(),
            "{:?}",
            run.out.escape_ascii().to_string()
        );
    }
    match small.frames.last() {
        Some(Frame::Malformed(reason)) if !quits => {
            let error = format!("-ERR Protocol error: {reason}\r\n");
            assert!(
                run.out.ends_with(error.as_bytes()),
                "{:?} does not end with {error:?}",
                run.out.escape_ascii().to_string()
            );
            assert_eq!(run.end, End::Closed);
        }
        _ if !quits => assert_eq!(run.end, End::Eof, "closed without a protocol error"),
        _ => {}
    }
});
