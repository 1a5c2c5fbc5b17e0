//! Settings for the Kafka clients Eddy builds, as Kafka Streams takes them: a librdkafka key on
//! its own applies to every client, and a prefix names the clients it is for (`consumer.`,
//! `main.consumer.`, `restore.consumer.`, `producer.`, `admin.`). Each key and value is checked
//! by librdkafka when it is set; keys Eddy must control are refused with the reason.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use crate::error::{EngineError, Result};

/// Which clients a setting is for, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientScope {
    /// No prefix: every client.
    All,
    /// `consumer.`: the main, restore and query-directory consumers.
    Consumer,
    /// `main.consumer.`: the stream threads' group consumers.
    MainConsumer,
    /// `restore.consumer.`: the consumers that restore and tail changelogs.
    RestoreConsumer,
    /// `producer.`: the stream threads' producers and the query-directory producer.
    Producer,
    /// `admin.`: the admin and metadata clients.
    Admin,
}

/// The clients Eddy builds, each taking the scopes that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientKind {
    MainConsumer,
    RestoreConsumer,
    /// The query directory's consumer.
    OtherConsumer,
    Producer,
    Admin,
}

impl ClientKind {
    /// The scopes that apply to this client, from the least to the most specific.
    fn scopes(self) -> &'static [ClientScope] {
        use ClientScope::*;
        match self {
            ClientKind::MainConsumer => &[All, Consumer, MainConsumer],
            ClientKind::RestoreConsumer => &[All, Consumer, RestoreConsumer],
            ClientKind::OtherConsumer => &[All, Consumer],
            ClientKind::Producer => &[All, Producer],
            ClientKind::Admin => &[All, Admin],
        }
    }
}

/// Prefixes, the more specific first (`main.consumer.` before `consumer.` would not matter as
/// neither starts the other, but the order documents the rule).
const PREFIXES: &[(&str, ClientScope)] = &[
    ("main.consumer.", ClientScope::MainConsumer),
    ("restore.consumer.", ClientScope::RestoreConsumer),
    ("consumer.", ClientScope::Consumer),
    ("producer.", ClientScope::Producer),
    ("admin.", ClientScope::Admin),
];

/// Client keys Eddy sets itself, and why a user may not.
const CONTROLLED: &[(&str, &str)] = &[
    ("group.id", "the consumer group is `application.id`"),
    (
        "enable.auto.commit",
        "Eddy commits input offsets itself, in the task's transaction under exactly-once",
    ),
    (
        "enable.auto.offset.store",
        "Eddy commits input offsets itself, in the task's transaction under exactly-once",
    ),
    (
        "isolation.level",
        "it follows `processing.guarantee` (read_committed under exactly_once_v2)",
    ),
    (
        "transactional.id",
        "Eddy names each stream thread's transactional producer from `application.id`, the process and the thread",
    ),
    (
        "enable.idempotence",
        "Eddy's producers are idempotent: exactly-once and ordered retries depend on it",
    ),
    (
        "transaction.timeout.ms",
        "set it as the Streams key `transaction.timeout.ms`, without a prefix",
    ),
    (
        "partition.assignment.strategy",
        "Eddy's assignor keeps the co-partitioned input partitions of a task together",
    ),
    (
        "statistics.interval.ms",
        "Eddy reads lag and partition ends from librdkafka's statistics at its own interval",
    ),
    (
        "partitioner",
        "Eddy partitions keys as Java clients do (murmur2), so that they land where Kafka Streams puts them",
    ),
    (
        "client.id",
        "Eddy names each client from `application.id` and its thread",
    ),
];

/// Client settings by scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOverrides {
    entries: BTreeMap<(ClientScope, String), String>,
}

