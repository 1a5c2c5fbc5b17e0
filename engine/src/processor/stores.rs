//! Typed handles on a task's stores: the byte stores of `eddy-state` behind the serdes they were
//! defined with. A processor takes its handles in `init` and keeps them.

use std::any::Any;
use std::ops::Bound;
use std::sync::Arc;

use eddy_state::{BuiltStore, StateError};
use parking_lot::Mutex;

use crate::error::{EngineError, Result};
use crate::serdes::SerdeRef;

/// The serdes of a store's keys and values.
pub(crate) struct StoreSerdes<K, V> {
    pub key: SerdeRef<K>,
    pub value: SerdeRef<V>,
}

/// A built store of a task and its serdes (a `StoreSerdes<K, V>` behind `Any`).
#[derive(Clone)]
pub(crate) struct StoreEntry {
    pub store: Arc<Mutex<BuiltStore>>,
    pub serdes: Arc<dyn Any + Send + Sync>,
}

fn typed<K: 'static, V: 'static>(
    entry: &StoreEntry,
    name: &str,
) -> Result<(SerdeRef<K>, SerdeRef<V>)> {
    store_serdes(&entry.serdes, name)
}

/// The key and value serdes of store `name`, checked to be of `K` and `V`.
pub(crate) fn store_serdes<K: 'static, V: 'static>(
    serdes: &Arc<dyn Any + Send + Sync>,
    name: &str,
) -> Result<(SerdeRef<K>, SerdeRef<V>)> {
    let serdes = serdes.downcast_ref::<StoreSerdes<K, V>>().ok_or_else(|| {
        EngineError::Topology(format!(
            "store `{name}` does not hold `{}` keys and `{}` values",
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        ))
    })?;
    Ok((Arc::clone(&serdes.key), Arc::clone(&serdes.value)))
}

fn corrupt(store: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::State(StateError::Corrupted {
        store: store.to_string(),
        reason: e.to_string(),
    })
}

fn ser<T>(serde: &SerdeRef<T>, store: &str, v: &T) -> Result<Vec<u8>> {
    serde
        .serialize(v)
        .map_err(|source| EngineError::Serialization {
            target: format!("store {store}"),
            source,
        })
}

fn wrong_kind(name: &str, want: &str) -> EngineError {
    EngineError::Topology(format!("store `{name}` is not a {want} store"))
}

macro_rules! with_store {
    ($self:ident, $variant:ident, $want:expr, |$s:ident| $body:expr) => {{
        let mut guard = $self.store.lock();
        match &mut *guard {
            BuiltStore::$variant($s) => $body,
            _ => Err(wrong_kind(&$self.name, $want)),
        }
    }};
}

/// A typed handle on a store of one kind: the shared store and the serdes of its keys and
/// values, checked against the store's definition when the handle is made.
macro_rules! store_handle {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $kind:expr) => {
        $(#[$doc])*
        pub struct $name<K, V> {
            name: String,
            store: Arc<Mutex<BuiltStore>>,
            key: SerdeRef<K>,
            value: SerdeRef<V>,
        }

        impl<K, V> Clone for $name<K, V> {
            fn clone(&self) -> Self {
                Self {
                    name: self.name.clone(),
                    store: Arc::clone(&self.store),
                    key: Arc::clone(&self.key),
                    value: Arc::clone(&self.value),
                }
            }
        }

        impl<K: 'static, V: 'static> $name<K, V> {
            pub(crate) fn new(entry: &StoreEntry, name: &str) -> Result<Self> {
                let (key, value) = typed::<K, V>(entry, name)?;
                if !matches!(&*entry.store.lock(), BuiltStore::$variant(_)) {
                    return Err(wrong_kind(name, $kind));
                }
                Ok(Self {
                    name: name.to_string(),
                    store: Arc::clone(&entry.store),
                    key,
                    value,
                })
            }

            /// The store's name.
            pub fn name(&self) -> &str {
                &self.name
            }
        }
    };
}

store_handle!(
    /// A typed handle on a key-value store.
    KeyValueStoreHandle,
    KeyValue,
    "key-value"
);
store_handle!(
    /// A typed handle on a window store.
    WindowStoreHandle,
    Window,
    "window"
);
store_handle!(
    /// A typed handle on a session store.
    SessionStoreHandle,
    Session,
    "session"
);

impl<K: 'static, V: 'static> KeyValueStoreHandle<K, V> {
    fn decode_value(&self, bytes: &[u8]) -> Result<V> {
        self.value
            .deserialize(bytes)
            .map_err(|e| corrupt(&self.name, e))
    }

