//! The store test suite, run on every implementation: in memory, RocksDB, and each wrapped in the
//! full decorator stack.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::*;

/// Records logged changes for assertions.
#[derive(Default)]
struct RecordingSink(
    Mutex<Vec<(String, Vec<u8>, Option<Vec<u8>>)>>,
    Mutex<Vec<i64>>,
);

impl ChangelogSink for RecordingSink {
    fn log(&self, store: &str, key: &[u8], value: Option<&[u8]>, timestamp: i64) {
        self.0
            .lock()
            .unwrap()
            .push((store.to_string(), key.to_vec(), value.map(<[u8]>::to_vec)));
        self.1.lock().unwrap().push(timestamp);
    }
}

struct Backend {
    label: &'static str,
    make: Box<dyn Fn(&str) -> Box<dyn KeyValueStore>>,
}

/// One database for the whole suite (opening RocksDB costs far more than any test); each call
/// of `backends()` gets column families of its own.
fn shared_db() -> Arc<RocksDbInstance> {
    static DB: std::sync::OnceLock<(tempfile::TempDir, Arc<RocksDbInstance>)> =
        std::sync::OnceLock::new();
    let (_, db) = DB.get_or_init(|| {
        let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDbInstance::open(&env, dir.path()).unwrap();
        (dir, db)
    });
    Arc::clone(db)
}

fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{name}-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

fn backends() -> Vec<Backend> {
    let rocks = shared_db();
    let stacked = shared_db();
    let sink: Arc<dyn ChangelogSink> = Arc::new(RecordingSink::default());
    let stack = move |db: Option<Arc<RocksDbInstance>>, sink: Arc<dyn ChangelogSink>| {
        move |name: &str| -> Box<dyn KeyValueStore> {
            let name = &unique(name);
            let ctx = StoreContext {
                task_id: "suite".into(),
                rocksdb: db.clone(),
                changelog: Some(Arc::clone(&sink)),
                cache: crate::MemoryBudget::new(1 << 20),
                uncommitted: crate::MemoryBudget::new(1 << 20),
                record_time: RecordTime::default(),
                timed: true,
            };
            match build_store(&StoreSpec::key_value(name), &ctx).unwrap() {
                BuiltStore::KeyValue(s) => s,
                _ => unreachable!(),
            }
        }
    };
    vec![
        Backend {
            label: "memory",
            make: Box::new(|name| Box::new(InMemoryKeyValueStore::new(name))),
        },
        Backend {
            label: "rocksdb",
            make: Box::new(move |name| Box::new(rocks.key_value_store(&unique(name)).unwrap())),
        },
        Backend {
            label: "memory+decorators",
            make: Box::new(stack(None, Arc::clone(&sink))),
        },
        Backend {
            label: "rocksdb+decorators",
            make: Box::new(stack(Some(stacked), sink)),
        },
    ]
}

fn collect(iter: KvIter<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|r| r.unwrap()).collect()
}

fn keys(iter: KvIter<'_>) -> Vec<Vec<u8>> {
    collect(iter).into_iter().map(|(k, _)| k).collect()
}

#[test]
fn put_get_overwrite_delete() {
    for b in backends() {
        let mut s = (b.make)("kv");
        assert_eq!(s.get(b"a").unwrap(), None, "{}", b.label);
        s.put(b"a", b"1").unwrap();
        s.put(b"a", b"2").unwrap();
        assert_eq!(s.get(b"a").unwrap(), Some(b"2".to_vec()), "{}", b.label);
        assert_eq!(s.delete(b"a").unwrap(), Some(b"2".to_vec()), "{}", b.label);
        assert_eq!(s.get(b"a").unwrap(), None, "{}", b.label);
        assert_eq!(s.delete(b"a").unwrap(), None, "{}", b.label);
        // Empty values are values, not deletes.
        s.put(b"e", b"").unwrap();
        assert_eq!(s.get(b"e").unwrap(), Some(vec![]), "{}", b.label);
    }
}

