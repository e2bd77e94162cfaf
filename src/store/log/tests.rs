//! The log format and replay, on byte buffers (no files).

use super::*;

/// The two record types the tests write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Set(&'a [u8], &'a [u8]),
    Del(&'a [u8]),
}

fn encode(op: Op<'_>, out: &mut Vec<u8>) {
    match op {
        Op::Set(key, value) => encode_set(out, key, value),
        Op::Del(key) => {
            let start = begin(out, code::DEL, key);
            finish(out, start);
        }
    }
}

fn set_len(key: &[u8], value: &[u8]) -> u64 {
    (RECORD_HEADER + MIN_BODY + key.len() + value.len()) as u64
}

fn log_of(ops: &[Op<'_>]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    for &op in ops {
        encode(op, &mut bytes);
    }
    bytes
}

fn replay(bytes: &[u8]) -> (Result<Scan, Corrupt>, Vec<String>) {
    let mut seen = Vec::new();
    let scan = scan(bytes, |record| {
        let op = match record.code {
            code::SET => Op::Set(record.key, record.payload),
            code::DEL => Op::Del(record.key),
            other => panic!("a test log with a record of type {other}"),
        };
        seen.push(format!("{op:?}"));
    });
    (scan, seen)
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(checksum(b"1234", b"56789"), 0xCBF4_3926);
    assert_eq!(checksum(b"", b""), 0);
}

/// A log written by readyloop before the CRC came from `crc32fast`
/// (its bytes made by Python's `zlib.crc32`, an independent IEEE CRC):
/// SET greeting hello, SET n 41, DEL greeting, SET n 42.
const OLD_LOG: &[u8] = b"RDYLOG1\n\
    \x12\x00\x00\x00\xf5\x8d\xd1\xd7\x01\x08\x00\x00\x00greetinghello\
    \x08\x00\x00\x00\x5c\xae\xb9\xbf\x01\x01\x00\x00\x00n41\
    \x0d\x00\x00\x00\xd8\xea\xc0\x9e\x02\x08\x00\x00\x00greeting\
    \x08\x00\x00\x00\xe6\xff\xb0\x26\x01\x01\x00\x00\x00n42";

#[test]
fn a_log_written_by_the_old_checksum_code_replays() {
    let (scan, seen) = replay(OLD_LOG);
    assert_eq!(scan, Ok(Scan::Clean));
    assert_eq!(
        seen,
        [
            format!("{:?}", Op::Set(b"greeting", b"hello")),
            format!("{:?}", Op::Set(b"n", b"41")),
            format!("{:?}", Op::Del(b"greeting")),
            format!("{:?}", Op::Set(b"n", b"42")),
        ]
    );
    // And encoding the same changes today gives the same bytes.
    let ops = [
        Op::Set(b"greeting", b"hello"),
        Op::Set(b"n", b"41"),
        Op::Del(b"greeting"),
        Op::Set(b"n", b"42"),
    ];
    assert_eq!(log_of(&ops), OLD_LOG);
}

#[test]
fn records_round_trip() {
    let ops = [Op::Set(b"k", b"v"), Op::Del(b"k"), Op::Set(b"", b"")];
    let bytes = log_of(&ops);
    assert_eq!(bytes.len() as u64, 8 + set_len(b"k", b"v") + 14 + 13);
    let (scan, seen) = replay(&bytes);
    assert_eq!(scan, Ok(Scan::Clean));
    assert_eq!(seen.len(), 3);
}

#[test]
fn every_cut_of_the_last_record_is_a_torn_tail() {
    let bytes = log_of(&[Op::Set(b"a", b"1"), Op::Set(b"b", b"22")]);
    let second = 8 + set_len(b"a", b"1") as usize;
    for cut in second + 1..bytes.len() {
        let (scan, seen) = replay(&bytes[..cut]);
        assert!(
            matches!(scan, Ok(Scan::Torn { offset, .. }) if offset == second as u64),
            "cut at {cut}: {scan:?}"
        );
        assert_eq!(seen.len(), 1);
    }
}

#[test]
fn a_zero_filled_tail_is_torn_too() {
    let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
    let end = bytes.len() as u64;
    bytes.extend_from_slice(&[0; 4096]);
    assert!(matches!(replay(&bytes).0, Ok(Scan::Torn { offset, .. }) if offset == end));
}

