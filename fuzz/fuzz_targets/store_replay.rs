//! Fuzzes the store's log replay (`store/log.rs`, and each record applied
//! to a fresh keyspace, as opening a store does), on bytes: no files.
//! Each input is used twice:
//!
//! 1. As a log's bytes after its magic. Checks, besides "no panic": every
//!    record replay hands over is one that a plain model (checked with its
//!    own CRC-32) finds at that offset, in sequence from the magic; replay
//!    stops exactly where the records stop; it calls the rest *torn* (to
//!    be dropped) only when no good record starts anywhere after it, and
//!    when it names the next good record, that is the first one; and it
//!    checksums at most [`WORK_PER_BYTE`] times the log's size: linear
//!    time, whatever the damage.
//! 2. As a recipe: records written as the store writes them, then one byte
//!    changed or the log cut short somewhere. Checks: every record before
//!    the damage replays unchanged; a cut at a record boundary replays
//!    clean; a changed byte is never replayed as clean, and is never
//!    called torn while a good record follows it (no data silently lost).

#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::store::testing::{self, End, MAGIC, RECORD_HEADER, Replayed, code};

/// Bytes checksummed per byte of log, at most: the records once (1x), the
/// damaged one once (1x), and the search past it: bodies within its budget
/// (2x), plus the 4 length bytes of each candidate, whose body is at least
/// 5 bytes (1.6x). The search that was quadratic took far more.
const WORK_PER_BYTE: u64 = 6;
/// The shortest body: an op and a key length.
const MIN_BODY: usize = 5;

/// CRC-32 (IEEE), bit by bit: slow, and independent of the store's.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for &byte in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let word = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(word.try_into().unwrap()) as usize)
}

/// The good record at the start of `bytes`, per the format in `log.rs`:
/// its content and total length.
fn good_record(bytes: &[u8]) -> Option<(Replayed, usize)> {
    let len = u32_at(bytes, 0)?;
    if len < MIN_BODY {
        return None;
    }
    let body = bytes.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?;
    if crc32(&[&bytes[..4], body]) != u32_at(bytes, 4)? as u32 {
        return None;
    }
    let key_len = u32_at(body, 1)?;
    let key = body.get(MIN_BODY..MIN_BODY.checked_add(key_len)?)?;
    let payload = &body[MIN_BODY + key_len..];
    let known = (code::SET..=code::LAST).contains(&body[0]);
    if !known || (body[0] == code::DEL && !payload.is_empty()) {
        return None;
    }
    let record = Replayed {
        code: body[0],
        key: key.to_vec(),
        payload: payload.to_vec(),
    };
    Some((record, RECORD_HEADER + len))
}

/// Replays `log` and checks it against the model; returns the records.
fn checked_replay(log: &[u8]) -> (Vec<Replayed>, End) {
    let replay = testing::replay(log);
    let mut at = MAGIC.len();
    for (i, record) in replay.records.iter().enumerate() {
        let (model, len) = good_record(&log[at..])
            .unwrap_or_else(|| panic!("record {i} at {at} is not a good record: {record:?}"));
        assert_eq!(&model, record, "record {i} at {at}");
        at += len;
    }
    match replay.end {
        End::Clean => assert_eq!(at, log.len(), "clean, but the records end at {at}"),
        End::Torn { offset } => {
            assert_eq!(
                offset, at as u64,
                "torn at {offset}, the records end at {at}"
            );
            let good = (at + 1..log.len()).find(|&p| good_record(&log[p..]).is_some());
            assert_eq!(good, None, "called torn at {at}, dropping a good record");
        }
        End::Corrupt { offset, next } => {
            assert_eq!(
                offset, at as u64,
                "corrupt at {offset}, the records end at {at}"
            );
            if let Some(next) = next {
                let first = (at + 1..log.len()).find(|&p| good_record(&log[p..]).is_some());
                assert_eq!(first, Some(next as usize), "the next good record");
            }
        }
    }
    assert!(
        replay.checksummed <= WORK_PER_BYTE * log.len() as u64,
        "{} bytes checksummed for a {}-byte log",
        replay.checksummed,
        log.len()
    );
    (replay.records, replay.end)
}

/// Records from `recipe`, each: a type byte, key and payload lengths,
/// their bytes (as far as the recipe goes).
fn records_from(mut recipe: &[u8]) -> Vec<Replayed> {
    let mut take = |n: usize| {
        let (taken, rest) = recipe.split_at(n.min(recipe.len()));
        recipe = rest;
        taken.to_vec()
    };
    let mut records = Vec::new();
    loop {
        let header = take(3);
        let [kind, key_len, payload_len] = header[..] else {
            return records;
        };
        let code = code::SET + kind % code::LAST;
        let key = take(usize::from(key_len % 16));
        let payload = if code == code::DEL {
            Vec::new()
        } else {
            take(usize::from(payload_len % 64))
        };
        records.push(Replayed { code, key, payload });
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. Any bytes as a log.
    let mut log = MAGIC.to_vec();
    log.extend_from_slice(data);
    checked_replay(&log);

    // 2. A log the store wrote, damaged.
    let Some((damage, recipe)) = data.split_first_chunk::<3>() else {
        return;
    };
    let written = records_from(recipe);
    let mut log = MAGIC.to_vec();
    let mut starts = Vec::new();
    for record in &written {
        starts.push(log.len());
        testing::encode(&mut log, record.code, &record.key, &record.payload);
    }
    let (replayed, _) = checked_replay(&log);
    assert_eq!(replayed, written, "an undamaged log");
    if log.len() == MAGIC.len() {
        return;
    }
    let at = MAGIC.len()
        + usize::from(u16::from_le_bytes([damage[0], damage[1]])) % (log.len() - MAGIC.len());
    // The record the damage is in.
    let hit = starts.partition_point(|&start| start <= at) - 1;
    // Replay stops at the damaged record: the ones before it are all it hands over.
    let (replayed, end) = if damage[2] == 0 {
        log.truncate(at);
        let (replayed, end) = checked_replay(&log);
        if at == starts[hit] {
            assert_eq!(end, End::Clean, "cut at record {hit}'s start");
        }
        (replayed, end)
    } else {
        log[at] ^= damage[2];
        let (replayed, end) = checked_replay(&log);
        assert_ne!(
            end,
            End::Clean,
            "byte {at} (record {hit}) changed, yet clean"
        );
        if hit + 1 < written.len() {
            assert!(
                !matches!(end, End::Torn { .. }),
                "byte {at} (record {hit}) changed, and the good records after it dropped as torn"
            );
        }
        (replayed, end)
    };
    assert!(
        replayed == written[..hit],
        "damage in record {hit} at byte {at}: {} records replayed ({end:?})",
        replayed.len()
    );
});
