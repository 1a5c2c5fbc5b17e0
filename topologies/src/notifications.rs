//! `notifications` (event notification): one `{user_id, kind, message, source_event_id}` on
//! `notifications` per completion event (document.processed, quiz.generated,
//! audio.transcription.completed). A re-delivered event (same `event_id`) notifies once.
//! Plagiarism results are notified by `plagiarism-stats`, which joins the paper's owner.

use std::time::Duration;

use eddy_engine::{
    Processor, ProcessorContext, Produced, Record, Result, Serdes, StoreKind, StoreSpec,
    StreamsBuilder, Topology, WindowStoreHandle,
};
use serde::{Deserialize, Serialize};

use crate::events::{platform_events, PlatformEvent};

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub user_id: String,
    pub kind: String,
    pub message: String,
    pub source_event_id: String,
}

/// Topics and how long event ids are remembered for de-duplication.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationsConfig {
    pub document_topic: String,
    pub quiz_topic: String,
    pub output_topic: String,
    pub dedup_retention: Duration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            document_topic: "document-events".into(),
            quiz_topic: "quiz-events".into(),
            output_topic: "notifications".into(),
            dedup_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// The message of a completion event, if the event is one.
pub fn message_for(event_type: &str) -> Option<&'static str> {
    match event_type {
        "document.processed" => Some("Your document is processed and ready."),
        "quiz.generated" => Some("Your quiz is ready."),
        "audio.transcription.completed" => Some("Your audio transcription is ready."),
        _ => None,
    }
}

struct Notify {
    seen: Option<WindowStoreHandle<String, bool>>,
    retention_ms: i64,
}

impl Processor<String, PlatformEvent, String, Notification> for Notify {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Notification>) -> Result<()> {
        self.seen = Some(ctx.window_store("notified_events")?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, PlatformEvent>,
        ctx: &mut ProcessorContext<'_, String, Notification>,
    ) -> Result<()> {
        let event = record.value;
        let Some(message) = message_for(&event.event_type) else {
            return Ok(());
        };
        let Ok(user_id) = event.entity_id("user_id") else {
            ctx.dead_letter("missing entity id `user_id`");
            return Ok(());
        };
        // Without an event id, the record's place in its topic identifies the event.
        let source_event_id = event.event_id.clone().unwrap_or_else(|| {
            ctx.record_metadata().map_or_else(String::new, |m| {
                format!("{}-{}@{}", m.topic, m.partition, m.offset)
            })
        });
        let Some(seen) = &self.seen else {
            return Ok(());
        };
        // A re-delivery may carry another record timestamp: look across the whole retention.
        let t = record.timestamp;
        if !seen
            .fetch_range(
                &source_event_id,
                t.saturating_sub(self.retention_ms),
                t.saturating_add(self.retention_ms),
            )?
            .is_empty()
        {
            return Ok(());
        }
        seen.put(&source_event_id, record.timestamp, Some(&true))?;
        let n = Notification {
            user_id: user_id.clone(),
            kind: event.event_type.clone(),
            message: message.into(),
            source_event_id,
        };
        ctx.forward(Record::new(user_id, n, record.timestamp))
    }
}

/// Builds the topology.
pub fn notifications(config: &NotificationsConfig) -> Result<Topology> {
    let b = StreamsBuilder::new();
    let retention_ms = config.dedup_retention.as_millis() as i64;
    let spec = StoreSpec {
        kind: StoreKind::Window {
            retention_ms,
            segment_interval_ms: None,
            retain_duplicates: false,
            time_ordered: false,
        },
        ..StoreSpec::key_value("notified_events")
    };
    b.add_state_store(spec, Serdes::string(), Serdes::json::<bool>());
    let documents = platform_events(
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
    );
    documents
        .merge(&quizzes)
        .process(
            move || Notify {
                seen: None,
                retention_ms,
            },
            &["notified_events"],
        )
        .to(
            &config.output_topic,
            Produced::with(Serdes::string(), Serdes::json::<Notification>()),
        );
    b.build()
}
