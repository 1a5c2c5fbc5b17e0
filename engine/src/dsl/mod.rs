//! The Streams DSL: `StreamsBuilder` → `KStream` / `KTable`, grouping, windowing and joins,
//! compiled into processors of a [`crate::Topology`].

pub(crate) mod grouped;
pub(crate) mod grouped_table;
pub(crate) mod kstream;
pub(crate) mod ktable;
pub(crate) mod options;
pub(crate) mod session_windowed;
pub(crate) mod sliding_windowed;
pub(crate) mod stream_join;
pub(crate) mod streams_builder;
pub(crate) mod time_windowed;
pub(crate) mod windows;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What the DSL can carry as a key or value.
pub trait Data: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Data for T {}

/// A key or value that a store or repartition topic may hold: with no serde given, Eddy uses
/// [`crate::Serdes::default_for`] (plain bytes for strings and integers, bincode otherwise).
pub trait StoredData: Data + Serialize + DeserializeOwned {}
impl<T: Data + Serialize + DeserializeOwned> StoredData for T {}
