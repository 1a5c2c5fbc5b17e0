//! The platform's events: both envelopes of `platform.md`, the event-time rule, and the checks
//! that send a record to the dead-letter path (undecodable, no entity id, unknown type).

use std::sync::Arc;

use eddy_engine::{
    Consumed, JsonFieldTimestampExtractor, KStream, Processor, ProcessorContext, Record, Result,
    Serdes, StreamsBuilder, TimestampExtractor,
};
use serde_json::{Map, Value};

/// The fields that carry event time, in the order `platform.md` gives them.
pub const EVENT_TIME_FIELDS: [&str; 3] = ["event_timestamp", "timestamp", "occurred_at"];

/// Event time as `platform.md` defines it: the first of `event_timestamp`, `timestamp`,
/// `occurred_at` (top level, then `payload`) that parses as RFC 3339, else the record timestamp.
pub fn event_time_extractor() -> Arc<dyn TimestampExtractor> {
    Arc::new(JsonFieldTimestampExtractor::new(EVENT_TIME_FIELDS))
}

/// Why a record went to the dead-letter path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The value is not a JSON object.
    Undecodable(String),
    /// No `event_type`.
    MissingEventType,
    /// An `event_type` this topic does not carry.
    UnknownEventType(String),
    /// The entity id the topology keys by is absent or empty.
    MissingEntityId(&'static str),
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::Undecodable(e) => write!(f, "undecodable: {e}"),
            RejectReason::MissingEventType => f.write_str("missing event_type"),
            RejectReason::UnknownEventType(t) => write!(f, "unknown event_type `{t}`"),
            RejectReason::MissingEntityId(field) => write!(f, "missing entity id `{field}`"),
        }
    }
}

/// One platform event in either envelope: fields are looked up at the top level, then in
/// `payload`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformEvent {
    pub event_type: String,
    pub event_id: Option<String>,
    pub event_version: Option<String>,
    /// Event time by the rule of [`event_time_extractor`], if the event carries one.
    pub time_ms: Option<i64>,
    top: Map<String, Value>,
}

/// An event travels (repartition topics, stores) as its original JSON object.
impl serde::Serialize for PlatformEvent {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.top.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for PlatformEvent {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let top = Map::<String, Value>::deserialize(deserializer)?;
        let bytes = serde_json::to_vec(&top).map_err(serde::de::Error::custom)?;
        let event_type = top
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        PlatformEvent::parse(&bytes, &[event_type.as_str()]).map_err(serde::de::Error::custom)
    }
}

impl PlatformEvent {
    /// Parses `bytes` and checks `event_type` against `known`.
    pub fn parse(bytes: &[u8], known: &[&str]) -> std::result::Result<Self, RejectReason> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| RejectReason::Undecodable(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(RejectReason::Undecodable("not a JSON object".into()));
        };
        let event_type = match top.get("event_type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err(RejectReason::MissingEventType),
        };
        if !known.contains(&event_type.as_str()) {
            return Err(RejectReason::UnknownEventType(event_type));
        }
        let extractor = JsonFieldTimestampExtractor::new(EVENT_TIME_FIELDS);
        let as_value = Value::Object(top);
        let time_ms = extractor.from_json(&as_value);
        let Value::Object(top) = as_value else {
            return Err(RejectReason::Undecodable("not a JSON object".into()));
        };
        let mut event = Self {
            event_type,
            event_id: None,
            event_version: None,
            time_ms,
            top,
        };
        event.event_id = event.str("event_id").map(str::to_string);
        event.event_version = event.get("event_version").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        Ok(event)
    }

    /// A field, from the top level or else from `payload`.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.top.get(field).filter(|v| !v.is_null()).or_else(|| {
            self.top
                .get("payload")
                .and_then(|p| p.get(field))
                .filter(|v| !v.is_null())
        })
    }

    /// A string field (numbers are not ids).
    pub fn str(&self, field: &str) -> Option<&str> {
        self.get(field).and_then(Value::as_str)
    }

    /// A numeric field.
    pub fn f64(&self, field: &str) -> Option<f64> {
        self.get(field).and_then(Value::as_f64)
    }

    /// A required, non-empty entity id.
    pub fn entity_id(&self, field: &'static str) -> std::result::Result<String, RejectReason> {
        match self.str(field) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(RejectReason::MissingEntityId(field)),
        }
    }
}

