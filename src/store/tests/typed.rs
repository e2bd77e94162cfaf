//! The typed records (lists, hashes, sets, sorted sets, deadlines)
//! through replay and compaction, on real files.

use std::time::SystemTime;

use super::TempDir;
use crate::store::{Fsync, Store, Value, code};

/// Every type, with deadlines, through the typed records: what replay
/// and compaction must rebuild.
fn typed_changes(store: &Store, now: SystemTime) {
    store.tx(now, |tx| {
        tx.write(code::RPUSH, b"list")
            .items([&b"a"[..], b"b", b"c", b"d"])
            .apply();
        tx.write(code::LPUSH, b"list").item(b"z").apply();
        tx.write(code::LPOP, b"list").u64(1).apply(); // a b c d
        tx.write(code::RPOP, b"list").u64(1).apply(); // a b c
        tx.write(code::LSET, b"list").u64(1).bytes(b"B").apply(); // a B c
        tx.write(code::HSET, b"hash")
            .items([&b"f"[..], b"1", b"g", b"2"])
            .apply();
        tx.write(code::HDEL, b"hash").item(b"g").apply();
        tx.write(code::SADD, b"set")
            .items([&b"x"[..], b"y"])
            .apply();
        tx.write(code::SREM, b"set").item(b"y").apply();
        tx.write(code::ZADD, b"zset")
            .item(&1.5f64.to_bits().to_le_bytes())
            .item(b"m")
            .item(&(-2.0f64).to_bits().to_le_bytes())
            .item(b"n")
            .apply();
        tx.write(code::SET, b"ttl").bytes(b"v").apply();
        tx.write(code::EXPIRE, b"ttl")
            .u64(4_000_000_000_000)
            .apply();
        tx.write(code::SET, b"old").bytes(b"v").apply();
        tx.write(code::RENAME, b"old").bytes(b"new").apply();
        tx.write(code::APPEND, b"new").bytes(b"w").apply();
        tx.write(code::SET, b"gone").bytes(b"v").apply();
        tx.write(code::EXPIRE, b"gone").u64(1).apply(); // long past
    });
}

fn assert_typed(store: &Store, what: &str) {
    let core = store.handle.core.lock();
    let db = &core.db;
    let value = |key: &[u8]| db.entry(key).map(|e| e.value.clone());
    let list: std::collections::VecDeque<Vec<u8>> =
        [&b"a"[..], b"B", b"c"].iter().map(|i| i.to_vec()).collect();
    assert_eq!(value(b"list"), Some(Value::List(list)), "{what}");
    let Some(Value::Hash(hash)) = value(b"hash") else {
        panic!("{what}: no hash")
    };
    assert_eq!(hash.len(), 1);
    assert_eq!(hash.get(&b"f"[..]).map(Vec::as_slice), Some(&b"1"[..]));
    let Some(Value::Set(set)) = value(b"set") else {
        panic!("{what}: no set")
    };
    assert!(set.len() == 1 && set.contains(&b"x"[..]));
    let Some(Value::ZSet(zset)) = value(b"zset") else {
        panic!("{what}: no zset")
    };
    assert_eq!(
        zset.iter().collect::<Vec<_>>(),
        [(&b"n"[..], -2.0), (&b"m"[..], 1.5)],
        "{what}"
    );
    assert_eq!(
        db.entry(b"ttl").and_then(|e| e.deadline),
        Some(4_000_000_000_000)
    );
    assert_eq!(value(b"new"), Some(Value::Str(b"vw".to_vec())));
    assert_eq!(value(b"old"), None);
    // Replay does not expire: the key with a past deadline is there until
    // someone looks (or the active cycle runs).
    assert_eq!(db.entry(b"gone").and_then(|e| e.deadline), Some(1));
}

#[test]
fn every_type_and_deadline_is_replayed_and_survives_compaction() {
    let dir = TempDir::new("typed");
    {
        let store = Store::open(&dir.0, Fsync::Always).unwrap();
        typed_changes(&store, SystemTime::now());
        assert_typed(&store, "live");
        store.close().unwrap();
    }
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert_typed(&store, "replayed");
    store.compact_with(|| {}).unwrap();
    drop(store);
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert_typed(&store, "compacted");
    // The active cycle takes the expired key, and logs it.
    assert_eq!(store.expire_cycle(SystemTime::now(), 10), 1);
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert!(store.handle.core.lock().db.entry(b"gone").is_none());
}
