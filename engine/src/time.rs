//! Time: timestamp extractors (event time of a record), punctuation types and the wall clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A record as it arrives from a topic, before any serde runs.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The Kafka record timestamp.
    pub timestamp: i64,
}

/// Decides a record's event time. A negative result means the record has no valid time: it is
/// dropped and counted, as in Kafka Streams.
pub trait TimestampExtractor: Send + Sync {
    /// The event time of `record`; `partition_time` is the largest time seen on its partition.
    fn extract(&self, record: &RawRecord<'_>, partition_time: i64) -> i64;
}

/// The Kafka record timestamp (Kafka Streams' default, `FailOnInvalidTimestamp` aside).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestampExtractor;

impl TimestampExtractor for RecordTimestampExtractor {
    fn extract(&self, record: &RawRecord<'_>, _partition_time: i64) -> i64 {
        record.timestamp
    }
}

/// Reads the first of several JSON fields that parses as an RFC 3339 time, falling back to the
/// record timestamp. Fields are looked up at the top level, then inside `payload`, so both of the
/// platform's envelopes work.
///
/// ```
/// use eddy_engine::{JsonFieldTimestampExtractor, RawRecord, TimestampExtractor};
/// let ex = JsonFieldTimestampExtractor::new(["event_timestamp", "timestamp", "occurred_at"]);
/// let value = br#"{"occurred_at":"2026-01-01T00:00:01Z"}"#;
/// let rec = RawRecord { topic: "t", partition: 0, offset: 0, key: None, value: Some(value), timestamp: 5 };
/// assert_eq!(ex.extract(&rec, 0), 1_767_225_601_000);
/// ```
#[derive(Debug, Clone)]
pub struct JsonFieldTimestampExtractor {
    fields: Vec<String>,
}

impl JsonFieldTimestampExtractor {
    /// Tries `fields` in order.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    /// The event time of a parsed JSON value, if one of the fields holds an RFC 3339 time.
    pub fn from_json(&self, value: &serde_json::Value) -> Option<i64> {
        let payload = value.get("payload");
        self.fields.iter().find_map(|field| {
            [Some(value), payload]
                .into_iter()
                .flatten()
                .find_map(|obj| obj.get(field))
                .and_then(|v| v.as_str())
                .and_then(parse_rfc3339_millis)
        })
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl TimestampExtractor for JsonFieldTimestampExtractor {
    fn extract(&self, record: &RawRecord<'_>, _partition_time: i64) -> i64 {
        record
            .value
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok())
            .and_then(|json| self.from_json(&json))
            .unwrap_or(record.timestamp)
    }
}

/// What drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// Fires as stream time (the largest record timestamp of the task) passes each interval.
    StreamTime,
    /// Fires as the wall clock passes each interval, even with no input.
    WallClock,
}

/// The wall clock of a worker; the test driver's can be advanced by hand.
#[derive(Debug, Clone)]
pub struct WallClock {
    manual: Option<Arc<AtomicI64>>,
}

impl WallClock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }
    /// A clock that stands at `start_ms` until advanced.
    pub fn manual(start_ms: i64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }
    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }
    /// Moves a manual clock forward; a system clock ignores this.
    pub fn advance(&self, by_ms: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(by_ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: &[u8]) -> RawRecord<'_> {
        RawRecord {
            topic: "t",
            partition: 0,
            offset: 0,
            key: None,
            value: Some(value),
            timestamp: 42,
        }
    }

    #[test]
    fn json_extractor_takes_the_first_parsable_field_in_either_envelope() {
        let ex = JsonFieldTimestampExtractor::new(["event_timestamp", "timestamp", "occurred_at"]);
        let nested = br#"{"event_timestamp":"bad","payload":{"timestamp":"1970-01-01T00:00:01Z"}}"#;
        assert_eq!(ex.extract(&raw(nested), 0), 1000);
        let offset = br#"{"occurred_at":"1970-01-01T01:00:00+01:00"}"#;
        assert_eq!(ex.extract(&raw(offset), 0), 0);
        assert_eq!(ex.extract(&raw(b"not json"), 0), 42);
        assert_eq!(ex.extract(&raw(br#"{"x":1}"#), 0), 42);
    }

    #[test]
    fn manual_clock_advances() {
        let c = WallClock::manual(100);
        c.advance(50);
        assert_eq!(c.now_ms(), 150);
    }
}
