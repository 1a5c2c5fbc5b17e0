//! The Processor API: user processors, the context they run in, and typed store handles.

mod api;
mod context;
pub(crate) mod node;
mod stores;

pub use api::{Processor, ScheduleId};
pub use context::ProcessorContext;
pub(crate) use stores::{store_serdes, StoreEntry, StoreSerdes};
pub use stores::{KeyValueStoreHandle, SessionStoreHandle, WindowStoreHandle};
