//! Topic configs as Kafka 4's `LogConfig` defines them: the names a topic may be created with,
//! the type and range of each value (checked at CreateTopics, INVALID_CONFIG otherwise), the
//! value kept (normalised as Kafka parses it), and the broker's defaults for the ones it acts
//! on or describes.

use std::collections::BTreeMap;

/// Topic configs a client may ask about, with the broker's defaults.
pub(crate) const TOPIC_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("max.message.bytes", "1048588"),
    ("min.insync.replicas", "1"),
];

/// The type and range of a topic config's value.
#[derive(Clone, Copy)]
enum Kind {
    /// A 32-bit integer within the bounds.
    Int(i64, i64),
    /// A 32-bit integer within the bounds, or -1 (the codec's default).
    IntOrDefault(i64, i64),
    /// A 64-bit integer within the bounds.
    Long(i64, i64),
    /// A ratio within `[0, 1]`.
    Ratio,
    Bool,
    /// One of these.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of some of these.
    ListOf(&'static [&'static str]),
    /// Free text (a version, a list of replicas).
    Text,
}

const INT_MAX: i64 = i32::MAX as i64;

/// Every topic config of Kafka 4 (any other name is refused at creation, as Kafka does).
const CONFIGS: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::ListOf(&["compact", "delete"])),
    (
        "compression.type",
        Kind::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    ("compression.gzip.level", Kind::IntOrDefault(1, 9)),
    ("compression.lz4.level", Kind::Int(1, 17)),
    ("compression.zstd.level", Kind::Int(-131_072, 22)),
    ("delete.retention.ms", Kind::Long(0, i64::MAX)),
    ("file.delete.delay.ms", Kind::Long(0, i64::MAX)),
    ("flush.messages", Kind::Long(1, i64::MAX)),
    ("flush.ms", Kind::Long(0, i64::MAX)),
    ("follower.replication.throttled.replicas", Kind::Text),
    ("index.interval.bytes", Kind::Int(0, INT_MAX)),
    ("leader.replication.throttled.replicas", Kind::Text),
    ("local.retention.bytes", Kind::Long(-2, i64::MAX)),
    ("local.retention.ms", Kind::Long(-2, i64::MAX)),
    ("max.compaction.lag.ms", Kind::Long(1, i64::MAX)),
    ("max.message.bytes", Kind::Int(0, INT_MAX)),
    ("message.downconversion.enable", Kind::Bool),
    ("message.format.version", Kind::Text),
    ("message.timestamp.after.max.ms", Kind::Long(0, i64::MAX)),
    ("message.timestamp.before.max.ms", Kind::Long(0, i64::MAX)),
    (
        "message.timestamp.difference.max.ms",
        Kind::Long(0, i64::MAX),
    ),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    ("min.cleanable.dirty.ratio", Kind::Ratio),
    ("min.compaction.lag.ms", Kind::Long(0, i64::MAX)),
    ("min.insync.replicas", Kind::Int(1, INT_MAX)),
    ("preallocate", Kind::Bool),
    ("remote.log.copy.disable", Kind::Bool),
    ("remote.log.delete.on.disable", Kind::Bool),
    ("remote.storage.enable", Kind::Bool),
    ("retention.bytes", Kind::Long(i64::MIN, i64::MAX)),
    ("retention.ms", Kind::Long(-1, i64::MAX)),
    // Kafka 4 (KIP-1030): at least 1 MiB.
    ("segment.bytes", Kind::Int(1_048_576, INT_MAX)),
    ("segment.index.bytes", Kind::Int(4, INT_MAX)),
    ("segment.jitter.ms", Kind::Long(0, i64::MAX)),
    ("segment.ms", Kind::Long(1, i64::MAX)),
    ("unclean.leader.election.enable", Kind::Bool),
];

