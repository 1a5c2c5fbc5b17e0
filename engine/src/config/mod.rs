//! Streams configuration, with Kafka Streams' key names and documented defaults; the Kafka
//! clients' own keys are in `client.rs`.

mod client;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub(crate) use client::ClientKind;
pub use client::{ClientOverrides, ClientScope};

use crate::error::{EngineError, Result};

/// Every key of the Streams configuration itself (the rest are the clients' keys).
pub const STREAMS_KEYS: &[&str] = &[
    "application.id",
    "processing.guarantee",
    "commit.interval.ms",
    "state.dir",
    "num.stream.threads",
    "statestore.cache.max.bytes",
    "statestore.uncommitted.max.bytes",
    "deserialization.exception.handler",
    "processing.exception.handler",
    "production.exception.handler",
    "transaction.timeout.ms",
    "max.task.idle.ms",
    "repartition.purge.interval.ms",
    "replication.factor",
    "application.server",
    "metrics.recording.level",
    "num.standby.replicas",
    "group.instance.id",
];

/// `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// `at_least_once`: commit offsets after outputs are acknowledged.
    AtLeastOnce,
    /// `exactly_once_v2`: outputs, state changes and offsets commit in one transaction.
    ExactlyOnceV2,
}

/// `deserialization.exception.handler` and `processing.exception.handler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionHandler {
    /// `log_and_fail`: stop the task with the error.
    LogAndFail,
    /// `log_and_continue`: dead-letter the record, count it, go on.
    LogAndContinue,
}

/// The settings of an application.
///
/// | key | default |
/// |---|---|
/// | `application.id` | `eddy` |
/// | `processing.guarantee` | `exactly_once_v2` |
/// | `commit.interval.ms` | 100 under exactly-once, 30000 under at-least-once |
/// | `state.dir` | `<temp dir>/eddy` |
/// | `num.stream.threads` | 1 |
/// | `statestore.cache.max.bytes` | 10485760: dirty bytes of every caching store of the instance together |
/// | `statestore.uncommitted.max.bytes` | 67108864: writes every store of the instance holds until their transaction commits (KIP-892) |
/// | `deserialization.exception.handler` | `log_and_fail` |
/// | `processing.exception.handler` | `log_and_fail` |
/// | `production.exception.handler` (or `default.production.exception.handler`) | `log_and_fail`: an output the producer refuses for good (larger than `message.max.bytes`, say) stops the task; `log_and_continue`: dead-letters the output's key and reason, and goes on |
/// | `transaction.timeout.ms` | 10000 (the producer's, under exactly-once) |
/// | `max.task.idle.ms` | 0: a task with several input partitions waits for an empty one only while it has records at the broker; -1: never |
/// | `repartition.purge.interval.ms` | 30000: how often consumed records of repartition topics are deleted |
/// | `replication.factor` | -1: internal topics get the broker's default |
/// | `application.server` | none: `host:port` of this instance's query endpoint, published to the other instances so that a query on any of them reads every partition |
/// | `metrics.recording.level` | `info`; `debug` adds store operation durations and record lateness (one clock read per operation) |
/// | `num.standby.replicas` | 0: how many other instances keep a warm copy of each stateful task's persistent stores, tailing its changelogs, so that a task moved to one of them restores only what the copy had not read yet |
/// | `group.instance.id` | none: each stream thread joins the group dynamically; `<id>`: static membership (KIP-345) as `<id>-<thread>`, so that a restart within `session.timeout.ms` moves no partition; `auto`: the same with the instance's id from its state directory |
///
/// Any other key is a Kafka client's (librdkafka's), for every client or, with a prefix, for
/// some: `consumer.`, `main.consumer.`, `restore.consumer.`, `producer.`, `admin.` (see
/// [`ClientOverrides`]). librdkafka checks each when it is set; a key that is neither is an
/// error naming the nearest Streams key, and a key Eddy must control is refused with the
/// reason.
///
/// ```
/// use eddy_engine::{StreamsConfig, ProcessingGuarantee};
/// let mut c = StreamsConfig::new("quiz-results");
/// c.set("processing.guarantee", "at_least_once").unwrap();
/// assert_eq!(c.processing_guarantee, ProcessingGuarantee::AtLeastOnce);
/// assert_eq!(c.commit_interval_ms, 30_000);
/// assert!(c.set("num.stream.threads", "zero").is_err());
/// let typo = c.set("comit.interval.ms", "50").unwrap_err().to_string();
/// assert!(typo.contains("did you mean `commit.interval.ms`"), "{typo}");
/// c.set("consumer.fetch.min.bytes", "1024").unwrap();
/// assert!(c.set("enable.auto.commit", "true").is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StreamsConfig {
    pub application_id: String,
    pub processing_guarantee: ProcessingGuarantee,
    pub commit_interval_ms: u64,
    commit_interval_set: bool,
    pub state_dir: PathBuf,
    pub num_stream_threads: usize,
    pub cache_max_bytes: usize,
    pub uncommitted_max_bytes: usize,
    pub deserialization_exception_handler: ExceptionHandler,
    pub processing_exception_handler: ExceptionHandler,
    pub production_exception_handler: ExceptionHandler,
    pub transaction_timeout_ms: u64,
    pub max_task_idle_ms: i64,
    pub repartition_purge_interval_ms: u64,
    pub replication_factor: i32,
    /// `application.server`: where this instance answers queries for the others.
    pub application_server: Option<String>,
    /// `metrics.recording.level`.
    pub metrics_recording_level: crate::metrics::RecordingLevel,
    /// `group.instance.id`: static membership of the stream threads' consumers.
    pub group_instance_id: Option<String>,
    /// `num.standby.replicas`: warm copies of each stateful task on other instances.
    pub num_standby_replicas: usize,
    /// The Kafka clients' settings (`bootstrap.servers`, `security.protocol`, `consumer.…`).
    pub clients: ClientOverrides,
}