    fn decode_pair(&self, (k, v): (Vec<u8>, Vec<u8>)) -> Result<(K, V)> {
        let key = self
            .key
            .deserialize(&k)
            .map_err(|e| corrupt(&self.name, e))?;
        Ok((key, self.decode_value(&v)?))
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = ser(&self.key, &self.name, key)?;
        let bytes = with_store!(self, KeyValue, "key-value", |s| Ok(s.get(&k)?))?;
        bytes.map(|b| self.decode_value(&b)).transpose()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let k = ser(&self.key, &self.name, key)?;
        let v = ser(&self.value, &self.name, value)?;
        with_store!(self, KeyValue, "key-value", |s| Ok(s.put(&k, &v)?))
    }

    /// Removes `key`, returning its old value.
    pub fn delete(&self, key: &K) -> Result<Option<V>> {
        let k = ser(&self.key, &self.name, key)?;
        let old = with_store!(self, KeyValue, "key-value", |s| Ok(s.delete(&k)?))?;
        old.map(|b| self.decode_value(&b)).transpose()
    }

    /// Entries with keys from `from` to `to` (both inclusive), in the order of their bytes.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let (f, t) = (
            ser(&self.key, &self.name, from)?,
            ser(&self.key, &self.name, to)?,
        );
        self.collect(|s| s.range(Bound::Included(&f), Bound::Included(&t)))
    }

    /// Entries whose key bytes start with `prefix`.
    pub fn prefix_scan(&self, prefix: &[u8]) -> Result<Vec<(K, V)>> {
        self.collect(|s| s.prefix_scan(prefix))
    }

    /// Every entry.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.collect(|s| s.all())
    }

    fn collect(
        &self,
        scan: impl for<'a> FnOnce(
            &'a dyn eddy_state::KeyValueStore,
        ) -> eddy_state::Result<eddy_state::KvIter<'a>>,
    ) -> Result<Vec<(K, V)>> {
        let guard = self.store.lock();
        let BuiltStore::KeyValue(s) = &*guard else {
            return Err(wrong_kind(&self.name, "key-value"));
        };
        let mut out = Vec::new();
        for item in scan(s.as_ref())? {
            out.push(self.decode_pair(item?)?);
        }
        Ok(out)
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        with_store!(self, KeyValue, "key-value", |s| Ok(
            s.approximate_num_entries()?
        ))
    }

    /// Writes the cache down and returns what it held, one entry per key (`None`: deleted),
    /// with the timestamp of the record that last wrote it.
    pub fn flush_cache(&self) -> Result<Vec<(K, Option<V>, i64)>> {
        let flushed = with_store!(self, KeyValue, "key-value", |s| Ok(s.flush_cache()?))?;
        flushed
            .into_iter()
            .map(|(k, v, ts)| {
                let key = self
                    .key
                    .deserialize(&k)
                    .map_err(|e| corrupt(&self.name, e))?;
                Ok((key, v.map(|b| self.decode_value(&b)).transpose()?, ts))
            })
            .collect()
    }
}

impl<K: 'static, V: 'static> WindowStoreHandle<K, V> {
    fn k(&self, bytes: &[u8]) -> Result<K> {
        self.key
            .deserialize(bytes)
            .map_err(|e| corrupt(&self.name, e))
    }
    fn v(&self, bytes: &[u8]) -> Result<V> {
        self.value
            .deserialize(bytes)
            .map_err(|e| corrupt(&self.name, e))
    }

    /// Writes (`None`: deletes) `key` in the window starting at `start`; `false` when that
    /// window is already out of retention.
    pub fn put(&self, key: &K, start: i64, value: Option<&V>) -> Result<bool> {
        let k = ser(&self.key, &self.name, key)?;
        let v = value.map(|v| ser(&self.value, &self.name, v)).transpose()?;
        with_store!(self, Window, "window", |s| Ok(s.put(
            &k,
            start,
            v.as_deref()
        )?))
    }

    /// The value of `key` in the window starting at `start`.
    pub fn fetch(&self, key: &K, start: i64) -> Result<Option<V>> {
        let k = ser(&self.key, &self.name, key)?;
        let bytes = with_store!(self, Window, "window", |s| Ok(s.fetch(&k, start)?))?;
        bytes.map(|b| self.v(&b)).transpose()
    }