impl ClientOverrides {
    /// Checks and records `key` (possibly prefixed) = `value`; `Ok(false)` if `key` is not a
    /// client key at all (neither prefixed nor known to librdkafka), so that the caller can
    /// name the nearest key it knows.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let (scope, name) = PREFIXES
            .iter()
            .find_map(|(prefix, scope)| key.strip_prefix(prefix).map(|rest| (*scope, rest)))
            .unwrap_or((ClientScope::All, key));
        if let Some((_, why)) = CONTROLLED.iter().find(|(k, _)| *k == name) {
            return Err(EngineError::Config {
                key: key.to_string(),
                reason: format!("Eddy sets `{name}` itself: {why}"),
            });
        }
        if scope != ClientScope::All && name == "bootstrap.servers" {
            return Err(EngineError::Config {
                key: key.to_string(),
                reason: "every client reaches the same cluster: set `bootstrap.servers` without a prefix".into(),
            });
        }
        // librdkafka checks the name and the value (type, range, enumerations) as it would at
        // client creation; combinations are checked when the clients are built.
        if let Err(e) = ClientConfig::new().set(name, value).create_native_config() {
            let message = e.to_string();
            let unknown = message.contains("No such configuration property");
            if unknown && scope == ClientScope::All {
                return Ok(false);
            }
            return Err(EngineError::Config {
                key: key.to_string(),
                reason: if unknown {
                    format!("`{name}` is not a librdkafka client property")
                } else {
                    format!("librdkafka refuses `{value}`: {message}")
                },
            });
        }
        self.entries
            .insert((scope, name.to_string()), value.to_string());
        Ok(true)
    }

    /// The value set for `name` in exactly `scope`.
    pub fn get(&self, scope: ClientScope, name: &str) -> Option<&str> {
        self.entries
            .get(&(scope, name.to_string()))
            .map(String::as_str)
    }

    /// Every setting, as it was keyed (`consumer.fetch.min.bytes`).
    pub fn iter(&self) -> impl Iterator<Item = (String, &str)> {
        self.entries.iter().map(|((scope, name), value)| {
            let prefix = PREFIXES
                .iter()
                .find(|(_, s)| s == scope)
                .map_or("", |(p, _)| p);
            (format!("{prefix}{name}"), value.as_str())
        })
    }

    /// Writes the settings that apply to `kind` into `config`, the more specific last.
    pub(crate) fn apply(&self, kind: ClientKind, config: &mut ClientConfig) {
        for scope in kind.scopes() {
            for ((s, name), value) in &self.entries {
                if s == scope {
                    config.set(name, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_the_clients_and_the_more_specific_wins() {
        let mut o = ClientOverrides::default();
        assert!(o.set("fetch.wait.max.ms", "50").unwrap());
        assert!(o.set("consumer.fetch.wait.max.ms", "40").unwrap());
        assert!(o.set("restore.consumer.fetch.wait.max.ms", "5").unwrap());
        assert!(o.set("producer.linger.ms", "20").unwrap());
        assert!(o.set("admin.socket.timeout.ms", "30000").unwrap());
        let value = |kind, key| {
            let mut c = ClientConfig::new();
            o.apply(kind, &mut c);
            c.get(key).map(str::to_string)
        };
        assert_eq!(
            value(ClientKind::MainConsumer, "fetch.wait.max.ms").as_deref(),
            Some("40")
        );
        assert_eq!(
            value(ClientKind::RestoreConsumer, "fetch.wait.max.ms").as_deref(),
            Some("5")
        );
        assert_eq!(
            value(ClientKind::Producer, "fetch.wait.max.ms").as_deref(),
            Some("50"),
            "an unprefixed key is for every client"
        );
        assert_eq!(
            value(ClientKind::Producer, "linger.ms").as_deref(),
            Some("20")
        );
        assert_eq!(value(ClientKind::MainConsumer, "linger.ms"), None);
        assert_eq!(
            value(ClientKind::Admin, "socket.timeout.ms").as_deref(),
            Some("30000")
        );
        let keys: Vec<String> = o.iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&"restore.consumer.fetch.wait.max.ms".to_string()));
    }

    #[test]
    fn librdkafka_checks_names_and_values_and_eddy_refuses_what_it_controls() {
        let mut o = ClientOverrides::default();
        let err = o
            .set("consumer.session.timeout.ms", "0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("consumer.session.timeout.ms") && err.contains("librdkafka refuses"),
            "{err}"
        );
        let err = o.set("consumer.sesion.timeout.ms", "10").unwrap_err();
        assert!(err.to_string().contains("not a librdkafka client property"));
        assert!(
            !o.set("comit.interval.ms", "10").unwrap(),
            "unprefixed and unknown: the caller names the nearest key"
        );
        for key in [
            "enable.auto.commit",
            "consumer.isolation.level",
            "producer.transactional.id",
            "partition.assignment.strategy",
        ] {
            let err = o.set(key, "x").unwrap_err().to_string();
            assert!(err.contains("Eddy sets"), "{key}: {err}");
        }
        assert!(o.set("producer.bootstrap.servers", "h:1").is_err());
        assert!(o.set("security.protocol", "SASL_SSL").unwrap());
        assert!(o.set("max.poll.interval.ms", "1000").unwrap());
        assert_eq!(
            o.get(ClientScope::All, "max.poll.interval.ms"),
            Some("1000")
        );
    }
}
