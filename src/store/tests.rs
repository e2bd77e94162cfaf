//! Unit tests of the store and its log, on real files in temporary
//! directories (no sockets).

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use super::log::{LOG_NAME, MAGIC};
use super::*;

/// A unique directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("readyloop-store-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
    fn log(&self) -> PathBuf {
        self.0.join(LOG_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Warnings logged by any test, so a test can look for its own.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;
impl ::log::Log for Capture {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        metadata.level() <= ::log::Level::Warn
    }
    fn log(&self, record: &::log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_warnings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        ::log::set_logger(&Capture).unwrap();
        ::log::set_max_level(::log::LevelFilter::Warn);
    });
}

/// The bytes a SET record of `key` and `value` takes.
fn set_len(key: &[u8], value: &[u8]) -> u64 {
    (log::RECORD_HEADER + 5 + key.len() + value.len()) as u64
}

fn del(store: &Store, key: &str) {
    store.tx(std::time::SystemTime::now(), |tx| tx.del(key.as_bytes()));
}

fn get(store: &Store, key: &str) -> Option<String> {
    let mut out = Vec::new();
    store
        .get_into(key, &mut out)
        .then(|| String::from_utf8(out).unwrap())
}

#[test]
fn in_memory_store_reads_writes_and_counts() {
    let store = Store::in_memory();
    assert_eq!(store.policy(), None);
    store.set("a", "1");
    store.set("a", "2");
    assert_eq!(get(&store, "a").as_deref(), Some("2"));
    del(&store, "a");
    del(&store, "zz");
    assert!(store.is_empty());
    assert_eq!(store.sync_work(store.set("b", "x")), None);
}

#[test]
fn changes_are_replayed_after_a_restart_under_every_policy() {
    for policy in [Fsync::Always, Fsync::Everysec, Fsync::No] {
        let dir = TempDir::new("replay");
        {
            let store = Store::open(&dir.0, policy).unwrap();
            assert_eq!(store.policy(), Some(policy));
            store.set("a", "1");
            store.set("b", "2");
            store.set("a", "3");
            del(&store, "b");
            store.set("n", "1");
            store.set([0xff, 0], [0, 0xfe]); // binary-safe
            store.insert_missing(&[("a", "seed"), ("s", "seed")]);
            store.close().unwrap();
        }
        let store = Store::open(&dir.0, policy).unwrap();
        assert_eq!(get(&store, "a").as_deref(), Some("3"), "{policy}");
        assert_eq!(get(&store, "b"), None);
        assert_eq!(get(&store, "n").as_deref(), Some("1"));
        assert_eq!(get(&store, "s").as_deref(), Some("seed"));
        let mut binary = Vec::new();
        assert!(store.get_into([0xff, 0], &mut binary) && binary == [0, 0xfe]);
        assert_eq!(store.len(), 4);
    }
}

#[test]
fn dropping_the_last_handle_flushes() {
    let dir = TempDir::new("drop");
    let store = Store::open(&dir.0, Fsync::No).unwrap();
    let other = store.clone();
    assert_eq!(store, other);
    assert_ne!(store, Store::in_memory());
    store.set("k", "v");
    drop(store);
    drop(other);
    assert_eq!(
        get(&Store::open(&dir.0, Fsync::No).unwrap(), "k").as_deref(),
        Some("v")
    );
}

#[test]
fn always_acknowledges_through_sync_work_with_group_commit() {
    let dir = TempDir::new("always");
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    let first = store.set("a", "1");
    let second = store.set("b", "2");
    let work = store.sync_work(first).expect("not durable yet");
    assert_eq!(
        work,
        Work::Sync {
            store: store.clone(),
            seq: first
        }
    );
    let size_before = std::fs::metadata(dir.log()).unwrap().len();
    assert_eq!(
        size_before,
        MAGIC.len() as u64,
        "nothing written before the job"
    );
    assert_eq!(run(work), Done::Synced(first));
    // One fsync covered both: the second needs no job.
    assert_eq!(store.sync_work(second), None);
    let grown = std::fs::metadata(dir.log()).unwrap().len();
    assert_eq!(
        grown - size_before,
        set_len(b"a", b"1") + set_len(b"b", b"2")
    );
    // Other policies never ask for a job.
    let dir2 = TempDir::new("everysec");
    let lazy = Store::open(&dir2.0, Fsync::Everysec).unwrap();
    assert_eq!(lazy.sync_work(lazy.set("a", "1")), None);
}