#[test]
fn ranges_are_ordered_and_respect_bounds() {
    for b in backends() {
        let mut s = (b.make)("kv");
        for k in [&b"d"[..], b"a", b"c", b"b", b"e"] {
            s.put(k, k).unwrap();
        }
        let all = keys(s.all().unwrap());
        assert_eq!(
            all,
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
                b"d".to_vec(),
                b"e".to_vec()
            ],
            "{}",
            b.label
        );
        let inc = keys(
            s.range(Bound::Included(b"b"), Bound::Included(b"d"))
                .unwrap(),
        );
        assert_eq!(
            inc,
            vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()],
            "{}",
            b.label
        );
        let exc = keys(
            s.range(Bound::Excluded(b"b"), Bound::Excluded(b"d"))
                .unwrap(),
        );
        assert_eq!(exc, vec![b"c".to_vec()], "{}", b.label);
        let inverted = keys(
            s.range(Bound::Included(b"d"), Bound::Included(b"b"))
                .unwrap(),
        );
        assert!(inverted.is_empty(), "{}", b.label);
        s.delete(b"c").unwrap();
        let after = keys(s.range(Bound::Included(b"b"), Bound::Unbounded).unwrap());
        assert_eq!(
            after,
            vec![b"b".to_vec(), b"d".to_vec(), b"e".to_vec()],
            "{}",
            b.label
        );
    }
}

#[test]
fn prefix_scan_and_counts() {
    for b in backends() {
        let mut s = (b.make)("kv");
        for k in [&b"user:1"[..], b"user:2", b"users", b"video:1", b"user\xff"] {
            s.put(k, b"x").unwrap();
        }
        let users = keys(s.prefix_scan(b"user:").unwrap());
        assert_eq!(
            users,
            vec![b"user:1".to_vec(), b"user:2".to_vec()],
            "{}",
            b.label
        );
        s.flush().unwrap();
        let n = s.approximate_num_entries().unwrap();
        assert!((1..=10).contains(&n), "{} counted {n}", b.label);
    }
}

#[test]
fn delete_range_drops_exactly_the_range() {
    for b in backends() {
        let mut s = (b.make)("kv");
        for i in 0u8..10 {
            s.put(&[i], &[i]).unwrap();
        }
        s.delete_range(&[3], &[7]).unwrap();
        let left: Vec<u8> = keys(s.all().unwrap()).into_iter().map(|k| k[0]).collect();
        assert_eq!(left, vec![0, 1, 2, 7, 8, 9], "{}", b.label);
    }
}

#[test]
fn window_store_fetches_by_key_and_time() {
    for b in backends() {
        let mut w = WindowStore::new((b.make)("win"), 10_000, Some(1_000), false);
        w.put(b"a", 0, Some(b"a0")).unwrap();
        w.put(b"a", 1_000, Some(b"a1")).unwrap();
        w.put(b"ab", 1_000, Some(b"ab1")).unwrap();
        w.put(b"a", 2_500, Some(b"a2")).unwrap();
        w.put(b"b", 2_000, Some(b"b2")).unwrap();
        assert_eq!(
            w.fetch(b"a", 1_000).unwrap(),
            Some(b"a1".to_vec()),
            "{}",
            b.label
        );
        assert_eq!(w.fetch(b"a", 1_001).unwrap(), None, "{}", b.label);
        let range = w.fetch_range(b"a", 1_000, 2_500).unwrap();
        assert_eq!(
            range,
            vec![(1_000, b"a1".to_vec()), (2_500, b"a2".to_vec())],
            "{}",
            b.label
        );
        let all = w.fetch_all(1_000, 2_000).unwrap();
        let got: Vec<(Vec<u8>, i64)> = all.into_iter().map(|e| (e.key, e.start)).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), 1_000),
                (b"ab".to_vec(), 1_000),
                (b"b".to_vec(), 2_000)
            ],
            "{}",
            b.label
        );
        w.put(b"a", 1_000, None).unwrap();
        assert_eq!(w.fetch(b"a", 1_000).unwrap(), None, "{}", b.label);
    }
}