impl StreamsConfig {
    /// The defaults for `application_id`.
    pub fn new(application_id: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            processing_guarantee: ProcessingGuarantee::ExactlyOnceV2,
            commit_interval_ms: 100,
            commit_interval_set: false,
            state_dir: std::env::temp_dir().join("eddy"),
            num_stream_threads: 1,
            cache_max_bytes: 10 * 1024 * 1024,
            uncommitted_max_bytes: 64 * 1024 * 1024,
            deserialization_exception_handler: ExceptionHandler::LogAndFail,
            processing_exception_handler: ExceptionHandler::LogAndFail,
            production_exception_handler: ExceptionHandler::LogAndFail,
            transaction_timeout_ms: 10_000,
            max_task_idle_ms: 0,
            repartition_purge_interval_ms: 30_000,
            replication_factor: -1,
            application_server: None,
            metrics_recording_level: crate::metrics::RecordingLevel::Info,
            group_instance_id: None,
            num_standby_replicas: 0,
            clients: ClientOverrides::default(),
        }
    }

    /// Sets one key from its text form; a bad value is an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        let bad = |reason: &str| EngineError::Config {
            key: key.to_string(),
            reason: format!("{reason} (got `{value}`)"),
        };
        let value = value.trim();
        match key {
            "application.id" => {
                if value.is_empty()
                    || !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                {
                    return Err(bad(
                        "must be non-empty ASCII letters, digits, '.', '_' or '-'",
                    ));
                }
                self.application_id = value.to_string();
            }
            "processing.guarantee" => {
                self.processing_guarantee = match value {
                    "exactly_once_v2" | "exactly_once" => ProcessingGuarantee::ExactlyOnceV2,
                    "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                    _ => return Err(bad("must be exactly_once_v2 or at_least_once")),
                };
                if !self.commit_interval_set {
                    self.commit_interval_ms = match self.processing_guarantee {
                        ProcessingGuarantee::ExactlyOnceV2 => 100,
                        ProcessingGuarantee::AtLeastOnce => 30_000,
                    };
                }
            }
            "commit.interval.ms" => {
                self.commit_interval_ms = value
                    .parse()
                    .map_err(|_| bad("must be a whole number of ms"))?;
                self.commit_interval_set = true;
            }
            "state.dir" => {
                if value.is_empty() {
                    return Err(bad("must be a directory path"));
                }
                self.state_dir = PathBuf::from(value);
            }
            "num.stream.threads" => {
                let n: usize = value.parse().map_err(|_| bad("must be a whole number"))?;
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                self.num_stream_threads = n;
            }
            "statestore.cache.max.bytes" | "cache.max.bytes.buffering" => {
                self.cache_max_bytes = value
                    .parse()
                    .map_err(|_| bad("must be a whole number of bytes"))?;
            }
            "statestore.uncommitted.max.bytes" => {
                self.uncommitted_max_bytes = value
                    .parse()
                    .map_err(|_| bad("must be a whole number of bytes"))?;
            }
            "deserialization.exception.handler" => {
                self.deserialization_exception_handler = parse_handler(value)
                    .ok_or_else(|| bad("must be log_and_fail or log_and_continue"))?;
            }
            "processing.exception.handler" => {
                self.processing_exception_handler = parse_handler(value)
                    .ok_or_else(|| bad("must be log_and_fail or log_and_continue"))?;
            }
            "production.exception.handler" | "default.production.exception.handler" => {
                self.production_exception_handler = parse_handler(value)
                    .ok_or_else(|| bad("must be log_and_fail or log_and_continue"))?;
            }
            "transaction.timeout.ms" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| bad("must be a whole number of ms"))?;
                if ms == 0 {
                    return Err(bad("must be at least 1"));
                }
                self.transaction_timeout_ms = ms;
            }
            "max.task.idle.ms" => {
                let ms: i64 = value
                    .parse()
                    .map_err(|_| bad("must be a whole number of ms, or -1"))?;
                if ms < -1 {
                    return Err(bad("must be -1 or more"));
                }
                self.max_task_idle_ms = ms;
            }
            "repartition.purge.interval.ms" => {
                self.repartition_purge_interval_ms = value
                    .parse()
                    .map_err(|_| bad("must be a whole number of ms"))?;
            }
            "replication.factor" => {
                let n: i32 = value.parse().map_err(|_| bad("must be a whole number"))?;
                if n == 0 || n < -1 {
                    return Err(bad("must be -1 (the broker's default) or at least 1"));
                }
                self.replication_factor = n;
            }
            "application.server" => {
                let (host, port) = value
                    .rsplit_once(':')
                    .ok_or_else(|| bad("must be host:port"))?;
                if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                    return Err(bad("must be host:port with a port from 1 to 65535"));
                }
                self.application_server = Some(value.to_string());
            }
            "metrics.recording.level" => {
                self.metrics_recording_level = match value.to_ascii_lowercase().as_str() {
                    "info" => crate::metrics::RecordingLevel::Info,
                    "debug" | "trace" => crate::metrics::RecordingLevel::Debug,
                    _ => return Err(bad("must be info or debug")),
                };
            }
            "group.instance.id"
            | "consumer.group.instance.id"
            | "main.consumer.group.instance.id" => {
                if value.is_empty()
                    || !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                {
                    return Err(bad(
                        "must be `auto` or non-empty ASCII letters, digits, '.', '_' or '-'",
                    ));
                }
                self.group_instance_id = Some(value.to_string());
            }
            "num.standby.replicas" => {
                let n: u16 = value
                    .parse()
                    .map_err(|_| bad("must be a whole number, 0 or more"))?;
                self.num_standby_replicas = usize::from(n);
            }
            _ => {
                if !self.clients.set(key, value)? {
                    return Err(unknown_key(key));
                }
            }
        }
        Ok(self)
    }

    /// Applies `key=value` lines (a Java properties file without escapes; `#` comments).
    pub fn apply_properties(&mut self, text: &str) -> Result<&mut Self> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once(['=', ':'])
                .ok_or_else(|| EngineError::Config {
                    key: format!("line {}", n + 1),
                    reason: format!("expected key=value, got `{line}`"),
                })?;
            self.set(k.trim(), v.trim())?;
        }
        Ok(self)
    }
}