#[test]
fn many_threads_waiting_at_once_all_get_their_changes_durable() {
    let dir = TempDir::new("group");
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let seq = store.set(format!("t{t}-{i}"), "v");
                    if let Some(work) = store.sync_work(seq) {
                        assert_eq!(run(work), Done::Synced(seq));
                    }
                    let log = store.handle.core.log.as_ref().unwrap();
                    assert!(log.durable.load(Ordering::Acquire) >= seq.0);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    drop(store);
    assert_eq!(Store::open(&dir.0, Fsync::Always).unwrap().len(), 400);
}

#[test]
fn everysec_writes_in_the_background_without_a_flush() {
    let dir = TempDir::new("background");
    let store = Store::open(&dir.0, Fsync::Everysec).unwrap();
    store.set("k", "v");
    let want = MAGIC.len() as u64 + set_len(b"k", b"v");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(dir.log()).unwrap().len() < want {
        assert!(Instant::now() < deadline, "the flusher did not write");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::mem::forget(store); // like kill -9: no flush on the way out
}

#[test]
fn a_torn_last_record_is_dropped_with_a_warning_and_truncated() {
    capture_warnings();
    let dir = TempDir::new("torn");
    {
        let store = Store::open(&dir.0, Fsync::Always).unwrap();
        store.set("kept", "yes");
        store.set("torn", "this one is cut");
        store.close().unwrap();
    }
    let good = MAGIC.len() as u64 + set_len(b"kept", b"yes");
    let full = std::fs::metadata(dir.log()).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.log())
        .unwrap();
    file.set_len(full - 3).unwrap();
    drop(file);

    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert_eq!(get(&store, "kept").as_deref(), Some("yes"));
    assert_eq!(get(&store, "torn"), None);
    assert_eq!(std::fs::metadata(dir.log()).unwrap().len(), good);
    let path = dir.log().display().to_string();
    let logged = LOGGED.lock().unwrap();
    assert!(
        logged
            .iter()
            .any(|w| w.contains(&path) && w.contains(&format!("byte offset {good}"))),
        "{logged:?}"
    );
    drop(logged);
    // Appending after the repair starts at the good end.
    store.set("after", "repair");
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert_eq!(get(&store, "after").as_deref(), Some("repair"));
}

#[test]
fn a_corrupt_record_in_the_middle_stops_the_start_naming_file_and_offset() {
    let dir = TempDir::new("corrupt");
    {
        let store = Store::open(&dir.0, Fsync::Always).unwrap();
        for key in ["a", "b", "c"] {
            store.set(key, "value");
        }
        store.close().unwrap();
    }
    let mut bytes = std::fs::read(dir.log()).unwrap();
    let second = MAGIC.len() + set_len(b"a", b"value") as usize;
    bytes[second + 14] ^= 1; // the second record's value
    std::fs::write(dir.log(), &bytes).unwrap();
    let err = Store::open(&dir.0, Fsync::Always).unwrap_err().to_string();
    assert!(err.contains(&dir.log().display().to_string()), "{err}");
    assert!(err.contains(&format!("byte offset {second}")), "{err}");
    // Nothing was changed: the file is as it was.
    assert_eq!(std::fs::read(dir.log()).unwrap(), bytes);
    // The advice, run as given, drops only the damaged record.
    let advice = err
        .split_once(" with `")
        .unwrap()
        .1
        .rsplit_once('`')
        .unwrap()
        .0;
    let status = std::process::Command::new("sh")
        .args(["-c", advice])
        .status()
        .unwrap();
    assert!(status.success(), "{advice}");
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert_eq!(get(&store, "a").as_deref(), Some("value"));
    assert_eq!(get(&store, "b"), None);
    assert_eq!(get(&store, "c").as_deref(), Some("value"));
    let backup = dir.0.join(format!("{LOG_NAME}.damaged"));
    assert_eq!(std::fs::read(backup).unwrap(), bytes);
}

#[test]
fn a_damaged_first_byte_gets_advice_that_keeps_every_record() {
    let dir = TempDir::new("first-byte");
    {
        let store = Store::open(&dir.0, Fsync::Always).unwrap();
        store.set("a", "1");
        store.set("b", "2");
        store.close().unwrap();
    }
    let mut bytes = std::fs::read(dir.log()).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(dir.log(), &bytes).unwrap();
    let err = Store::open(&dir.0, Fsync::Always).unwrap_err().to_string();
    assert!(err.contains("byte offset 0"), "{err}");
    assert!(
        !err.contains("truncate"),
        "advice that deletes every record: {err}"
    );
    let advice = err
        .split_once(" with `")
        .unwrap()
        .1
        .split_once('`')
        .unwrap()
        .0;
    let status = std::process::Command::new("sh")
        .args(["-c", advice])
        .status()
        .unwrap();
    assert!(status.success(), "{advice}");
    let store = Store::open(&dir.0, Fsync::Always).unwrap();
    assert_eq!(get(&store, "a").as_deref(), Some("1"));
    assert_eq!(get(&store, "b").as_deref(), Some("2"));
}