/// The platform events of `topic`: raw values with platform.md's event time, decoded and keyed by
/// `entity_id`; bad records go to the dead-letter path with their reason.
pub fn platform_events(
    b: &StreamsBuilder,
    topic: &str,
    known: &'static [&'static str],
    entity_id: &'static str,
) -> KStream<String, PlatformEvent> {
    let consumed = Consumed::with(Serdes::string(), Serdes::bytes())
        .with_timestamp_extractor(event_time_extractor());
    b.stream(&[topic], consumed)
        .process_values(move || DecodeEvents { known, entity_id }, &[])
}

/// Turns raw values of a topic into events keyed by their entity id, sending every record that
/// fails a check to the dead-letter path with its reason. Producers key records by that id
/// (platform.md), so the DSL runs this with `process_values`: no repartition.
pub struct DecodeEvents {
    /// Event types the topic carries.
    pub known: &'static [&'static str],
    /// The entity-id field each event is keyed by.
    pub entity_id: &'static str,
}

impl Processor<String, Vec<u8>, String, PlatformEvent> for DecodeEvents {
    fn process(
        &mut self,
        record: Record<String, Vec<u8>>,
        ctx: &mut ProcessorContext<'_, String, PlatformEvent>,
    ) -> Result<()> {
        let checked = PlatformEvent::parse(&record.value, self.known)
            .and_then(|e| e.entity_id(self.entity_id).map(|id| (id, e)));
        match checked {
            Ok((id, event)) => ctx.forward(Record {
                key: id,
                value: event,
                timestamp: record.timestamp,
                headers: record.headers,
            }),
            Err(reason) => {
                ctx.dead_letter(reason.to_string());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_envelopes_parse_and_ids_are_found_in_either_place() {
        let nested = br#"{"event_id":"e1","event_type":"quiz.generated","event_timestamp":"1970-01-01T00:00:01Z","event_version":"1.0","payload":{"quiz_id":"q1"}}"#;
        let e = PlatformEvent::parse(nested, &["quiz.generated"]).unwrap();
        assert_eq!(e.entity_id("quiz_id").unwrap(), "q1");
        assert_eq!(e.time_ms, Some(1000));
        assert_eq!(e.event_version.as_deref(), Some("1.0"));
        let flat = br#"{"event_type":"emotion.detected","child_id":"c1","occurred_at":"1970-01-01T00:00:02Z","confidence":0.5}"#;
        let e = PlatformEvent::parse(flat, &["emotion.detected"]).unwrap();
        assert_eq!(e.entity_id("child_id").unwrap(), "c1");
        assert_eq!((e.time_ms, e.f64("confidence")), (Some(2000), Some(0.5)));
    }

    #[test]
    fn bad_records_say_why() {
        let known = &["a"];
        assert!(matches!(
            PlatformEvent::parse(b"{oops", known),
            Err(RejectReason::Undecodable(_))
        ));
        assert_eq!(
            PlatformEvent::parse(b"[1]", known).unwrap_err().to_string(),
            "undecodable: not a JSON object"
        );
        assert_eq!(
            PlatformEvent::parse(br#"{"x":1}"#, known),
            Err(RejectReason::MissingEventType)
        );
        assert_eq!(
            PlatformEvent::parse(br#"{"event_type":"b"}"#, known),
            Err(RejectReason::UnknownEventType("b".into()))
        );
        let e = PlatformEvent::parse(br#"{"event_type":"a","quiz_id":""}"#, known).unwrap();
        assert_eq!(
            e.entity_id("quiz_id"),
            Err(RejectReason::MissingEntityId("quiz_id"))
        );
    }
}
