//! Eddy's test kit: an embedded single-node Kafka-protocol broker for the demo and for tests,
//! with fault injection, in the spirit of librdkafka's mock cluster and Kafka Streams' embedded
//! cluster.
//!
//! ```no_run
//! let broker = eddy_testkit::EmbeddedBroker::start().unwrap();
//! println!("bootstrap.servers={}", broker.bootstrap());
//! ```

pub mod broker;
pub mod http;
pub mod verifier;

pub use broker::{BrokerConfig, BrokerError, EmbeddedBroker};
pub use http::{free_port, http_post};
pub use verifier::{
    consumer_from_beginning, count_records, local_state_matches_changelogs, LocalStateCheck,
};
