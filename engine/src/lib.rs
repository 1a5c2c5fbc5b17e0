//! Eddy's engine: the Streams DSL and Processor API, topologies cut into sub-topologies, stream
//! tasks with stores and punctuation, and (with the `testing` feature) a broker-free test driver.
//!
//! ```
//! use eddy_engine::{Consumed, Produced, Serdes, StreamsBuilder};
//! let b = StreamsBuilder::new();
//! b.stream(&["in"], Consumed::with(Serdes::string(), Serdes::string()))
//!     .filter(|_, v| !v.is_empty())
//!     .to("out", Produced::default());
//! println!("{}", b.build().unwrap().describe());
//! ```

mod config;
mod console;
mod dsl;
mod error;
mod metrics;
mod operators;
mod partitioner;
mod processor;
mod query;
mod record;
mod runtime;
mod serdes;
mod task;
mod time;
mod topology;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    ClientOverrides, ClientScope, ExceptionHandler, ProcessingGuarantee, StreamsConfig,
    STREAMS_KEYS,
};
pub use dsl::grouped::KGroupedStream;
pub use dsl::grouped_table::KGroupedTable;
pub use dsl::kstream::{BranchedKStream, KStream};
pub use dsl::ktable::KTable;
pub use dsl::options::{Consumed, Grouped, Materialized, Produced};
pub use dsl::session_windowed::SessionWindowedKStream;
pub use dsl::sliding_windowed::SlidingWindowedKStream;
pub use dsl::streams_builder::StreamsBuilder;
pub use dsl::time_windowed::TimeWindowedKStream;
pub use dsl::windows::{EmitStrategy, JoinWindows, SessionWindows, SlidingWindows, TimeWindows};
pub use dsl::{Data, StoredData};
pub use error::{EngineError, ErrorKind, Result, SerdeError};
pub use metrics::{render_metrics, RecordingLevel, METRICS_CONTENT_TYPE};
pub use partitioner::default_partition;
pub use processor::{
    KeyValueStoreHandle, Processor, ProcessorContext, ScheduleId, SessionStoreHandle,
    WindowStoreHandle,
};
pub use query::{
    KeyValueQuery, PgServer, Positioned, QueryOptions, QueryServer, SqlAnswer, SqlState,
    StateQueries, StoreInfo, WindowQuery, DEFAULT_MAX_SCAN_ROWS,
};
pub use record::{Change, Headers, Record, RecordMetadata, Windowed};
pub use runtime::{
    KafkaStreams, Lifecycle, Progress, RuntimeConfig, StateListener, StreamThreadExceptionResponse,
    StreamsState, UncaughtExceptionHandler, DLQ_TOPIC,
};
pub use serdes::{Serde, SerdeKind, SerdeRef, Serdes};
pub use task::collector::{ChangelogRecord, DeadLetter, ProducedRecord};
pub use task::{InputRecord, StateMemory, StreamTask, TaskId};
pub use time::{
    parse_rfc3339_millis, JsonFieldTimestampExtractor, PunctuationType, RawRecord,
    RecordTimestampExtractor, TimestampExtractor, WallClock,
};
pub use topology::{SubTopology, TopicKind, Topology, TopologyBuilder};

pub use eddy_state::{StateError, StoreKind, StoreSpec};
