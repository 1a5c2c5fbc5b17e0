//! `document-lifecycle` (event sourcing): each document's events, kept in order of event time in
//! `document_history`, and their fold, the current state, in `document_state`. The state as of
//! any time T is the fold of the history up to T ([`state_as_of`]).

use std::collections::BTreeSet;

use eddy_engine::{
    KStream, KeyValueStoreHandle, Processor, ProcessorContext, Produced, Record, Result, Serdes,
    StoreSpec, StreamsBuilder, Topology,
};
use serde::{Deserialize, Serialize};

use crate::events::{platform_events, PlatformEvent};

/// The fold of a document's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DocumentState {
    pub document_id: String,
    pub user_id: Option<String>,
    /// The status set by the latest status event: uploaded, processing, processed, indexed, error.
    pub status: Option<String>,
    pub file_name: Option<String>,
    pub word_count: Option<u64>,
    pub notes_id: Option<String>,
    pub quiz_ids: BTreeSet<String>,
    pub error: Option<String>,
    pub event_count: u64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
}

/// One event of a document's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time_ms: i64,
    pub event: PlatformEvent,
}

/// The columns SQL shows for `document_history` (a [`PlatformEvent`] keeps its JSON as it came,
/// so its own format cannot be traced): the platform's event envelope, as plain types. Fields
/// an event has beyond these stay in `value_json`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct HistoryColumns {
    time_ms: i64,
    event: EventColumns,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct EventColumns {
    event_id: Option<String>,
    event_type: String,
    event_timestamp: Option<String>,
    event_version: Option<String>,
    payload: Option<DocumentPayloadColumns>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct DocumentPayloadColumns {
    document_id: Option<String>,
    user_id: Option<String>,
    file_name: Option<String>,
    word_count: Option<i64>,
    notes_id: Option<String>,
    quiz_id: Option<String>,
    error: Option<String>,
}

/// Applies one event to a state.
pub fn apply(state: &mut DocumentState, entry: &HistoryEntry) {
    let e = &entry.event;
    state.event_count += 1;
    state.first_event_ms = Some(
        state
            .first_event_ms
            .map_or(entry.time_ms, |t| t.min(entry.time_ms)),
    );
    state.last_event_ms = Some(
        state
            .last_event_ms
            .map_or(entry.time_ms, |t| t.max(entry.time_ms)),
    );
    if state.user_id.is_none() {
        state.user_id = e.str("user_id").map(str::to_string);
    }
    let status = |s: &mut DocumentState, v: &str| s.status = Some(v.to_string());
    match e.event_type.as_str() {
        "document.uploaded" => {
            status(state, "uploaded");
            state.file_name = e
                .str("file_name")
                .or_else(|| e.str("filename"))
                .map(str::to_string)
                .or(state.file_name.take());
        }
        "document.processing" => status(state, "processing"),
        "document.processed" => {
            status(state, "processed");
            if let Some(n) = e.get("word_count").and_then(serde_json::Value::as_u64) {
                state.word_count = Some(n);
            }
        }
        "document.indexed" => status(state, "indexed"),
        "document.error" => {
            status(state, "error");
            state.error = e
                .str("error")
                .or_else(|| e.str("reason"))
                .map(str::to_string);
        }
        "notes.generated" => state.notes_id = e.str("notes_id").map(str::to_string),
        "quiz.generated" => {
            if let Some(q) = e.str("quiz_id") {
                state.quiz_ids.insert(q.to_string());
            }
        }
        _ => {}
    }
}

/// The state of a document as of `time_ms`: the fold of its history up to that time.
pub fn state_as_of(document_id: &str, history: &[HistoryEntry], time_ms: i64) -> DocumentState {
    let mut state = DocumentState {
        document_id: document_id.to_string(),
        ..Default::default()
    };
    for entry in history.iter().filter(|e| e.time_ms <= time_ms) {
        apply(&mut state, entry);
    }
    state
}

/// Topics.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentLifecycleConfig {
    pub document_topic: String,
    pub quiz_topic: String,
    pub output_topic: String,
}

impl Default for DocumentLifecycleConfig {
    fn default() -> Self {
        Self {
            document_topic: "document-events".into(),
            quiz_topic: "quiz-events".into(),
            output_topic: "document-state".into(),
        }
    }
}

struct Fold {
    states: Option<KeyValueStoreHandle<String, DocumentState>>,
    history: Option<KeyValueStoreHandle<String, Vec<HistoryEntry>>>,
}

impl Processor<String, PlatformEvent, String, DocumentState> for Fold {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, DocumentState>) -> Result<()> {
        self.states = Some(ctx.key_value_store("document_state")?);
        self.history = Some(ctx.key_value_store("document_history")?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, PlatformEvent>,
        ctx: &mut ProcessorContext<'_, String, DocumentState>,
    ) -> Result<()> {
        let (Some(states), Some(history)) = (&self.states, &self.history) else {
            return Ok(());
        };
        let time_ms = record.value.time_ms.unwrap_or(record.timestamp);
        let mut entries = history.get(&record.key)?.unwrap_or_default();
        let id = record.value.event_id.clone();
        if id.is_some() && entries.iter().any(|e| e.event.event_id == id) {
            return Ok(()); // re-delivered
        }
        // Kept in event-time order (stable for equal times), so out-of-order events fold right.
        let at = entries
            .iter()
            .position(|e| e.time_ms > time_ms)
            .unwrap_or(entries.len());
        entries.insert(
            at,
            HistoryEntry {
                time_ms,
                event: record.value,
            },
        );
        let state = state_as_of(&record.key, &entries, i64::MAX);
        history.put(&record.key, &entries)?;
        states.put(&record.key, &state)?;
        ctx.forward(Record::new(record.key, state, record.timestamp))
    }
}

/// Builds the topology.
pub fn document_lifecycle(config: &DocumentLifecycleConfig) -> Result<Topology> {
    let b = StreamsBuilder::new();
    b.add_state_store(
        StoreSpec::key_value("document_state"),
        Serdes::string(),
        Serdes::json::<DocumentState>(),
    );
    b.add_state_store(
        StoreSpec::key_value("document_history"),
        Serdes::string(),
        Serdes::json::<Vec<HistoryEntry>>(),
    );
    b.declare_value_columns::<Vec<HistoryColumns>>("document_history");
    let documents: KStream<String, PlatformEvent> = platform_events(
        &b,
        config.document_topic.as_str(),
        crate::saga::DOCUMENT_EVENT_TYPES,
        "document_id",
    );
    let quizzes = platform_events(
        &b,
        config.quiz_topic.as_str(),
        crate::quiz_results::QUIZ_EVENT_TYPES,
        "quiz_id",
    )
    .filter(|_, e| {
        e.event_type == "quiz.generated" && e.str("document_id").is_some_and(|d| !d.is_empty())
    })
    .select_key(|_, e| e.str("document_id").unwrap_or_default().to_string())
    .repartition_with(
        "document-quizzes",
        Serdes::string(),
        Serdes::json::<PlatformEvent>(),
    );
    documents
        .merge(&quizzes)
        .process_values(
            || Fold {
                states: None,
                history: None,
            },
            &["document_state", "document_history"],
        )
        .to(
            &config.output_topic,
            Produced::with(Serdes::string(), Serdes::json::<DocumentState>()),
        );
    b.build()
}
