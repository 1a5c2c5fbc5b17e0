//! Eddy's state stores: key-value, window and session stores, in memory and on RocksDB, built as
//! decorators (metered, caching, change-logging) over one byte-level [`KeyValueStore`] trait.
//!
//! Window and session stores are encodings over a key-value store whose keys begin with a time
//! segment, so every decorator is written once and retention drops whole segments.
//!
//! ```
//! use eddy_state::{InMemoryKeyValueStore, KeyValueStore};
//! let mut store = InMemoryKeyValueStore::new("users");
//! store.put(b"u1", b"alice").unwrap();
//! assert_eq!(store.get(b"u1").unwrap(), Some(b"alice".to_vec()));
//! ```

mod batch;
mod builder;
mod caching;
mod changelogging;
mod error;
mod keys;
mod memory;
mod memory_budget;
mod merge;
mod metered;
mod read_only;
mod read_snapshot;
mod record_time;
mod rocks;
mod segments;
mod session;
mod store;
mod transaction_buffer;
mod window;

#[cfg(test)]
mod suite;

pub use batch::{Checkpoint, StateBatch};
pub use builder::{
    build_read_only_at, build_store, BuiltStore, StoreContext, StoreKind, StoreSpec,
};
pub use caching::CachingKeyValueStore;
pub use changelogging::{ChangeLoggingKeyValueStore, ChangelogSink};
pub use error::{ErrorClass, Result, StateError};
pub use keys::{decode_timestamp, encode_timestamp, KeyOrder};
pub use memory::InMemoryKeyValueStore;
pub use memory_budget::{Charge, MemoryBudget};
pub use metered::{store_operation_count, MeteredKeyValueStore};
pub use read_only::ReadOnlyKeyValueStore;
pub use read_snapshot::ReadSnapshot;
pub use record_time::RecordTime;
pub use rocks::{
    RocksDbEnv, RocksDbInstance, RocksDbKeyValueStore, RocksDbMemoryConfig, RocksDbProperties,
};
pub use session::{SessionEntry, SessionStore};
pub use store::{prefix_successor, FlushedEntry, KeyValue, KeyValueStore, KvIter};
pub use transaction_buffer::TransactionBufferKeyValueStore;
pub use window::{WindowEntry, WindowStore};