#[test]
fn window_retention_drops_whole_segments() {
    for b in backends() {
        let mut w = WindowStore::new((b.make)("win"), 5_000, Some(1_000), false);
        for t in (0..5_000).step_by(500) {
            w.put(b"k", t, Some(b"v")).unwrap();
        }
        // Stream time 9_999: retention keeps starts from 5_000; segments 0..=4 go.
        assert!(w.put(b"k", 9_999, Some(b"v")).unwrap());
        assert!(!w.put(b"k", 4_000, Some(b"late")).unwrap(), "{}", b.label);
        let starts: Vec<i64> = w.all().unwrap().into_iter().map(|e| e.start).collect();
        assert_eq!(starts, vec![9_999], "{}", b.label);
        // The segments are gone from the store below, not only filtered out.
        let raw = collect(w.inner().all().unwrap());
        assert_eq!(raw.len(), 1, "{}", b.label);
    }
}

#[test]
fn window_store_can_retain_duplicates() {
    for b in backends() {
        let mut w = WindowStore::new((b.make)("join"), 10_000, None, true);
        w.put(b"k", 100, Some(b"x")).unwrap();
        w.put(b"k", 100, Some(b"y")).unwrap();
        let values: Vec<Vec<u8>> = w
            .fetch_range(b"k", 0, 200)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values, vec![b"x".to_vec(), b"y".to_vec()], "{}", b.label);
    }
}

#[test]
fn session_store_finds_merges_and_removes() {
    for b in backends() {
        let mut s = SessionStore::new((b.make)("sess"), 100_000, None);
        s.put(b"u", 0, 10, b"s1").unwrap();
        s.put(b"u", 100, 150, b"s2").unwrap();
        s.put(b"v", 0, 500, b"other").unwrap();
        // A record at 20 with gap 10 overlaps [0,10] only.
        let hit = s.find_sessions(b"u", 10, 30).unwrap();
        assert_eq!(
            hit.iter().map(|e| (e.start, e.end)).collect::<Vec<_>>(),
            vec![(0, 10)],
            "{}",
            b.label
        );
        // A record at 55 with gap 50 bridges both sessions.
        let both = s.find_sessions(b"u", 5, 105).unwrap();
        assert_eq!(both.len(), 2, "{}", b.label);
        s.remove(b"u", 0, 10).unwrap();
        s.remove(b"u", 100, 150).unwrap();
        s.put(b"u", 0, 150, b"merged").unwrap();
        let merged = s.fetch(b"u").unwrap();
        assert_eq!(merged.len(), 1, "{}", b.label);
        assert_eq!(
            (merged[0].start, merged[0].end, merged[0].value.clone()),
            (0, 150, b"merged".to_vec()),
            "{}",
            b.label
        );
        assert_eq!(
            s.fetch_session(b"v", 0, 500).unwrap(),
            Some(b"other".to_vec())
        );
    }
}

#[test]
fn session_retention_expires_old_sessions() {
    for b in backends() {
        let mut s = SessionStore::new((b.make)("sess"), 1_000, Some(100));
        s.put(b"u", 0, 50, b"old").unwrap();
        s.put(b"u", 5_000, 5_000, b"new").unwrap();
        let all = s.all().unwrap();
        assert_eq!(
            all.iter().map(|e| e.start).collect::<Vec<_>>(),
            vec![5_000],
            "{}",
            b.label
        );
        assert!(!s.put(b"u", 10, 20, b"late").unwrap(), "{}", b.label);
    }
}