impl StreamsConfig {
    /// The environment's overrides: `EDDY_<KEY>` with the key upper-cased and `.` as `_`
    /// (`EDDY_PROCESSING_GUARANTEE=at_least_once`, `EDDY_NUM_STREAM_THREADS=4`).
    pub fn apply_env_from(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<&mut Self> {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        for key in STREAMS_KEYS {
            let name = format!("EDDY_{}", key.to_uppercase().replace('.', "_"));
            if let Some(value) = vars.get(&name) {
                self.set(key, value)?;
            }
        }
        Ok(self)
    }

    /// [`StreamsConfig::apply_env_from`] with this process's environment.
    pub fn apply_env(&mut self) -> Result<&mut Self> {
        self.apply_env_from(std::env::vars())
    }
}

/// A key that is neither a Streams key nor a client's, with the nearest Streams key if one is
/// near (a typo), as Kafka Streams users would look for it.
fn unknown_key(key: &str) -> EngineError {
    let nearest = STREAMS_KEYS
        .iter()
        .chain(["bootstrap.servers"].iter())
        .map(|k| (strsim::levenshtein(key, k), *k))
        .min();
    let reason = match nearest {
        Some((distance, near)) if distance <= 3 || strsim::jaro_winkler(key, near) > 0.9 => {
            format!("unknown key: did you mean `{near}`?")
        }
        _ => "unknown key: neither a Streams key nor a librdkafka client property".to_string(),
    };
    EngineError::Config {
        key: key.to_string(),
        reason,
    }
}

fn parse_handler(v: &str) -> Option<ExceptionHandler> {
    match v {
        "log_and_fail" | "LogAndFailExceptionHandler" => Some(ExceptionHandler::LogAndFail),
        "log_and_continue" | "LogAndContinueExceptionHandler" => {
            Some(ExceptionHandler::LogAndContinue)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_keys_have_kafka_streams_defaults_and_checked_values() {
        let mut c = StreamsConfig::new("a");
        assert_eq!(c.replication_factor, -1, "the broker's default");
        assert_eq!(c.max_task_idle_ms, 0);
        assert_eq!(c.repartition_purge_interval_ms, 30_000);
        assert_eq!(c.transaction_timeout_ms, 10_000);
        for (key, bad) in [
            ("replication.factor", "0"),
            ("replication.factor", "-2"),
            ("max.task.idle.ms", "-5"),
            ("transaction.timeout.ms", "0"),
            ("repartition.purge.interval.ms", "soon"),
        ] {
            let err = c.set(key, bad).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        c.set("replication.factor", "3").unwrap();
        c.set("max.task.idle.ms", "-1").unwrap();
        assert_eq!((c.replication_factor, c.max_task_idle_ms), (3, -1));
    }

    #[test]
    fn every_streams_key_is_known_and_unknown_keys_name_the_nearest() {
        let mut c = StreamsConfig::new("a");
        for key in STREAMS_KEYS {
            if let Err(e) = c.set(key, "\u{1}") {
                assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
            }
        }
        for (typo, near) in [
            ("comit.interval.ms", "commit.interval.ms"),
            ("num.stream.thread", "num.stream.threads"),
            ("processing.guarantees", "processing.guarantee"),
            ("bootstrap.server", "bootstrap.servers"),
        ] {
            let err = c.set(typo, "1").unwrap_err().to_string();
            assert!(err.contains(&format!("did you mean `{near}`")), "{err}");
        }
        let err = c.set("totally.different", "1").unwrap_err().to_string();
        assert!(err.contains("neither a Streams key"), "{err}");
        c.set("num.standby.replicas", "2").unwrap();
        assert_eq!(c.num_standby_replicas, 2);
        let err = c.set("num.standby.replicas", "-1").unwrap_err().to_string();
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn layers_apply_defaults_then_file_then_environment() {
        let mut c = StreamsConfig::new("a");
        c.apply_properties("processing.guarantee=at_least_once\nnum.stream.threads=2")
            .unwrap();
        let env = [
            ("EDDY_NUM_STREAM_THREADS".to_string(), "4".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        c.apply_env_from(env).unwrap();
        assert_eq!(
            c.processing_guarantee,
            ProcessingGuarantee::AtLeastOnce,
            "from the file"
        );
        assert_eq!(c.num_stream_threads, 4, "the environment wins");
        assert!(c
            .apply_env_from([("EDDY_COMMIT_INTERVAL_MS".to_string(), "soon".to_string())])
            .is_err());
    }

    #[test]
    fn properties_apply_in_order_and_errors_name_the_key() {
        let mut c = StreamsConfig::new("a");
        c.apply_properties("# comment\napplication.id = quiz\ncommit.interval.ms=250\nprocessing.guarantee=at_least_once\nbootstrap.servers=localhost:9092\n").unwrap();
        assert_eq!(c.application_id, "quiz");
        assert_eq!(
            c.commit_interval_ms, 250,
            "an explicit interval wins over the guarantee's default"
        );
        assert_eq!(
            c.clients.get(ClientScope::All, "bootstrap.servers"),
            Some("localhost:9092")
        );
        let err = c
            .set("deserialization.exception.handler", "ignore")
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("deserialization.exception.handler"));
        assert!(c.apply_properties("no separator here").is_err());
        assert!(c.set("application.id", "bad id").is_err());
    }
}
