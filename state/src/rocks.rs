//! RocksDB stores: one database per task, one column family per store, and one block cache and
//! write-buffer manager shared by every database of the process so that memory has one cap.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, Cache, ColumnFamilyDescriptor, DBWithThreadMode,
    Direction, IteratorMode, MultiThreaded, Options, ReadOptions, WriteBatch, WriteBufferManager,
    WriteOptions,
};

use crate::batch::{BatchOp, Checkpoint, StateBatch};
use crate::error::{Result, StateError};
use crate::read_snapshot::ReadSnapshot;
use crate::store::{in_bounds, owned_bound, KeyValueStore, KvIter};

pub(crate) type Db = DBWithThreadMode<MultiThreaded>;

/// The column family that holds a task's [`Checkpoint`].
const CHECKPOINT_CF: &str = "__eddy_checkpoint";
const STREAM_TIME_KEY: &[u8] = b"stream-time";
const OFFSET_PREFIX: &[u8] = b"offset/";
const INPUT_PREFIX: &[u8] = b"input/";

/// How long opening a database waits for a reader of its previous incarnation to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Memory limits shared by every RocksDB store of a process.
#[derive(Debug, Clone, Copy)]
pub struct RocksDbMemoryConfig {
    /// Size of the one LRU block cache, in bytes.
    pub block_cache_bytes: usize,
    /// Cap on the memtables of all stores together, in bytes (charged to the block cache).
    pub write_buffer_bytes: usize,
}

impl Default for RocksDbMemoryConfig {
    fn default() -> Self {
        Self {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
        }
    }
}

/// The block cache and write-buffer manager that every [`RocksDbInstance`] of a process shares.
#[derive(Clone)]
pub struct RocksDbEnv {
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl std::fmt::Debug for RocksDbEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbEnv")
            .field("cache_usage", &self.cache.get_usage())
            .finish()
    }
}

impl RocksDbEnv {
    /// A cache and write-buffer manager with the given limits.
    pub fn new(config: RocksDbMemoryConfig) -> Self {
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            config.write_buffer_bytes,
            false,
            cache.clone(),
        );
        Self {
            cache,
            write_buffers,
        }
    }

    /// Bytes currently held by the shared block cache (memtables included).
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        // RocksDB preallocates each manifest (4 MiB by default) and each log file (1.1 times
        // the write buffer, 64 MiB by default) on disk: with one database per task, a demo of
        // fifty tasks held gigabytes of empty preallocated space. The write buffer manager
        // bounds memtable memory for the instance; a smaller buffer per store keeps each
        // log's preallocation and arena block small.
        opts.set_manifest_preallocation_size(64 << 10);
        opts.set_write_buffer_size(8 << 20);
        opts
    }

    fn cf_options(&self) -> Options {
        let mut opts = self.db_options();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        opts.set_block_based_table_factory(&table);
        // A bloom filter over the memtable's whole keys: most reads of an aggregation are of
        // keys that are not there yet (a new window), and these then skip the skip list.
        opts.set_memtable_prefix_bloom_ratio(0.1);
        opts.set_memtable_whole_key_filtering(true);
        opts
    }
}

/// Figures RocksDB keeps for one store (column family), as its properties name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RocksDbProperties {
    /// `rocksdb.estimate-num-keys`.
    pub estimated_keys: u64,
    /// `rocksdb.cur-size-all-mem-tables`.
    pub memtable_bytes: u64,
    /// `rocksdb.estimate-pending-compaction-bytes`.
    pub pending_compaction_bytes: u64,
    /// `rocksdb.live-sst-files-size`.
    pub live_sst_bytes: u64,
}

/// One task's RocksDB database; each store is a column family in it.
pub struct RocksDbInstance {
    db: Db,
    env: RocksDbEnv,
    path: PathBuf,
    /// Single writes (restore of raw stores, tests) skip the WAL.
    write_opts: WriteOptions,
    /// Commit batches go through the WAL (not synced): a killed process keeps every batch it
    /// wrote, so it restores only what committed in Kafka after its last batch.
    commit_opts: WriteOptions,
    /// Batches written by [`RocksDbInstance::commit`].
    commits: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RocksDbInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbInstance")
            .field("path", &self.path)
            .finish()
    }
}