#[test]
fn caching_collapses_updates_and_reads_its_writes() {
    let sink = Arc::new(RecordingSink::default());
    let time = RecordTime::default();
    let logged = ChangeLoggingKeyValueStore::new(
        InMemoryKeyValueStore::new("c"),
        sink.clone(),
        time.clone(),
    );
    let mut s = CachingKeyValueStore::new(logged, 1 << 20, time.clone());
    for (ts, key, value) in [
        (10, b"a", Some(b"1")),
        (20, b"a", Some(b"2")),
        (30, b"b", Some(b"x")),
        (40, b"b", None),
    ] {
        time.set(ts);
        match value {
            Some(v) => s.put(key, v).unwrap(),
            None => {
                s.delete(key).unwrap();
            }
        }
    }
    time.set(99);
    assert_eq!(s.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get(b"b").unwrap(), None);
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "nothing logged before the commit"
    );
    let flushed = s.flush_cache().unwrap();
    assert_eq!(
        flushed,
        vec![
            (b"a".to_vec(), Some(b"2".to_vec()), 20),
            (b"b".to_vec(), None, 40)
        ],
        "each key comes back with the timestamp of its last write"
    );
    assert_eq!(
        *sink.1.lock().unwrap(),
        vec![20, 40],
        "changelog records are stamped with their own write's timestamp"
    );
    assert_eq!(time.get(), 99, "the current record's time is put back");
    let logged = sink.0.lock().unwrap().clone();
    assert_eq!(logged.len(), 2, "one changelog record per key: {logged:?}");
    assert!(
        s.flush_cache().unwrap().is_empty(),
        "a second flush has nothing new"
    );
}

#[test]
fn caching_range_merges_dirty_entries_over_the_store() {
    let mut s = CachingKeyValueStore::new(
        InMemoryKeyValueStore::new("c"),
        1 << 20,
        RecordTime::default(),
    );
    s.put(b"a", b"1").unwrap();
    s.put(b"c", b"3").unwrap();
    s.flush().unwrap();
    s.put(b"b", b"2").unwrap();
    s.put(b"c", b"33").unwrap();
    s.delete(b"a").unwrap();
    let got = collect(s.all().unwrap());
    assert_eq!(
        got,
        vec![
            (b"b".to_vec(), b"2".to_vec()),
            (b"c".to_vec(), b"33".to_vec())
        ]
    );
}

#[test]
fn caching_asks_for_a_commit_when_full() {
    let mut s =
        CachingKeyValueStore::new(InMemoryKeyValueStore::new("c"), 16, RecordTime::default());
    s.put(b"k", b"0123456789").unwrap();
    assert!(!s.cache_full());
    s.put(b"j", b"0123456789").unwrap();
    assert!(s.cache_full());
    s.flush().unwrap();
    assert!(!s.cache_full());
}

#[test]
fn metered_store_counts_operations() {
    let mut s = MeteredKeyValueStore::new(InMemoryKeyValueStore::new("metered-count"), "t9", true);
    s.put(b"a", b"1").unwrap();
    s.get(b"a").unwrap();
    s.get(b"b").unwrap();
    assert_eq!(store_operation_count("t9", "metered-count", "put"), 1);
    assert_eq!(store_operation_count("t9", "metered-count", "get"), 2);
}

#[test]
fn rocksdb_stores_survive_reopening() {
    let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
    let dir = tempfile::tempdir().unwrap();
    {
        let db = RocksDbInstance::open(&env, dir.path()).unwrap();
        let mut kv = db.key_value_store("kv").unwrap();
        kv.put(b"k", b"v").unwrap();
        let mut w = WindowStore::new(
            Box::new(db.key_value_store("win").unwrap()),
            60_000,
            None,
            false,
        );
        w.put(b"k", 1_000, Some(b"w")).unwrap();
        let mut batch = StateBatch::new();
        batch.put("kv", b"batch".to_vec(), b"1".to_vec());
        batch.put("kv", b"k2".to_vec(), b"2".to_vec());
        let mut checkpoint = Checkpoint::default();
        checkpoint.changelog_offsets.insert("kv".into(), 42);
        checkpoint.stream_time = Some(7);
        checkpoint.input_offsets.insert("words".into(), 99);
        db.commit(batch, &checkpoint).unwrap();
        db.flush_all().unwrap();
    }
    let db = RocksDbInstance::open(&env, dir.path()).unwrap();
    let mut names = db.store_names();
    names.sort();
    assert_eq!(names, vec!["kv".to_string(), "win".to_string()]);
    let kv = db.key_value_store("kv").unwrap();
    assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(kv.get(b"batch").unwrap(), Some(b"1".to_vec()));
    let checkpoint = db.checkpoint().unwrap();
    assert_eq!(checkpoint.changelog_offsets.get("kv"), Some(&42));
    assert_eq!(checkpoint.stream_time, Some(7));
    assert_eq!(checkpoint.input_offsets.get("words"), Some(&99));
    let w = WindowStore::new(
        Box::new(db.key_value_store("win").unwrap()),
        60_000,
        None,
        false,
    );
    assert_eq!(w.fetch(b"k", 1_000).unwrap(), Some(b"w".to_vec()));
}