/// Checks topic config `name` = `value` given at creation as Kafka's `LogConfig` does, and
/// returns the value as it is kept (trimmed, a number as it parses: `" 4000"` is `4000`, `-0`
/// is `0`); `Err` is the INVALID_CONFIG message.
pub(crate) fn validate_topic_config(name: &str, value: Option<&str>) -> Result<String, String> {
    let Some((_, kind)) = CONFIGS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let Some(raw) = value else {
        return Err(format!(
            "Null value not supported for topic configs: {name}"
        ));
    };
    let invalid = |why: String| {
        Err(format!(
            "Invalid value {raw} for configuration {name}: {why}"
        ))
    };
    let value = raw.trim();
    // Parsed as Java parses an INT or a LONG: a value past the type's range is no number.
    let bounded = |type_name: &str, parsed: Option<i64>, least: i64, most: i64| match parsed {
        Some(v) if v < least => invalid(format!("Value must be at least {least}")),
        Some(v) if v > most => invalid(format!("Value must be no more than {most}")),
        Some(v) => Ok(v.to_string()),
        None => invalid(format!("Not a number of type {type_name}")),
    };
    match *kind {
        Kind::Int(least, most) => {
            let parsed = value.parse::<i32>().ok().map(i64::from);
            bounded("INT", parsed, least, most)
        }
        Kind::IntOrDefault(least, most) => match value.parse::<i32>() {
            Ok(-1) => Ok("-1".into()),
            parsed => bounded("INT", parsed.ok().map(i64::from), least, most),
        },
        Kind::Long(least, most) => bounded("LONG", value.parse::<i64>().ok(), least, most),
        Kind::Ratio => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(value.to_string()),
            Ok(_) => invalid("Value must be between 0.0 and 1.0".into()),
            Err(_) => invalid("Not a number of type DOUBLE".into()),
        },
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_string()),
            _ => invalid("Expected value to be either true or false".into()),
        },
        // Case-sensitive, as Kafka's `ValidString`.
        Kind::OneOf(allowed) if allowed.contains(&value) => Ok(value.to_string()),
        Kind::OneOf(allowed) => invalid(format!("String must be one of: {}", allowed.join(", "))),
        Kind::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if !value.is_empty() && items.iter().all(|i| allowed.contains(i)) {
                Ok(items.join(","))
            } else {
                invalid(format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        Kind::Text => Ok(value.to_string()),
    }
}

/// The value of topic config `key`: the one the topic was created with, else the broker's
/// default.
pub(crate) fn topic_config<'a>(
    configs: Option<&'a BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    configs
        .and_then(|c| c.get(key))
        .map(String::as_str)
        .or_else(|| default_of(key))
}

/// The largest record batch a topic with `configs` takes: its `max.message.bytes` (kept as
/// parsed at creation), else the broker's default — never "no limit".
pub(crate) fn max_message_bytes(configs: Option<&BTreeMap<String, String>>) -> usize {
    const DEFAULT: usize = 1_048_588;
    let parse = |v: &str| v.trim().parse::<usize>().ok();
    topic_config(configs, "max.message.bytes")
        .and_then(parse)
        .unwrap_or(DEFAULT)
}

/// The broker's default of topic config `key`, if it has one.
fn default_of(key: &str) -> Option<&'static str> {
    TOPIC_DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_kept_as_kafka_parses_them() {
        let ok = |name, value| validate_topic_config(name, Some(value));
        assert_eq!(ok("max.message.bytes", " 4000"), Ok("4000".into()));
        assert_eq!(ok("max.message.bytes", "-0"), Ok("0".into()));
        assert_eq!(
            ok("cleanup.policy", "compact, delete"),
            Ok("compact,delete".into())
        );
        assert_eq!(ok("compression.type", "zstd"), Ok("zstd".into()));
        assert_eq!(ok("compression.zstd.level", "3"), Ok("3".into()));
        assert_eq!(ok("preallocate", "TRUE"), Ok("true".into()));
        assert_eq!(ok("retention.ms", "-1"), Ok("-1".into()));
        for (name, value) in [
            ("max.message.bytes", "4k"),
            ("max.message.bytes", "4294967296"),
            ("segment.bytes", "14"),
            ("retention.ms", "-2"),
            ("segment.ms", "0"),
            ("max.compaction.lag.ms", "0"),
            ("compression.type", "bogus"),
            ("message.timestamp.type", "Foo"),
            ("unclean.leader.election.enable", "maybe"),
            ("min.cleanable.dirty.ratio", "2"),
            ("segment.index.bytes", "3"),
            ("flush.ms", "-1"),
            ("cleanup.policy", ""),
            ("compression.gzip.level", "10"),
            // Kafka's lists are case-sensitive, and gzip's level is 1 to 9 or -1.
            ("compression.type", "ZSTD"),
            ("message.timestamp.type", "createtime"),
            ("compression.gzip.level", "0"),
        ] {
            let refused = ok(name, value).unwrap_err();
            assert!(
                refused.starts_with("Invalid value"),
                "{name}={value}: {refused}"
            );
        }
        assert!(validate_topic_config("retention.mss", Some("1"))
            .unwrap_err()
            .starts_with("Unknown topic config name"));
        assert!(validate_topic_config("retention.ms", None)
            .unwrap_err()
            .starts_with("Null value not supported"));
    }
}