#[test]
fn damage_followed_by_a_good_record_is_corrupt() {
    let mut bytes = log_of(&[
        Op::Set(b"a", b"1"),
        Op::Set(b"b", b"2"),
        Op::Set(b"c", b"3"),
    ]);
    let second = 8 + set_len(b"a", b"1") as usize;
    bytes[second + RECORD_HEADER + 6] ^= 0x40; // the key of the second record
    let (scan, seen) = replay(&bytes);
    let corrupt = scan.unwrap_err();
    assert_eq!(corrupt.offset, second as u64);
    assert!(corrupt.reason.contains("checksum"), "{}", corrupt.reason);
    assert_eq!(seen.len(), 1);
    // A broken length field in the middle is caught the same way.
    let mut bytes = log_of(&[
        Op::Set(b"a", b"1"),
        Op::Set(b"b", b"2"),
        Op::Set(b"c", b"3"),
    ]);
    bytes[second + 3] = 0x7f;
    assert_eq!(replay(&bytes).0.unwrap_err().offset, second as u64);
}

#[test]
fn an_unknown_op_with_a_good_checksum_is_never_dropped() {
    let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
    let start = bytes.len();
    encode(Op::Set(b"b", b"2"), &mut bytes);
    bytes[start + RECORD_HEADER] = 99;
    let crc = checksum(&bytes[start..start + 4], &bytes[start + RECORD_HEADER..]);
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let corrupt = replay(&bytes).0.unwrap_err();
    assert!(corrupt.reason.contains("unknown record type 99"));
}

/// Deterministic noise (xorshift64*), so a failure can be replayed.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn a_random_tail_is_torn_and_found_in_one_pass() {
    let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
    let end = bytes.len() as u64;
    // A header claiming more than is there, then noise: the reproducer
    // of issue 10 (item 4), smaller.
    bytes.extend_from_slice(&(8u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend(noise(1 << 20, 7));
    let (scan, seen) = replay(&bytes);
    assert!(
        matches!(scan, Ok(Scan::Torn { offset, .. }) if offset == end),
        "{scan:?}"
    );
    assert_eq!(seen.len(), 1);
}

#[test]
fn the_search_past_damage_checksums_a_bounded_number_of_bytes() {
    // Every 13 bytes a plausible SET header claiming the rest of the
    // file: checking each would be quadratic. The search gives up and
    // calls it corrupt: nothing is dropped.
    let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
    let end = bytes.len();
    bytes.extend_from_slice(b"damaged!");
    let count = 20_000;
    let total = bytes.len() + 13 * count;
    for _ in 0..count {
        let rest = total - bytes.len() - RECORD_HEADER;
        bytes.extend_from_slice(&(rest as u32).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.push(code::SET);
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    let corrupt = replay(&bytes).0.unwrap_err();
    assert_eq!(corrupt.offset, end as u64);
    assert!(
        corrupt.reason.contains("look like records"),
        "{}",
        corrupt.reason
    );
    assert_eq!(corrupt.next, None);
    // Each claims almost all the rest: the budget (twice the rest) pays
    // for two at most, and the search stops by the third.
    let stop = search(&bytes, end);
    assert!(
        matches!(stop, Search::GaveUp(at) if at <= end + 8 + 13 * 2),
        "{stop:?}"
    );
}

#[test]
fn the_search_finds_the_same_record_as_trying_every_offset() {
    let ops = [Op::Set(b"k1", b"v1"), Op::Del(b"k1"), Op::Set(b"k2", b"")];
    for seed in 0..200 {
        let mut bytes = log_of(&[Op::Set(b"a", b"1")]);
        let damage = bytes.len();
        bytes.extend(noise(seed as usize % 97 + 1, seed));
        let good = bytes.len();
        for op in ops {
            encode(op, &mut bytes);
        }
        let every_offset = (damage + 1..bytes.len()).find(|&p| parse(&bytes[p..]).is_ok());
        let expected = match every_offset {
            Some(at) => Search::Found(at),
            None => Search::Nothing,
        };
        assert_eq!(search(&bytes, damage), expected, "seed {seed}");
        assert!(every_offset.is_some_and(|at| at <= good));
    }
}

#[test]
fn the_word_at_a_time_scan_finds_what_a_byte_loop_finds() {
    let bytes = noise(4096, 3);
    for top in [0u8, 1, 7, 63, 64, 127] {
        for from in [0, 1, 5, 8, 100, 4090, 4096] {
            let naive = (from..bytes.len()).find(|&i| bytes[i] <= top);
            assert_eq!(next_byte_at_most(&bytes, from, top), naive, "{top} {from}");
        }
    }
}
