//! The typed keyspace: strings, lists, hashes, sets and sorted sets, each
//! with an optional deadline, and the one function that changes them:
//! [`Db::apply`], which runs a log record. (A little over 500 lines: every
//! type's change is here, beside the one function that applies them.)
//!
//! Every change, live or replayed, goes through `apply`: a command encodes
//! its change as a record (into the log's pending buffer), then applies
//! that record. So replay at start runs exactly the code the live change
//! ran, and what the log says is, by construction, what happened. Records
//! are deterministic (a popped count, a score, an absolute deadline), never
//! "pop a random member" or "expire in 10 s".
//!
//! `apply` never checks deadlines: during replay a key whose deadline has
//! passed must still take the records that follow it in the log, as it did
//! live. Expiry deletes keys with a DEL record ([`super::tx`]).
//!
//! Nothing here does I/O or knows commands.

use std::collections::{BTreeSet, HashMap, VecDeque};

use indexmap::{IndexMap, IndexSet};

use super::log::{self, Record, code};
pub use super::zset::{Score, ZSet};

/// A key's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Bytes.
    Str(Vec<u8>),
    /// Items in order.
    List(VecDeque<Vec<u8>>),
    /// Field to value.
    Hash(HashMap<Vec<u8>, Vec<u8>>),
    /// Members, in a dense index too, so SPOP and SRANDMEMBER pick one in
    /// O(1).
    Set(IndexSet<Vec<u8>>),
    /// Members ordered by score.
    ZSet(ZSet),
}

impl Value {
    /// Redis' name for the type (`TYPE`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }
}

/// A value and its deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// When it expires, in ms since the Unix epoch.
    pub deadline: Option<u64>,
}

/// What [`Db::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The op's count: items added or removed, the list's new length...
    pub count: i64,
    /// False when nothing changed (the record need not be logged).
    pub changed: bool,
}

impl Applied {
    const NOTHING: Applied = Applied {
        count: 0,
        changed: false,
    };
    fn changed(count: i64) -> Applied {
        Applied {
            count,
            changed: true,
        }
    }
}

/// The keyspace.
///
/// Keys live in an `IndexMap`: a hash table whose entries are also in a
/// dense array, so SCAN walks positions (O(COUNT) per call) and RANDOMKEY
/// picks one in O(1). Deleting swaps the last entry into the hole; SCAN
/// walks from the end for that reason (see `kv::keys::scan`).
#[derive(Debug, Default)]
pub struct Db {
    map: IndexMap<Vec<u8>, Entry>,
    /// Every key with a deadline, soonest first (active expiry).
    deadlines: BTreeSet<(u64, Vec<u8>)>,
    /// Keys someone WATCHes: their version and how many watch them.
    watched: HashMap<Vec<u8>, (u64, usize)>,
}

impl Db {
    /// How many keys (expired ones not yet deleted included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry of `key`, deadline not checked.
    pub fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    /// The key and entry at position `index` (0..len).
    pub fn get_index(&self, index: usize) -> Option<(&[u8], &Entry)> {
        self.map
            .get_index(index)
            .map(|(key, entry)| (key.as_slice(), entry))
    }

    /// How many keys have a deadline.
    pub fn expiring(&self) -> usize {
        self.deadlines.len()
    }