    /// `(start, value)` of the windows of `key` starting in `[from, to]`, oldest first.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let k = ser(&self.key, &self.name, key)?;
        let rows = with_store!(self, Window, "window", |s| Ok(s.fetch_range(&k, from, to)?))?;
        rows.into_iter()
            .map(|(t, b)| Ok((t, self.v(&b)?)))
            .collect()
    }

    /// `(key, start, value)` of every window starting in `[from, to]`.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>> {
        let rows = with_store!(self, Window, "window", |s| Ok(s.fetch_all(from, to)?))?;
        rows.into_iter()
            .map(|e| Ok((self.k(&e.key)?, e.start, self.v(&e.value)?)))
            .collect()
    }

    /// Every live window.
    pub fn all(&self) -> Result<Vec<(K, i64, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// Writes the cache down and returns what it held: `(key, start, value, timestamp of the
    /// last write)`.
    pub fn flush_cache(&self) -> Result<Vec<(K, i64, Option<V>, i64)>> {
        let mut guard = self.store.lock();
        let BuiltStore::Window(s) = &mut *guard else {
            return Err(wrong_kind(&self.name, "window"));
        };
        let flushed = s.inner_mut().flush_cache()?;
        let mut out = Vec::with_capacity(flushed.len());
        for (raw, value, ts) in flushed {
            let (k, start) = s.decode_key(&raw)?;
            out.push((
                self.k(&k)?,
                start,
                value.map(|b| self.v(&b)).transpose()?,
                ts,
            ));
        }
        Ok(out)
    }
}

/// A session of a key: `[start, end]` and its aggregate.
pub type Session<V> = (i64, i64, V);

impl<K: 'static, V: 'static> SessionStoreHandle<K, V> {
    fn k(&self, bytes: &[u8]) -> Result<K> {
        self.key
            .deserialize(bytes)
            .map_err(|e| corrupt(&self.name, e))
    }
    fn v(&self, bytes: &[u8]) -> Result<V> {
        self.value
            .deserialize(bytes)
            .map_err(|e| corrupt(&self.name, e))
    }

    /// Writes the session `[start, end]` of `key`; `false` when it is out of retention.
    pub fn put(&self, key: &K, start: i64, end: i64, value: &V) -> Result<bool> {
        let k = ser(&self.key, &self.name, key)?;
        let v = ser(&self.value, &self.name, value)?;
        with_store!(self, Session, "session", |s| Ok(s.put(&k, start, end, &v)?))
    }

    /// Removes the session `[start, end]` of `key`.
    pub fn remove(&self, key: &K, start: i64, end: i64) -> Result<()> {
        let k = ser(&self.key, &self.name, key)?;
        with_store!(self, Session, "session", |s| Ok(s.remove(&k, start, end)?))
    }

    /// The value of exactly the session `[start, end]` of `key`.
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        let k = ser(&self.key, &self.name, key)?;
        let bytes = with_store!(self, Session, "session", |s| Ok(
            s.fetch_session(&k, start, end)?
        ))?;
        bytes.map(|b| self.v(&b)).transpose()
    }

    /// Sessions of `key` ending at or after `earliest_end` and starting at or before
    /// `latest_start`.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<Session<V>>> {
        let k = ser(&self.key, &self.name, key)?;
        let rows = with_store!(self, Session, "session", |s| Ok(s.find_sessions(
            &k,
            earliest_end,
            latest_start
        )?))?;
        rows.into_iter()
            .map(|e| Ok((e.start, e.end, self.v(&e.value)?)))
            .collect()
    }

    /// Every live session of every key: `(key, start, end, value)`.
    pub fn all(&self) -> Result<Vec<(K, i64, i64, V)>> {
        let rows = with_store!(self, Session, "session", |s| Ok(s.all()?))?;
        rows.into_iter()
            .map(|e| Ok((self.k(&e.key)?, e.start, e.end, self.v(&e.value)?)))
            .collect()
    }

    /// Writes the cache down and returns what it held: `(key, start, end, value, timestamp of
    /// the last write)`.
    pub fn flush_cache(&self) -> Result<Vec<(K, i64, i64, Option<V>, i64)>> {
        let mut guard = self.store.lock();
        let BuiltStore::Session(s) = &mut *guard else {
            return Err(wrong_kind(&self.name, "session"));
        };
        let flushed = s.inner_mut().flush_cache()?;
        let mut out = Vec::with_capacity(flushed.len());
        for (raw, value, ts) in flushed {
            let (k, start, end) = s.decode_key(&raw)?;
            out.push((
                self.k(&k)?,
                start,
                end,
                value.map(|b| self.v(&b)).transpose()?,
                ts,
            ));
        }
        Ok(out)
    }
}
