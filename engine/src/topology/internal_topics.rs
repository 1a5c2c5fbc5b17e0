//! The one owner of internal topic names, as Kafka Streams names them: a repartition topic is
//! `<application.id>-<name>-repartition`, a store's changelog `<application.id>-<store>-changelog`;
//! the instances' query endpoints are published to `<application.id>-query-endpoints`, and an
//! instance asks the others to shut down in `<application.id>-shutdown-requests`.
//!
//! ```
//! use eddy_engine::Topology;
//! assert_eq!(Topology::changelog_topic("quiz", "stats"), "quiz-stats-changelog");
//! ```

const CHANGELOG_SUFFIX: &str = "-changelog";
const REPARTITION_SUFFIX: &str = "-repartition";
const QUERY_ENDPOINTS: &str = "query-endpoints";
const SHUTDOWN_REQUESTS: &str = "shutdown-requests";

/// The broker's name of the topic where an instance asks every instance to shut down.
pub(crate) fn shutdown_requests(application_id: &str) -> String {
    prefixed(application_id, SHUTDOWN_REQUESTS)
}

/// The broker's name of the topic where instances publish their query endpoints.
pub(crate) fn query_endpoints(application_id: &str) -> String {
    prefixed(application_id, QUERY_ENDPOINTS)
}

/// The topology's (logical) name of the repartition topic `name`.
pub(crate) fn repartition(name: &str) -> String {
    format!("{name}{REPARTITION_SUFFIX}")
}

/// The topology's (logical) name of `store`'s changelog.
pub(crate) fn changelog_logical(store: &str) -> String {
    format!("{store}{CHANGELOG_SUFFIX}")
}

/// The broker's name of `store`'s changelog.
pub(crate) fn changelog(application_id: &str, store: &str) -> String {
    prefixed(application_id, &changelog_logical(store))
}

/// The broker's name of an internal topic whose logical name is `logical`.
pub(crate) fn prefixed(application_id: &str, logical: &str) -> String {
    format!("{application_id}-{logical}")
}
