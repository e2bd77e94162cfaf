//! Fuzzes what readyloop parses of the store on Redis's replies
//! (`remote::reply::len`, which cuts the byte stream from an upstream
//! connection into replies, and the cluster's `CLUSTER SLOTS`,
//! `CLUSTER NODES` and `-MOVED`/`-ASK` readers). Checks, besides "no panic":
//! - whatever the cutting, a prefix of whole replies is never malformed and
//!   never complete early: `len` says `None` for every proper prefix of
//!   what it measured, and the same length for the measured bytes alone;
//! - lengths add up: the first two replies are the first one, then the
//!   first of what follows it;
//! - a command `remote::encode` wrote (an array of bulk strings built from
//!   the input) always measures as one whole reply of its own length;
//! - a parsed slot table names owners among its own nodes only, and a
//!   redirect names a slot below 16384.

#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::remote::cluster::{self, Redirect, SlotTable};
use readyloop::remote::{StoreUrl, encode, reply};
use readyloop_fuzz::cuttings;

fuzz_target!(|data: &[u8]| {
    for count in 1..=3 {
        let Ok(Some(end)) = reply::len(data, count) else {
            continue;
        };
        assert!(end <= data.len());
        assert_eq!(reply::len(&data[..end], count), Ok(Some(end)), "alone");
        for pieces in cuttings(&data[..end]) {
            let mut cut = 0;
            for piece in &pieces[..pieces.len() - 1] {
                cut += piece.len();
                assert_eq!(reply::len(&data[..cut], count), Ok(None), "prefix of {cut}");
            }
        }
    }
    if let Ok(Some(first)) = reply::len(data, 1) {
        if let Ok(Some(second)) = reply::len(&data[first..], 1) {
            assert_eq!(reply::len(data, 2), Ok(Some(first + second)), "additive");
        }
    }
    let words: Vec<&[u8]> = data.split(|&b| b == b' ').collect();
    let mut command = Vec::new();
    encode(&words, &mut command);
    assert_eq!(reply::len(&command, 1), Ok(Some(command.len())), "encoded");

    let asked = StoreUrl {
        host: "127.0.0.1".into(),
        port: 7000,
        db: 0,
    };
    if let Ok(table) = SlotTable::parse(data, &asked) {
        for slot in (0..16384u16).step_by(97) {
            if let Some(owner) = table.owner(slot) {
                assert!(table.nodes().contains(owner), "owner not among the nodes");
            }
        }
    }
    let _ = cluster::masters(data, &asked);
    for count in 1..=2 {
        if let Some(Redirect::Moved { slot, .. } | Redirect::Ask { slot, .. }) =
            cluster::redirect(data, count, &asked)
        {
            assert!(slot < 16384, "slot {slot}");
        }
    }
});