    /// Every key and entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map.iter().map(|(key, entry)| (key.as_slice(), entry))
    }

    /// The soonest deadline, with its key.
    pub fn first_deadline(&self) -> Option<(u64, &[u8])> {
        self.deadlines
            .first()
            .map(|(at, key)| (*at, key.as_slice()))
    }

    /// Starts watching `key`; returns its version now.
    pub fn watch(&mut self, key: &[u8]) -> u64 {
        let slot = self.watched.entry(key.to_vec()).or_insert((0, 0));
        slot.1 += 1;
        slot.0
    }

    /// Stops one watch of `key`.
    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(slot) = self.watched.get_mut(key) {
            slot.1 -= 1;
            if slot.1 == 0 {
                self.watched.remove(key);
            }
        }
    }

    /// The version of a watched key (bumped by every change to it).
    pub fn version(&self, key: &[u8]) -> u64 {
        self.watched.get(key).map_or(0, |slot| slot.0)
    }

    fn touch(&mut self, key: &[u8]) {
        if let Some(slot) = self.watched.get_mut(key) {
            slot.0 += 1;
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.map.swap_remove(key)?;
        if let Some(at) = entry.deadline {
            self.deadlines.remove(&(at, key.to_vec()));
        }
        Some(entry)
    }

    fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) -> bool {
        let Some(entry) = self.map.get_mut(key) else {
            return false;
        };
        if entry.deadline == deadline {
            return false;
        }
        if let Some(old) = entry.deadline {
            self.deadlines.remove(&(old, key.to_vec()));
        }
        entry.deadline = deadline;
        if let Some(at) = deadline {
            self.deadlines.insert((at, key.to_vec()));
        }
        true
    }

    /// The value of `key` if it has type `T`'s variant, created empty when
    /// missing; `None` when the key holds another type.
    fn value_or_new(&mut self, key: &[u8], new: fn() -> Value) -> Option<&mut Value> {
        let entry = self.map.entry(key.to_vec()).or_insert_with(|| Entry {
            value: new(),
            deadline: None,
        });
        (std::mem::discriminant(&entry.value) == std::mem::discriminant(&new()))
            .then_some(&mut entry.value)
    }

    /// Deletes `key` if its collection became empty.
    fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.map.get(key).map(|e| &e.value) {
            Some(Value::List(l)) => l.is_empty(),
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::ZSet(z)) => z.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(key);
        }
    }

    /// Runs one record. Records of a type that does not match the key's
    /// change nothing (commands check types before they write).
    pub(crate) fn apply(&mut self, record: Record<'_>) -> Applied {
        let Record { code, key, payload } = record;
        let applied = match code {
            code::SET => {
                match self.map.get_mut(key) {
                    Some(entry) => match &mut entry.value {
                        Value::Str(old) => {
                            old.clear();
                            old.extend_from_slice(payload);
                        }
                        other => *other = Value::Str(payload.to_vec()),
                    },
                    None => {
                        self.map.insert(
                            key.to_vec(),
                            Entry {
                                value: Value::Str(payload.to_vec()),
                                deadline: None,
                            },
                        );
                    }
                }
                Applied::changed(1)
            }
            code::DEL => match self.remove(key) {
                Some(_) => Applied::changed(1),
                None => Applied::NOTHING,
            },
            code::EXPIRE => {
                let at = u64_at(payload, 0).unwrap_or(0);
                let changed = self.set_deadline(key, (at != 0).then_some(at));
                Applied {
                    count: i64::from(self.map.contains_key(key)),
                    changed,
                }
            }
            code::APPEND => {
                let Some(Value::Str(value)) = self.value_or_new(key, || Value::Str(Vec::new()))
                else {
                    return Applied::NOTHING;
                };
                value.extend_from_slice(payload);
                Applied::changed(value.len() as i64)
            }
            code::LPUSH | code::RPUSH => {
                let Some(Value::List(list)) =
                    self.value_or_new(key, || Value::List(VecDeque::new()))
                else {
                    return Applied::NOTHING;
                };
                for item in log::items(payload).map_while(|i| i) {
                    if code == code::LPUSH {
                        list.push_front(item.to_vec());
                    } else {
                        list.push_back(item.to_vec());
                    }
                }
                let len = list.len() as i64;
                self.drop_if_empty(key);
                Applied::changed(len)
            }
            code::LPOP | code::RPOP => {
                let Some(Entry {
                    value: Value::List(list),
                    ..
                }) = self.map.get_mut(key)
                else {
                    return Applied::NOTHING;
                };
                let n = (u64_at(payload, 0).unwrap_or(0) as usize).min(list.len());
                if code == code::LPOP {
                    list.drain(..n);
                } else {
                    list.truncate(list.len() - n);
                }
                self.drop_if_empty(key);
                Applied {
                    count: n as i64,
                    changed: n > 0,
                }
            }
            code::LSET => {
                let (
                    Some(index),
                    Some(Entry {
                        value: Value::List(list),
                        ..
                    }),
                ) = (u64_at(payload, 0), self.map.get_mut(key))
                else {
                    return Applied::NOTHING;
                };
                match list.get_mut(index as usize) {
                    Some(item) => {
                        item.clear();
                        item.extend_from_slice(&payload[8..]);
                        Applied::changed(1)
                    }
                    None => Applied::NOTHING,
                }
            }
            code::LTRIM => {
                let (
                    Some(start),
                    Some(end),
                    Some(Entry {
                        value: Value::List(list),
                        ..
                    }),
                ) = (
                    u64_at(payload, 0),
                    u64_at(payload, 8),
                    self.map.get_mut(key),
                )
                else {
                    return Applied::NOTHING;
                };
                let end = (end as usize).min(list.len());
                let start = (start as usize).min(end);
                let before = list.len();
                list.truncate(end);
                list.drain(..start);
                let len = list.len();
                self.drop_if_empty(key);
                Applied {
                    count: len as i64,
                    changed: len != before,
                }
            }
            code::LREM => {
                let (
                    Some(count),
                    Some(Entry {
                        value: Value::List(list),
                        ..
                    }),
                ) = (u64_at(payload, 0), self.map.get_mut(key))
                else {
                    return Applied::NOTHING;
                };
                let removed = lrem(list, count as i64, &payload[8..]);
                self.drop_if_empty(key);
                Applied {
                    count: removed as i64,
                    changed: removed > 0,
                }
            }
            code::HSET => {
                let Some(Value::Hash(hash)) =
                    self.value_or_new(key, || Value::Hash(HashMap::new()))
                else {
                    return Applied::NOTHING;
                };
                let mut items = log::items(payload).map_while(|i| i);
                let mut added = 0;
                while let (Some(field), Some(value)) = (items.next(), items.next()) {
                    match hash.get_mut(field) {
                        Some(old) => {
                            old.clear();
                            old.extend_from_slice(value);
                        }
                        None => {
                            hash.insert(field.to_vec(), value.to_vec());
                            added += 1;
                        }
                    }
                }
                self.drop_if_empty(key);
                Applied::changed(added)
            }
            code::SADD => {
                let Some(Value::Set(set)) = self.value_or_new(key, || Value::Set(IndexSet::new()))
                else {
                    return Applied::NOTHING;
                };
                let mut added = 0;
                for member in log::items(payload).map_while(|i| i) {
                    if !set.contains(member) {
                        set.insert(member.to_vec());
                        added += 1;
                    }
                }
                self.drop_if_empty(key);
                Applied {
                    count: added,
                    changed: added > 0,
                }
            }
            code::ZADD => {
                let Some(Value::ZSet(zset)) =
                    self.value_or_new(key, || Value::ZSet(ZSet::default()))
                else {
                    return Applied::NOTHING;
                };
                let mut items = log::items(payload).map_while(|i| i);
                let mut added = 0;
                while let (Some(score), Some(member)) = (items.next(), items.next()) {
                    let Some(score) = u64_at(score, 0).map(f64::from_bits) else {
                        break;
                    };
                    if !score.is_nan() && zset.insert(member, score) {
                        added += 1;
                    }
                }
                self.drop_if_empty(key);
                Applied::changed(added)
            }
            code::HDEL | code::SREM | code::ZREM => {
                let Some(entry) = self.map.get_mut(key) else {
                    return Applied::NOTHING;
                };
                let mut removed = 0;
                for item in log::items(payload).map_while(|i| i) {
                    let gone = match (&mut entry.value, code) {
                        (Value::Hash(hash), code::HDEL) => hash.remove(item).is_some(),
                        (Value::Set(set), code::SREM) => set.swap_remove(item),
                        (Value::ZSet(zset), code::ZREM) => zset.remove(item),
                        _ => false,
                    };
                    removed += i64::from(gone);
                }
                self.drop_if_empty(key);
                Applied {
                    count: removed,
                    changed: removed > 0,
                }
            }
            code::RENAME => {
                let Some(entry) = self.remove(key) else {
                    return Applied::NOTHING;
                };
                self.remove(payload);
                self.touch(payload);
                if let Some(at) = entry.deadline {
                    self.deadlines.insert((at, payload.to_vec()));
                }
                self.map.insert(payload.to_vec(), entry);
                Applied::changed(1)
            }
            code::FLUSH => {
                let had = self.map.len() as i64;
                self.map.clear();
                self.deadlines.clear();
                for slot in self.watched.values_mut() {
                    slot.0 += 1;
                }
                Applied::changed(had)
            }
            _ => Applied::NOTHING,
        };
        if applied.changed {
            self.touch(key);
        }
        applied
    }
}

/// LREM: removes up to `count` items equal to `item` (all when 0; from
/// the tail when negative). Returns how many went.
fn lrem(list: &mut VecDeque<Vec<u8>>, count: i64, item: &[u8]) -> usize {
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        list.retain(|x| {
            let drop = removed < limit && x == item;
            removed += usize::from(drop);
            !drop
        });
    } else {
        let mut keep: Vec<bool> = Vec::with_capacity(list.len());
        for x in list.iter().rev() {
            let drop = removed < limit && x == item;
            removed += usize::from(drop);
            keep.push(!drop);
        }
        let mut flags = keep.into_iter().rev();
        list.retain(|_| flags.next().unwrap_or(true));
    }
    removed
}

/// The little-endian u64 at `at` in `bytes`.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at + 8)?;
    Some(u64::from_le_bytes(slice.try_into().expect("8 bytes")))
}