#[test]
fn a_stray_file_and_a_second_server_are_refused() {
    let dir = TempDir::new("stray");
    let store = Store::open(&dir.0, Fsync::No).unwrap();
    let err = Store::open(&dir.0, Fsync::No).unwrap_err().to_string();
    assert!(
        err.contains("another readyloop") && err.contains("--data-dir"),
        "{err}"
    );
    drop(store);
    std::fs::write(dir.log(), b"hello, not a log").unwrap();
    let err = Store::open(&dir.0, Fsync::No).unwrap_err().to_string();
    assert!(err.contains("not a readyloop log"), "{err}");
    // A file where the directory should be.
    let file = TempDir::new("file");
    std::fs::write(&file.0, b"").unwrap();
    let err = Store::open(&file.0.join("sub"), Fsync::No)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot create the data directory"), "{err}");
    let _ = std::fs::remove_file(&file.0);
}

#[test]
fn compaction_keeps_the_data_and_shrinks_the_log() {
    let dir = TempDir::new("compact");
    let store = Store::open(&dir.0, Fsync::Everysec).unwrap();
    for i in 0..1000 {
        store.set(format!("k{}", i % 10), format!("value {i}"));
    }
    del(&store, "k9");
    store.flush().unwrap();
    let before = std::fs::metadata(dir.log()).unwrap().len();
    store.compact_with(|| {}).unwrap();
    let after = std::fs::metadata(dir.log()).unwrap().len();
    assert!(after < before / 50, "{before} -> {after}");
    assert_eq!(after, store.handle.core.lock().base);
    store.set("k0", "after compaction");
    drop(store);
    let store = Store::open(&dir.0, Fsync::Everysec).unwrap();
    assert_eq!(store.len(), 9);
    assert_eq!(get(&store, "k0").as_deref(), Some("after compaction"));
    assert_eq!(get(&store, "k8").as_deref(), Some("value 998"));
}

#[test]
fn writes_during_compaction_survive() {
    for policy in [Fsync::Always, Fsync::Everysec] {
        let dir = TempDir::new("during");
        let store = Store::open(&dir.0, policy).unwrap();
        for i in 0..100 {
            store.set("old", format!("{i}"));
        }
        store.set("gone", "soon");
        let during = store.clone();
        store
            .compact_with(move || {
                during.set("new", "written during the rewrite");
                during.set("old", "overwritten during");
                del(&during, "gone");
                // Some reach the old file before the switch, some do not.
                if policy == Fsync::Always {
                    during.flush().unwrap();
                }
                during.set("last", "still pending");
            })
            .unwrap();
        store.set("after", "the switch");
        std::mem::forget(store); // crash: only what the flusher wrote...
        let dir_path = dir.0.clone();
        // ...so flush explicitly through a fresh handle is impossible; the
        // rewrite fsynced everything before `last`. Check what is on disk
        // after a moment for the flusher (everysec) or nothing (always).
        if policy == Fsync::Everysec {
            std::thread::sleep(Duration::from_millis(100));
        }
        let bytes = std::fs::read(dir_path.join(LOG_NAME)).unwrap();
        let mut db = Db::default();
        let scan = log::scan(&bytes, |record| {
            db.apply(record);
        });
        assert_eq!(scan, Ok(log::Scan::Clean), "{policy}");
        let value = |k: &str| match db.entry(k.as_bytes()).map(|e| &e.value) {
            Some(Value::Str(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        };
        assert_eq!(
            value("old").as_deref(),
            Some("overwritten during"),
            "{policy}"
        );
        assert_eq!(value("new").as_deref(), Some("written during the rewrite"));
        assert_eq!(value("gone"), None);
        assert_eq!(value("last").as_deref(), Some("still pending"), "{policy}");
        if policy == Fsync::Everysec {
            assert_eq!(value("after").as_deref(), Some("the switch"));
        }
    }
}

#[test]
fn the_flusher_compacts_by_itself() {
    let dir = TempDir::new("auto");
    let store = Store::open_with(&dir.0, Fsync::Everysec, 4096).unwrap();
    store.start_flusher().unwrap();
    for i in 0..2000 {
        store.set("k", format!("{i:>32}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(dir.log()).unwrap().len();
        if size < 4096 && store.handle.core.lock().pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no rewrite: {size} bytes");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(store);
    let store = Store::open(&dir.0, Fsync::Everysec).unwrap();
    assert_eq!(get(&store, "k").as_deref(), Some(&*format!("{:>32}", 1999)));
}

mod typed;