fn rocks_err(store: &str) -> impl FnOnce(rocksdb::Error) -> StateError + '_ {
    move |source| StateError::RocksDb {
        store: store.to_string(),
        source,
    }
}

impl RocksDbInstance {
    /// Opens (or creates) the database at `path` with every column family it already has.
    pub fn open(env: &RocksDbEnv, path: impl AsRef<Path>) -> Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|source| StateError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let opts = env.db_options();
        let mut existing = Db::list_cf(&opts, &path).unwrap_or_default();
        if !existing.iter().any(|n| n == CHECKPOINT_CF) {
            existing.push(CHECKPOINT_CF.to_string());
        }
        // Named, or the `rocksdb` crate opens `default` with RocksDB's default options, whose
        // 64 MiB write buffer sizes the log's preallocation.
        if !existing.iter().any(|n| n == "default") {
            existing.push("default".to_string());
        }
        let open = || {
            let descriptors = existing
                .iter()
                .map(|name| ColumnFamilyDescriptor::new(name, env.cf_options()));
            Db::open_cf_descriptors(&opts, &path, descriptors)
        };
        // A query reading the database of the task's previous incarnation holds it open (and
        // its lock) for as long as one read takes: wait for it rather than fail the task.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match open() {
                Err(e)
                    if e.kind() == rocksdb::ErrorKind::IOError
                        && (e.to_string().contains("lock hold by current process")
                            || e.to_string().contains("While lock file"))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.map_err(rocks_err(&path.display().to_string()))?,
            }
        };
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        Ok(Arc::new(Self {
            db,
            env: env.clone(),
            path,
            write_opts,
            commit_opts: WriteOptions::default(),
            commits: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The directory of this database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key-value store `name`, creating its column family when it does not exist yet.
    pub fn key_value_store(self: &Arc<Self>, name: &str) -> Result<RocksDbKeyValueStore> {
        if self.db.cf_handle(name).is_none() {
            self.db
                .create_cf(name, &self.env.cf_options())
                .map_err(rocks_err(name))?;
        }
        Ok(RocksDbKeyValueStore {
            name: name.to_string(),
            instance: Arc::clone(self),
            snapshot: None,
        })
    }

    /// The existing key-value store `name` (never creating it: for readers from outside the
    /// task).
    pub fn existing_store(self: &Arc<Self>, name: &str) -> Result<RocksDbKeyValueStore> {
        self.cf(name)?;
        Ok(RocksDbKeyValueStore {
            name: name.to_string(),
            instance: Arc::clone(self),
            snapshot: None,
        })
    }

    /// The existing store `name`, read as of `snapshot` (a snapshot of this database).
    pub(crate) fn existing_store_at(
        self: &Arc<Self>,
        name: &str,
        snapshot: Arc<ReadSnapshot>,
    ) -> Result<RocksDbKeyValueStore> {
        self.cf(name)?;
        Ok(RocksDbKeyValueStore {
            name: name.to_string(),
            instance: Arc::clone(self),
            snapshot: Some(snapshot),
        })
    }

    /// A snapshot of the database as it is now: its stores and checkpoint as of the last
    /// commit (see `read_snapshot.rs`).
    pub fn snapshot(self: &Arc<Self>) -> Arc<ReadSnapshot> {
        Arc::new(ReadSnapshot::of(self))
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// RocksDB's own figures of store `name`, read now (none when it has no column family).
    pub fn store_properties(&self, name: &str) -> Option<RocksDbProperties> {
        let cf = self.db.cf_handle(name)?;
        let int = |property: &str| {
            self.db
                .property_int_value_cf(&cf, property)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        Some(RocksDbProperties {
            estimated_keys: int("rocksdb.estimate-num-keys"),
            memtable_bytes: int("rocksdb.cur-size-all-mem-tables"),
            pending_compaction_bytes: int("rocksdb.estimate-pending-compaction-bytes"),
            live_sst_bytes: int("rocksdb.live-sst-files-size"),
        })
    }

    /// Bytes held by the block cache this database shares with the instance's others
    /// (memtables charged to it included).
    pub fn block_cache_usage(&self) -> u64 {
        self.env.cache_usage() as u64
    }

    /// Names of the stores (column families) in this database.
    pub fn store_names(&self) -> Vec<String> {
        Db::list_cf(&self.env.db_options(), &self.path)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n != "default" && n != CHECKPOINT_CF)
            .collect()
    }

    /// Writes a committed transaction's changes and the checkpoint they bring the state to in one
    /// atomic batch. Offsets of stores not named in `checkpoint` keep their earlier values.
    pub fn commit(&self, batch: StateBatch, checkpoint: &Checkpoint) -> Result<()> {
        let mut write = WriteBatch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put { store, key, value } => write.put_cf(&self.cf(&store)?, key, value),
                BatchOp::Delete { store, key } => write.delete_cf(&self.cf(&store)?, key),
                BatchOp::DeleteRange { store, from, to } => {
                    write.delete_range_cf(&self.cf(&store)?, from, to)
                }
            }
        }
        let cf = self.cf(CHECKPOINT_CF)?;
        for (store, offset) in &checkpoint.changelog_offsets {
            let key = [OFFSET_PREFIX, store.as_bytes()].concat();
            write.put_cf(&cf, key, offset.to_be_bytes());
        }
        if let Some(t) = checkpoint.stream_time {
            write.put_cf(&cf, STREAM_TIME_KEY, t.to_be_bytes());
        }
        for (topic, offset) in &checkpoint.input_offsets {
            let key = [INPUT_PREFIX, topic.as_bytes()].concat();
            write.put_cf(&cf, key, offset.to_be_bytes());
        }
        self.db
            .write_opt(write, &self.commit_opts)
            .map_err(rocks_err(&self.path.display().to_string()))?;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The number of batches committed since the database was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The checkpoint written by the last [`RocksDbInstance::commit`] (empty for a new database).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.checkpoint_with(ReadOptions::default())
    }

    /// The checkpoint as `read` sees it (as of a snapshot, say).
    pub(crate) fn checkpoint_with(&self, read: ReadOptions) -> Result<Checkpoint> {
        let cf = self.cf(CHECKPOINT_CF)?;
        let mut checkpoint = Checkpoint::default();
        for item in self.db.iterator_cf_opt(&cf, read, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks_err(CHECKPOINT_CF))?;
            let number = <[u8; 8]>::try_from(value.as_ref())
                .map(i64::from_be_bytes)
                .map_err(|_| StateError::Corrupted {
                    store: CHECKPOINT_CF.to_string(),
                    reason: format!(
                        "value of {:?} is not 8 bytes",
                        String::from_utf8_lossy(&key)
                    ),
                })?;
            if key.as_ref() == STREAM_TIME_KEY {
                checkpoint.stream_time = Some(number);
            } else if let Some(topic) = key.strip_prefix(INPUT_PREFIX) {
                checkpoint
                    .input_offsets
                    .insert(String::from_utf8_lossy(topic).into_owned(), number);
            } else if let Some(store) = key.strip_prefix(OFFSET_PREFIX) {
                checkpoint
                    .changelog_offsets
                    .insert(String::from_utf8_lossy(store).into_owned(), number);
            }
        }
        Ok(checkpoint)
    }

    /// Flushes every memtable to disk, so that a restart without a WAL loses nothing.
    pub fn flush_all(&self) -> Result<()> {
        for name in self.store_names() {
            let cf = self.cf(&name)?;
            self.db.flush_cf(&cf).map_err(rocks_err(&name))?;
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StateError::UnknownStore(name.to_string()))
    }
}

