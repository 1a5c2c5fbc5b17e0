//! Eddy's test kit: the embedded broker (`eddy-broker`, re-exported here as [`broker`]), a
//! verifier of local state against changelogs, and helpers for tests of the HTTP endpoints.
//!
//! ```no_run
//! let broker = eddy_testkit::EmbeddedBroker::start().unwrap();
//! println!("bootstrap.servers={}", broker.bootstrap());
//! ```

pub use eddy_broker as broker;
pub mod http;
pub mod verifier;

pub use broker::{BrokerConfig, BrokerError, EmbeddedBroker};
pub use http::{free_port, http_get, http_post, metric_sum};
pub use verifier::{
    consumer_from_beginning, count_records, local_state_matches_changelogs, LocalStateCheck,
};
