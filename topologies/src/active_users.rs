//! `active-users`: exact distinct users per tenant in 5-minute tumbling windows and in 1-hour
//! windows hopping by 5 minutes, from `analytics-events`, to `analytics.active-users` and the
//! window stores `active_users_5m` and `active_users_1h` (each window holds its count of users;
//! `active_users_activity` holds each user's recent activity, see `distinct_users`).

use std::time::Duration;

use eddy_engine::{KStream, Produced, Result, Serdes, StreamsBuilder, TimeWindows, Topology};
use serde::{Deserialize, Serialize};

use crate::distinct_users::{CountedWindows, DistinctUsers};
use crate::events::{platform_events, PlatformEvent};

/// The event types of `analytics-events`.
pub const ANALYTICS_EVENT_TYPES: &[&str] = &[
    "page.view",
    "feature.used",
    "error.occurred",
    "user.activity",
];

/// Topics, window sizes and grace.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveUsersConfig {
    pub input_topic: String,
    pub output_topic: String,
    pub short_window: Duration,
    pub long_window: Duration,
    pub long_advance: Duration,
    pub grace: Duration,
}

impl Default for ActiveUsersConfig {
    fn default() -> Self {
        Self {
            input_topic: "analytics-events".into(),
            output_topic: "analytics.active-users".into(),
            short_window: Duration::from_secs(5 * 60),
            long_window: Duration::from_secs(3600),
            long_advance: Duration::from_secs(5 * 60),
            grace: Duration::from_secs(60),
        }
    }
}

/// A record of `analytics.active-users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveUsers {
    pub tenant_id: String,
    /// `5m` or `1h` (the configured sizes, in whole minutes or hours).
    pub window: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub active_users: u64,
}

fn label(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s / 60)
    }
}

/// Builds the topology.
pub fn active_users(config: &ActiveUsersConfig) -> Result<Topology> {
    let b = StreamsBuilder::new();
    let users_by_tenant: KStream<String, String> = platform_events(
        &b,
        config.input_topic.as_str(),
        ANALYTICS_EVENT_TYPES,
        "user_id",
    )
    .filter(|_, e: &PlatformEvent| e.str("tenant_id").is_some_and(|t| !t.is_empty()))
    .map(|user, e| (e.str("tenant_id").unwrap_or_default().to_string(), user))
    .repartition_with("active-users-by-tenant", Serdes::string(), Serdes::string());
    let short = TimeWindows::of_size_and_grace(config.short_window, config.grace);
    let long = TimeWindows::of_size_and_grace(config.long_window, config.grace)
        .advance_by(config.long_advance);
    let defs = vec![
        CountedWindows {
            windows: short,
            label: label(config.short_window),
            store: "active_users_5m".into(),
        },
        CountedWindows {
            windows: long,
            label: label(config.long_window),
            store: "active_users_1h".into(),
        },
    ];
    let prototype = DistinctUsers::build(&b, defs, "active_users_activity")?;
    let stores = prototype.store_names();
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    users_by_tenant
        .process(move || prototype.fresh(), &stores)
        .to(
            &config.output_topic,
            Produced::with(Serdes::string(), Serdes::json::<ActiveUsers>()),
        );
    b.build()
}
