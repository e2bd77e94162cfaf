//! The key-value store shared by every connection of every mode (`todo`).
//!
//! One `std::sync::Mutex` around a `HashMap`: critical sections are a hash
//! lookup and never await or do I/O, so a plain mutex is the fastest correct
//! choice (mini-redis `db.rs` argues the same). Cloning a `Store` clones a
//! handle to the same data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle to the shared map. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Store {
    map: Arc<Mutex<HashMap<String, String>>>,
}

impl Store {
    /// An empty store held in memory only.
    pub fn in_memory() -> Store {
        Store::default()
    }

    /// Appends the value of `key` to `out`; false when there is none.
    /// Writes into the caller's buffer so a read allocates nothing.
    pub fn get_into(&self, key: &str, out: &mut Vec<u8>) -> bool {
        match self.lock().get(key) {
            Some(value) => {
                out.extend_from_slice(value.as_bytes());
                true
            }
            None => false,
        }
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn set(&self, key: &str, value: &str) {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(old) => {
                old.clear();
                old.push_str(value);
            }
            None => {
                map.insert(key.to_owned(), value.to_owned());
            }
        }
    }

    /// Stores each pair whose key is not there yet (initial data).
    pub fn insert_missing(&self, pairs: &[(&str, &str)]) {
        let mut map = self.lock();
        for (key, value) in pairs {
            map.entry((*key).to_owned())
                .or_insert_with(|| (*value).to_owned());
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map, even if a thread panicked while holding it: every update is
    /// a single insert, so the map is never left half-changed.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