#[test]
fn corrupt_window_keys_are_reported_not_panicked() {
    let mut inner = InMemoryKeyValueStore::new("win");
    inner.put(&[0x80, 0, 0, 0, 0, 0, 0, 0, 1], b"junk").unwrap();
    let w = WindowStore::new(Box::new(inner), 60_000, None, false);
    let err = w.all().unwrap_err();
    assert_eq!(err.class(), ErrorClass::StateCorrupted);
}

#[test]
fn restore_bypasses_the_cache_and_the_changelog() {
    let sink = Arc::new(RecordingSink::default());
    let time = RecordTime::default();
    let logged = ChangeLoggingKeyValueStore::new(
        InMemoryKeyValueStore::new("r"),
        sink.clone(),
        time.clone(),
    );
    let mut s = MeteredKeyValueStore::new(
        CachingKeyValueStore::new(logged, 1 << 20, time),
        "restore-test",
        true,
    );
    s.put(b"a", b"dirty").unwrap();
    s.restore(b"a", Some(b"restored")).unwrap();
    s.restore(b"b", Some(b"x")).unwrap();
    s.restore(b"b", None).unwrap();
    assert_eq!(s.get(b"a").unwrap(), Some(b"restored".to_vec()));
    assert_eq!(s.get(b"b").unwrap(), None);
    assert!(
        s.flush_cache().unwrap().is_empty(),
        "the restored key is no longer dirty"
    );
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "nothing restored is logged again"
    );
}

/// A consistent read sees one commit whole: the store's rows and the checkpoint that commit
/// wrote go together, and a read-only view refuses writes.
#[test]
fn consistent_reads_see_a_commit_and_its_checkpoint_together() {
    let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbInstance::open(&env, dir.path()).unwrap();
    let spec = StoreSpec::key_value("kv");
    db.key_value_store("kv").unwrap();
    let writer = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            for i in 1..=200i64 {
                let mut batch = StateBatch::new();
                batch.put("kv", b"n".to_vec(), i.to_be_bytes().to_vec());
                let mut checkpoint = Checkpoint::default();
                checkpoint.input_offsets.insert("in".into(), i);
                db.commit(batch, &checkpoint).unwrap();
                // A task commits every `commit.interval.ms`, not back to back.
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let snapshot = db.snapshot();
        let view = crate::build_read_only_at(&spec, &snapshot).unwrap();
        let BuiltStore::KeyValue(mut kv) = view else {
            unreachable!("a key-value spec")
        };
        assert!(kv.put(b"n", b"x").is_err(), "a view cannot write");
        let mut raw = snapshot.store("kv").unwrap();
        assert!(raw.put(b"n", b"x").is_err(), "nor can a snapshot's store");
        let offset = snapshot
            .checkpoint()
            .unwrap()
            .input_offsets
            .get("in")
            .copied();
        // A read that takes a while: commits land in the middle of it.
        std::thread::sleep(std::time::Duration::from_micros(700));
        let value = kv
            .get(b"n")
            .unwrap()
            .map(|b| i64::from_be_bytes(b.try_into().unwrap()));
        assert_eq!(value, offset, "rows and position from the same commit");
        reads += 1;
    }
    writer.join().unwrap();
}