/// A [`KeyValueStore`] in one column family of a [`RocksDbInstance`].
pub struct RocksDbKeyValueStore {
    name: String,
    instance: Arc<RocksDbInstance>,
    /// Reads go to this snapshot rather than the live database.
    snapshot: Option<Arc<ReadSnapshot>>,
}

impl RocksDbKeyValueStore {
    /// A store read as of a snapshot writes nothing (a write would reach the live database
    /// outside any commit batch).
    fn writable(&self) -> Result<()> {
        match self.snapshot {
            None => Ok(()),
            Some(_) => Err(StateError::ReadOnly(self.name.clone())),
        }
    }

    fn read_options(&self) -> ReadOptions {
        self.snapshot
            .as_ref()
            .map_or_else(ReadOptions::default, |s| s.read_options())
    }
}

impl std::fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbKeyValueStore")
            .field("name", &self.name)
            .finish()
    }
}

impl KeyValueStore for RocksDbKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.instance.cf(&self.name)?;
        self.instance
            .db
            .get_cf_opt(&cf, key, &self.read_options())
            .map_err(rocks_err(&self.name))
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writable()?;
        let cf = self.instance.cf(&self.name)?;
        self.instance
            .db
            .put_cf_opt(&cf, key, value, &self.instance.write_opts)
            .map_err(rocks_err(&self.name))
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.writable()?;
        let old = self.get(key)?;
        if old.is_some() {
            let cf = self.instance.cf(&self.name)?;
            self.instance
                .db
                .delete_cf_opt(&cf, key, &self.instance.write_opts)
                .map_err(rocks_err(&self.name))?;
        }
        Ok(old)
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        let cf = self.instance.cf(&self.name)?;
        let mut read = self.read_options();
        if let Bound::Included(t) | Bound::Excluded(t) = to {
            // Lets RocksDB stop at the bound instead of reading the next block.
            let mut upper = t.to_vec();
            if matches!(to, Bound::Included(_)) {
                upper.push(0);
            }
            read.set_iterate_upper_bound(upper);
        }
        let mode = match from {
            Bound::Included(f) | Bound::Excluded(f) => IteratorMode::From(f, Direction::Forward),
            Bound::Unbounded => IteratorMode::Start,
        };
        let inner = self.instance.db.iterator_cf_opt(&cf, read, mode);
        let (from, to) = (owned_bound(from), owned_bound(to));
        let name = self.name.clone();
        let iter = inner
            .map(move |item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(|source| StateError::RocksDb {
                        store: name.clone(),
                        source,
                    })
            })
            .filter(move |item| match item {
                Ok((k, _)) => in_bounds(k, as_ref(&from), as_ref(&to)),
                Err(_) => true,
            });
        Ok(Box::new(iter))
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        self.writable()?;
        if from >= to {
            return Ok(());
        }
        let cf = self.instance.cf(&self.name)?;
        self.instance
            .db
            .delete_range_cf_opt(&cf, from, to, &self.instance.write_opts)
            .map_err(rocks_err(&self.name))
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        let cf = self.instance.cf(&self.name)?;
        Ok(self
            .instance
            .db
            .property_int_value_cf(&cf, "rocksdb.estimate-num-keys")
            .map_err(rocks_err(&self.name))?
            .unwrap_or(0))
    }
    fn flush(&mut self) -> Result<()> {
        // Writes are in the memtable and readable. Task stores are written by commit batches,
        // which the WAL makes durable; `RocksDbInstance::flush_all` writes memtables out.
        Ok(())
    }
    fn persistent(&self) -> bool {
        true
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Checkpoint, StateBatch};
    use std::os::unix::fs::MetadataExt;

    /// Bytes the files under `dir` occupy on disk (preallocated blocks included).
    fn allocated(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    #[test]
    fn a_database_preallocates_little_disk() {
        let dir = tempfile::tempdir().unwrap();
        let env = RocksDbEnv::new(RocksDbMemoryConfig::default());
        let db = RocksDbInstance::open(&env, dir.path()).unwrap();
        for name in ["a", "b", "c"] {
            db.key_value_store(name).unwrap();
        }
        let mut batch = StateBatch::new();
        batch.put("a", b"k".to_vec(), b"v".to_vec());
        db.commit(batch, &Checkpoint::default()).unwrap();
        // A task's database holding a few bytes: its manifest and log are not preallocated
        // to tens of MiB (a demo opens some fifty of them).
        let bytes = allocated(dir.path());
        assert!(bytes < 16 << 20, "{bytes} bytes on disk for one record");
    }
}
